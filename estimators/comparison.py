"""Did a change make an estimator worse? Two runs' results, compared without crying wolf.

    compare(old_df, new_df, metric="rmse", threshold=1.5, alpha=0.01) -> Comparison

Both runs are tidy results tables (``results.load_results``). For every cell (model, method, M)
they share, the side-by-side |bias|, variance, RMSE and seconds with new/old ratios
(``Comparison.cells``); for every (model, method) pair, the ratio of ``metric`` (geometric mean
over M of new/old, leaving out cells where both runs are below ``atol``) and a p-value
(``Comparison.pairs``). A pair **regresses** only when both hold:

1. its ratio exceeds ``threshold`` (a change large enough to matter), and
2. the worsening is statistically significant given the two runs' own noise: its one-sided
   p-value is at most ``alpha / P`` (Bonferroni over the P pairs compared), so the chance that
   two runs of the same code flag anything at all is at most ``alpha``.

Accuracy metrics (abs_bias, variance, rmse): a permutation test. With the same code, each
point's estimates in the two runs are draws from one distribution (only the seeds differ), so
under that null hypothesis the labels old/new of the R_old + R_new estimates of a point are
exchangeable. The test statistic is the mean over the pair's cells of
log(metric_new / metric_old); its null distribution comes from relabelling each point's
estimates at random (independently per point and cell) and recomputing it. The Monte Carlo
p-value is (1 + #{T* >= T}) / (1 + B) with B up to ``20 P / alpha`` relabellings (a pair stops
early once its p-value clearly exceeds alpha / P: the verdict is the same). Exact for any
distribution of the estimates, heavy tails included. The test asks whether the new estimates
come from another distribution; the ratio says which metric moved. So a change that shifts the
bias can also make the variance's test significant, when the variance ratio happens to exceed
the threshold (heavy tails); the bias and RMSE then regress too. When the two runs' truths
differ (each run
computed its own reference), the relabelled estimates are scored against truths redrawn from
N(mean truth, truth_se) for each run, so the references' own error counts as noise too; when
the truths are the same numbers they cancel and the test is exact.

Timings (seconds): a cell has one timing per call, so there is no within-run spread to test
against, and two runs' timings differ as a whole with the machine and its load (on a shared
2-core machine, quick runs of the same code differed by 1.8x overall). So a pair p is judged
against the other pairs: m_p is its mean log time ratio over M, its ``relative_ratio`` is
exp(m_p - median m), and its p-value compares m_p with the spread of the other pairs' m
(a Student-t prediction test, ``timing_p_values``; pairs that look like regressions themselves
are left out of the reference, and the noise scale is never below ``TIME_NOISE_FLOOR``). A pair
regresses when its relative ratio exceeds ``threshold`` and its p-value is at most alpha / P.
This catches a change that slows some methods or models; a shift shared by every pair (another
machine, a busier one, or a change that slows everything alike) cannot be told from noise with
two runs: it is reported (``Comparison.time_shift``), not flagged. It needs at least 4 pairs.
The cells are ``estimators.summary.cells.Cell`` grids and the metrics those of ``summarize``
(``summary.cells.metric``). ``document`` lays the comparison out with the report's section
types, so ``render(result, "markdown" | "html")`` uses the report's renderers. Pure numpy/pandas
and scipy: no TensorFlow, no matplotlib.
"""

from dataclasses import dataclass
from math import log

import numpy as np
import pandas as pd
from scipy import stats

from estimators.report.document import Bullets, Document, Section, Table
from estimators.report.html import render_html
from estimators.report.markdown import render_markdown
from estimators.results import ResultsError
from estimators.summary.cells import CELL, PAIR, split_cells
from estimators.summary.cells import metric as cell_metric

METRICS = {"abs_bias": "|bias|", "variance": "variance", "rmse": "rmse", "seconds": "seconds"}
ACCURACY_METRICS = ("abs_bias", "variance", "rmse")
THRESHOLD = 1.5
ALPHA = 0.01
ATOL = 1e-6
# The smallest noise scale of a pair's mean log time ratio (10%): two runs' timings never agree
# better than this, however alike the other pairs look.
TIME_NOISE_FLOOR = log(1.1)
OUTLIER_CUT = 4.0  # noise scales from the median: pairs beyond are not a noise reference
FIRST_BATCH = 200  # relabellings every pair gets (its p-value to within ~0.05)
BATCH_ELEMENTS = 2**22  # relabelled estimates per batch: bounds memory (~32 MB)
SEED = 0


@dataclass
class Comparison:
    """The outcome of ``compare``.

    cells: one row per shared cell: model, method, num_samples and, for each metric m of
        ``METRICS``, ``m_old``, ``m_new`` and ``m_ratio``.
    pairs: one row per (model, method): ``cells`` (used in the ratio), ``ratio``, ``p_value``,
        ``permutations`` (0 for timings), ``regression`` (bool) and ``verdict`` (a few words);
        for timings also ``relative_ratio`` (the ratio over the median pair's, which is judged).
    """

    cells: pd.DataFrame
    pairs: pd.DataFrame
    metric: str
    threshold: float
    alpha: float

    @property
    def regressions(self) -> pd.DataFrame:
        """The pairs that regressed."""
        return self.pairs[self.pairs["regression"]].reset_index(drop=True)

    @property
    def time_shift(self) -> float | None:
        """For timings: the new/old time ratio every pair shares (the median pair's), else None."""
        if self.metric != "seconds":
            return None
        return float(np.exp(np.median(np.log(self.pairs["ratio"]))))

    @property
    def pair_alpha(self) -> float:
        """The significance level of one pair (Bonferroni): alpha / number of pairs."""
        return self.alpha / max(1, len(self.pairs))


def compare(
    old: pd.DataFrame,
    new: pd.DataFrame,
    metric: str = "rmse",
    threshold: float = THRESHOLD,
    alpha: float = ALPHA,
    atol: float = ATOL,
    seed: int = SEED,
) -> Comparison:
    """Compare two runs' tidy results tables (see the module docstring).

    ValueError for an unknown metric or a bad threshold / alpha; ResultsError when the runs share
    no cell or score a cell on different numbers of data points.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    if not threshold >= 1:
        raise ValueError(f"threshold must be a ratio >= 1; got {threshold}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    old_cells, new_cells = _cells(old), _cells(new)
    shared = [key for key in old_cells if key in new_cells]
    if not shared:
        raise ResultsError("the two runs share no (model, method, num_samples) cell")
    for key in shared:
        if old_cells[key].shape[0] != new_cells[key].shape[0]:
            raise ResultsError(
                f"cell {'/'.join(map(str, key))} has "
                f"{old_cells[key].shape[0]} data points in the old run and "
                f"{new_cells[key].shape[0]} in the new: runs on different data "
                "cannot be compared"
            )
    table = pd.DataFrame([_cell_row(key, old_cells[key], new_cells[key]) for key in shared])
    pairs = [
        (key, [k for k in shared if k[:2] == key]) for key in dict.fromkeys(k[:2] for k in shared)
    ]
    pair_alpha = alpha / len(pairs)
    if metric == "seconds":
        rows = _timing_tests(table, pairs, atol, pair_alpha)
    else:
        rng = np.random.default_rng(seed)
        rows = [
            _permutation_test(
                key,
                [(old_cells[k], new_cells[k]) for k in keys],
                metric,
                atol,
                threshold,
                pair_alpha,
                rng,
            )
            for key, keys in pairs
        ]
    verdicts = pd.DataFrame(rows)
    effect = verdicts["relative_ratio"] if metric == "seconds" else verdicts["ratio"]
    verdicts["regression"] = (effect > threshold) & (verdicts["p_value"] <= pair_alpha)
    verdicts["verdict"] = [_verdict(row, threshold, pair_alpha) for row in verdicts.itertuples()]
    return Comparison(table, verdicts, metric, threshold, alpha)


# --------------------------------------------------------------------------- cells


def _cells(df):
    """{(model, method, M): Cell} in the table's order; ResultsError for a missing estimate."""
    cells = split_cells(df)
    for cell in cells.values():
        if np.isnan(cell.estimates).any():
            raise ResultsError(f"cell {cell.name} lacks some (point, repeat) estimates")
    return cells


def _cell_row(key, old, new):
    row = dict(zip(CELL, key, strict=True))
    for name in METRICS:
        a = old.seconds if name == "seconds" else float(cell_metric(name, old.errors))
        b = new.seconds if name == "seconds" else float(cell_metric(name, new.errors))
        row.update({f"{name}_old": a, f"{name}_new": b, f"{name}_ratio": _ratio(b, a)})
    return row


def _ratio(new, old):
    if old > 0:
        return new / old
    return 1.0 if new == old else np.inf


# --------------------------------------------------------------------------- accuracy


def _permutation_test(key, cells, metric, atol, threshold, pair_alpha, rng):
    """Ratio and permutation p-value of one (model, method) pair; see the module docstring."""
    observed = np.array(
        [[cell_metric(metric, o.errors), cell_metric(metric, n.errors)] for o, n in cells]
    )
    used = observed.max(axis=1) > atol
    row = {"model": key[0], "method": key[1], "cells": int(used.sum())}
    if not used.any():  # every cell at round-off in both runs
        return {**row, "ratio": 1.0, "p_value": 1.0, "permutations": 0}
    cells = [c for c, u in zip(cells, used, strict=True) if u]
    logs = np.log(np.maximum(observed[used], atol))
    statistic = float(np.mean(logs[:, 1] - logs[:, 0]))
    max_permutations = int(np.ceil(20 / pair_alpha))
    # The largest count of relabellings at least as extreme that still allows p <= pair_alpha.
    max_count = int(np.floor(pair_alpha * (max_permutations + 1))) - 1
    count = done = 0
    while done < max_permutations:
        batch = FIRST_BATCH if done == 0 else min(max_permutations - done, _batch_size(cells))
        replicates = np.mean(
            [_relabelled_log_ratios(o, n, metric, atol, batch, rng) for o, n in cells], axis=0
        )
        count += int(np.sum(replicates >= statistic - 1e-12))
        done += batch
        if np.exp(statistic) <= threshold or count > max_count:
            break  # not a regression whatever the remaining relabellings say
    return {
        **row,
        "ratio": float(np.exp(statistic)),
        "p_value": (count + 1) / (done + 1),
        "permutations": done,
    }


def _batch_size(cells):
    per_replicate = sum(o.shape[0] * (o.shape[1] + n.shape[1]) for o, n in cells)
    return max(FIRST_BATCH, BATCH_ELEMENTS // per_replicate)


def _relabelled_log_ratios(old, new, metric, atol, batch, rng):
    """[batch] log(metric_new / metric_old) after relabelling each point's estimates at random."""
    pooled = np.concatenate([old.estimates, new.estimates], axis=1)  # [N, R_old + R_new]
    shuffled = rng.permuted(np.broadcast_to(pooled, (batch, *pooled.shape)), axis=-1)
    truth_old, truth_new = _null_truths(old, new, batch, rng)
    r_old = old.shape[1]
    errors_old = shuffled[..., :r_old] - truth_old[..., None]
    errors_new = shuffled[..., r_old:] - truth_new[..., None]
    return np.log(np.maximum(cell_metric(metric, errors_new), atol)) - np.log(
        np.maximum(cell_metric(metric, errors_old), atol)
    )


def _null_truths(old, new, batch, rng):
    """Each run's truths [batch, N] under the null: the same numbers where the runs share them;
    else redrawn around their mean with each run's own SE (independent references)."""
    if np.array_equal(old.truth, new.truth):
        return old.truth[None], new.truth[None]
    centre = (old.truth + new.truth) / 2
    return (
        centre + old.truth_se * rng.standard_normal((batch, centre.size)),
        centre + new.truth_se * rng.standard_normal((batch, centre.size)),
    )


# --------------------------------------------------------------------------- timings


def _timing_tests(table, pairs, atol, pair_alpha):
    """Ratio, relative ratio and p-value of each pair's mean log time ratio; see the module
    docstring."""
    rows, means = [], []
    for key, keys in pairs:
        cells = table.set_index(CELL).loc[keys]
        used = cells[["seconds_old", "seconds_new"]].max(axis=1) > atol
        logs = np.log(cells.loc[used, "seconds_ratio"].to_numpy(float))
        means.append(float(logs.mean()) if logs.size else 0.0)
        rows.append(
            {
                "model": key[0],
                "method": key[1],
                "cells": int(used.sum()),
                "ratio": float(np.exp(means[-1])),
                "permutations": 0,
            }
        )
    means = np.array(means)
    shift = float(np.median(means))
    for row, p_value, mean in zip(rows, timing_p_values(means, pair_alpha), means, strict=True):
        row["p_value"] = p_value
        row["relative_ratio"] = float(np.exp(mean - shift))
    return rows


def timing_p_values(log_ratios, pair_alpha):
    """One-sided p-value of each pair's mean log time ratio m_p against the other pairs'.

    The reference for pair p is the other pairs, less those that look like regressions
    themselves: beyond ``OUTLIER_CUT`` noise scales from the median, or already significant at
    ``pair_alpha``. The noise scale here is the root mean square deviation from the median of
    the pairs below it (at least ``TIME_NOISE_FLOOR``): slowdowns, the contamination to guard
    against, lie above the median, so they cannot inflate it. With the n that remain, mean u and standard deviation s (at least
    ``TIME_NOISE_FLOOR``), t = (m_p - u) / (s sqrt(1 + 1/n)) is Student's t with n - 1 degrees of
    freedom for normal noise (a prediction interval). Pairs found significant leave the reference
    and the others are tested again, until nothing changes (a step-down: when nothing is
    significant in the first pass, which is all that happens for two runs of the same code, the
    first pass is the answer, so the false-alarm rate is that of the first pass). With fewer than
    3 pairs left as reference the p-value is 1: there is no noise level to judge by.
    """
    log_ratios = np.asarray(log_ratios, float)
    centre = np.median(log_ratios)
    below = log_ratios[log_ratios <= centre]
    spread = max(float(np.sqrt(np.mean((below - centre) ** 2))), TIME_NOISE_FLOOR)
    reference = np.abs(log_ratios - centre) <= OUTLIER_CUT * spread
    while True:
        p_values = _prediction_p_values(log_ratios, reference)
        significant = (p_values <= pair_alpha) & (log_ratios > centre)
        if not (significant & reference).any():
            return p_values.tolist()
        reference &= ~significant


def _prediction_p_values(log_ratios, reference):
    """For every pair, the t-test of its value against the reference pairs other than itself."""
    others = reference[None, :] & ~np.eye(log_ratios.size, dtype=bool)  # [pair, other]
    n = others.sum(axis=1)
    values = np.where(others, log_ratios[None, :], 0.0)
    mean = values.sum(axis=1) / np.maximum(n, 1)
    squares = np.where(others, (log_ratios[None, :] - mean[:, None]) ** 2, 0.0).sum(axis=1)
    scale = np.maximum(np.sqrt(squares / np.maximum(n - 1, 1)), TIME_NOISE_FLOOR)
    t = (log_ratios - mean) / (scale * np.sqrt(1 + 1 / np.maximum(n, 1)))
    return np.where(n >= 3, stats.t.sf(t, np.maximum(n - 1, 1)), 1.0)


# --------------------------------------------------------------------------- words


def _verdict(row, threshold, pair_alpha):
    effect = getattr(row, "relative_ratio", row.ratio)
    if row.cells == 0:
        return "at round-off in both runs"
    if row.regression:
        return "REGRESSION"
    if effect <= 1:
        return "no worse"
    if effect <= threshold:
        return "below threshold"
    return f"noise (p = {row.p_value:.2g} > {pair_alpha:.2g})"


# --------------------------------------------------------------------------- text

RENDER_FORMATS = ("plain", "markdown", "html", "csv", "json")


def cell_table(result: Comparison) -> pd.DataFrame:
    """The side-by-side cells with readable column names ("rmse old", "rmse ratio", ...)."""
    names = {"num_samples": "M"}
    for metric, label in METRICS.items():
        names.update({f"{metric}_{side}": f"{label} {side}" for side in ("old", "new", "ratio")})
    return result.cells.rename(columns=names)


def pair_table(result: Comparison) -> pd.DataFrame:
    """One row per (model, method): cells used, ratio, p-value and verdict."""
    label = METRICS[result.metric]
    columns = ["model", "method", "cells", "ratio", "p_value", "verdict"]
    if result.metric == "seconds":
        columns.insert(4, "relative_ratio")
    return result.pairs[columns].rename(
        columns={
            "ratio": f"{label} ratio",
            "p_value": "p-value",
            "relative_ratio": "ratio / median pair",
        }
    )


def conclusion(result: Comparison) -> list[str]:
    """The lines that say what was found: one per regression, or one saying there is none."""
    label = METRICS[result.metric]
    test = (
        f"threshold {result.threshold:g}x; significance {result.pair_alpha:.2g} per pair = "
        f"alpha {result.alpha:g} over {len(result.pairs)} pairs"
    )
    lines = []
    if result.time_shift is not None:
        lines.append(
            f"every pair's time ratio is judged against the median pair's, "
            f"x{result.time_shift:.3g}: a shift all pairs share (machine, load, or a "
            "change that slows everything alike) is not tested"
        )
    if result.regressions.empty:
        return lines + [f"no regression in {label} ({test})"]
    for row in result.regressions.itertuples():
        relative = (
            f" (x{row.relative_ratio:.3g} relative to the median pair)"
            if result.metric == "seconds"
            else ""
        )
        lines.append(
            f"REGRESSION {row.model}/{row.method}: {label} x{row.ratio:.3g}{relative}, "
            f"p = {row.p_value:.2g} ({test})"
        )
    return lines


def render(result: Comparison, fmt: str, title: str = "") -> str:
    """The whole comparison as text: plain, markdown or html (tables and conclusion; markdown
    and html by the report's renderers), csv (one row per cell, with its pair's verdict), json
    (everything, for tools)."""
    from estimators import tables

    if fmt == "csv":
        pairs = result.pairs[PAIR + ["ratio", "p_value", "regression", "verdict"]].rename(
            columns={"ratio": "pair_ratio"}
        )
        return tables.render(
            result.cells.merge(pairs, on=PAIR, how="left").assign(metric=result.metric), "csv"
        )
    if fmt == "json":
        import json

        return json.dumps(
            {
                "title": title,
                "metric": result.metric,
                "threshold": result.threshold,
                "alpha": result.alpha,
                "pair_alpha": result.pair_alpha,
                "regressions": [f"{r.model}/{r.method}" for r in result.regressions.itertuples()],
                "pairs": tables.records(result.pairs),
                "cells": tables.records(result.cells),
            },
            indent=2,
        )
    if fmt not in RENDER_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(RENDER_FORMATS)}")
    if fmt == "markdown":
        return render_markdown(document(result, title))
    if fmt == "html":
        return render_html(document(result, title))
    head = [title, ""] if title else []
    return "\n".join(
        head
        + [tables.plain_table(cell_table(result)), "", tables.plain_table(pair_table(result)), ""]
        + conclusion(result)
    )


def document(result: Comparison, title: str = "") -> Document:
    """The comparison in the report's section types: one section (headed ``title``, level 3 to
    sit inside a pull-request comment) with the side-by-side cells, the pairs and the
    conclusion."""
    blocks = [Table(cell_table(result)), Table(pair_table(result)), Bullets(conclusion(result))]
    return Document("", [Section(title or None, blocks, level=3)])
