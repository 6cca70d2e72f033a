"""The bidirectional Monte Carlo sandwich: forward AIS below log p(x), reverse AIS above.

Pure pandas (no TensorFlow). The registry says which methods are the two sides
(``Method.sandwich_side``: "lower" for forward AIS, "upper" for reverse AIS from exact posterior
draws). For every model and every pair of lower and upper cells that share their options (the
same path: start, schedule, steps T, leapfrog steps, step sizes) and K, per data point n over the
R repeats:

    lower_n = mean_r lower_nr    E[lower_n] <= log p(x_n)   (Jensen: unbiased for p)
    upper_n = mean_r upper_nr    E[upper_n] >= log p(x_n)   (unbiased for 1/p)
    width_n = upper_n - lower_n  >= 0 in expectation: a certified bound on the error of both

A reference truth_n (exact, quadrature or a high-budget estimate with its own SE) lies *inside*
the sandwich when lower_n - k se_lower_n <= truth_n + k truth_se_n and
truth_n - k truth_se_n <= upper_n + k se_upper_n (k = ``SANDWICH_K``, se = the repeats' SE).
"""

import numpy as np
import pandas as pd

from estimators import methods as registry

SANDWICH_K = 3.0
SIDES = ("lower", "upper")
COLUMNS = [
    "model",
    "path",
    "steps",
    "num_samples",
    "lower",
    "upper",
    "width",
    "lower_se",
    "upper_se",
    "truth",
    "truth_se",
    "points",
    "inside",
    "all_inside",
]


def sides() -> dict[str, str]:
    """{"lower": method name, "upper": method name}: the registry's two sides of the sandwich."""
    return {m.sandwich_side: m.name for m in registry.REGISTRY.values() if m.sandwich_side}


def _path(method):
    """(side, path options without steps, steps) of a sandwich method's spec; None for others."""
    spec = registry.parse(method)
    side = spec.method.sandwich_side
    if side is None:
        return None
    steps = spec.kwargs["steps"]
    default_steps = spec.method.option("steps").default
    path = registry.label(registry.parse(spec.name, **{**spec.kwargs, "steps": default_steps}))
    path = path.partition(":")[2] or "default path"  # the non-default options but T
    return side, path, steps


def sandwich_table(df):
    """One row per (model, path, T, K) that has both bounds; empty when none has."""
    labelled = []
    for method in df["method"].unique():
        path = _path(method)
        if path is not None:
            labelled.append({"method": method, "side": path[0], "path": path[1], "steps": path[2]})
    if not labelled:
        return pd.DataFrame(columns=COLUMNS)
    cells = df.merge(pd.DataFrame(labelled), on="method")
    per_point = (
        cells.groupby(["model", "path", "steps", "num_samples", "side", "point"])
        .agg(
            mean=("estimate", "mean"),
            sd=("estimate", "std"),
            repeats=("estimate", "size"),
            truth=("truth", "first"),
            truth_se=("truth_se", "first"),
        )
        .reset_index()
    )
    per_point["se"] = per_point["sd"] / np.sqrt(per_point["repeats"])
    wide = per_point.pivot_table(
        index=["model", "path", "steps", "num_samples", "point"],
        columns="side",
        values=["mean", "se", "truth", "truth_se"],
    )
    if any(side not in wide["mean"] for side in SIDES):
        return pd.DataFrame(columns=COLUMNS)
    wide = wide.dropna(subset=[("mean", side) for side in SIDES])
    rows = []
    for key, group in wide.groupby(level=["model", "path", "steps", "num_samples"]):
        lower, upper = group[("mean", "lower")], group[("mean", "upper")]
        lower_se, upper_se = group[("se", "lower")], group[("se", "upper")]
        truth, truth_se = group[("truth", "lower")], group[("truth_se", "lower")]
        inside = (lower - SANDWICH_K * lower_se <= truth + SANDWICH_K * truth_se) & (
            truth - SANDWICH_K * truth_se <= upper + SANDWICH_K * upper_se
        )
        rows.append(
            {
                **dict(zip(["model", "path", "steps", "num_samples"], key, strict=False)),
                "lower": float((lower - truth).mean()),
                "upper": float((upper - truth).mean()),
                "width": float((upper - lower).mean()),
                "lower_se": float(np.sqrt((lower_se**2).sum()) / len(group)),
                "upper_se": float(np.sqrt((upper_se**2).sum()) / len(group)),
                "truth": float(truth.mean()),
                "truth_se": float(np.sqrt((truth_se**2).mean())),
                "points": len(group),
                "inside": int(inside.sum()),
                "all_inside": bool(inside.all()),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def sandwich_verdicts(table):
    """{model: sentence} on the final (largest T, then K) sandwich of each model and path."""
    names = sides()
    texts = {}
    for (model, path), rows in table.groupby(["model", "path"], sort=False):
        final = rows.sort_values(["steps", "num_samples"]).iloc[-1]
        status = (
            "every reference lies inside it"
            if final["all_inside"]
            else f"{final['points'] - final['inside']} of {final['points']} references lie "
            "outside it"
        )
        text = (
            f"at T = {final['steps']}, K = {final['num_samples']} ({path}) the sandwich "
            f"[{names['lower']}, {names['upper']}] is {final['width']:.3g} nats wide on average (lower bound "
            f"{final['lower']:+.3g}, upper {final['upper']:+.3g} nats from the reference); "
            f"{status} (within {SANDWICH_K:g} SE of the sandwich and the reference)."
        )
        first = rows.sort_values(["steps", "num_samples"]).iloc[0]
        if first["steps"] != final["steps"]:
            text += (
                f" From T = {first['steps']} to {final['steps']} the width went from "
                f"{first['width']:.3g} to {final['width']:.3g} nats."
            )
        texts[model] = texts.get(model, "") + (" " if model in texts else "") + text
    return texts
