"""The ``Summary``'s tables reshaped for people: method labels, readable column names, and an
estimate shown with its standard error ("-0.12 ± 0.01") where it has one. Numbers are not
recomputed here."""

import pandas as pd

from estimators import methods as registry
from estimators.sandwich import sides
from estimators.summary import DIAGNOSTIC_COLUMNS, display_names


def plus_minus(value, se, signed=True, digits=3):
    """'-0.123 ± 0.0045' (a difference: signed) or '-23.1 ± 0.01'; just the value when the se
    is NaN; '—' when the value is."""
    if pd.isna(value):
        return "—"
    shown = f"{value:+.{digits}g}" if signed else f"{value:.{digits}g}"
    return shown if pd.isna(se) else f"{shown} ± {se:.2g}"


def interval(value, low, high):
    """'0.95 [0.93, 0.97]' for a share and its interval ('—' when there is none)."""
    if pd.isna(value):
        return "—"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def cell_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method, M): bias with its CI, variance, RMSE, the method's own SE,
    cost and compile seconds."""
    table = display_names(cells)
    table = table.assign(
        **{
            "bias 95% CI": [
                f"[{lo:.3g}, {hi:.3g}]"
                for lo, hi in zip(table["bias_ci_low"], table["bias_ci_high"], strict=True)
            ]
        }
    )
    columns = {
        "model": "model",
        "method": "method",
        "num_samples": "M",
        "bias": "bias",
        "bias 95% CI": "bias 95% CI",
        "variance": "variance",
        "rmse": "rmse",
        "se": "own SE",
        "ess": "ess",
        "seconds": "seconds",
        "evaluations": "evaluations",
        "samples_per_second": "samples/s",
        "compile_seconds": "compile s",
        "truth_se": "truth SE",
    }
    return table[list(columns)].rename(columns=columns)


def diagnostic_table(cells: pd.DataFrame) -> pd.DataFrame:
    """The diagnostics-against-error numbers of the cells that have a k-hat or an ESS."""
    table = display_names(cells[cells["khat"].notna() | cells["ess"].notna()])
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


def slope_table(slopes: pd.DataFrame) -> pd.DataFrame:
    table = display_names(slopes)
    table = table.assign(
        **{
            "fit range": [
                f"M = {a}..{b}"
                for a, b in zip(table["fit_min_samples"], table["fit_max_samples"], strict=True)
            ]
        }
    )
    return table[["model", "method", "variance_slope", "bias_slope", "fit range", "note"]]


def sandwich_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, path, T, K): each bound's mean distance from the reference ± its SE."""
    names = sides()
    return pd.DataFrame(
        {
            "model": table["model"],
            "path": table["path"],
            "T": table["steps"],
            "K": table["num_samples"],
            f"{names['lower']} − ref": [
                plus_minus(v, se) for v, se in zip(table["lower"], table["lower_se"], strict=True)
            ],
            f"{names['upper']} − ref": [
                plus_minus(v, se) for v, se in zip(table["upper"], table["upper_se"], strict=True)
            ],
            "width": table["width"],
            "mean ref": [  # an exact reference (SE 0) without "± 0"
                plus_minus(v, se if se > 0 else float("nan"), signed=False)
                for v, se in zip(table["truth"], table["truth_se"], strict=True)
            ],
            "inside": [f"{i}/{n}" for i, n in zip(table["inside"], table["points"], strict=True)],
        }
    )


def coverage_table(coverage: pd.DataFrame) -> pd.DataFrame:
    """Per scored cell: coverage with its interval, se/SD, and coverage on each side of the k-hat
    threshold (with the number of estimates there)."""
    shown = display_names(coverage)

    def split(name):
        return [
            f"{interval(c, lo, hi)} (n = {n})" if n else "—"
            for c, lo, hi, n in zip(
                shown[f"{name}_coverage"],
                shown[f"{name}_ci_low"],
                shown[f"{name}_ci_high"],
                shown[f"{name}_estimates"],
                strict=True,
            )
        ]

    return pd.DataFrame(
        {
            "model": shown["model"],
            "method": shown["method"],
            "M": shown["num_samples"],
            "estimates": shown["estimates"],
            "coverage [95% CI]": [
                interval(c, lo, hi)
                for c, lo, hi in zip(
                    shown["coverage"],
                    shown["coverage_ci_low"],
                    shown["coverage_ci_high"],
                    strict=True,
                )
            ],
            "se / SD": shown["se_ratio"],
            "k̂ ≤ threshold": split("khat_low"),
            "k̂ > threshold": split("khat_high"),
        }
    )


def left_out_lines(left_out: pd.DataFrame) -> list[str]:
    return [
        f"{registry.label(row.method)} at M = {row.num_samples} ({row.model}): {row.reason}"
        for row in left_out.itertuples()
    ]


def skipped_lines(skipped) -> list[str]:
    return [f"{s.model} / {registry.label(s.method)}: {s.reason}" for s in skipped]


def equal_seconds_table(equal: pd.DataFrame) -> pd.DataFrame:
    """The field's table: one row per (model, budget), one column per method, each cell
    "mean log p̂ ± MC SE (M)" of the method's best cell within the budget ("—": none fits)."""
    if equal.empty:
        return equal
    table = equal.assign(
        method=equal["method"].map(registry.label),
        shown=[
            f"{plus_minus(e, se, signed=False, digits=6)} (M={m})"
            for e, se, m in zip(
                equal["estimate"], equal["estimate_se"], equal["num_samples"], strict=True
            )
        ],
        budget=[f"≤ {s:.3g} s" for s in equal["budget_seconds"]],
    )
    wide = table.pivot_table(
        index=["model", "budget"], columns="method", values="shown", aggfunc="first", sort=False
    )
    order = list(dict.fromkeys(table["method"]))
    return wide.reindex(columns=order).fillna("—").reset_index().rename_axis(columns=None)


def gap_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per model: the IWAE and ELBO gaps to AIS (paired by point), with what was compared."""
    return pd.DataFrame(
        {
            "model": gaps["model"],
            "bound": gaps["bound"],
            "bound at": [
                f"{registry.label(m)}, M = {n}"
                for m, n in zip(gaps["method"], gaps["num_samples"], strict=True)
            ],
            "AIS at": [
                f"{registry.label(m)}, K = {n}"
                for m, n in zip(gaps["ais"], gaps["ais_num_samples"], strict=True)
            ],
            "bound − AIS (nats)": [
                plus_minus(g, se) for g, se in zip(gaps["gap"], gaps["gap_se"], strict=True)
            ],
        }
    )
