"""The report of ``estimators evaluate``: one ``Document`` from the evaluation's numbers.

    build_document(summary, points, sandwich, candidates) -> Document

``summary`` is the dict ``estimators.evaluate.summarize`` returns (also summary.json); the
frames are the per-point table, the sandwich ladder and the candidates. No TensorFlow, no
statistics of its own: it words the numbers it is given, for ``markdown`` and ``html``.
"""

import math

import pandas as pd

from estimators.report.document import Bullets, Document, Paragraph, Section, Table

GROSSE = (
    "The sandwich certifies accuracy on data simulated from the model, not on these data: on "
    "real data off the model's distribution the same estimator can be less accurate, and "
    "nothing here bounds that error (Grosse et al. 2015, 'Sandwiching the marginal likelihood "
    "using bidirectional Monte Carlo')."
)


def build_document(summary, points, sandwich, candidates):
    title = f"log p(x) of {summary['model']} on {summary['data']}"
    sections = [
        Section(None, [Paragraph(headline(summary))]),
        Section("What was certified", [Bullets(certified_lines(summary)), Paragraph(GROSSE)]),
        Section("What was not certified", [Bullets(uncertified_lines(summary))]),
        Section("The data", [Table(_results_table(summary))]),
    ]
    if "exact" in summary:
        sections.append(Section("Against the exact log p(x)", [Paragraph(_exact_text(summary))]))
    if len(sandwich):
        sections.append(
            Section(
                "The sandwich on simulated data",
                [Paragraph(_sandwich_text(summary)), Table(_sandwich_table(sandwich))],
            )
        )
    if len(candidates):
        sections.append(
            Section(
                "Configurations tried",
                [
                    Paragraph(
                        "Each configuration ran once on the simulated points; its certified "
                        "error is the mean over points of its distance to the far end of the "
                        "reference interval (|estimate - midpoint| + width / 2)."
                    ),
                    Table(_candidate_table(candidates)),
                ],
            )
        )
    sections.append(Section("k-hat warnings", [Paragraph(_khat_text(summary))]))
    sections.append(
        Section(
            "Files",
            [
                Bullets(
                    [
                        "points.parquet, points.csv: one row per data point (estimate, se, "
                        "khat, ess, evaluations, seconds; iwae_* and elbo_* at equal time; "
                        "exact, error, covered where log p(x) is exact)",
                        "summary.json: every number of this report",
                        "stages/: the finished stages, reused when the command is rerun",
                    ]
                )
            ],
        )
    )
    return Document(title, sections)


def headline(summary):
    config, log_p = summary["configuration"], summary["log_p"]
    status = "certified" if summary["certification"]["certified"] else "NOT certified"
    return (
        f"Mean log p(x) = {log_p['mean']:.4f} ± {_fmt(log_p['se'])} nats per point over "
        f"{summary['points']} points (SE over the points; the Monte Carlo part alone is "
        f"{_fmt(log_p['mc_se'])}), by {config['label']} with {config['counts']} = "
        f"{config['num_samples']} ({status}; {summary['seconds_per_point'] * 1e3:.3g} ms per "
        "point)."
    )


def certified_lines(summary):
    cert = summary["certification"]
    config = summary["configuration"]
    lines = []
    if cert["reference"] == "sandwich":
        lines.append(
            f"On {cert['simulated_points']} points simulated from the model, the AIS/BDMC "
            f"sandwich at T = {cert['steps']}, K = {cert['chains']} is {cert['width']:.3g} nats "
            f"wide on average (|upper - lower| per point; tolerance {cert['tolerance']:g}); it "
            f"stopped because {cert['stop']}."
        )
    elif cert["reference"] == "exact":
        lines.append(
            f"The sandwich does not apply ({cert['stop']}); configurations were judged against "
            f"the exact log p(x) of {cert['simulated_points']} simulated points."
        )
    if cert["reference"] is not None:
        verdict = "certified" if cert["certified"] else "not certified"
        lines.append(
            f"{config['label']} with {config['counts']} = {config['num_samples']} is {verdict}: "
            f"{cert['reason']}; mean certified error {_fmt(cert['bound'])} nats on the "
            "simulated points."
        )
    else:
        lines.append(f"Nothing was certified: {cert['reason']}.")
    check = cert.get("exact_on_simulations")
    if check:
        lines.append(
            f"The exact log p(x) of the simulated points lies inside the sandwich (within 3 SE) "
            f"at {check['inside']} of {check['points']}; mean errors of the bounds "
            f"{check['lower_error']:+.3g} (lower) and {check['upper_error']:+.3g} (upper) nats."
        )
    return lines


def uncertified_lines(summary):
    lines = [
        f"The accuracy on these {summary['points']} data points: the certificate holds for "
        "simulated data only (above)."
    ]
    if summary["khat_warnings"]:
        lines.append(
            f"{summary['khat_warnings']} point(s) have k-hat > {summary['khat_limit']:g}: their "
            "standard errors are not to be trusted."
        )
    if not summary["certification"]["certified"]:
        lines.append("The chosen configuration itself: it did not meet the tolerance.")
    if "exact" not in summary:
        lines.append("No exact log p(x) exists for this model to check the data's estimates.")
    return lines


def _results_table(summary):
    rows = [_row("estimate", summary["configuration"], summary["log_p"], summary)]
    for name in ("iwae_bound", "elbo_bound"):
        if name in summary:
            entry = summary[name]
            what = "IWAE bound (equal time)" if name == "iwae_bound" else "ELBO (equal time)"
            if entry.get("same_as_estimate"):
                what = "IWAE bound (the estimate itself)"
            rows.append(_row(what, entry, entry, entry))
    if "exact" in summary:
        rows.append(
            {
                "quantity": "exact log p(x)",
                "method": "closed form / quadrature",
                "num_samples": "",
                "mean": round(summary["exact"]["exact_mean"], 4),
                "SE over points": "",
                "Monte Carlo SE": "",
                "ms per point": "",
            }
        )
    return pd.DataFrame(rows)


def _row(what, config, numbers, timing):
    return {
        "quantity": what,
        "method": config["label"],
        "num_samples": config["num_samples"],
        "mean": round(numbers["mean"], 4),
        "SE over points": _fmt(numbers["se"]),
        "Monte Carlo SE": _fmt(numbers["mc_se"]),
        "ms per point": f"{timing['seconds_per_point'] * 1e3:.3g}",
    }


def _exact_text(summary):
    exact = summary["exact"]
    text = (
        f"Mean error {exact['mean_error']:+.3g} nats, RMSE {exact['rmse']:.3g}, largest "
        f"|error| {exact['max_abs_error']:.3g} over {summary['points']} points."
    )
    if exact["scored"]:
        low, high = exact["coverage_interval"]
        text += (
            f" The intervals estimate ± 1.96 se cover the exact value at {exact['covered']} of "
            f"{exact['scored']} points ({exact['coverage']:.1%}; 95% interval {low:.1%} to "
            f"{high:.1%}; nominal 95%)."
        )
    return text


def _sandwich_text(summary):
    cert = summary["certification"]
    return (
        f"Forward AIS (below log p(x)) and reverse AIS from the simulated latents (above), K = "
        f"{cert['chains']} chains, on {cert['simulated_points']} simulated points; T grows until "
        f"the mean width is below {cert['tolerance']:g} nats or the budget is spent."
    )


def _sandwich_table(sandwich):
    columns = {
        "steps": "T",
        "chains": "K",
        "lower": "mean lower",
        "upper": "mean upper",
        "width": "mean width",
        "width_se": "width SE",
        "crossed": "points crossed",
        "seconds": "seconds",
        "exact_inside": "exact inside",
    }
    table = sandwich[[c for c in columns if c in sandwich]].rename(columns=columns)
    return table.round(4)


def _candidate_table(candidates):
    table = pd.DataFrame(
        {
            "method": candidates["label"],
            "num_samples": candidates["num_samples"],
            "ms per point": (candidates["seconds_per_point"] * 1e3).round(3),
            "evaluations per point": candidates["evaluations_per_point"].round(0),
            "certified error": candidates["bound"].round(4),
            "within tolerance": candidates["meets"].map({True: "yes", False: "no"}),
            "chosen": candidates["chosen"].map({True: "chosen", False: ""}),
        }
    )
    return table


def _khat_text(summary):
    if not summary["khat_warnings"]:
        return f"No point has k-hat > {summary['khat_limit']:g}."
    shown = ", ".join(map(str, summary["khat_points"]))
    more = " (first 20)" if summary["khat_warnings"] > len(summary["khat_points"]) else ""
    return (
        f"{summary['khat_warnings']} of {summary['points']} points have k-hat > "
        f"{summary['khat_limit']:g}: points {shown}{more}. Their weights are heavy-tailed; "
        "their estimates may be too low and their se too small."
    )


def _fmt(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3g}"
