"""summarize / fit_slopes / verdicts on hand-made frames (no TensorFlow needed)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from estimators.summary import best_at_budgets, fit_slopes, summarize, verdicts


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
    df.attrs["compile"] = [
        {"model": "m", "method": "naive_mc", "num_samples": 4, "compile_seconds": 0.5}
    ]
    row = summarize(df).iloc[0]
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
    ).iloc[0]
    expected = 2 * 1.96 / np.sqrt(num_points * repeats)
    # The percentile width of B = 1000 replicates is itself random: a few percent; allow 15%.
    assert row["bias_ci_high"] - row["bias_ci_low"] == pytest.approx(expected, rel=0.15)


def test_truth_standard_error_widens_bias_ci():
    rng = np.random.default_rng(1)
    df = frame(rng.normal(0, 0.01, (10, 20)), np.zeros(10))
    narrow = summarize(df).iloc[0]
    wide = summarize(df.assign(truth_se=0.1)).iloc[0]
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
    slopes = fit_slopes(summarize(df)).iloc[0]
    assert slopes["variance_slope"] == pytest.approx(-1.0, abs=1e-9)
    assert slopes["bias_slope"] == pytest.approx(-1.0, abs=1e-9)
    assert (slopes["fit_min_samples"], slopes["fit_max_samples"]) == (16, 256)


def test_elbo_gets_no_bias_slope_and_exact_gets_no_variance_slope():
    elbo = sweep_like("elbo", lambda m: -0.7 - 1.0 / m, lambda m: 0.1 / np.sqrt(m))
    exact = sweep_like("posterior_is", lambda m: 0.0, lambda m: 0.0)
    slopes = fit_slopes(summarize(pd.concat([elbo, exact], ignore_index=True))).set_index("method")
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
    budgets = best_at_budgets(summary)
    winners = budgets[budgets["rank"] == 1]["method"]
    assert set(winners) == {"posterior_is"}
    assert "posterior_is wins" in verdicts(summary)["m"]


def test_summary_and_report_do_not_import_tensorflow():
    code = (
        "import sys, estimators.summary, estimators.report, estimators.results, "
        "estimators.comparison, estimators.manifests, estimators.environment, "
        "estimators.tables, estimators.cli; sys.exit('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


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

    summary = summarize(pd.DataFrame(rows))
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
    row = summarize(diagnostic_frame()).iloc[0]
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
    from estimators.summary import diagnostic_counts, diagnostic_verdicts

    counts = diagnostic_counts(diagnostic_frame()).set_index("diagnostic")
    # The five rows with a k-hat: bad (0,0) and (0,2).
    assert counts.loc[
        "khat", ["estimates", "bad", "flagged", "bad_flagged", "bad_unflagged"]
    ].tolist() == [5, 2, 3, 1, 1]
    assert counts.loc[
        "ess", ["estimates", "bad", "flagged", "bad_flagged", "bad_unflagged"]
    ].tolist() == [5, 2, 3, 2, 0]
    text = diagnostic_verdicts(diagnostic_frame())["m"]
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
    from estimators.summary import diagnostic_verdicts

    df = diagnostic_frame().assign(estimate=lambda d: d["truth"])
    assert "nothing to warn about" in diagnostic_verdicts(df)["m"]


def test_report_shows_the_diagnostics_when_there_are_khats(tmp_path):
    from estimators.report import FIGURES, KHAT_FIGURE, write_report

    df = diagnostic_frame()
    written = write_report(df, tmp_path)
    assert KHAT_FIGURE in written and (tmp_path / KHAT_FIGURE).stat().st_size > 1000
    text = (tmp_path / "report.md").read_text()
    assert "## Diagnostics against the error" in text and "could not have warned" in text
    # every standard figure and the k-hat figure, embedded
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == len(
        FIGURES
    ) + 1
    # Without k-hat values there is no such section.
    write_report(df.assign(khat=np.nan), tmp_path / "plain")
    assert not (tmp_path / "plain" / KHAT_FIGURE).exists()
    assert "Diagnostics against" not in (tmp_path / "plain" / "report.md").read_text()
