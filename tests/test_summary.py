"""summarize (one Summary: cells, slopes, verdicts, diagnostics, coverage) and the report built
from it, on hand-made frames (no TensorFlow needed)."""

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from estimators.record import CellRecord, RunConfig, RunRecord, RunStats
from estimators.summary import Summary, summarize


def record_for(df, compile_seconds=None, preset=None):
    """A complete RunRecord for a hand-made tidy table: one CellRecord per cell."""
    keys = list(dict.fromkeys(zip(df["model"], df["method"], df["num_samples"], strict=True)))
    compile_seconds = compile_seconds or {}
    cells = [
        CellRecord(
            model, method, int(m), compile_seconds.get((model, method, m), 0.0), 256, 1, True
        )
        for model, method, m in keys
    ]
    config = RunConfig(
        models=list(dict.fromkeys(df["model"])),
        methods=list(dict.fromkeys(df["method"])),
        num_samples=sorted({int(m) for m in df["num_samples"]}),
        repeats=int(df["repeat"].nunique()),
        seed=0,
        jit_compile=True,
        min_chunk=1,
        max_chunk=256,
        num_points={m: int(g["point"].nunique()) for m, g in df.groupby("model")},
        cell_fingerprints={},
        results_version=3,
        preset=preset,
    )
    return RunRecord(
        config=config,
        environment={"device": "CPU", "cpu": "test", "cpu_count": 2, "packages": {}},
        cells=cells,
        run=RunStats(wall_seconds=1.0, computed_cells=len(cells), loaded_cells=0),
        skipped=[],
        cluster=None,
        compile_modes=[],
    )


def with_record(df, **options):
    df = df.copy()
    df.attrs = record_for(df, **options).to_json()
    return df


def frame(errors, truth, model="m", method="naive_mc", num_samples=4, seconds=None, ess=None):
    """A tidy frame from errors [N points, R repeats]: estimate = truth + error."""
    errors = np.asarray(errors, float)
    n, r = errors.shape
    point, repeat = np.meshgrid(np.arange(n), np.arange(r), indexing="ij")
    seconds = np.broadcast_to(np.ones(r) if seconds is None else seconds, (n, r))
    ess = np.broadcast_to(np.ones(r) if ess is None else ess, (n, r))
    truth = np.broadcast_to(np.asarray(truth, float)[:, None], (n, r))
    return pd.DataFrame(
        {
            "model": model,
            "method": method,
            "num_samples": num_samples,
            "repeat": repeat.ravel(),
            "point": point.ravel(),
            "estimate": (truth + errors).ravel(),
            "truth": truth.ravel(),
            "truth_se": 0.0,
            "ess": ess.ravel(),
            "seconds": seconds.ravel(),
        }
    )


def test_summary_matches_hand_computation():
    # point 0 errors (-0.5, 0, 0.2), point 1 errors (-0.3, -0.1, 0.1)
    df = frame(
        [[-0.5, 0.0, 0.2], [-0.3, -0.1, 0.1]],
        truth=[-1.0, -2.0],
        seconds=[0.1, 0.1, 0.4],
        ess=[1.0, 2.0, 3.0],
    )
    df = with_record(df, compile_seconds={("m", "naive_mc", 4): 0.5})
    summary = summarize(df)
    assert isinstance(summary, Summary) and summary.record.config.repeats == 3
    row = summary.cells.iloc[0]
    assert row["bias"] == pytest.approx(-0.6 / 6)
    # per-point variances (ddof=1): 0.26 / 2 = 0.13 and 0.08 / 2 = 0.04; averaged: 0.085
    assert row["variance"] == pytest.approx(0.085)
    assert row["rmse"] == pytest.approx(np.sqrt(0.40 / 6))
    assert row["seconds"] == pytest.approx(0.2)
    assert row["samples_per_second"] == pytest.approx(4 * 2 / 0.2)
    assert row["ess"] == pytest.approx(2.0)
    assert row["compile_seconds"] == pytest.approx(0.5)
    assert (row["num_points"], row["repeats"]) == (2, 3)
    for stat in ("bias", "variance", "rmse"):
        assert row[f"{stat}_ci_low"] <= row[stat] <= row[f"{stat}_ci_high"]


def test_bootstrap_ci_width_matches_standard_error():
    """For iid N(mu, 1) errors the 95% CI of the bias is about 2 * 1.96 / sqrt(N R) wide."""
    rng = np.random.default_rng(0)
    num_points, repeats = 20, 50
    row = summarize(
        frame(rng.normal(-0.05, 1.0, (num_points, repeats)), np.zeros(num_points))
    ).cells.iloc[0]
    expected = 2 * 1.96 / np.sqrt(num_points * repeats)
    # The percentile width of B = 1000 replicates is itself random: a few percent; allow 15%.
    assert row["bias_ci_high"] - row["bias_ci_low"] == pytest.approx(expected, rel=0.15)


def test_truth_standard_error_widens_bias_ci():
    rng = np.random.default_rng(1)
    df = frame(rng.normal(0, 0.01, (10, 20)), np.zeros(10))
    narrow = summarize(df).cells.iloc[0]
    wide = summarize(df.assign(truth_se=0.1)).cells.iloc[0]
    # truth error of the mean over 10 points: 0.1 / sqrt(10) = 0.032, >> MC SE 0.01 / sqrt(200)
    width = wide["bias_ci_high"] - wide["bias_ci_low"]
    assert width == pytest.approx(2 * 1.96 * 0.1 / np.sqrt(10), rel=0.15)
    assert width > 10 * (narrow["bias_ci_high"] - narrow["bias_ci_low"])


def sweep_like(method, bias_of_m, sd_of_m, ms=(1, 4, 16, 64, 256)):
    """Frames whose errors are bias(M) + sd(M) * (-1, 0, 1) per point: exact moments."""
    parts = []
    for m in ms:
        pattern = np.array([-1.0, 0.0, 1.0])
        errors = bias_of_m(m) + sd_of_m(m) * np.tile(pattern, (4, 1))
        parts.append(frame(errors, np.zeros(4), method=method, num_samples=m))
    return pd.concat(parts, ignore_index=True)


def test_slopes_recover_exact_power_laws():
    df = sweep_like("naive_mc", lambda m: -2.0 / m, lambda m: 0.1 / np.sqrt(m))
    summary = summarize(df)
    slopes = summary.slopes.iloc[0]
    # fitted once: the cell table carries the same slopes
    assert (summary.cells["variance_slope"] == slopes["variance_slope"]).all()
    assert slopes["variance_slope"] == pytest.approx(-1.0, abs=1e-9)
    assert slopes["bias_slope"] == pytest.approx(-1.0, abs=1e-9)
    assert (slopes["fit_min_samples"], slopes["fit_max_samples"]) == (16, 256)


def test_elbo_gets_no_bias_slope_and_exact_gets_no_variance_slope():
    elbo = sweep_like("elbo", lambda m: -0.7 - 1.0 / m, lambda m: 0.1 / np.sqrt(m))
    exact = sweep_like("posterior_is", lambda m: 0.0, lambda m: 0.0)
    summary = summarize(pd.concat([elbo, exact], ignore_index=True))
    slopes = summary.slopes.set_index("method")
    assert np.isnan(slopes.loc["elbo", "bias_slope"]) and "KL" in slopes.loc["elbo", "note"]
    assert slopes.loc["elbo", "variance_slope"] == pytest.approx(-1.0, abs=1e-9)
    assert np.isnan(slopes.loc["posterior_is", "variance_slope"])
    assert "exact" in slopes.loc["posterior_is", "note"]


def test_verdict_names_the_faster_accurate_method():
    slow_good = sweep_like("posterior_is", lambda m: -0.01 / m, lambda m: 0.1 / np.sqrt(m))
    fast_bad = sweep_like("naive_mc", lambda m: -1.0 / m, lambda m: 3.0 / np.sqrt(m))
    fast_bad["seconds"] = fast_bad["num_samples"] * 1e-4
    slow_good["seconds"] = slow_good["num_samples"] * 2e-4
    summary = summarize(pd.concat([slow_good, fast_bad], ignore_index=True))
    winners = summary.best[summary.best["rank"] == 1]["method"]
    assert set(winners) == {"posterior_is"}
    assert "posterior_is wins" in summary.verdicts["m"]


def test_verdicts_use_short_labels_and_the_registry_for_the_elbo():
    """A method with options is named by its label; the ELBO's gap is found by asking the
    registry which method returns the ELBO, not by its name."""
    spec = "defensive_is:alpha=0.3"
    a = sweep_like(spec, lambda m: -0.01 / m, lambda m: 0.1 / np.sqrt(m))
    elbo = sweep_like("elbo", lambda m: -0.7, lambda m: 0.1 / np.sqrt(m))
    text = summarize(pd.concat([a, elbo], ignore_index=True)).verdicts["m"]
    assert "defensive_is:alpha=0.3" in text and "0.7 nats below log p(x)" in text


def test_summary_reports_the_references_own_error_bar():
    rows = [
        dict(
            model="m",
            method="naive_mc",
            num_samples=4,
            repeat=r,
            point=p,
            estimate=-1.0 + 0.1 * r,
            truth=-1.0,
            truth_se=se,
            ess=1.0,
            seconds=0.1,
        )
        for r in range(3)
        for p, se in enumerate([0.3, 0.4])
    ]
    from estimators.summary import summarize

    summary = summarize(pd.DataFrame(rows)).cells
    assert summary["truth_se"].iloc[0] == pytest.approx(np.sqrt((0.09 + 0.16) / 2))


# ------------------------------------------------------------------ diagnostics against the error


def diagnostic_frame():
    """Two points x three repeats at M = 100 (k-hat threshold 1 - 1/2 = 0.5, ESS cutoff 10).
    Point 0 has an exact truth (tolerance: the 0.05-nat floor), point 1 truth_se = 0.1
    (tolerance 0.3). Per row (point, repeat): error, k-hat, ESS ->  real error? k flag? ESS flag?
        (0,0) -0.5  0.9   5   bad  k    ess
        (0,1) 0.01  0.3  50   -    -    -
        (0,2) -0.2  0.4   8   bad  -    ess
        (1,0) -0.2  0.8  20   -    k    -
        (1,1) -0.4  NaN  30   bad  n/a  -
        (1,2)  0.1  0.6   9   -    k    ess
    """
    df = frame(
        [[-0.5, 0.01, -0.2], [-0.2, -0.4, 0.1]],
        truth=[-1.0, -2.0],
        method="posterior_is",
        num_samples=100,
        ess=None,
    )
    df["truth_se"] = np.where(df["point"] == 1, 0.1, 0.0)
    values = {
        (0, 0): (0.9, 5),
        (0, 1): (0.3, 50),
        (0, 2): (0.4, 8),
        (1, 0): (0.8, 20),
        (1, 1): (np.nan, 30),
        (1, 2): (0.6, 9),
    }
    df["khat"] = [values[p, r][0] for p, r in zip(df["point"], df["repeat"], strict=False)]
    df["ess"] = [float(values[p, r][1]) for p, r in zip(df["point"], df["repeat"], strict=False)]
    return df


def test_diagnostic_shares_match_hand_computation():
    row = summarize(diagnostic_frame()).cells.iloc[0]
    assert row["khat"] == pytest.approx(3.0 / 5)  # NaN skipped
    assert row["khat_threshold"] == pytest.approx(0.5)
    assert row["khat_high"] == pytest.approx(3 / 5)  # (0,0), (1,0), (1,2) of five
    assert row["bad_if_khat_high"] == pytest.approx(1 / 3)  # only (0,0) is bad
    assert row["bad_if_khat_low"] == pytest.approx(1 / 2)  # (0,1) fine, (0,2) bad
    assert row["ess_low"] == pytest.approx(3 / 6)  # (0,0), (0,2), (1,2)
    assert row["bad_if_ess_low"] == pytest.approx(2 / 3)
    assert row["bad_if_ess_high"] == pytest.approx(1 / 3)  # (1,1) bad among (0,1), (1,0), (1,1)
    assert row["bad"] == pytest.approx(3 / 6)


def test_diagnostic_verdicts_match_hand_computation():
    summary = summarize(diagnostic_frame())
    counts = summary.diagnostics.set_index("diagnostic")
    # The five rows with a k-hat: bad (0,0) and (0,2).
    assert counts.loc[
        "khat", ["estimates", "bad", "flagged", "bad_flagged", "bad_unflagged"]
    ].tolist() == [5, 2, 3, 1, 1]
    assert counts.loc[
        "ess", ["estimates", "bad", "flagged", "bad_flagged", "bad_unflagged"]
    ].tolist() == [5, 2, 3, 2, 0]
    text = summary.diagnostic_verdicts["m"]
    # k-hat caught half, and its flags were wrong less often than its silences: no warning.
    assert "k̂ above min(1 − 1/log10 M, 0.7) caught 50% of them" in text
    assert (
        "k̂ above min(1 − 1/log10 M, 0.7) caught 50% of them (flagged estimates were wrong 33% of the time, unflagged ones 50%): it could not have warned"
        in text
    )
    assert (
        "ESS/M below 0.1 caught 100% of them (flagged estimates were wrong 67% of the time, unflagged ones 0%): it could have warned a user."
        in text
    )


def test_no_real_error_is_nothing_to_warn_about():
    df = diagnostic_frame().assign(estimate=lambda d: d["truth"])
    assert "nothing to warn about" in summarize(df).diagnostic_verdicts["m"]


def embedded_figures(folder):
    return (folder / "report.html").read_text().count("data:image/png;base64,")


def test_report_shows_the_diagnostics_when_there_are_khats(tmp_path):
    from estimators.report import FIGURES, KHAT_FIGURE, write_report

    df = with_record(diagnostic_frame())
    written = write_report(df, tmp_path)
    assert KHAT_FIGURE in written and (tmp_path / KHAT_FIGURE).stat().st_size > 1000
    text = (tmp_path / "report.md").read_text()
    assert "## Diagnostics against the error" in text and "could not have warned" in text
    # every standard figure and the k-hat figure, embedded; no se column: no coverage
    assert embedded_figures(tmp_path) == len(FIGURES) + 1
    assert "Coverage of the error bars" not in text
    # Without k-hat values there is no such section.
    write_report(df.assign(khat=np.nan), tmp_path / "plain")
    assert not (tmp_path / "plain" / KHAT_FIGURE).exists()
    assert "Diagnostics against" not in (tmp_path / "plain" / "report.md").read_text()


# ------------------------------------------------------------------ coverage of the error bars

NOMINAL_Z = stats.norm.ppf(0.975)


def coverage_frame(seed, se_factor=1.0, points=200, repeats=20, ms=(32, 128), khat_high_sd=1.0):
    """Estimates truth + N(0, sd_n^2) with a reported se = se_factor x sd_n, per point n, sd_n
    spread over [0.05, 0.5]. Every other row (even repeats) gets a k-hat above the threshold;
    those rows' true sd is ``khat_high_sd`` times larger than their reported se says."""
    rng = np.random.default_rng(seed)
    parts = []
    for m in ms:
        sd = np.linspace(0.05, 0.5, points)[:, None] * np.ones((1, repeats))
        high = (np.arange(repeats) % 2 == 0)[None, :] & np.ones((points, 1), bool)
        true_sd = np.where(high, khat_high_sd * sd, sd)
        df = frame(rng.normal(0.0, true_sd), np.linspace(-30, -5, points), num_samples=m)
        df = df.sort_values(["point", "repeat"]).reset_index(drop=True)
        df["se"] = (se_factor * sd).ravel()
        df["khat"] = np.where(high, 0.9, 0.1).ravel()
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def binomial_se(p, n):
    return np.sqrt(p * (1 - p) / n)


def test_calibrated_error_bars_cover_95_percent():
    coverage = summarize(coverage_frame(0)).coverage
    assert len(coverage) == 2 and (coverage["estimates"] == 4000).all()
    for row in coverage.itertuples():
        # Within 4 binomial standard errors (0.0034 each) of 0.95, and the 95% interval has
        # about the width 2 x 1.96 x SE and contains 0.95 (checked for these fixed seeds).
        assert abs(row.coverage - 0.95) < 4 * binomial_se(0.95, row.estimates)
        width = row.coverage_ci_high - row.coverage_ci_low
        assert width == pytest.approx(2 * 1.96 * binomial_se(row.coverage, 4000), rel=0.1)
        assert row.coverage_ci_low <= 0.95 <= row.coverage_ci_high
        # se / SD: 1 on average once the small-sample factor is taken out. Per point the ratio
        # has sd ~0.19 at R = 20; over 200 points the mean's SE is ~0.014: 4 SE.
        assert row.se_ratio == pytest.approx(1.0, abs=0.055)


def test_error_bars_half_too_narrow_cover_68_percent():
    """se = sd / 2: |e| <= 1.96 se means |Z| <= 0.98, probability 0.673."""
    expected = 2 * stats.norm.cdf(NOMINAL_Z / 2) - 1
    coverage = summarize(coverage_frame(1, se_factor=0.5)).coverage
    for row in coverage.itertuples():
        assert abs(row.coverage - expected) < 4 * binomial_se(expected, row.estimates)
        assert row.coverage_ci_high < 0.9  # clearly below the nominal 0.95
        assert row.se_ratio == pytest.approx(0.5, abs=0.03)


def test_coverage_split_by_khat_shows_where_the_error_bars_fail():
    """Rows with k-hat above the threshold have errors twice their reported se (coverage
    P(|Z| <= 0.98) = 0.673); the others are calibrated (0.95)."""
    summary = summarize(coverage_frame(2, khat_high_sd=2.0))
    expected_high = 2 * stats.norm.cdf(NOMINAL_Z / 2) - 1
    for row in summary.coverage.itertuples():
        assert row.khat_low_estimates == row.khat_high_estimates == 2000
        assert abs(row.khat_low_coverage - 0.95) < 4 * binomial_se(0.95, 2000)
        assert abs(row.khat_high_coverage - expected_high) < 4 * binomial_se(expected_high, 2000)
        assert row.khat_high_ci_high < row.khat_low_ci_low
    assert "where k̂ warns, the reported error bars are too narrow" in summary.coverage_verdict
    # M = 16 has no k-hat threshold (M < 21): no split there
    small = summarize(coverage_frame(3, ms=(16,))).coverage.iloc[0]
    assert small.khat_low_estimates == small.khat_high_estimates == 0


def test_coverage_leaves_out_the_elbo_imprecise_truths_and_methods_without_se():
    df = coverage_frame(4, points=20, repeats=5, ms=(64,))
    elbo = df.assign(method="elbo")
    imprecise = df.assign(method="posterior_is", truth_se=0.5)  # above 0.2 x every se
    no_se = df.assign(method="prior_is", se=np.nan)
    summary = summarize(pd.concat([df, elbo, imprecise, no_se], ignore_index=True))
    assert list(summary.coverage["method"]) == ["naive_mc"]
    left = summary.coverage_left_out.set_index("method")
    assert list(left.index) == ["elbo", "posterior_is", "prior_is"]
    assert "ELBO" in left.loc["elbo", "reason"] and left.loc["elbo", "num_samples"] == "64"
    assert "SE exceeds" in left.loc["posterior_is", "reason"]
    assert "no standard error" in left.loc["prior_is", "reason"]


def test_an_exact_method_with_zero_se_covers_its_round_off():
    df = frame(np.full((3, 4), 1e-7), np.zeros(3), method="posterior_is", num_samples=64)
    row = summarize(df.assign(se=0.0)).coverage.iloc[0]
    assert row.coverage == 1.0 and np.isnan(row.se_ratio)  # no spread: no ratio


def test_report_shows_coverage_and_estimates_with_their_se(tmp_path):
    from estimators.report import COVERAGE_FIGURE, FIGURES, write_report

    df = with_record(coverage_frame(5, points=30, repeats=6), preset="unit")
    written = write_report(df, tmp_path)
    assert COVERAGE_FIGURE in written and written[COVERAGE_FIGURE].stat().st_size > 1000
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# Estimator comparison: unit")
    assert "## Coverage of the error bars" in markdown and "Clopper" in markdown
    assert "| coverage [95% CI] |" in markdown and "own SE" in markdown
    # k-hat figure and coverage figure besides the standard ones, all embedded
    assert embedded_figures(tmp_path) == len(FIGURES) + 2
    csv = pd.read_csv(tmp_path / "summary.csv")
    assert {"bias_slope", "variance_slope", "se", "khat_high"} <= set(csv)


def test_sandwich_pairs_the_registrys_two_sides_and_the_report_shows_them_with_se(tmp_path):
    """Lower-side cells 0.2 below the truth, upper-side cells 0.1 above, on one path (T = 10 and
    20): the registry's sandwich sides are paired, each bound shown as mean ± SE."""
    from estimators import methods as registry
    from estimators.report import SANDWICH_FIGURE, write_report

    lower, upper = (
        next(m.name for m in registry.REGISTRY.values() if m.sandwich_side == side)
        for side in ("lower", "upper")
    )
    rng = np.random.default_rng(0)
    parts = []
    for steps in (10, 20):
        for name, shift in ((lower, -0.2), (upper, 0.1)):
            errors = shift * 10 / steps + rng.normal(0, 0.01, (5, 4))
            parts.append(frame(errors, np.zeros(5), method=f"{name}:steps={steps}", num_samples=8))
    summary = summarize(pd.concat(parts, ignore_index=True))
    table = summary.sandwich.set_index("steps")
    assert list(table.index) == [10, 20] and (table["all_inside"]).all()
    assert table.loc[10, "lower"] == pytest.approx(-0.2, abs=0.02)
    assert table.loc[20, "width"] == pytest.approx(0.15, abs=0.02)
    assert f"[{lower}, {upper}]" in summary.sandwich_verdicts["m"]
    written = write_report(with_record(pd.concat(parts, ignore_index=True)), tmp_path)
    assert SANDWICH_FIGURE in written
    markdown = (tmp_path / "report.md").read_text()
    assert f"| {lower} − ref | {upper} − ref |" in markdown
    # each bound as mean ± SE; the exact reference without "± 0"
    assert re.search(
        r"\| m \| default path \| 20 \| 8 \| -0\.\d+ ± 0\.\d+ \| \+0\.\d+ ± ", markdown
    )
    assert "| 0 | 5/5 |" in markdown
    # the field's table lines up the lower bounds at each AIS cell's seconds; upper bounds stay out
    field = markdown.split("## The field's table")[1].split("\n## ")[0]
    assert f"{lower}:steps=20" in field and upper not in field
