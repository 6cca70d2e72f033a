"""The report's figures: drawn once per report, each a PNG in the report's folder.

Figures (seaborn, log-log, one panel per model, one colour per method, 95% bootstrap bands):
    bias_vs_M.png       |bias| of log p^ against M, with a reference line proportional to 1/M
    variance_vs_M.png   variance across repeats against M, reference 1/M
    time_vs_M.png       seconds per repeat against M, reference proportional to M
    error_vs_time.png   RMSE against seconds per repeat, reference t^-1/2: the estimator to pick
                        for a time budget is the lowest curve at that budget
    error_vs_evaluations.png  RMSE against evaluations of log p(x|z) per point
    sandwich.png        (when the run has both sides of the sandwich) the bounds against T
    khat_vs_error.png   (when the run has k-hat values) each estimate's |error| against its
                        Pareto k-hat, with the 0.7 line and the M-dependent thresholds
    coverage_vs_M.png   (when methods report standard errors) the share of estimates within
                        1.96 se of the truth against M, with its 95% binomial interval
Values at floating-point round-off (exact estimators) are drawn on a dotted floor line.
Pure pandas/matplotlib (no TensorFlow); the Agg backend, so no display is needed.
"""

from io import BytesIO
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from estimators.files import atomic_write  # noqa: E402
from estimators.report.document import Figure  # noqa: E402
from estimators.sandwich import sides  # noqa: E402
from estimators.summary import (  # noqa: E402
    ERROR_FLOOR,
    KHAT_LIMIT,
    NOMINAL,
    ROUNDOFF_BIAS,
    ROUNDOFF_VARIANCE,
    Summary,
    display_names,
    flag_estimates,
    khat_threshold,
)

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
SANDWICH_FIGURE = "sandwich.png"
SANDWICH_CAPTION = (
    "Forward AIS ({lower}, a stochastic lower bound) and reverse AIS ({upper}, an upper bound) "
    "against the number of temperatures T, as the mean difference from the reference log p(x) "
    "(grey band: ± the reference's SE). Bands: ±2 SE over repeats and points."
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
COVERAGE_FIGURE = "coverage_vs_M.png"
COVERAGE_CAPTION = (
    f"Share of estimates within 1.96 of their own standard errors of the truth, against M (one "
    f"line per method, a panel per model); bars: 95% Clopper–Pearson intervals; dashed: the "
    f"nominal {NOMINAL:g}. Below the line the error bars are too narrow (or miss a bias)."
)


def _plot_frame(cells):
    """Columns for plotting: |bias| and its band (0 inside the band when the CI crosses 0)."""
    low, high = cells["bias_ci_low"].abs(), cells["bias_ci_high"].abs()
    crosses_zero = np.sign(cells["bias_ci_low"]) != np.sign(cells["bias_ci_high"])
    return cells.assign(
        abs_bias=cells["bias"].abs(),
        abs_bias_low=np.where(crosses_zero, 0.0, np.minimum(low, high)),
        abs_bias_high=np.maximum(low, high),
    )


def model_grid(frame, methods, sharey):
    """A panel per model, a colour per method (in ``methods``' order)."""
    return sns.FacetGrid(
        frame,
        col="model",
        hue="method",
        hue_order=methods,
        sharex=False,
        sharey=sharey,
        height=3.4,
        aspect=1.15,
        palette="colorblind",
    )


def _facets(
    frame, methods, x, y, low=None, high=None, floor=None, ref_power=None, xlabel="", ylabel=""
):
    """Log-log panels per model: a line per method, its CI band, a round-off floor and a
    dashed reference line ∝ x^ref_power through the median of the methods at the largest x."""
    grid = model_grid(frame, methods, sharey=False)

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


def bias_figure(cells, methods):
    return _facets(
        _plot_frame(cells),
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


def variance_figure(cells, methods):
    return _facets(
        cells,
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


def time_figure(cells, methods):
    return _facets(
        cells,
        methods,
        "num_samples",
        "seconds",
        ref_power=1,
        xlabel="M (samples per point)",
        ylabel="seconds per repeat",
    )


def error_time_figure(cells, methods):
    return _facets(
        cells,
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


def error_evaluations_figure(cells, methods):
    frame = cells[cells["evaluations"] > 0]
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
    names = sides()
    for ax, model in zip(axes.flat, models, strict=False):
        rows = table[table["model"] == model]
        final_k = rows["num_samples"].max()
        for (_path, k), group in rows[rows["num_samples"] == final_k].groupby(
            ["path", "num_samples"]
        ):
            group = group.sort_values("steps")
            for column, color, label in (
                ("lower", palette[0], f"{names['lower']} (lower)"),
                ("upper", palette[1], f"{names['upper']} (upper)"),
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


def coverage_figure(coverage, methods):
    """Per model: coverage against M, a line per method, Clopper-Pearson bars, the nominal line."""
    methods = [m for m in methods if m in set(coverage["method"])]
    grid = model_grid(coverage, methods, sharey=True)

    def draw(data, color, label):
        data = data.sort_values("num_samples")
        below = data["coverage"] - data["coverage_ci_low"]
        above = data["coverage_ci_high"] - data["coverage"]
        plt.errorbar(
            data["num_samples"],
            data["coverage"],
            yerr=[below, above],
            marker="o",
            markersize=3.5,
            capsize=2,
            color=color,
            label=label,
        )

    grid.map_dataframe(draw)
    grid.set_titles("{col_name}")
    for ax in grid.axes.flat:
        ax.set(xscale="log", ylim=(-0.02, 1.02))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.axhline(NOMINAL, color="0.3", linestyle="--", linewidth=1)
        ax.text(
            0.01,
            NOMINAL,
            f" nominal {NOMINAL:g}",
            transform=ax.get_yaxis_transform(),
            fontsize=7,
            color="0.3",
            va="bottom",
        )
    grid.set_axis_labels("M (samples per point)", "coverage of ±1.96 se")
    grid.add_legend(title="method")
    return grid.figure


def save_figure(figure, path):
    """The figure as a PNG at ``path`` (written atomically), then closed."""
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def draw_figures(summary: Summary, df, folder) -> dict[str, Figure]:
    """Every figure the run has data for, saved in ``folder``: {file name: Figure}. The standard
    five always; the sandwich, k-hat and coverage figures when the run has what they show."""
    folder = Path(folder)
    cells = display_names(summary.cells)
    methods = list(dict.fromkeys(cells["method"]))
    figures = {}
    for name, caption in FIGURES.items():
        save_figure(FIGURE_MAKERS[name](cells, methods), folder / name)
        figures[name] = Figure(name, caption)
    if len(summary.sandwich):
        save_figure(sandwich_figure(summary.sandwich), folder / SANDWICH_FIGURE)
        figures[SANDWICH_FIGURE] = Figure(SANDWICH_FIGURE, SANDWICH_CAPTION.format(**sides()))
    if summary.has_khat:
        save_figure(khat_figure(display_names(df), methods), folder / KHAT_FIGURE)
        figures[KHAT_FIGURE] = Figure(KHAT_FIGURE, KHAT_CAPTION)
    if len(summary.coverage):
        coverage = display_names(summary.coverage)
        save_figure(coverage_figure(coverage, methods), folder / COVERAGE_FIGURE)
        figures[COVERAGE_FIGURE] = Figure(COVERAGE_FIGURE, COVERAGE_CAPTION)
    return figures
