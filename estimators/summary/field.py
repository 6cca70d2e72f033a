"""The field's table: log p(x) by each estimator at equal seconds, without trusting a reference.

The papers that compare estimators of a decoder's log p(x) (Burda et al. 2016; Wu et al. 2017)
report each estimator's *average log p̂ over test points*, not an error against a truth they do
not have. Every estimator here is a lower bound on log p(x) in expectation (the ELBO exactly;
importance sampling, AIS and SMC because E[p̂] = p(x) and log is concave), so of two estimates
the higher is the nearer, and the gap between two is a lower bound on the error of the lower.

Per cell (model, method, M), over N points and R repeats:

    estimate    = mean_n mean_r log p̂_nr                  (the table's number)
    estimate_se = sqrt(sum_n Var_r(log p̂_n.) / R) / N    (Monte Carlo error only: the points
                  are the same for every method, so their spread is not part of a comparison)
    seconds     = mean_r seconds_r / N                    (per point)

``equal_seconds`` lines the lower bounds up at time budgets (the seconds per point of each cell
of the reference method, AIS, and of the slowest cell): each method's highest estimate among its
cells within the budget.
``ais_gaps`` gives, per point and then averaged, the largest-budget IWAE (posterior-IS) minus
the largest-budget AIS: negative when AIS is the tighter bound, as the field reports.
Pure pandas (no TensorFlow); method roles are asked of the registry.
"""

import numpy as np
import pandas as pd

from estimators import methods as registry

ESTIMATE_COLUMNS = ["model", "method", "num_samples", "seconds", "estimate", "estimate_se"]
CELL_KEYS = ["model", "method", "num_samples"]


def _point_means(df: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, point): the mean over repeats, its variance over repeats and R."""
    grouped = df.groupby([*CELL_KEYS, "point"], sort=False)["estimate"]
    return grouped.agg(mean="mean", var="var", repeats="count").reset_index()


def mean_estimates(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: ``ESTIMATE_COLUMNS`` (see the module docstring)."""
    points = _point_means(df)
    points["mc_var"] = points["var"].fillna(0.0) / points["repeats"]
    per_cell = points.groupby(CELL_KEYS, sort=False).agg(
        estimate=("mean", "mean"), mc_var=("mc_var", "sum"), n=("point", "count")
    )
    per_cell["estimate_se"] = np.sqrt(per_cell["mc_var"]) / per_cell["n"]
    seconds = df.groupby([*CELL_KEYS, "repeat"], sort=False)["seconds"].first()
    seconds = seconds.groupby(CELL_KEYS, sort=False).mean()
    per_cell["seconds"] = seconds / per_cell["n"]
    return per_cell.reset_index()[ESTIMATE_COLUMNS]


def _role_methods(estimates, **fields):
    """The method specs in ``estimates`` whose registry entry has ``fields``."""
    keep = []
    for method in dict.fromkeys(estimates["method"]):
        entry = registry.parse(method).method
        if all(getattr(entry, k) == v for k, v in fields.items()):
            keep.append(method)
    return keep


def lower_bounds(estimates: pd.DataFrame) -> pd.DataFrame:
    """The cells of methods that bound log p(x) from below (always or in expectation): the ones
    for which the higher estimate is the nearer. Upper bounds (reverse AIS) and methods with no
    bound (the peers) are left out."""
    lower = (registry.LOWER, registry.STOCHASTIC_LOWER)
    keep = [
        m for m in dict.fromkeys(estimates["method"]) if registry.parse(m).method.bound in lower
    ]
    return estimates[estimates["method"].isin(keep)]


def equal_seconds(estimates: pd.DataFrame) -> pd.DataFrame:
    """Per model and budget (the seconds per point of each cell of the lower side of the
    sandwich, AIS, and of the slowest cell): each lower bound's highest estimate within the
    budget, its M, seconds and SE. Empty for a model without AIS cells."""
    estimates = lower_bounds(estimates)
    ais = set(_role_methods(estimates, sandwich_side="lower"))
    rows = []
    for model, cells in estimates.groupby("model", sort=False):
        budgets = list(cells.loc[cells["method"].isin(ais), "seconds"])
        if not budgets:
            continue
        budgets = sorted({*budgets, cells["seconds"].max()})  # and every cell's budget
        for budget in budgets:
            within = cells[cells["seconds"] <= budget * (1 + 1e-9)]
            for _, mine in within.groupby("method", sort=False):
                best = mine.loc[mine["estimate"].idxmax()]
                rows.append({"model": model, "budget_seconds": budget, **best.drop("model")})
    columns = ["model", "budget_seconds", *ESTIMATE_COLUMNS[1:]]
    return pd.DataFrame(rows, columns=columns)


def ais_gaps(df: pd.DataFrame, estimates: pd.DataFrame) -> pd.DataFrame:
    """Per model: IWAE (posterior-IS at its largest M) minus AIS (its slowest cell), paired by
    point: gap = mean_n (iwae_n - ais_n) with its Monte Carlo SE; also the ELBO's gap to AIS
    where the run has the ELBO. Empty for models without both."""
    iwae = set(_role_methods(estimates, baseline_role="posterior"))
    ais = set(_role_methods(estimates, sandwich_side="lower"))
    elbo = set(_role_methods(estimates, returns_elbo=True))
    points = _point_means(df)
    rows = []
    for model, cells in estimates.groupby("model", sort=False):
        anchor = _largest(cells, ais, "seconds")
        if anchor is None:
            continue
        for label, methods in (("IWAE", iwae), ("ELBO", elbo)):
            other = _largest(cells, methods, "num_samples")
            if other is not None:
                rows.append({"model": model, "bound": label, **_paired_gap(points, other, anchor)})
    columns = ["model", "bound", "method", "num_samples", "ais", "ais_num_samples", "gap", "gap_se"]
    return pd.DataFrame(rows, columns=columns)


def _largest(cells, methods, by):
    mine = cells[cells["method"].isin(methods)]
    return None if mine.empty else mine.loc[mine[by].idxmax()]


def _paired_gap(points, other, anchor):
    def at(cell):
        mask = (
            (points["model"] == cell["model"])
            & (points["method"] == cell["method"])
            & (points["num_samples"] == cell["num_samples"])
        )
        return points[mask].set_index("point")

    a, b = at(other), at(anchor)
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    diff = a["mean"] - b["mean"]
    mc_var = a["var"].fillna(0) / a["repeats"] + b["var"].fillna(0) / b["repeats"]
    return dict(
        method=other["method"],
        num_samples=int(other["num_samples"]),
        ais=anchor["method"],
        ais_num_samples=int(anchor["num_samples"]),
        gap=float(diff.mean()),
        gap_se=float(np.sqrt(mc_var.sum()) / len(common)),
    )


def budget_verdicts(equal: pd.DataFrame) -> dict[str, str]:
    """{model: which estimator to run for each time budget}: the method with the highest mean
    log p̂ within each budget of ``equal_seconds``, and by how much it beats the runner-up
    ("level with" it when the lead is within 2 combined Monte Carlo SEs)."""
    texts = {}
    for model, rows in equal.groupby("model", sort=False):
        parts = []
        for budget, mine in rows.groupby("budget_seconds", sort=True):
            ranked = mine.sort_values("estimate", ascending=False)
            best = ranked.iloc[0]
            text = (
                f"within {budget:.3g} s per point, {registry.label(best['method'])} "
                f"(M = {best['num_samples']}: {best['estimate']:.2f})"
            )
            if len(ranked) > 1:
                second = ranked.iloc[1]
                lead = best["estimate"] - second["estimate"]
                se = float(np.hypot(best["estimate_se"], second["estimate_se"]))
                other = registry.label(second["method"])
                text += (
                    f", {lead:.2f} ± {se:.2f} nats above {other}"
                    if lead > 2 * se
                    else f", level with {other} ({lead:+.2f} ± {se:.2f} nats)"
                )
            parts.append(text)
        texts[model] = "; ".join(parts) + "."
    return texts
