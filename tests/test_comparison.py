"""compare(): false alarms at the stated rate on runs of the same code, planted regressions caught.

Runs are simulated as tidy tables whose estimates behave like importance sampling's: the error of
log p^ is log of the mean of M log-normal weights with E[w] = 1 (biased low, skewed, variance
~ (e^{s^2} - 1) / M), with a spread s that differs between points. Timings are one number per
cell with log-normal noise per cell and per pair and a shift of the whole run.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_summary import with_record
from typer.testing import CliRunner

from estimators.cli import app
from estimators.comparison import compare, document, render, timing_p_values
from estimators.report.document import Bullets, Table
from estimators.results import ResultsError, save_results

MODELS = ("a", "b", "c", "d")
METHODS = ("m1", "m2", "m3")
NUM_SAMPLES = (1, 4, 16)


def simulated_run(
    seed,
    *,
    points=8,
    repeats=4,
    models=MODELS,
    methods=METHODS,
    num_samples=NUM_SAMPLES,
    error_scale=None,
    log_m_dropped=(),
    slower=None,
    spreads=(0.5, 2.0),
    run_shift=0.3,
    pair_noise=0.1,
    cell_noise=0.1,
):
    """A tidy results table. ``error_scale``: {method: factor} multiplying the errors;
    ``log_m_dropped``: methods whose estimates lack the - log M; ``slower``: {method: factor};
    ``spreads``: the range of the log weights' sd over the points."""
    rng = np.random.default_rng(seed)
    spread = np.linspace(*spreads, points)[:, None, None]
    truth = np.linspace(-30.0, -5.0, points)
    shift = rng.normal(0, run_shift)
    point, repeat = (
        a.ravel() for a in np.meshgrid(np.arange(points), np.arange(repeats), indexing="ij")
    )
    columns = {k: [] for k in ("model", "method", "num_samples", "estimate", "seconds")}
    for model in models:
        for method in methods:
            pair_shift = rng.normal(0, pair_noise)
            for m in num_samples:
                log_w = spread * rng.standard_normal((points, repeats, m)) - spread**2 / 2
                error = np.log(np.mean(np.exp(log_w), axis=-1)).ravel()  # [points x repeats]
                error = error * (error_scale or {}).get(method, 1.0)
                if method in log_m_dropped:
                    error = error + np.log(m)
                seconds = (
                    1e-3 * (1 + m / 4) * np.exp(shift + pair_shift + rng.normal(0, cell_noise))
                )
                for name, value in (
                    ("model", model),
                    ("method", method),
                    ("num_samples", m),
                    ("seconds", seconds * (slower or {}).get(method, 1.0)),
                ):
                    columns[name].append(np.full(error.size, value))
                columns["estimate"].append(truth[point] + error)
    cells = len(columns["estimate"])
    return pd.DataFrame(
        {
            **{k: np.concatenate(v) for k, v in columns.items()},
            "repeat": np.tile(repeat, cells),
            "point": np.tile(point, cells),
            "truth": np.tile(truth[point], cells),
            "truth_se": 0.0,
            "ess": 1.0,
        }
    )


def binomial_bound(n, rate, quantile=0.999):
    """The count of flags in n comparisons that a test with false-alarm rate ``rate`` stays at or
    below with probability ``quantile``."""
    return int(stats.binom.ppf(quantile, n, rate))


# --------------------------------------------------------------------------- false alarms

NULL_COMPARISONS = 150


def test_same_code_false_alarm_rate_of_the_accuracy_test():
    """Stated rate: alpha = 0.1 per comparison (all pairs together). With threshold 1 only the
    permutation test decides, the strictest case. 150 pairs of same-code runs (4 pairs of
    (model, method) x 3 M each): a correct test flags at most 27 of them with probability 0.999
    (mean 15); a test whose real rate were 2.5 x alpha (mean 37.5) would flag at most 27 with
    probability 0.04, so this sample size tells the two apart. The same runs at the defaults
    (threshold 1.5, alpha 0.01): the old rule (ratio above 1.5 alone) fires often; the new one at
    most binomial(150, 0.01)'s 0.999 quantile (6) times."""
    alpha = 0.1
    flags = default_flags = above_threshold = 0
    for i in range(NULL_COMPARISONS):
        old = simulated_run(2 * i, models=("a", "b"), methods=("m1", "m2"))
        new = simulated_run(2 * i + 1, models=("a", "b"), methods=("m1", "m2"))
        result = compare(old, new, "rmse", threshold=1.0, alpha=alpha, seed=i)
        flags += not result.regressions.empty
        default = compare(old, new, "variance", seed=i)
        default_flags += not default.regressions.empty
        above_threshold += bool((default.pairs["ratio"] > 1.5).any())
    assert flags <= binomial_bound(NULL_COMPARISONS, alpha)
    assert default_flags <= binomial_bound(NULL_COMPARISONS, 0.01)
    assert above_threshold > 3 * binomial_bound(NULL_COMPARISONS, 0.01)  # noise often > 1.5x


def test_same_code_false_alarm_rate_of_the_timing_test():
    """Stated rate: alpha = 0.05 per comparison, the p-values alone deciding (threshold 1).
    12 pairs per comparison, each pair's mean log time ratio the sum of a pair effect and the
    mean of 3 cell effects (sd 0.1 each, and 0.3 each for a busy machine). 2000 comparisons
    each: a correct test flags at most 131 with probability 0.999 (mean 100); a rate of
    1.5 x alpha (mean 150) stays at or below 131 with probability 0.06."""
    rng = np.random.default_rng(0)
    for noise in (0.1, 0.3):
        flags = 0
        for _ in range(2000):
            log_ratios = rng.normal(0, noise, 12) + rng.normal(0, noise, (12, 3)).mean(axis=1)
            flags += min(timing_p_values(log_ratios, 0.05 / 12)) <= 0.05 / 12
        assert flags <= binomial_bound(2000, 0.05), noise


# --------------------------------------------------------------------------- planted regressions


def test_a_dropped_log_m_is_flagged():
    """log M = 1.4 and 2.8 nats at M = 4 and 16, against biases of 0.1 nats or less."""
    old = simulated_run(0, spreads=(0.2, 0.6))
    new = simulated_run(1, spreads=(0.2, 0.6), log_m_dropped=("m2",))
    for metric in ("abs_bias", "rmse"):
        result = compare(old, new, metric)
        assert set(result.regressions["method"]) == {"m2"}, result.pairs
        assert len(result.regressions) == len(MODELS)
        assert (result.regressions["p_value"] <= result.pair_alpha).all()


def test_a_doubled_error_is_flagged_and_nothing_else():
    old, new = simulated_run(0), simulated_run(1, error_scale={"m3": 2.0})
    result = compare(old, new, "rmse")
    assert set(zip(result.regressions["model"], result.regressions["method"], strict=True)) == {
        (model, "m3") for model in MODELS
    }
    ratios = result.pairs.set_index("method").loc["m3", "ratio"]
    assert ((ratios > 1.5) & (ratios < 3.0)).all()  # 2, within the noise of 8 x 4 estimates


def test_a_2x_slowdown_of_one_method_is_flagged_a_shared_one_is_reported():
    """On a quiet machine (5% noise per cell and pair), a method twice as slow on every model is
    flagged; with 10% noise the chance is ~0.4 for one method on 4 of 12 pairs, ~0.85 for a
    single pair (simulated): timings need more pairs or quieter runs than accuracy does."""
    quiet = dict(pair_noise=0.05, cell_noise=0.05)
    old = simulated_run(0, **quiet)
    result = compare(old, simulated_run(1, slower={"m1": 2.0}, **quiet), "seconds")
    assert set(result.regressions["method"]) == {"m1"}
    everything = compare(old, simulated_run(1, slower=dict.fromkeys(METHODS, 2.0)), "seconds")
    assert everything.regressions.empty
    assert 1.4 < everything.time_shift < 2.9  # 2x and the run's own shift (sd 0.3 in log)
    assert any("not tested" in line for line in render(everything, "plain").splitlines())


def test_identical_runs_and_round_off_are_never_flagged():
    run = simulated_run(3)
    assert compare(run, run, "rmse", threshold=1.0).regressions.empty
    exact = run.assign(estimate=run["truth"] + 1e-8)
    result = compare(exact, exact.assign(estimate=exact["truth"] + 3e-8), "abs_bias")
    assert result.regressions.empty and (result.pairs["cells"] == 0).all()


def test_bad_arguments_and_mismatched_runs():
    run = simulated_run(0)
    with pytest.raises(ValueError, match="unknown metric"):
        compare(run, run, "nope")
    with pytest.raises(ValueError, match="alpha"):
        compare(run, run, alpha=1.5)
    with pytest.raises(ResultsError, match="share no"):
        compare(run, run.assign(model="other"))
    with pytest.raises(ResultsError, match="data points"):
        compare(run, run[run["point"] < 4])


# --------------------------------------------------------------------------- output


def test_every_format_carries_full_names():
    old, new = (
        simulated_run(0, models=("a_rather_long_model_name",)),
        simulated_run(1, models=("a_rather_long_model_name",), error_scale={"m1": 3.0}),
    )
    result = compare(old, new)
    plain = render(result, "plain", "old -> new")
    assert "a_rather_long_model_name" in plain and "…" not in plain and "REGRESSION" in plain
    assert "| a_rather_long_model_name |" in render(result, "markdown")
    csv = pd.read_csv(__import__("io").StringIO(render(result, "csv")))
    assert len(csv) == len(METHODS) * len(NUM_SAMPLES) and csv["regression"].any()
    data = json.loads(render(result, "json"))
    assert data["regressions"] == ["a_rather_long_model_name/m1"]
    assert {p["method"] for p in data["pairs"]} == set(METHODS)


def test_markdown_and_html_are_the_reports_renderers_of_one_document():
    result = compare(simulated_run(0), simulated_run(1, error_scale={"m1": 3.0}))
    (section,) = document(result, "old -> new").sections
    assert section.heading == "old -> new" and section.level == 3
    tables, bullets = section.blocks[:2], section.blocks[2]
    assert all(isinstance(t, Table) for t in tables) and isinstance(bullets, Bullets)
    assert any(line.startswith("REGRESSION") for line in bullets.lines)
    markdown = render(result, "markdown", "old -> new")
    assert markdown.startswith("### old -> new") and "- REGRESSION" in markdown
    page = render(result, "html", "old -> new")
    assert page.startswith("<!DOCTYPE html>") and "<h3>old -&gt; new</h3>" in page
    assert "REGRESSION" in page and page.count("<table") == 2


@pytest.fixture
def two_runs(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    save_results(with_record(simulated_run(0)), old)
    save_results(with_record(simulated_run(1, error_scale={"m2": 3.0})), new)
    return old, new


def test_cli_compare_piped_is_plain_text(two_runs):
    """Without a terminal (CI logs, pipes) every name and number is printed in full."""
    old, new = two_runs
    code = (
        "import sys; from estimators.cli import main; "
        f"sys.argv = ['estimators', 'compare', {str(old)!r}, {str(new)!r}]; main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"COLUMNS": "80", "PATH": ""},
    ).stdout
    assert "…" not in out and "variance ratio" in out and "REGRESSION a/m2" in out
    assert max(map(len, out.splitlines())) > 80  # not cut to the 80 columns of a CI log


@pytest.mark.parametrize(
    "fmt, check",
    [
        ("json", lambda out: json.loads(out)["metric"] == "rmse"),
        ("csv", lambda out: out.startswith("model,method,num_samples,")),
        ("markdown", lambda out: "| model | method |" in out),
        ("html", lambda out: "<table" in out and "REGRESSION" in out),
    ],
)
def test_cli_compare_formats(two_runs, fmt, check):
    old, new = two_runs
    result = CliRunner().invoke(
        app, ["compare", str(old), str(new), "--format", fmt, "--fail-on-regression"]
    )
    assert result.exit_code == 1 and check(result.stdout), result.output
    bad = CliRunner().invoke(app, ["compare", str(old), str(new), "--format", "xml"])
    assert bad.exit_code == 2 and "unknown format" in bad.output


def test_compare_loads_neither_tensorflow_nor_matplotlib():
    """compare renders with the report's document types and renderers, not its figures."""
    code = (
        "import sys, estimators.comparison; "
        "sys.exit('tensorflow' in sys.modules or 'matplotlib' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
