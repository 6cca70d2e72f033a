"""Who wins at which time budget, and by how much: the best RMSE within a budget, and a verdict
per model in words (with method labels: the non-default options only)."""

import numpy as np
import pandas as pd

from estimators import methods as registry
from estimators.summary.cells import method_of
from estimators.summary.slopes import ROUNDOFF_BIAS

EXACT_RMSE = 1e-5
BEST_COLUMNS = ["model", "budget_seconds", "method", "rmse", "rank"]


def best_at_budgets(cells: pd.DataFrame, num_budgets=3) -> pd.DataFrame:
    """Per model, at log-spaced time budgets: each method's best RMSE within the budget.

    A method's RMSE at budget t is the smallest RMSE among its cells with seconds <= t. Budgets
    run from the first time at which every method has a cell to the slowest cell.
    Returns one row per (model, budget, method), ``rank`` 1 = best.
    """
    rows = []
    for model, group in cells.groupby("model", sort=False):
        fastest = group.groupby("method", sort=False)["seconds"].min()
        low, high = fastest.max(), group["seconds"].max()
        budgets = np.geomspace(low, high, num_budgets) if high > low else [high]
        for budget in budgets:
            within = group[group["seconds"] <= budget * (1 + 1e-9)]
            best = within.groupby("method", sort=False)["rmse"].min().sort_values()
            rows += [
                {
                    "model": model,
                    "budget_seconds": budget,
                    "method": method,
                    "rmse": rmse,
                    "rank": rank,
                }
                for rank, (method, rmse) in enumerate(best.items(), start=1)
            ]
    return pd.DataFrame(rows, columns=BEST_COLUMNS)


def verdicts(cells: pd.DataFrame, best: pd.DataFrame) -> dict[str, str]:
    """{model: a short paragraph}: who wins at which time budget and by how much; the ELBO gap.
    ``best``: ``best_at_budgets(cells)``."""
    best = best.assign(method=best["method"].map(registry.label))
    order = list(dict.fromkeys(cells["method"].map(registry.label)))
    texts = {}
    for model, ranks in best.groupby("model", sort=False):
        budgets = [
            (budget, ranking.sort_values("rank"))
            for budget, ranking in ranks.groupby("budget_seconds", sort=True)
        ]
        exact = {
            tuple(sorted(r.loc[r["rmse"] <= EXACT_RMSE, "method"], key=order.index))
            for _, r in budgets
        }
        if len(exact) == 1 and exact != {()}:
            text = _exact_verdict(next(iter(exact)), budgets)
        else:
            text = " ".join(
                _budget_sentence(low, high, ranking)
                for low, high, ranking in _collapse_budgets(budgets)
            )
        texts[model] = text + _elbo_sentence(cells[cells["model"] == model])
    return texts


def _elbo_sentence(cells):
    """The KL gap of a method that returns the ELBO, at its largest M ('' when there is none)."""
    elbo = cells[[method_of(m).returns_elbo for m in cells["method"]]]
    if elbo.empty:
        return ""
    gap = elbo.sort_values("num_samples")["bias"].iloc[-1]
    if abs(gap) <= ROUNDOFF_BIAS:
        return ""
    return (
        f" The ELBO stays {abs(gap):.3g} nats below log p(x) at the largest M: its KL gap, "
        "which more samples do not close."
    )


def _exact_verdict(exact, budgets):
    """Some methods are exact at every budget: say so once, then rank the others."""
    verb = "is" if len(exact) == 1 else "are"
    text = f"{' and '.join(exact)} {verb} exact (RMSE at round-off) at every time budget."
    others = [(budget, ranking[~ranking["method"].isin(exact)]) for budget, ranking in budgets]
    parts = [
        f"within {format_seconds(budget)} per repeat {rest['method'].iloc[0]} "
        f"(RMSE {rest['rmse'].iloc[0]:.3g} nats)"
        for budget, rest in others
        if len(rest)
    ]
    return text + (" Best of the others: " + "; ".join(parts) + "." if parts else "")


def _collapse_budgets(budgets):
    """Merge consecutive budgets whose two best (method, RMSE) agree: [(low, high, ranking)]."""
    merged = []
    for budget, ranking in budgets:
        top = ranking[["method", "rmse"]].head(2).to_numpy().tolist()
        if merged and merged[-1][3] == top:
            merged[-1][1] = budget
        else:
            merged.append([budget, budget, ranking, top])
    return [(low, high, ranking) for low, high, ranking, _ in merged]


def _budget_sentence(low, high, ranking):
    """'Within 1.2 ms per repeat: A wins (RMSE 0.1 nats vs 0.5 for B, 5x smaller).'"""
    head = (
        f"Within {format_seconds(high)} per repeat"
        if low == high
        else f"At every budget from {format_seconds(low)} to {format_seconds(high)} per repeat"
    )
    winner, rmse = ranking["method"].iloc[0], ranking["rmse"].iloc[0]
    if len(ranking) == 1:
        return f"{head}: {winner} (RMSE {rmse:.3g} nats)."
    runner_up, runner_rmse = ranking["method"].iloc[1], ranking["rmse"].iloc[1]
    if rmse <= EXACT_RMSE:
        return (
            f"{head}: {winner} is exact (RMSE at round-off; {runner_up}: {runner_rmse:.3g} nats)."
        )
    return (
        f"{head}: {winner} wins (RMSE {rmse:.3g} nats vs {runner_rmse:.3g} for "
        f"{runner_up}, {runner_rmse / rmse:.3g}x smaller)."
    )


def format_seconds(seconds):
    """0.00123 -> '1.23 ms'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
