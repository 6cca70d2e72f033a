"""The field's table (estimators.summary.field): mean log p^ per cell with its Monte Carlo SE,
each method's best estimate within the seconds of each AIS cell, and the paired IWAE - AIS gap,
checked against direct NumPy computations on a synthetic results table."""

import numpy as np
import pandas as pd
import pytest

from estimators import methods as registry
from estimators.summary.field import ais_gaps, budget_verdicts, equal_seconds, mean_estimates

IWAE = registry.method_with(baseline_role="posterior")
ELBO = registry.method_with(returns="ELBO")
AIS = registry.method_with(sandwich_side="lower")
POINTS, REPEATS = 5, 4
# method spec -> (M values, offset of its estimates, seconds per repeat per sample)
CELLS = {
    IWAE: ([16, 4096], -1.0, 1e-4),
    f"{AIS}:steps=100": ([16], -0.5, 1e-2),
    f"{AIS}:steps=1000": ([16], -0.2, 1e-1),
    ELBO: ([1, 64], -5.0, 1e-5),
}


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    rows = []
    for method, (budgets, offset, cost) in CELLS.items():
        for m in budgets:
            noise = rng.normal(scale=0.1 + 0.05 * np.arange(POINTS), size=(REPEATS, POINTS))
            for r in range(REPEATS):
                for p in range(POINTS):
                    rows.append(
                        dict(
                            model="m",
                            method=method,
                            num_samples=m,
                            repeat=r,
                            point=p,
                            estimate=-90.0 + 3 * p + offset + noise[r, p],
                            seconds=cost * m * POINTS,
                        )
                    )
    return pd.DataFrame(rows)


def _grid(df, method, m):
    cell = df[(df["method"] == method) & (df["num_samples"] == m)]
    return cell.pivot(index="repeat", columns="point", values="estimate").to_numpy()


def test_mean_estimates_match_numpy(table):
    estimates = mean_estimates(table)
    assert len(estimates) == 6
    for _, row in estimates.iterrows():
        grid = _grid(table, row["method"], row["num_samples"])  # [R, N]
        assert row["estimate"] == pytest.approx(grid.mean())
        expected_se = np.sqrt(np.sum(grid.var(axis=0, ddof=1) / REPEATS)) / POINTS
        assert row["estimate_se"] == pytest.approx(expected_se)
        m, cost = row["num_samples"], CELLS[row["method"]][2]
        assert row["seconds"] == pytest.approx(cost * m)  # per point


def test_equal_seconds_takes_each_methods_best_cell_within_each_ais_budget(table):
    estimates = mean_estimates(table)
    equal = equal_seconds(estimates)
    budgets = sorted(estimates.loc[estimates["method"].str.startswith(AIS), "seconds"])
    budgets = sorted({*budgets, estimates["seconds"].max()})  # and the slowest cell's
    assert sorted(equal["budget_seconds"].unique()) == pytest.approx(budgets)
    for budget, rows in equal.groupby("budget_seconds"):
        for _, row in rows.iterrows():
            mine = estimates[
                (estimates["method"] == row["method"]) & (estimates["seconds"] <= budget * 1.000001)
            ]
            assert row["estimate"] == pytest.approx(mine["estimate"].max())
    # IWAE at M = 4096 costs 0.41 s per point: within the T = 1000 budget only.
    small = equal[equal["budget_seconds"] == min(budgets)]
    assert small.loc[small["method"] == IWAE, "num_samples"].item() == 16
    verdict = budget_verdicts(equal)["m"]
    assert "ais:steps=1000" in verdict.split(";")[-1]


def test_ais_gaps_are_paired_by_point(table):
    estimates = mean_estimates(table)
    gaps = ais_gaps(table, estimates).set_index("bound")
    iwae, ais = _grid(table, IWAE, 4096), _grid(table, f"{AIS}:steps=1000", 16)
    diff = iwae.mean(0) - ais.mean(0)
    assert gaps.loc["IWAE", "gap"] == pytest.approx(diff.mean())
    se = np.sqrt(np.sum(iwae.var(0, ddof=1) / REPEATS + ais.var(0, ddof=1) / REPEATS)) / POINTS
    assert gaps.loc["IWAE", "gap_se"] == pytest.approx(se)
    assert gaps.loc["IWAE", "num_samples"] == 4096
    assert gaps.loc["ELBO", "num_samples"] == 64
    # the offsets were -1.0 (IWAE) and -0.2 (AIS): the gap is -0.8 within a few SE
    assert abs(gaps.loc["IWAE", "gap"] + 0.8) < 4 * se


def test_no_ais_no_field_table(table):
    estimates = mean_estimates(table[~table["method"].str.startswith(AIS)])
    assert equal_seconds(estimates).empty
    assert ais_gaps(table, estimates).empty


def test_upper_bounds_stay_out_of_the_equal_seconds_table(table):
    upper = registry.method_with(sandwich_side="upper")
    extra = table[table["method"] == f"{registry.method_with(sandwich_side='lower')}:steps=100"]
    extra = extra.assign(method=f"{upper}:steps=100", estimate=extra["estimate"] + 10)
    equal = equal_seconds(mean_estimates(pd.concat([table, extra])))
    assert not equal["method"].str.startswith(upper).any()
