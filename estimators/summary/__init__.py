"""From the tidy results table to every number a person reads, computed once: ``summarize``.

    summary = summarize(df)     # df: results.load_results(folder), or sweep(...)
    summary.cells               # one row per (model, method, M): SUMMARY_COLUMNS (summary.csv)
    summary.slopes, summary.verdicts, summary.coverage, ...   # see ``Summary``

The report (``estimators.report``), the CLI and ``estimators compare`` read this object; none
of them fits a slope, ranks methods or builds a verdict of its own. One file per idea:

    cells.py        a cell as an [N points, R repeats] grid; bias, variance, RMSE, bootstrap CIs
    slopes.py       log-log slopes against M per (model, method)
    verdicts.py     best RMSE at time budgets, and the verdict per model in words
    diagnostics.py  could k-hat or Kish ESS have warned of the real errors?
    coverage.py     do the methods' own standard errors cover the truth?
    field.py        the field's table: mean log p^ by estimator at equal seconds, IWAE - AIS gap
    timing.py       the run record (``RunRecord.from_json(df.attrs)``): compile seconds and modes,
                    how the seconds were measured

Pure pandas, numpy and scipy (no TensorFlow: see docs/architecture.md). Method names are never
spelled out here: what a method is (returns the ELBO, a side of the sandwich) is asked of the
registry (``estimators.methods``).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from estimators.record import RunRecord
from estimators.sandwich import sandwich_table, sandwich_verdicts
from estimators.summary.cells import (
    BOOTSTRAP_SAMPLES,
    CELL,
    PAIR,
    Cell,
    cell_statistics,
    display_names,
    metric,
    split_cells,
)
from estimators.summary.coverage import (
    NOMINAL,
    Z,
    binomial_interval,
    coverage_table,
    khat_split_verdict,
)
from estimators.summary.diagnostics import (
    DIAGNOSTIC_COLUMNS,
    DIAGNOSTIC_NAMES,
    ERROR_FLOOR,
    ESS_FRACTION,
    KHAT_LIMIT,
    diagnostic_counts,
    diagnostic_shares,
    diagnostic_verdicts,
    flag_estimates,
    khat_threshold,
)
from estimators.summary.field import ais_gaps, budget_verdicts, equal_seconds, mean_estimates
from estimators.summary.slopes import ROUNDOFF_BIAS, ROUNDOFF_VARIANCE, fit_slopes
from estimators.summary.timing import (
    compile_modes,
    compile_seconds,
    run_record,
    timing_conditions,
    timing_mismatch,
    timing_note,
)
from estimators.summary.verdicts import EXACT_RMSE, best_at_budgets, format_seconds, verdicts

SUMMARY_COLUMNS = CELL + [
    "num_points",
    "repeats",
    "bias",
    "bias_ci_low",
    "bias_ci_high",
    "variance",
    "variance_ci_low",
    "variance_ci_high",
    "rmse",
    "rmse_ci_low",
    "rmse_ci_high",
    "ess",
    "seconds",
    "samples_per_second",
    "compile_seconds",
    "bias_slope",
    "variance_slope",
    "truth_se",
    "se",
    "evaluations",
    "accept",
    *DIAGNOSTIC_COLUMNS,
]

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "CELL",
    "DIAGNOSTIC_COLUMNS",
    "DIAGNOSTIC_NAMES",
    "ERROR_FLOOR",
    "ESS_FRACTION",
    "EXACT_RMSE",
    "KHAT_LIMIT",
    "NOMINAL",
    "PAIR",
    "ROUNDOFF_BIAS",
    "ROUNDOFF_VARIANCE",
    "SUMMARY_COLUMNS",
    "Z",
    "Cell",
    "Summary",
    "best_at_budgets",
    "binomial_interval",
    "coverage_table",
    "diagnostic_counts",
    "diagnostic_verdicts",
    "display_names",
    "fit_slopes",
    "flag_estimates",
    "format_seconds",
    "khat_split_verdict",
    "khat_threshold",
    "metric",
    "run_record",
    "split_cells",
    "summarize",
    "timing_conditions",
    "timing_mismatch",
    "timing_note",
    "verdicts",
]


@dataclass(frozen=True)
class Summary:
    """Everything ``summarize`` finds in one results table. Tables keep canonical method specs
    (``display_names`` shortens them for people); texts already use the short labels.

    cells: one row per (model, method, M), ``SUMMARY_COLUMNS`` (what summary.csv holds).
    slopes: one row per (model, method): ``slopes.SLOPE_COLUMNS``.
    best: each method's best RMSE at three time budgets per model (``best_at_budgets``).
    verdicts: {model: who wins at which budget, and the ELBO's gap}.
    diagnostics: per (model, diagnostic) counts of real errors and flags (``diagnostic_counts``);
        has_khat: whether any estimate has a k-hat (without one there is nothing to judge).
    diagnostic_verdicts: {model: could k-hat, could ESS have warned?}.
    sandwich, sandwich_verdicts: the bidirectional sandwich (``estimators.sandwich``).
    coverage, coverage_left_out: error-bar coverage per cell and what was left out, and why
        (``coverage.coverage_table``); coverage_verdict: one sentence on the k-hat split.
    estimates: one row per cell: mean log p^ over points, its Monte Carlo SE, seconds per point
        (``field.mean_estimates``); equal_seconds: each method's highest mean log p^ within
        the seconds of each AIS cell; ais_gaps: IWAE - AIS and ELBO - AIS per model, paired by
        point; budget_verdicts: {model: the highest estimate per budget, in words} (the field's
        table, ``estimators.summary.field``).
    compile_modes: how each (model, method) got XLA or graph mode (empty when the run fixed one).
    timing_note: a sentence when the seconds are not a sequential run's on one machine.
    record: the run record; None for a table without metadata.
    """

    cells: pd.DataFrame
    slopes: pd.DataFrame
    best: pd.DataFrame
    verdicts: dict
    diagnostics: pd.DataFrame
    has_khat: bool
    diagnostic_verdicts: dict
    sandwich: pd.DataFrame
    sandwich_verdicts: dict
    coverage: pd.DataFrame
    coverage_left_out: pd.DataFrame
    coverage_verdict: str | None
    estimates: pd.DataFrame
    equal_seconds: pd.DataFrame
    budget_verdicts: dict
    ais_gaps: pd.DataFrame
    compile_modes: pd.DataFrame
    timing_note: str | None
    record: RunRecord | None

    @property
    def methods(self) -> list[str]:
        """The canonical method specs, in the table's order."""
        return list(dict.fromkeys(self.cells["method"]))


def summarize(df: pd.DataFrame, *, bootstrap: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> Summary:
    """Every statistic of the package docstring, once. ``df``: a tidy results table whose attrs
    are a run record (``RunRecord.to_json()``) or empty; ValueError for a cell with fewer than 2
    repeats or a NaN estimate; ``RecordError`` for attrs that are not a run record."""
    record = run_record(df)
    rng = np.random.default_rng(seed)
    flagged = flag_estimates(df)
    rows = []
    for key, positions in flagged.groupby(CELL, sort=False).indices.items():
        part = flagged.iloc[positions]
        rows.append(
            cell_statistics(Cell.from_rows(key, part), part, rng, bootstrap)
            | diagnostic_shares(part)
        )
    cells = pd.DataFrame(rows).merge(compile_seconds(record), on=CELL, how="left")
    slopes = fit_slopes(cells)
    cells = cells.merge(slopes[PAIR + ["bias_slope", "variance_slope"]], on=PAIR, how="left")
    cells = cells[SUMMARY_COLUMNS]
    best = best_at_budgets(cells)
    counts = diagnostic_counts(flagged)
    sandwich = sandwich_table(df)
    coverage, left_out = coverage_table(df)
    estimates = mean_estimates(df)
    equal = equal_seconds(estimates)
    return Summary(
        cells=cells,
        slopes=slopes,
        best=best,
        verdicts=verdicts(cells, best),
        diagnostics=counts,
        has_khat=bool(flagged["khat"].notna().any()),
        diagnostic_verdicts=diagnostic_verdicts(counts),
        sandwich=sandwich,
        sandwich_verdicts=sandwich_verdicts(sandwich),
        coverage=coverage,
        coverage_left_out=left_out,
        coverage_verdict=khat_split_verdict(coverage),
        estimates=estimates,
        equal_seconds=equal,
        budget_verdicts=budget_verdicts(equal),
        ais_gaps=ais_gaps(df, estimates),
        compile_modes=compile_modes(record),
        timing_note=timing_note(record),
        record=record,
    )
