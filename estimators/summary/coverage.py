"""Coverage of the error bars: do the methods' own standard errors say how far off they are?

Each row of the tidy table may carry ``se``, the method's own standard error of its log p^ (NaN
where it has none). Per cell (model, method, M), over its estimates with an ``se``:

    coverage  = share of estimates with |estimate - truth| <= z se + ROUNDOFF   (z = 1.96)
                with a 95% Clopper-Pearson interval (the estimates are independent draws, one
                per point and repeat). A calibrated se that also captures the bias gives 0.95;
                a bias the se ignores, or an se that is too small, gives less. ROUNDOFF =
                1e-5 nats lets an exact method (se = 0, error at float round-off) cover.
    se_ratio  = per point, the mean reported se over the repeats divided by the observed standard
                deviation of the estimates across the repeats, divided by c_R = E[sigma / s]
                for R normal draws (c_R = sqrt(k/2) Gamma((k-1)/2) / Gamma(k/2), k = R - 1:
                1.38 at R = 4, 1.04 at R = 20), then averaged over points. 1: the se is the
                spread; 0.5: half of it. Needs R >= 3 repeats; points whose spread is at
                round-off (SD <= sqrt(ROUNDOFF_VARIANCE): an exact method) are left out.
    by k-hat  the same coverage over the estimates whose Pareto k-hat is at most, and above,
                ``khat_threshold(M)``: whether the error bars fail where k-hat warns.

Which cells: a cell is scored only when its truth is known to better than its error bars: for
every point, truth_se <= TRUTH_SE_FRACTION (0.2) x the median of the point's reported se over
the repeats. Then the reference's own error widens |estimate - truth| by at most
sqrt(1 + 0.2^2) = 1.02, and a calibrated se covers at least 0.945 instead of 0.95. (The rule is
per cell, not per estimate: dropping single estimates whose se is small would drop exactly the
ones most likely to miss.) Left out, with the reason (``left_out``): methods that return the
ELBO (a bound on log p(x), not an estimate of it: "coverage" of log p(x) would only measure the
KL gap), methods or tables without an ``se``, and cells whose reference is not precise enough.
"""

import warnings

import numpy as np
import pandas as pd
from scipy import special, stats

from estimators.summary.cells import CELL, Cell, method_of
from estimators.summary.diagnostics import khat_threshold
from estimators.summary.slopes import ROUNDOFF_BIAS, ROUNDOFF_VARIANCE

NOMINAL = 0.95
Z = float(stats.norm.ppf(0.5 + NOMINAL / 2))  # 1.96
CONFIDENCE = 0.95  # of the binomial interval around a coverage
TRUTH_SE_FRACTION = 0.2
MIN_REPEATS_FOR_RATIO = 3
SPLITS = ("khat_low", "khat_high")
COVERAGE_COLUMNS = CELL + [
    "estimates",
    "covered",
    "coverage",
    "coverage_ci_low",
    "coverage_ci_high",
    "se_ratio",
    *(
        f"{split}_{column}"
        for split in SPLITS
        for column in ("estimates", "covered", "coverage", "ci_low", "ci_high")
    ),
]
LEFT_OUT_COLUMNS = ["model", "method", "num_samples", "reason"]
RETURNS_ELBO = "returns the ELBO, a bound on log p(x) and not an estimate of it"
NO_SE = "reports no standard error"
IMPRECISE_TRUTH = (
    f"the reference's SE exceeds {TRUTH_SE_FRACTION:g} × the method's se at some point"
)


def binomial_interval(covered, total, confidence=CONFIDENCE):
    """Clopper-Pearson interval of a proportion covered / total (NaN, NaN when total = 0)."""
    covered, total = np.asarray(covered, float), np.asarray(total, float)
    tail = (1 - confidence) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(covered > 0, stats.beta.ppf(tail, covered, total - covered + 1), 0.0)
        high = np.where(
            covered < total, stats.beta.ppf(1 - tail, covered + 1, total - covered), 1.0
        )
    empty = total == 0
    return np.where(empty, np.nan, low)[()], np.where(empty, np.nan, high)[()]


def coverage_table(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(coverage, left_out): one row per scored cell (``COVERAGE_COLUMNS``), and one per
    (method, reason, M values) left out, with the models it concerns (``LEFT_OUT_COLUMNS``)."""
    rows, left_out = [], []
    has_se = "se" in df
    for key, cell_rows in df.groupby(CELL, sort=False):
        reason = _left_out_reason(key, cell_rows, has_se)
        if reason is None:
            cell = Cell.from_rows(key, cell_rows)
            se = cell.grid(cell_rows["se"])
            if not _truth_is_precise(cell.truth_se, se):
                reason = IMPRECISE_TRUTH
        if reason is not None:
            left_out.append({**dict(zip(CELL, key, strict=True)), "reason": reason})
            continue
        rows.append(_cell_coverage(cell, se, cell.grid(_khat(cell_rows))))
    return (
        pd.DataFrame(rows, columns=COVERAGE_COLUMNS),
        _collapse(pd.DataFrame(left_out, columns=LEFT_OUT_COLUMNS)),
    )


def _truth_is_precise(truth_se, se):
    """truth_se <= TRUTH_SE_FRACTION x the median se of the point, at every point with an se."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point without any se: all-NaN
        point_se = np.nanmedian(se, axis=1)
    return bool(np.all(np.isnan(point_se) | (truth_se <= TRUTH_SE_FRACTION * point_se)))


def _left_out_reason(key, rows, has_se):
    if method_of(key[1]).returns_elbo:
        return RETURNS_ELBO
    if not has_se or rows["se"].isna().all():
        return NO_SE
    return None


def _khat(rows):
    return rows["khat"] if "khat" in rows else np.full(len(rows), np.nan)


def _cell_coverage(cell: Cell, se, khat):
    """The coverage numbers of one cell from its [N, R] errors, se and k-hat."""
    known = np.isfinite(cell.errors) & ~np.isnan(se)
    covered = np.abs(cell.errors) <= Z * se + ROUNDOFF_BIAS
    row = {**dict(zip(CELL, cell.key, strict=True)), **_share("", covered, known)}
    row["se_ratio"] = _se_ratio(cell.estimates, se)
    threshold = float(khat_threshold(cell.key[2]))
    has_khat = known & ~np.isnan(khat)
    for split, mask in (("khat_low", khat <= threshold), ("khat_high", khat > threshold)):
        row.update(_share(f"{split}_", covered, has_khat & mask))
    return row


def _share(prefix, covered, mask):
    """Counts, share and interval of ``covered`` among ``mask``, as columns named for the split."""
    total, hits = int(mask.sum()), int((covered & mask).sum())
    low, high = binomial_interval(hits, total)
    share = hits / total if total else np.nan
    if not prefix:
        return {
            "estimates": total,
            "covered": hits,
            "coverage": share,
            "coverage_ci_low": low,
            "coverage_ci_high": high,
        }
    return {
        f"{prefix}estimates": total,
        f"{prefix}covered": hits,
        f"{prefix}coverage": share,
        f"{prefix}ci_low": low,
        f"{prefix}ci_high": high,
    }


def _se_ratio(estimates, se):
    """Mean over points of (mean reported se) / (observed SD across repeats) / c_R."""
    known = ~np.isnan(estimates) & ~np.isnan(se)
    repeats = known.sum(axis=1)
    usable = repeats >= MIN_REPEATS_FOR_RATIO
    if not usable.any():
        return np.nan
    values = np.where(known, estimates, np.nan)[usable]
    sd = np.nanstd(values, axis=1, ddof=1)
    mean_se = np.nanmean(np.where(known, se, np.nan)[usable], axis=1)
    spread = sd > np.sqrt(ROUNDOFF_VARIANCE)
    if not spread.any():
        return np.nan
    ratio = mean_se[spread] / sd[spread] / inverse_sd_factor(repeats[usable][spread])
    return float(np.mean(ratio))


def inverse_sd_factor(repeats):
    """E[sigma / s] for the sample SD s (ddof 1) of ``repeats`` normal draws (>= 3)."""
    k = np.asarray(repeats, float) - 1
    return np.sqrt(k / 2) * np.exp(special.gammaln((k - 1) / 2) - special.gammaln(k / 2))


def _collapse(left_out):
    """One row per (method, reason, M values), its models joined ('gmm, lg'); M values joined
    ('1, 4, 16'): one line for what every model shares."""
    if left_out.empty:
        return left_out
    per_pair = (
        left_out.groupby(["model", "method", "reason"], sort=False)["num_samples"]
        .agg(lambda ms: ", ".join(map(str, sorted(ms))))
        .reset_index()
    )
    table = (
        per_pair.groupby(["method", "reason", "num_samples"], sort=False)["model"]
        .agg(", ".join)
        .reset_index()
    )
    return table[LEFT_OUT_COLUMNS]


def khat_split_verdict(coverage: pd.DataFrame) -> str | None:
    """One sentence on what the k-hat split shows, pooled over the scored cells; None when no
    estimate with an se has a k-hat on both sides of the threshold."""
    totals = {
        split: (int(coverage[f"{split}_covered"].sum()), int(coverage[f"{split}_estimates"].sum()))
        for split in SPLITS
    }
    (low_hits, low_n), (high_hits, high_n) = totals["khat_low"], totals["khat_high"]
    if low_n == 0 or high_n == 0:
        return None
    low, high = low_hits / low_n, high_hits / high_n
    low_ci, high_ci = binomial_interval(low_hits, low_n), binomial_interval(high_hits, high_n)
    numbers = (
        f"Pooled over the scored cells, estimates whose k̂ was above the threshold "
        f"min(1 − 1/log10 M, 0.7) were covered {high:.0%} of the time ({high_n} estimates, 95% "
        f"CI {high_ci[0]:.0%}–{high_ci[1]:.0%}), those at or below it {low:.0%} ({low_n}, "
        f"{low_ci[0]:.0%}–{low_ci[1]:.0%})"
    )
    if high_ci[1] < low_ci[0]:
        return numbers + ": where k̂ warns, the reported error bars are too narrow."
    if low_ci[1] < high_ci[0]:
        return numbers + ": the error bars held up better where k̂ warned, so k̂ did not mark them."
    return numbers + ": k̂ did not separate well- from under-covered estimates."
