"""The report folder a person reads: summary.csv, four figures, report.md and report.html.

    write_report(df, folder)    # df: the tidy results (with attrs), e.g. results.load_results(folder)

Figures (seaborn, log-log, one panel per model, one colour per method, 95% bootstrap bands):
    bias_vs_M.png       |bias| of log p^ against M, with a reference line proportional to 1/M
    variance_vs_M.png   variance across repeats against M, reference 1/M
    time_vs_M.png       seconds per repeat against M, reference proportional to M
    error_vs_time.png   RMSE against seconds per repeat, reference t^-1/2: the estimator to pick
                        for a time budget is the lowest curve at that budget
Values at floating-point round-off (exact estimators) are drawn on a dotted floor line.
Pure pandas/matplotlib (no TensorFlow, DESIGN §8); the Agg backend, so no display is needed.
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
import seaborn as sns  # noqa: E402

from estimators.results import atomic_write_bytes  # noqa: E402
from estimators.summary import (ROUNDOFF_BIAS, ROUNDOFF_VARIANCE, fit_slopes,  # noqa: E402
                                summarize, timing_note, verdicts)

FIGURES = {
    "error_vs_time.png": "RMSE of log p̂ against the time of one repeat: for a time budget on the "
                         "x-axis, the lowest curve is the estimator to use. Dashed: ∝ t^-1/2.",
    "bias_vs_M.png": "|bias| of log p̂ (nats) against M. Importance sampling's bias shrinks like "
                     "1/M (dashed); the ELBO's levels off at its KL gap.",
    "variance_vs_M.png": "Variance of log p̂ across repeats against M; dashed: ∝ 1/M.",
    "time_vs_M.png": "Seconds per repeat (N points × M samples, compilation excluded) against M; "
                     "dashed: ∝ M.",
}
ROUNDOFF_FLOOR = {"abs_bias": ROUNDOFF_BIAS, "variance": ROUNDOFF_VARIANCE, "rmse": ROUNDOFF_BIAS}
TABLE_COLUMNS = ["model", "method", "num_samples", "bias", "bias_ci_low", "bias_ci_high",
                 "variance", "rmse", "ess", "seconds", "samples_per_second", "compile_seconds",
                 "truth_se"]


def write_report(df, folder, summary=None):
    """Write summary.csv, the figures, report.md and report.html into ``folder``; return paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(df) if summary is None else summary
    atomic_write_bytes(folder / "summary.csv", summary.to_csv(index=False).encode())
    methods = list(dict.fromkeys(summary["method"]))
    for name in FIGURES:
        figure = FIGURE_MAKERS[name](summary, methods)
        _save_figure(figure, folder / name)
    slopes = fit_slopes(summary)
    texts = verdicts(summary)
    atomic_write_bytes(folder / "report.md", render_markdown(df.attrs, summary, slopes, texts).encode())
    atomic_write_bytes(folder / "report.html",
                       render_html(df.attrs, summary, slopes, texts, folder).encode())
    return {name: folder / name for name in ["summary.csv", *FIGURES, "report.md", "report.html"]}


# --------------------------------------------------------------------------- figures

def _plot_frame(summary):
    """Columns for plotting: |bias| and its band (0 inside the band when the CI crosses 0)."""
    low, high = summary["bias_ci_low"].abs(), summary["bias_ci_high"].abs()
    crosses_zero = np.sign(summary["bias_ci_low"]) != np.sign(summary["bias_ci_high"])
    return summary.assign(
        abs_bias=summary["bias"].abs(),
        abs_bias_low=np.where(crosses_zero, 0.0, np.minimum(low, high)),
        abs_bias_high=np.maximum(low, high))


def _facets(frame, methods, x, y, low=None, high=None, floor=None, ref_power=None,
            xlabel="", ylabel=""):
    """Log-log panels per model: a line per method, its CI band, a round-off floor and a
    dashed reference line ∝ x^ref_power through the median of the methods at the largest x."""
    grid = sns.FacetGrid(frame, col="model", hue="method", hue_order=methods, sharex=False,
                         sharey=False, height=3.4, aspect=1.15, palette="colorblind")

    def draw(data, color, label):
        data = data.sort_values("num_samples")  # a path through increasing M
        clip = (lambda v: np.maximum(v, floor)) if floor else (lambda v: v)
        plt.plot(data[x], clip(data[y]), marker="o", markersize=3.5, color=color, label=label)
        if low is not None:
            plt.fill_between(data[x], clip(data[low]), clip(data[high]), color=color, alpha=0.2,
                             linewidth=0)

    grid.map_dataframe(draw)
    grid.set_titles("{col_name}")
    for model, ax in zip(grid.col_names, grid.axes.flat):
        ax.set(xscale="log", yscale="log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        panel = frame[frame["model"] == model]
        if floor:
            ax.axhline(floor, color="0.5", linestyle=":", linewidth=1)
            ax.text(0.01, floor, " round-off", transform=ax.get_yaxis_transform(), fontsize=7,
                    color="0.4", va="bottom")
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
    ax.plot(xs, anchor * (xs / x_max) ** power, color="0.3", linestyle="--", linewidth=1,
            label=label)
    ax.text(xs[0], anchor * (xs[0] / x_max) ** power, label, fontsize=7, color="0.3",
            va="bottom")


def bias_figure(summary, methods):
    return _facets(_plot_frame(summary), methods, "num_samples", "abs_bias", "abs_bias_low",
                   "abs_bias_high", floor=ROUNDOFF_BIAS, ref_power=-1,
                   xlabel="M (samples per point)", ylabel="|bias| of log p̂ (nats)")


def variance_figure(summary, methods):
    return _facets(summary, methods, "num_samples", "variance", "variance_ci_low",
                   "variance_ci_high", floor=ROUNDOFF_VARIANCE, ref_power=-1,
                   xlabel="M (samples per point)", ylabel="variance of log p̂ (nats²)")


def time_figure(summary, methods):
    return _facets(summary, methods, "num_samples", "seconds", ref_power=1,
                   xlabel="M (samples per point)", ylabel="seconds per repeat")


def error_time_figure(summary, methods):
    return _facets(summary, methods, "seconds", "rmse", "rmse_ci_low", "rmse_ci_high",
                   floor=ROUNDOFF_BIAS, ref_power=-0.5, xlabel="seconds per repeat",
                   ylabel="RMSE of log p̂ (nats)")


FIGURE_MAKERS = {"bias_vs_M.png": bias_figure, "variance_vs_M.png": variance_figure,
                 "time_vs_M.png": time_figure, "error_vs_time.png": error_time_figure}


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
        ("repeats × points", f"{config.get('repeats', '?')} × "
                             f"{', '.join(str(v) for v in config.get('num_points', {}).values())}"),
        ("seed", config.get("seed", "—")),
        ("device", f"{device} ({hardware}; {env.get('cpu_count', '?')} CPU cores)"),
        ("compilation", "XLA (jit_compile=True)" if env.get("xla") else "TensorFlow graph (no XLA)"),
        ("git commit", env.get("git_commit") or "—"),
        ("created", env.get("created", "—")),
    ]
    cluster = attrs.get("cluster")
    if cluster:
        hosts = cluster.get("hosts", {})
        per_host = ", ".join(f"{host}: {info['workers']}" for host, info in list(hosts.items())[:4])
        facts.append(("cluster", f"{cluster.get('workers', '?')} Dask workers, "
                      f"{cluster.get('threads', '?')} threads, on {len(hosts)} host(s) "
                      f"({per_host}{', ...' if len(hosts) > 4 else ''}); scheduler "
                      f"{cluster.get('scheduler', '?')}"))
    note = timing_note(attrs)
    if note:
        facts.append(("timing", note))
    if run:
        facts.append(("sweep wall time", f"{run.get('wall_seconds', float('nan')):.1f} s "
                      f"({run.get('computed_cells', '?')} cells computed, "
                      f"{run.get('loaded_cells', 0)} resumed from disk)"))
    return facts


def _display_table(summary):
    table = summary[TABLE_COLUMNS].copy()
    table["bias 95% CI"] = [f"[{lo:.3g}, {hi:.3g}]" for lo, hi in
                            zip(table.pop("bias_ci_low"), table.pop("bias_ci_high"))]
    table = table[["model", "method", "num_samples", "bias", "bias 95% CI", "variance", "rmse",
                   "ess", "seconds", "samples_per_second", "compile_seconds", "truth_se"]]
    return table.rename(columns={"num_samples": "M", "samples_per_second": "samples/s",
                                 "compile_seconds": "compile s", "truth_se": "truth SE"})


def _slope_table(slopes):
    table = slopes[["model", "method", "variance_slope", "bias_slope", "fit_min_samples",
                    "fit_max_samples", "note"]].copy()
    table["fit range"] = [f"M = {a}..{b}" for a, b in
                          zip(table.pop("fit_min_samples"), table.pop("fit_max_samples"))]
    return table[["model", "method", "variance_slope", "bias_slope", "fit range", "note"]]


def _format(value):
    if isinstance(value, (float, np.floating)):
        return "—" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def _markdown_table(table):
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_format(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


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
    "estimate, or the delta-method SE of high-budget importance sampling); it widens the bias CI.")


def render_markdown(attrs, summary, slopes, texts):
    parts = [f"# Estimator comparison: {attrs.get('config', {}).get('preset', 'sweep')}", "",
             INTRO, "", "## Verdicts", ""]
    parts += [f"- **{model}**: {text}" for model, text in texts.items()]
    parts += ["", "## Slopes (log–log against M)", "", _markdown_table(_slope_table(slopes)), ""]
    parts += ["## Figures", ""]
    for name, caption in FIGURES.items():
        parts += [f"![{name}]({name})", "", f"*{caption}*", ""]
    parts += ["## Summary (one row per model × method × M)", ""]
    if timing_note(attrs):
        parts += [f"> **Timing:** {timing_note(attrs)}", ""]
    parts += [_markdown_table(_display_table(summary)), "", "## Run and environment", ""]
    parts += [f"- {label}: {value}" for label, value in _run_facts(attrs)]
    packages = attrs.get("environment", {}).get("packages", {})
    parts += ["- packages: " + ", ".join(f"{k} {v}" for k, v in packages.items()), ""]
    return "\n".join(parts)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1250px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:nth-child(-n+2) { text-align: left; }
img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; margin-bottom: 2em; }
.verdict { margin: 0.4em 0; } code { background: #f5f5f5; }
"""


def render_html(attrs, summary, slopes, texts, folder):
    """A self-contained page: the figures are embedded as base64 PNGs."""
    esc = html.escape
    title = f"Estimator comparison: {attrs.get('config', {}).get('preset', 'sweep')}"
    body = [f"<h1>{esc(title)}</h1>", f"<p>{esc(INTRO)}</p>", "<h2>Verdicts</h2>"]
    body += [f'<p class="verdict"><b>{esc(m)}</b>: {esc(t)}</p>' for m, t in texts.items()]
    body += ["<h2>Slopes (log–log against M)</h2>", _html_table(_slope_table(slopes)),
             "<h2>Figures</h2>"]
    for name, caption in FIGURES.items():
        data = base64.b64encode((Path(folder) / name).read_bytes()).decode()
        body.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{esc(caption)}</figcaption></figure>")
    body += ["<h2>Summary (one row per model × method × M)</h2>"]
    if timing_note(attrs):
        body.append(f"<p><b>Timing:</b> {esc(timing_note(attrs))}</p>")
    body += [_html_table(_display_table(summary)), "<h2>Run and environment</h2><ul>"]
    body += [f"<li>{esc(label)}: {esc(str(value))}</li>" for label, value in _run_facts(attrs)]
    body += ["</ul>", "<details><summary>full environment (JSON)</summary><pre>",
             esc(json.dumps(attrs.get("environment", {}), indent=2)), "</pre></details>"]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{HTML_STYLE}</style></head><body>{''.join(body)}</body></html>")


def _html_table(table):
    return table.to_html(index=False, formatters={c: _format for c in table.columns}, border=0)
