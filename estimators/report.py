"""The report folder a person reads: summary.csv, four figures, report.md and report.html.

    write_report(df, folder)    # df: the tidy results (with attrs), e.g. results.load_results(folder)

Figures (seaborn, log-log, one panel per model, one colour per method, 95% bootstrap bands):
    bias_vs_M.png       |bias| of log p^ against M, with a reference line proportional to 1/M
    variance_vs_M.png   variance across repeats against M, reference 1/M
    time_vs_M.png       seconds per repeat against M, reference proportional to M
    error_vs_time.png   RMSE against seconds per repeat, reference t^-1/2: the estimator to pick
                        for a time budget is the lowest curve at that budget
    khat_vs_error.png   (when the run has k-hat values) each estimate's |error| against its
                        Pareto k-hat, with the 0.7 line and the M-dependent thresholds; beside
                        it a table and a verdict per model: could k-hat, or Kish ESS, have
                        warned a user of the estimates that were really off?
Values at floating-point round-off (exact estimators) are drawn on a dotted floor line.
A models table gives, per model, the ELBO gap and Var(log p^) at M = 64 measured in the run and,
for a model shipped in the zoo, its manifest's latent usage (active dimensions, what z carries).
Pure pandas/matplotlib (no TensorFlow: see docs/architecture.md); the Agg backend, so no display is needed.
"""

import base64
import html
import json
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from estimators import methods as registry  # noqa: E402
from estimators.results import atomic_write_bytes  # noqa: E402
from estimators.sandwich import SANDWICH_K, sandwich_table, sandwich_verdicts  # noqa: E402
from estimators.summary import (  # noqa: E402
    DIAGNOSTIC_COLUMNS,
    ERROR_FLOOR,
    ESS_FRACTION,
    KHAT_LIMIT,
    ROUNDOFF_BIAS,
    ROUNDOFF_VARIANCE,
    diagnostic_verdicts,
    fit_slopes,
    flag_estimates,
    khat_threshold,
    summarize,
    timing_note,
    verdicts,
)
from estimators.tables import format_value, markdown_table  # noqa: E402

FIGURES = {
    "error_vs_time.png": "RMSE of log p̂ against the time of one repeat: for a time budget on the "
    "x-axis, the lowest curve is the estimator to use. Dashed: ∝ t^-1/2.",
    "bias_vs_M.png": "|bias| of log p̂ (nats) against M. Importance sampling's bias shrinks like "
    "1/M (dashed); the ELBO's levels off at its KL gap.",
    "variance_vs_M.png": "Variance of log p̂ across repeats against M; dashed: ∝ 1/M.",
    "time_vs_M.png": "Seconds per repeat (N points × M samples, compilation excluded) against M; "
    "dashed: ∝ M.",
    "error_vs_evaluations.png": "RMSE of log p̂ against the evaluations of log p(x|z) per point "
    "(a gradient counts as one; AIS: K chains × T temperatures × L "
    "leapfrog steps, plus its pilot): cost without the "
    "implementation's speed. Dashed: ∝ n^-1/2.",
}
SANDWICH_FIGURE = (
    "sandwich.png",
    "Forward AIS (a stochastic lower bound) and reverse AIS "
    "(bdmc, an upper bound) against the number of temperatures T, as the mean "
    "difference from the reference log p(x) (grey band: ± the reference's SE). "
    "Bands: ±2 SE over repeats and points.",
)
KHAT_FIGURE = "khat_vs_error.png"
KHAT_CAPTION = (
    "Each dot is one estimate (a data point in one repeat): its |error| against the Pareto k̂ of "
    "its importance weights. Solid line: k̂ = 0.7; dashed: the sample-size-dependent threshold "
    "min(1 − 1/log10 M, 0.7) for each M; dotted: the real-error floor. A diagnostic that warns "
    "well puts the large errors right of the threshold. At most 300 dots per method and M; k̂ "
    "outside [−1.5, 2.5] is drawn at the edge."
)
KHAT_POINTS_PER_CELL = 300
KHAT_AXIS = (-1.5, 2.5)
ROUNDOFF_FLOOR = {"abs_bias": ROUNDOFF_BIAS, "variance": ROUNDOFF_VARIANCE, "rmse": ROUNDOFF_BIAS}
TABLE_COLUMNS = [
    "model",
    "method",
    "num_samples",
    "bias",
    "bias_ci_low",
    "bias_ci_high",
    "variance",
    "rmse",
    "ess",
    "seconds",
    "samples_per_second",
    "compile_seconds",
    "truth_se",
    "evaluations",
]


def write_report(
    df: pd.DataFrame, folder: str | Path, summary: pd.DataFrame | None = None
) -> dict[str, Path]:
    """Write summary.csv, the figures, report.md and report.html into ``folder``; return paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(df) if summary is None else summary
    atomic_write_bytes(folder / "summary.csv", summary.to_csv(index=False).encode())
    summary = display_names(summary)  # figures and text: short method labels
    methods = list(dict.fromkeys(summary["method"]))
    figures = dict(FIGURES)
    for name in FIGURES:
        figure = FIGURE_MAKERS[name](summary, methods)
        _save_figure(figure, folder / name)
    sandwich = sandwich_table(df)
    if len(sandwich):
        _save_figure(sandwich_figure(sandwich), folder / SANDWICH_FIGURE[0])
        figures = {SANDWICH_FIGURE[0]: SANDWICH_FIGURE[1], **figures}
    written = ["summary.csv", *figures]
    diagnostics = None
    if "khat" in df and df["khat"].notna().any():
        shown = display_names(df)
        _save_figure(khat_figure(shown, methods), folder / KHAT_FIGURE)
        written.append(KHAT_FIGURE)
        diagnostics = {"texts": diagnostic_verdicts(shown), "table": _diagnostic_table(summary)}
    slopes = fit_slopes(summary)
    texts = verdicts(summary)
    extra = {
        "sandwich": sandwich,
        "sandwich_texts": sandwich_verdicts(sandwich),
        "skipped": df.attrs.get("skipped") or [],
        "figures": figures,
        "diagnostics": diagnostics,
    }
    atomic_write_bytes(
        folder / "report.md", render_markdown(df.attrs, summary, slopes, texts, **extra).encode()
    )
    atomic_write_bytes(
        folder / "report.html",
        render_html(df.attrs, summary, slopes, texts, folder, **extra).encode(),
    )
    return {name: folder / name for name in [*written, "report.md", "report.html"]}


def display_names(frame):
    """``frame`` with each canonical method spec replaced by its short label (non-default
    options only), for people; tables on disk keep the canonical spec."""
    labels = {m: registry.label(m) for m in frame["method"].unique()}
    return frame.assign(method=frame["method"].map(labels))


# --------------------------------------------------------------------------- figures


def _plot_frame(summary):
    """Columns for plotting: |bias| and its band (0 inside the band when the CI crosses 0)."""
    low, high = summary["bias_ci_low"].abs(), summary["bias_ci_high"].abs()
    crosses_zero = np.sign(summary["bias_ci_low"]) != np.sign(summary["bias_ci_high"])
    return summary.assign(
        abs_bias=summary["bias"].abs(),
        abs_bias_low=np.where(crosses_zero, 0.0, np.minimum(low, high)),
        abs_bias_high=np.maximum(low, high),
    )


def _facets(
    frame, methods, x, y, low=None, high=None, floor=None, ref_power=None, xlabel="", ylabel=""
):
    """Log-log panels per model: a line per method, its CI band, a round-off floor and a
    dashed reference line ∝ x^ref_power through the median of the methods at the largest x."""
    grid = sns.FacetGrid(
        frame,
        col="model",
        hue="method",
        hue_order=methods,
        sharex=False,
        sharey=False,
        height=3.4,
        aspect=1.15,
        palette="colorblind",
    )

    def draw(data, color, label):
        data = data.sort_values("num_samples")  # a path through increasing M
        clip = (lambda v: np.maximum(v, floor)) if floor else (lambda v: v)
        plt.plot(data[x], clip(data[y]), marker="o", markersize=3.5, color=color, label=label)
        if low is not None:
            plt.fill_between(
                data[x], clip(data[low]), clip(data[high]), color=color, alpha=0.2, linewidth=0
            )

    grid.map_dataframe(draw)
    grid.set_titles("{col_name}")
    for model, ax in zip(grid.col_names, grid.axes.flat, strict=True):
        ax.set(xscale="log", yscale="log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        panel = frame[frame["model"] == model]
        if floor:
            ax.axhline(floor, color="0.5", linestyle=":", linewidth=1)
            ax.text(
                0.01,
                floor,
                " round-off",
                transform=ax.get_yaxis_transform(),
                fontsize=7,
                color="0.4",
                va="bottom",
            )
        if ref_power is not None:
            _reference_line(ax, panel, x, y, ref_power, floor)
    grid.set_axis_labels(xlabel, ylabel)
    grid.add_legend(title="method")
    return grid.figure


def _reference_line(ax, panel, x, y, power, floor):
    values = panel[panel[y] > (floor or 0)]
    if values.empty:
        return
    x_max = values[x].max()
    anchor = values[values[x] == x_max][y].median()
    xs = np.geomspace(panel[x].min(), panel[x].max(), 50)
    label = {1: "∝ M", -1: "∝ 1/M", -0.5: "∝ t^-1/2"}[power]
    ax.plot(
        xs, anchor * (xs / x_max) ** power, color="0.3", linestyle="--", linewidth=1, label=label
    )
    ax.text(xs[0], anchor * (xs[0] / x_max) ** power, label, fontsize=7, color="0.3", va="bottom")


def bias_figure(summary, methods):
    return _facets(
        _plot_frame(summary),
        methods,
        "num_samples",
        "abs_bias",
        "abs_bias_low",
        "abs_bias_high",
        floor=ROUNDOFF_BIAS,
        ref_power=-1,
        xlabel="M (samples per point)",
        ylabel="|bias| of log p̂ (nats)",
    )


def variance_figure(summary, methods):
    return _facets(
        summary,
        methods,
        "num_samples",
        "variance",
        "variance_ci_low",
        "variance_ci_high",
        floor=ROUNDOFF_VARIANCE,
        ref_power=-1,
        xlabel="M (samples per point)",
        ylabel="variance of log p̂ (nats²)",
    )


def time_figure(summary, methods):
    return _facets(
        summary,
        methods,
        "num_samples",
        "seconds",
        ref_power=1,
        xlabel="M (samples per point)",
        ylabel="seconds per repeat",
    )


def error_time_figure(summary, methods):
    return _facets(
        summary,
        methods,
        "seconds",
        "rmse",
        "rmse_ci_low",
        "rmse_ci_high",
        floor=ROUNDOFF_BIAS,
        ref_power=-0.5,
        xlabel="seconds per repeat",
        ylabel="RMSE of log p̂ (nats)",
    )


def error_evaluations_figure(summary, methods):
    frame = summary[summary["evaluations"] > 0]
    if frame.empty:  # results from before evaluations were recorded
        figure, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "these results record no evaluation counts", ha="center", va="center")
        return figure
    return _facets(
        frame,
        methods,
        "evaluations",
        "rmse",
        "rmse_ci_low",
        "rmse_ci_high",
        floor=ROUNDOFF_BIAS,
        ref_power=-0.5,
        xlabel="evaluations of log p(x|z) per point",
        ylabel="RMSE of log p̂ (nats)",
    )


def sandwich_figure(table):
    """Per model: mean (bound - reference) of ais and bdmc against T, with the reference band."""
    models = list(dict.fromkeys(table["model"]))
    figure, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), squeeze=False)
    palette = sns.color_palette("colorblind", 2)
    for ax, model in zip(axes.flat, models, strict=False):
        rows = table[table["model"] == model]
        final_k = rows["num_samples"].max()
        for (_path, k), group in rows[rows["num_samples"] == final_k].groupby(
            ["path", "num_samples"]
        ):
            group = group.sort_values("steps")
            for column, color, label in (
                ("lower", palette[0], "ais (lower)"),
                ("upper", palette[1], "bdmc (upper)"),
            ):
                se = group[f"{column}_se"]
                ax.plot(
                    group["steps"], group[column], marker="o", color=color, label=f"{label}, K={k}"
                )
                ax.fill_between(
                    group["steps"],
                    group[column] - 2 * se,
                    group[column] + 2 * se,
                    color=color,
                    alpha=0.2,
                    linewidth=0,
                )
        band = rows["truth_se"].max()
        ax.axhspan(-band, band, color="0.6", alpha=0.4, label="reference ± SE")
        ax.axhline(0.0, color="0.3", linewidth=1)
        ax.set(
            xscale="log",
            title=model,
            xlabel="T (temperatures)",
            ylabel="bound − reference log p(x) (nats)",
        )
        ax.set_yscale("symlog", linthresh=0.01)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def khat_figure(df, methods, seed=0):
    """Per model: |estimate - truth| (log) against k-hat, a dot per estimate, coloured by method."""
    frame = flag_estimates(df)
    frame = frame[frame["khat"].notna()]
    frame = (
        frame.sample(frac=1.0, random_state=seed)  # shuffled: head() is a random subset
        .groupby(["model", "method", "num_samples"], sort=False)
        .head(KHAT_POINTS_PER_CELL)
    )
    frame = frame.assign(
        abs_error=np.maximum(frame["abs_error"], ROUNDOFF_BIAS), khat=frame["khat"].clip(*KHAT_AXIS)
    )
    methods = [m for m in methods if m in set(frame["method"])]
    grid = sns.FacetGrid(
        frame,
        col="model",
        hue="method",
        hue_order=methods,
        sharex=False,
        sharey=False,
        height=3.6,
        aspect=1.2,
        palette="colorblind",
    )
    grid.map_dataframe(
        sns.scatterplot, x="khat", y="abs_error", s=9, alpha=0.45, linewidth=0, rasterized=True
    )
    grid.set_titles("{col_name}")
    for model, ax in zip(grid.col_names, grid.axes.flat, strict=False):
        ax.set(yscale="log", xlim=(KHAT_AXIS[0] - 0.1, KHAT_AXIS[1] + 0.1))
        ax.axvline(KHAT_LIMIT, color="0.2", linewidth=1.2)
        sizes = sorted(frame.loc[frame["model"] == model, "num_samples"].unique())
        for row, m in enumerate(sizes):
            threshold = float(khat_threshold(m))
            if threshold < KHAT_LIMIT:
                ax.axvline(threshold, color="0.45", linestyle="--", linewidth=0.8)
                ax.text(
                    threshold,
                    0.98 - 0.05 * row,
                    f"M={m} ",
                    transform=ax.get_xaxis_transform(),
                    fontsize=6,
                    color="0.35",
                    va="top",
                    ha="right",
                )
        ax.axhline(ERROR_FLOOR, color="0.5", linestyle=":", linewidth=1)
    grid.set_axis_labels("Pareto k̂ of the weights", "|estimate − truth| (nats)")
    grid.add_legend(title="method", markerscale=2)
    return grid.figure


FIGURE_MAKERS = {
    "bias_vs_M.png": bias_figure,
    "variance_vs_M.png": variance_figure,
    "time_vs_M.png": time_figure,
    "error_vs_time.png": error_time_figure,
    "error_vs_evaluations.png": error_evaluations_figure,
}


def _save_figure(figure, path):
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------- text


def _run_facts(attrs):
    """Key facts of the run as (label, value) pairs, for both renderings."""
    config, env, run = attrs.get("config", {}), attrs.get("environment", {}), attrs.get("run", {})
    device = env.get("device", "?")
    hardware = ", ".join(env.get("gpus") or []) or env.get("cpu", "?")
    facts = [
        ("preset", config.get("preset", "—")),
        ("models", ", ".join(config.get("models", []))),
        ("methods", ", ".join(config.get("methods", []))),
        ("M", ", ".join(str(m) for m in config.get("num_samples", []))),
        (
            "repeats × points",
            f"{config.get('repeats', '?')} × "
            f"{', '.join(str(v) for v in config.get('num_points', {}).values())}",
        ),
        ("seed", config.get("seed", "—")),
        ("device", f"{device} ({hardware}; {env.get('cpu_count', '?')} CPU cores)"),
        ("compilation", _compilation(env.get("xla"), attrs.get("compile") or [])),
        ("git commit", env.get("git_commit") or "—"),
        ("created", env.get("created", "—")),
    ]
    cluster = attrs.get("cluster")
    if cluster:
        hosts = cluster.get("hosts", {})
        per_host = ", ".join(f"{host}: {info['workers']}" for host, info in list(hosts.items())[:4])
        facts.append(
            (
                "cluster",
                f"{cluster.get('workers', '?')} Dask workers, "
                f"{cluster.get('threads', '?')} threads, on {len(hosts)} host(s) "
                f"({per_host}{', ...' if len(hosts) > 4 else ''}); scheduler "
                f"{cluster.get('scheduler', '?')}",
            )
        )
    note = timing_note(attrs)
    if note:
        facts.append(("timing", note))
    if run:
        kept = (
            f", {run['kept_cells']} kept from earlier runs into this folder"
            if run.get("kept_cells")
            else ""
        )
        facts.append(
            (
                "sweep wall time",
                f"{run.get('wall_seconds', float('nan')):.1f} s "
                f"({run.get('computed_cells', '?')} cells computed, "
                f"{run.get('loaded_cells', 0)} resumed from disk{kept})",
            )
        )
    return facts


def _compilation(xla, records):
    """How the cells were compiled: one mode, or the mode measured per model x method."""
    if xla is True:
        return "XLA (jit_compile=True)"
    if xla is False:
        return "TensorFlow graph (no XLA)"
    chosen = {}
    for r in records:
        if r.get("jit_compile") is not None:
            label = registry.label(r["method"])
            chosen.setdefault("XLA" if r["jit_compile"] else "graph mode", set()).add(label)
    parts = [f"{mode} for {', '.join(sorted(cells))}" for mode, cells in sorted(chosen.items())]
    return ("chosen per model and method: " + "; ".join(parts)) if parts else str(xla)


def _compile_mode_table(attrs):
    """How each (model, method) got its compile mode on CPU (``attrs["compile_modes"]``), with
    the warm-call seconds in each mode where measured; None when the run fixed one mode."""
    records = attrs.get("compile_modes") or []
    if not records:
        return None
    table = pd.DataFrame(records).reindex(
        columns=[
            "model",
            "method",
            "jit_compile",
            "source",
            "probe_samples",
            "xla_seconds",
            "graph_seconds",
        ]
    )
    return pd.DataFrame(
        {
            "model": table["model"],
            "method": table["method"].map(registry.label),
            "mode": table["jit_compile"].map({True: "XLA", False: "graph"}),
            "chosen by": table["source"],
            "probe M": table["probe_samples"].map(lambda v: "" if pd.isna(v) else f"{int(v)}"),
            "XLA ms": (1e3 * table["xla_seconds"]).map(lambda v: "" if pd.isna(v) else f"{v:.3g}"),
            "graph ms": (1e3 * table["graph_seconds"]).map(
                lambda v: "" if pd.isna(v) else f"{v:.3g}"
            ),
        }
    )


COMPILE_MODE_NOTE = (
    "On CPU neither XLA nor graph mode wins everywhere, so each (model, method) ran in the mode "
    "whose warm call was faster at the probe M (measured once per machine and remembered; a "
    "resumed folder keeps its cells' mode; AIS, BDMC and SMC always use XLA). The two modes draw "
    "different random streams from one seed: pin one with --xla or --no-xla to compare runs "
    "number by number across machines."
)


def _display_table(summary):
    table = summary[TABLE_COLUMNS].copy()
    table["bias 95% CI"] = [
        f"[{lo:.3g}, {hi:.3g}]"
        for lo, hi in zip(table.pop("bias_ci_low"), table.pop("bias_ci_high"), strict=True)
    ]
    table = table[
        [
            "model",
            "method",
            "num_samples",
            "bias",
            "bias 95% CI",
            "variance",
            "rmse",
            "ess",
            "seconds",
            "evaluations",
            "samples_per_second",
            "compile_seconds",
            "truth_se",
        ]
    ]
    return table.rename(
        columns={
            "num_samples": "M",
            "samples_per_second": "samples/s",
            "compile_seconds": "compile s",
            "truth_se": "truth SE",
        }
    )


def _diagnostic_table(summary):
    """The diagnostics-against-error numbers of the cells that have a k-hat or an ESS."""
    table = summary[summary["khat"].notna() | summary["ess"].notna()]
    table = table[["model", "method", "num_samples", *DIAGNOSTIC_COLUMNS]]
    return table.rename(
        columns={
            "num_samples": "M",
            "khat": "mean k̂",
            "khat_threshold": "threshold",
            "khat_high": "k̂ flags",
            "bad_if_khat_high": "bad if k̂ flags",
            "bad_if_khat_low": "bad if k̂ does not",
            "ess_low": "ESS flags",
            "bad_if_ess_low": "bad if ESS flags",
            "bad_if_ess_high": "bad if ESS does not",
            "bad": "bad (all)",
        }
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


def _diagnostic_markdown(diagnostics):
    if diagnostics is None:
        return []
    parts = ["## Diagnostics against the error", "", DIAGNOSTIC_INTRO, ""]
    parts += [f"- **{model}**: {text}" for model, text in diagnostics["texts"].items()]
    parts += [
        "",
        f"![{KHAT_FIGURE}]({KHAT_FIGURE})",
        "",
        f"*{KHAT_CAPTION}*",
        "",
        markdown_table(diagnostics["table"]),
        "",
    ]
    return parts


def _diagnostic_html(diagnostics, folder):
    if diagnostics is None:
        return []
    esc = html.escape
    data = base64.b64encode((Path(folder) / KHAT_FIGURE).read_bytes()).decode()
    body = ["<h2>Diagnostics against the error</h2>", f"<p>{esc(DIAGNOSTIC_INTRO)}</p>"]
    body += [
        f'<p class="verdict"><b>{esc(m)}</b>: {esc(t)}</p>' for m, t in diagnostics["texts"].items()
    ]
    body += [
        f'<figure><img alt="{KHAT_FIGURE}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(KHAT_CAPTION)}</figcaption></figure>",
        _html_table(diagnostics["table"]),
    ]
    return body


def _slope_table(slopes):
    table = slopes[
        [
            "model",
            "method",
            "variance_slope",
            "bias_slope",
            "fit_min_samples",
            "fit_max_samples",
            "note",
        ]
    ].copy()
    table["fit range"] = [
        f"M = {a}..{b}"
        for a, b in zip(table.pop("fit_min_samples"), table.pop("fit_max_samples"), strict=True)
    ]
    return table[["model", "method", "variance_slope", "bias_slope", "fit range", "note"]]


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
    "estimate, or the delta-method SE of high-budget importance sampling); it widens the bias CI."
)


# --------------------------------------------------------------------------- per-model facts

FACTS_M = 64  # the M at which the models table reports Var(log p^)
ZOO_DIR = Path(__file__).resolve().parent / "zoo"
MODELS_INTRO = (
    "Per model. From this run: the ELBO gap log p(x) − E[ELBO] (minus the ELBO's bias, averaged "
    f"over M: its expectation does not depend on M) and Var(log p̂) at M = {FACTS_M} for naive MC "
    "and posterior-IS. From a shipped model's manifest (its whole test set): test log p(x), the "
    "active latent dimensions (mean KL(q(z_j|x) ‖ N(0, 1)) above the stated threshold), the "
    "rate Σ_j KL (about the information I(x; z) in nats) and what the latent carries: "
    "log p(x) − log p(x | z = 0), the mixture's gain over its component at the prior mean."
)


def model_facts(summary, zoo_dir=ZOO_DIR):
    """One row per model of the run: the run's ELBO gap and Var(log p^) at M = FACTS_M, and, for
    a model shipped in the zoo (``<zoo_dir>/<model>.json``), its manifest's latent usage."""
    rows = []
    for model, cells in summary.groupby("model", sort=False):
        elbo = cells[cells["method"] == "elbo"]
        row = {"model": model, "ELBO gap": -elbo["bias"].mean() if len(elbo) else np.nan}
        for method, label in (("naive_mc", "naive MC"), ("posterior_is", "posterior-IS")):
            at = cells[(cells["method"] == method) & (cells["num_samples"] == FACTS_M)]
            row[f"Var {label} M={FACTS_M}"] = at["variance"].iloc[0] if len(at) else np.nan
        row.update(_manifest_facts(Path(zoo_dir) / f"{model}.json"))
        rows.append(row)
    return pd.DataFrame(rows)


def _manifest_facts(path):
    empty = {
        "test log p(x)": "—",
        "test ELBO gap": np.nan,
        "active dims": "—",
        "rate": np.nan,
        "latent carries": np.nan,
    }
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return empty
    results, latent = info.get("results", {}), info.get("results", {}).get("latent", {})
    d = info.get("architecture", {}).get("latent_dim", "?")
    facts = dict(empty)
    if "test_log_p" in results:
        facts["test log p(x)"] = (
            f"{results['test_log_p']:.3f} ± {results.get('test_log_p_se', 0):.2g}"
        )
        facts["test ELBO gap"] = results.get("elbo_gap", np.nan)
    if latent:
        facts["active dims"] = (
            f"{latent['active_dims']} / {d} (KL > {latent['active_threshold_nats']:g})"
        )
        facts["rate"] = latent.get("rate", np.nan)
        facts["latent carries"] = latent.get("latent_carries", np.nan)
    return facts


def _sandwich_display(table):
    shown = table.drop(columns=["all_inside"]).rename(
        columns={
            "steps": "T",
            "num_samples": "K",
            "lower": "ais − ref",
            "upper": "bdmc − ref",
            "truth": "mean ref",
            "truth_se": "ref SE",
        }
    )
    shown["inside"] = [f"{i}/{n}" for i, n in zip(table["inside"], table["points"], strict=False)]
    return shown.drop(columns=["points"])


def _skipped_lines(skipped):
    return [f"{s['model']} / {s['method']}: {s['reason']}" for s in skipped]


SANDWICH_NOTE = (
    "Per data point, the mean over repeats of forward AIS is a stochastic lower bound on log p(x) "
    "and that of reverse AIS from exact posterior draws an upper bound; their gap (width) bounds "
    f"the error of both. 'inside': points whose reference lies in the sandwich within {SANDWICH_K:g} "
    "SE (the repeats' SE of each bound and the reference's own SE)."
)


def render_markdown(
    attrs,
    summary,
    slopes,
    texts,
    sandwich=None,
    sandwich_texts=None,
    skipped=(),
    figures=FIGURES,
    diagnostics=None,
):
    parts = [
        f"# Estimator comparison: {attrs.get('config', {}).get('preset', 'sweep')}",
        "",
        INTRO,
        "",
        "## Verdicts",
        "",
    ]
    parts += [f"- **{model}**: {text}" for model, text in texts.items()]
    parts += ["", "## Models", "", MODELS_INTRO, "", markdown_table(model_facts(summary))]
    if sandwich is not None and len(sandwich):
        parts += ["", "## The sandwich: forward AIS ≤ log p(x) ≤ reverse AIS", ""]
        parts += [f"- **{model}**: {text}" for model, text in sandwich_texts.items()]
        parts += ["", SANDWICH_NOTE, "", markdown_table(_sandwich_display(sandwich))]
    if skipped:
        parts += ["", "## Skipped (method does not apply to the model)", ""]
        parts += [f"- {line}" for line in _skipped_lines(skipped)]
    parts += ["", "## Slopes (log–log against M)", "", markdown_table(_slope_table(slopes)), ""]
    parts += ["## Figures", ""]
    for name, caption in figures.items():
        parts += [f"![{name}]({name})", "", f"*{caption}*", ""]
    parts += _diagnostic_markdown(diagnostics)
    parts += ["## Summary (one row per model × method × M)", ""]
    if timing_note(attrs):
        parts += [f"> **Timing:** {timing_note(attrs)}", ""]
    parts += [
        markdown_table(_display_table(summary)),
        "",
        "## Run and environment",
        "",
    ]
    parts += [f"- {label}: {value}" for label, value in _run_facts(attrs)]
    packages = attrs.get("environment", {}).get("packages", {})
    parts += ["- packages: " + ", ".join(f"{k} {v}" for k, v in packages.items()), ""]
    modes = _compile_mode_table(attrs)
    if modes is not None:
        parts += ["### Compilation mode per model and method", "", COMPILE_MODE_NOTE, ""]
        parts += [markdown_table(modes), ""]
    return "\n".join(parts)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1250px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:nth-child(-n+2) { text-align: left; }
img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; margin-bottom: 2em; }
.verdict { margin: 0.4em 0; } code { background: #f5f5f5; }
"""


def render_html(
    attrs,
    summary,
    slopes,
    texts,
    folder,
    sandwich=None,
    sandwich_texts=None,
    skipped=(),
    figures=FIGURES,
    diagnostics=None,
):
    """A self-contained page: the figures are embedded as base64 PNGs."""
    esc = html.escape
    title = f"Estimator comparison: {attrs.get('config', {}).get('preset', 'sweep')}"
    body = [f"<h1>{esc(title)}</h1>", f"<p>{esc(INTRO)}</p>", "<h2>Verdicts</h2>"]
    body += [f'<p class="verdict"><b>{esc(m)}</b>: {esc(t)}</p>' for m, t in texts.items()]
    body += ["<h2>Models</h2>", f"<p>{esc(MODELS_INTRO)}</p>", _html_table(model_facts(summary))]
    if sandwich is not None and len(sandwich):
        body += ["<h2>The sandwich: forward AIS ≤ log p(x) ≤ reverse AIS</h2>"]
        body += [
            f'<p class="verdict"><b>{esc(m)}</b>: {esc(t)}</p>' for m, t in sandwich_texts.items()
        ]
        body += [f"<p>{esc(SANDWICH_NOTE)}</p>", _html_table(_sandwich_display(sandwich))]
    if skipped:
        body += ["<h2>Skipped (method does not apply to the model)</h2><ul>"]
        body += [f"<li>{esc(line)}</li>" for line in _skipped_lines(skipped)] + ["</ul>"]
    body += [
        "<h2>Slopes (log–log against M)</h2>",
        _html_table(_slope_table(slopes)),
        "<h2>Figures</h2>",
    ]
    for name, caption in figures.items():
        data = base64.b64encode((Path(folder) / name).read_bytes()).decode()
        body.append(
            f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    body += _diagnostic_html(diagnostics, folder)
    body += ["<h2>Summary (one row per model × method × M)</h2>"]
    if timing_note(attrs):
        body.append(f"<p><b>Timing:</b> {esc(timing_note(attrs))}</p>")
    body += [
        _html_table(_display_table(summary)),
        "<h2>Run and environment</h2><ul>",
    ]
    body += [f"<li>{esc(label)}: {esc(str(value))}</li>" for label, value in _run_facts(attrs)]
    body.append("</ul>")
    modes = _compile_mode_table(attrs)
    if modes is not None:
        body += [
            "<h3>Compilation mode per model and method</h3>",
            f"<p>{esc(COMPILE_MODE_NOTE)}</p>",
            _html_table(modes),
        ]
    body += [
        "<details><summary>full environment (JSON)</summary><pre>",
        esc(json.dumps(attrs.get("environment", {}), indent=2)),
        "</pre></details>",
    ]
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{HTML_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def _html_table(table):
    return table.to_html(index=False, formatters={c: format_value for c in table.columns}, border=0)
