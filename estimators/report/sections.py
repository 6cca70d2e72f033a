"""The report of one run as a ``Document``: its sections, built once from a ``Summary`` and the
figures drawn for it, in the order a reader wants them:

    (intro), Verdicts, Models, the field's table, the sandwich, Skipped, Slopes, Figures, Diagnostics against the
    error, Coverage of the error bars, Summary table, Run and environment

A section whose data the run lacks (no sandwich pair, no k-hat, no standard errors, nothing
skipped) is left out. The renderers (markdown.py, html.py) lay the same document out.
"""

import pandas as pd

from estimators import methods as registry
from estimators.manifests import published
from estimators.report import display
from estimators.report import document as doc
from estimators.report.figures import (
    COVERAGE_FIGURE,
    FIGURES,
    KHAT_FIGURE,
    SANDWICH_FIGURE,
)
from estimators.report.models import MODELS_INTRO, model_facts
from estimators.report.run import (
    COMPILE_MODE_NOTE,
    compile_mode_table,
    environment_json,
    run_facts,
)
from estimators.sandwich import SANDWICH_K, sides
from estimators.summary import ERROR_FLOOR, ESS_FRACTION, Summary
from estimators.summary.coverage import TRUTH_SE_FRACTION, Z

INTRO = (
    "Each estimator returns log p̂(x) per data point; error = estimate − truth (exact, quadrature "
    "or a high-budget reference estimate). bias = mean error, variance = variance across repeats "
    "averaged over points, RMSE = root mean squared error; 95% CIs by bootstrap over repeats. "
    "Seconds are per repeat (N points × M samples), compilation excluded; repeats run "
    "vectorised, so this is the amortised cost. Slopes are log–log fits over the upper half of "
    "the M range (importance sampling: ≈ −1 for both); the ELBO's bias tends to −KL(q ‖ p(z|x)), "
    "not 0, so it gets no bias slope. compile s: the one-off warm-up (compilation) before a "
    "cell's first call; 0 where the cell reuses a function compiled for an earlier M. truth SE: "
    "the reference's own error bar per point (RMS; 0 for a closed form, the quadrature's error "
    "estimate, or the delta-method SE of high-budget importance sampling); it widens the bias CI. "
    "own SE: the method's own standard error of its log p̂ (RMS over estimates), where it "
    "reports one."
)
SANDWICH_NOTE = (
    "Per data point, the mean over repeats of forward AIS ({lower}) is a stochastic lower bound "
    "on log p(x) and that of reverse AIS from exact posterior draws ({upper}) an upper bound; "
    "their gap (width) bounds the error of both. Each bound is shown as its mean distance from "
    "the reference ± its SE over repeats and points. 'inside': points whose reference lies in "
    f"the sandwich within {SANDWICH_K:g} SE (the repeats' SE of each bound and the reference's "
    "own SE)."
)
DIAGNOSTIC_INTRO = (
    "Could a user without the truth have seen the error coming? An estimate has a *real error* "
    f"when |estimate − truth| > max(3 × truth SE, {ERROR_FLOOR:g} nats). Two warnings computed "
    "from the weights alone: the Pareto k̂ above min(1 − 1/log10 M, 0.7) (Vehtari et al. 2024), "
    f"and the Kish ESS below {ESS_FRACTION:g} × M. Table columns: the share of estimates each "
    "flags, and the share with a real error among the flagged against among the others (k̂ is "
    "NaN for M < 21 and for weights without a tail, e.g. all equal). The verdict counts the "
    "estimates that have a k̂: a diagnostic could have warned when it caught at least 80% of "
    "the real errors and flagged estimates were more often wrong than unflagged ones."
)
COVERAGE_INTRO = (
    "Do the methods' own error bars cover the truth? An estimate that comes with a standard "
    f"error se is covered when |estimate − truth| ≤ {Z:.2f} se; calibrated error bars cover "
    "95% of estimates (a bias the se does not include lowers it). Scored only where the truth "
    f"is known to better than the error bars: truth SE ≤ {TRUTH_SE_FRACTION:g} × the method's "
    "median se at every point. Intervals: 95% Clopper–Pearson over the cell's estimates. se / "
    "SD: the mean reported se over the observed SD across repeats, per point and averaged, "
    "corrected for the small number of repeats (1: the se is the spread). The last two columns "
    "split the estimates by their Pareto k̂ at the threshold min(1 − 1/log10 M, 0.7). Methods "
    "that return the ELBO are left out: the ELBO is a bound on log p(x), not an estimate of it, "
    "so its coverage of log p(x) would only measure its KL gap."
)


def build_document(summary: Summary, figures: dict[str, doc.Figure]) -> doc.Document:
    """The report's sections from the summary and the figures ``draw_figures`` wrote."""
    preset = summary.record.config.preset if summary.record else None
    sections = [
        doc.Section(None, [doc.Paragraph(INTRO)]),
        doc.Section("Verdicts", [doc.Items(summary.verdicts)]),
        doc.Section("Models", [doc.Paragraph(MODELS_INTRO), doc.Table(model_facts(summary.cells))]),
        *_field_table(summary),
        *_sandwich(summary, figures),
        *_published(summary),
        *_skipped(summary),
        doc.Section("Slopes (log–log against M)", [doc.Table(display.slope_table(summary.slopes))]),
        doc.Section("Figures", [figures[name] for name in FIGURES]),
        *_diagnostics(summary, figures),
        *_coverage(summary, figures),
        _summary_table(summary),
        *_run(summary),
    ]
    return doc.Document(f"Estimator comparison: {preset or 'sweep'}", sections)


FIELD_NOTE = (
    "log p(x) as the field reports it: each estimator's mean log p̂ over the data points (the "
    "same points for every method) ± its Monte Carlo SE (repeats only: the points' spread is "
    "common to all), with no reference needed. Every estimator here is a lower bound in "
    "expectation (the ELBO exactly; importance sampling, AIS and SMC through Jensen), so the "
    "higher is the nearer and a gap between two bounds the lower one's error at least. Budgets: "
    "the seconds per point of each AIS cell and of the slowest cell; each method shows its highest mean estimate among "
    "its cells that fit the budget (M in brackets: samples, chains or particles)."
)
GAP_NOTE = (
    "IWAE (posterior-IS at its largest M) and the ELBO against the slowest AIS, paired by point: "
    "mean over points of the difference of the per-point means over repeats ± its Monte Carlo SE. "
    "Negative: AIS is the tighter lower bound."
)


def _field_table(summary):
    if summary.equal_seconds.empty:
        return []
    blocks = [
        doc.Paragraph(FIELD_NOTE),
        doc.Items(summary.budget_verdicts),
        doc.Table(display.equal_seconds_table(summary.equal_seconds)),
    ]
    if len(summary.ais_gaps):
        blocks += [doc.Paragraph(GAP_NOTE), doc.Table(display.gap_table(summary.ais_gaps))]
    return [doc.Section("The field's table: log p(x) by estimator at equal seconds", blocks)]


def _sandwich(summary, figures):
    if not len(summary.sandwich):
        return []
    names = sides()
    return [
        doc.Section(
            f"The sandwich: forward AIS ({names['lower']}) ≤ log p(x) ≤ reverse AIS "
            f"({names['upper']})",
            [
                doc.Items(summary.sandwich_verdicts),
                doc.Paragraph(SANDWICH_NOTE.format(**names)),
                figures[SANDWICH_FIGURE],
                doc.Table(display.sandwich_table(summary.sandwich)),
            ],
        )
    ]


PUBLISHED_NOTE = (
    "The standard targets beside the numbers published for them. This run's best: the cell "
    "(method, M) with the smallest RMSE against the log Z this run used as truth (exact, "
    "quadrature, or the suite's stored long run: docs/targets.md); its mean error ± the "
    "standard error of that mean over all its estimates, and its RMSE."
)


def _published(summary):
    rows = []
    for model, cells in summary.cells.groupby("model", sort=False):
        for entry in published(model):
            best = cells.loc[cells["rmse"].idxmin()]
            estimates = best["num_points"] * best["repeats"]
            rows.append(
                {
                    "model": model,
                    "quantity": entry["quantity"],
                    "published": entry["value"],
                    "kind": entry["kind"],
                    "source": entry["source"],
                    "this run's best": f"{registry.label(best['method'])}, M = "
                    f"{best['num_samples']}",
                    "mean error": f"{best['bias']:+.4f} ± {(best['variance'] / estimates) ** 0.5:.4f}",
                    "RMSE": best["rmse"],
                }
            )
    if not rows:
        return []
    return [
        doc.Section(
            "Published values", [doc.Paragraph(PUBLISHED_NOTE), doc.Table(pd.DataFrame(rows))]
        )
    ]


def _skipped(summary):
    skipped = summary.record.skipped if summary.record else []
    if not skipped:
        return []
    return [
        doc.Section(
            "Skipped (method does not apply to the model)",
            [doc.Bullets(display.skipped_lines(skipped))],
        )
    ]


def _diagnostics(summary, figures):
    if not summary.has_khat:
        return []
    return [
        doc.Section(
            "Diagnostics against the error",
            [
                doc.Paragraph(DIAGNOSTIC_INTRO),
                doc.Items(summary.diagnostic_verdicts),
                figures[KHAT_FIGURE],
                doc.Table(display.diagnostic_table(summary.cells)),
            ],
        )
    ]


def _coverage(summary, figures):
    if not len(summary.coverage):
        return []
    blocks = [doc.Paragraph(COVERAGE_INTRO), figures[COVERAGE_FIGURE]]
    if summary.coverage_verdict:
        blocks.append(doc.Paragraph(summary.coverage_verdict))
    blocks.append(doc.Table(display.coverage_table(summary.coverage)))
    if len(summary.coverage_left_out):
        blocks += [
            doc.Paragraph("Left out:"),
            doc.Bullets(display.left_out_lines(summary.coverage_left_out)),
        ]
    return [doc.Section("Coverage of the error bars", blocks)]


def _summary_table(summary):
    blocks = [doc.Callout("Timing", summary.timing_note)] if summary.timing_note else []
    blocks.append(doc.Table(display.cell_table(summary.cells)))
    return doc.Section("Summary (one row per model × method × M)", blocks)


def _run(summary):
    sections = [
        doc.Section(
            "Run and environment",
            [
                doc.Bullets(run_facts(summary.record, summary.timing_note)),
                doc.Details("full environment (JSON)", environment_json(summary.record)),
            ],
        )
    ]
    if len(summary.compile_modes):
        sections.append(
            doc.Section(
                "Compilation mode per model and method",
                [
                    doc.Paragraph(COMPILE_MODE_NOTE),
                    doc.Table(compile_mode_table(summary.compile_modes)),
                ],
                level=3,
            )
        )
    return sections
