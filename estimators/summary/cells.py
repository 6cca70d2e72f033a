"""One cell (model, method, M) of a tidy results table, and its statistics.

For a cell with data points n = 1..N and repeats r = 1..R, let e_nr = estimate_nr - truth_n:

    bias      = mean_{n,r} e_nr                          (mean error, nats)
    variance  = mean_n  var_r(e_nr)   (ddof = 1)         (spread across repeats, averaged over points)
    rmse      = sqrt(mean_{n,r} e_nr^2)                  (includes the bias)
    seconds   = mean wall time of one repeat (N points x M samples); samples_per_second = N M / seconds
    se        = sqrt(mean_{n,r} se_nr^2): the method's own standard errors (NaN where it has none)

95% confidence intervals come from a bootstrap stratified by point: each replicate resamples the
R repeats of every point with replacement (the points are fixed; the Monte Carlo noise is what
varies). When the truth is itself an estimate (truth_se > 0), the bias's replicates also get its
error, drawn as N(0, sqrt(sum_n truth_se_n^2) / N).

``Cell`` is the [N, R] view of one cell that ``summarize`` and ``comparison.compare`` share.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from estimators import methods as registry

CELL = ["model", "method", "num_samples"]
PAIR = ["model", "method"]
BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95
METRICS = ("abs_bias", "variance", "rmse")


@dataclass(frozen=True)
class Cell:
    """One cell's estimates as a [N points, R repeats] grid, its truths [N] and mean seconds."""

    key: tuple  # (model, method, num_samples)
    estimates: np.ndarray  # [N, R]; NaN where a (point, repeat) is missing
    truth: np.ndarray  # [N]
    truth_se: np.ndarray  # [N]
    seconds: float
    point_index: np.ndarray  # [rows]: each row's place in the grid
    repeat_index: np.ndarray

    @classmethod
    def from_rows(cls, key, rows: pd.DataFrame) -> "Cell":
        points, point_index = np.unique(rows["point"].to_numpy(), return_inverse=True)
        repeats, repeat_index = np.unique(rows["repeat"].to_numpy(), return_inverse=True)
        truth = np.empty(points.size)
        truth[point_index] = rows["truth"].to_numpy(float)
        truth_se = np.empty(points.size)
        truth_se[point_index] = rows["truth_se"].to_numpy(float)
        shape = (points.size, repeats.size)
        return cls(
            key=tuple(key),
            estimates=_grid(shape, point_index, repeat_index, rows["estimate"]),
            truth=truth,
            truth_se=truth_se,
            seconds=float(rows["seconds"].mean()),
            point_index=point_index,
            repeat_index=repeat_index,
        )

    def grid(self, values) -> np.ndarray:
        """A per-row column of the cell's rows (se, k-hat) as [N, R]; NaN where a row is missing."""
        return _grid(self.shape, self.point_index, self.repeat_index, values)

    @property
    def errors(self) -> np.ndarray:
        return self.estimates - self.truth[:, None]

    @property
    def shape(self):
        return self.estimates.shape

    @property
    def name(self):
        return "/".join(map(str, self.key))


def _grid(shape, point_index, repeat_index, values):
    out = np.full(shape, np.nan)
    out[point_index, repeat_index] = np.asarray(values, float)
    return out


def split_cells(df: pd.DataFrame) -> dict:
    """{(model, method, M): Cell} in the table's order."""
    return {
        key: Cell.from_rows(key, df.iloc[rows])
        for key, rows in df.groupby(CELL, sort=False).indices.items()
    }


def metric(name, errors):
    """|bias|, variance or RMSE of errors [..., N, R] over the last two axes."""
    if name == "abs_bias":
        return np.abs(errors.mean(axis=(-2, -1)))
    if name == "variance":
        return errors.var(axis=-1, ddof=1).mean(axis=-1)
    if name == "rmse":
        return np.sqrt(np.mean(errors**2, axis=(-2, -1)))
    raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")


def cell_statistics(cell: Cell, rows: pd.DataFrame, rng, bootstrap=BOOTSTRAP_SAMPLES) -> dict:
    """The statistics of the module docstring for one cell (``rows``: its rows of the table)."""
    errors = cell.errors
    num_points, repeats = errors.shape
    if repeats < 2 or np.isnan(errors).any():
        raise ValueError(
            f"cell {cell.key}: needs >= 2 repeats of every point and no NaN estimates "
            f"({repeats} repeats, {int(np.isnan(errors).sum())} NaN)"
        )
    low, high = _bootstrap_intervals(errors, cell.truth_se, rng, bootstrap)
    se = rows["se"] if "se" in rows else pd.Series(np.nan, index=rows.index)
    return {
        **dict(zip(CELL, cell.key, strict=True)),
        "num_points": num_points,
        "repeats": repeats,
        "bias": errors.mean(),
        "bias_ci_low": low["bias"],
        "bias_ci_high": high["bias"],
        "variance": metric("variance", errors),
        "variance_ci_low": low["variance"],
        "variance_ci_high": high["variance"],
        "rmse": metric("rmse", errors),
        "rmse_ci_low": low["rmse"],
        "rmse_ci_high": high["rmse"],
        "ess": rows["ess"].mean(),
        "seconds": cell.seconds,
        # log p(x|z) evaluations (a gradient counts as one) per point: the implementation-free cost
        "evaluations": _mean(rows, "evaluations"),
        "accept": _mean(rows, "accept"),
        "samples_per_second": (
            cell.key[2] * num_points / cell.seconds if cell.seconds > 0 else np.nan
        ),
        # The reference's own error bar: the RMS over points of its standard error (0 = exact).
        "truth_se": np.sqrt(np.mean(cell.truth_se**2)),
        "se": np.sqrt(np.mean(se**2)) if se.notna().all() else np.nan,
    }


def _mean(rows, column):
    """Mean of an optional column (tables from before it existed lack it): NaN when absent."""
    return rows[column].mean() if column in rows else np.nan


def _bootstrap_intervals(errors, truth_se, rng, bootstrap):
    """Percentile CIs of (bias, variance, rmse), resampling each point's repeats."""
    num_points, repeats = errors.shape
    picks = rng.integers(0, repeats, size=(bootstrap, num_points, repeats))
    resampled = errors[np.arange(num_points)[None, :, None], picks]  # [B, N, R]
    truth_error = rng.normal(0.0, np.sqrt(np.sum(truth_se**2)) / num_points, size=bootstrap)
    replicates = {
        "bias": resampled.mean(axis=(1, 2)) + truth_error,
        "variance": metric("variance", resampled),
        "rmse": metric("rmse", resampled),
    }
    tail = 100 * (1 - CONFIDENCE) / 2
    low = {k: np.percentile(v, tail) for k, v in replicates.items()}
    high = {k: np.percentile(v, 100 - tail) for k, v in replicates.items()}
    return low, high


def method_of(spec) -> registry.Method:
    """The registry entry of a canonical spec (ValueError for a name the registry lacks)."""
    return registry.parse(spec).method


def display_names(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each canonical method spec replaced by its short label (non-default
    options only), for people; tables on disk keep the canonical spec."""
    labels = {m: registry.label(m) for m in frame["method"].unique()}
    return frame.assign(method=frame["method"].map(labels))
