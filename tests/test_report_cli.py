"""The command line and the report folder: a --quick run end to end, report, compare, errors."""

import os
import re
import shutil
import subprocess
import sys
from html import escape

import pandas as pd
import pytest
from typer.testing import CliRunner

from estimators.cli import app
from estimators.report import FIGURES
from estimators.results import load_results, save_results

runner = CliRunner()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "report"
    result = runner.invoke(app, ["run", "--quick", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_quick_run_writes_every_report_file(quick_run):
    out, output = quick_run
    for name in ["results.parquet", "summary.csv", "report.md", "report.html", *FIGURES]:
        assert (out / name).stat().st_size > 0, name
    figures = sorted(out.glob("*.png"))
    assert set(FIGURES) <= {f.name for f in figures}
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)  # self-contained
    markdown = (out / "report.md").read_text()
    # One document, two renderers: every markdown heading is an HTML heading too.
    headings = [line.lstrip("#").strip() for line in markdown.splitlines() if line[:2] == "##"]
    assert len(headings) >= 8
    for heading in headings:
        assert re.search(rf"<h[23]>{re.escape(escape(heading))}</h[23]>", html), heading
    for model in ("gmm", "linear_gaussian", "infinite_mixture"):
        assert f"**{model}**" in markdown and model in output
    assert "## Verdicts" in markdown and ("XLA" in markdown or "graph" in markdown)
    summary = pd.read_csv(out / "summary.csv")
    assert {
        "bias",
        "bias_ci_low",
        "bias_ci_high",
        "variance",
        "rmse",
        "ess",
        "seconds",
        "samples_per_second",
        "compile_seconds",
        "bias_slope",
        "variance_slope",
        "se",
    } <= set(summary)
    assert len(summary) == 3 * 4 * 3  # models x methods x M (quick: 1, 4, 16)
    assert load_results(out).attrs["config"]["quick"] is True


def test_rerun_resumes_and_refuses_another_config(quick_run):
    out, _ = quick_run
    again = runner.invoke(app, ["run", "--quick", "--quiet", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert load_results(out).attrs["run"]["computed_cells"] == 0
    other = runner.invoke(app, ["run", "--quick", "--quiet", "--seed", "1", "--out", str(out)])
    assert other.exit_code == 1
    assert "different configuration" in other.output and "Traceback" not in other.output


def test_compare_flags_a_planted_regression(quick_run, tmp_path):
    out, _ = quick_run
    worse = load_results(out)
    naive = worse["method"] == "naive_mc"
    error = worse["estimate"] - worse["truth"]
    worse.loc[naive, "estimate"] = worse.loc[naive, "truth"] + 3 * error[naive]  # RMSE x 3
    save_results(worse, tmp_path)
    result = runner.invoke(
        app, ["compare", str(out), str(tmp_path), "--metric", "rmse", "--fail-on-regression"]
    )
    assert result.exit_code == 1, result.output
    assert "REGRESSION" in result.output and "naive_mc" in result.output
    same = runner.invoke(app, ["compare", str(out), str(out), "--fail-on-regression"])
    assert same.exit_code == 0, same.output
    assert "no regression" in same.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--preset", "nope"], "unknown preset"),
        (["run", "--quick", "--methods", "naive_mc,nope"], "unknown method"),
        (["run", "--quick", "--models", "gmm,nope"], "unknown model"),
        (["compare", ".", ".", "--metric", "nope"], "unknown metric"),
    ],
)
def test_unknown_names_give_one_line_and_exit_2(args, message, tmp_path):
    result = runner.invoke(app, args + (["--out", str(tmp_path)] if args[0] == "run" else []))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_corrupt_results_give_a_clear_error(tmp_path):
    (tmp_path / "results.parquet").write_bytes(b"not parquet at all")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "unreadable" in result.output and "Traceback" not in result.output


def test_list_shows_presets_methods_and_trained_models():
    result = runner.invoke(app, ["list"], terminal_width=200)
    assert result.exit_code == 0
    for name in (
        "default",
        "digits",
        "naive_mc",
        "prior_is",
        "posterior_is",
        "elbo",
        "digits-bernoulli-d8",
        "digits-gaussian-d8",
        "pinwheel-gaussian-d2",
    ):
        assert name in result.output


def test_report_rerenders_without_tensorflow(quick_run):
    """`report` and `compare` work on DataFrames alone: no TensorFlow import."""
    out, _ = quick_run
    (out / "bias_vs_M.png").unlink()
    (out / "report.md").unlink()
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom estimators.cli import app\n"
        f"for args in (['report', {str(out)!r}], ['compare', {str(out)!r}, {str(out)!r}], ['list']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "sys.exit('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert (out / "bias_vs_M.png").exists() and (out / "report.md").exists()


def test_train_command_saves_a_loadable_model(tmp_path):
    from estimators import load_model

    result = runner.invoke(
        app,
        [
            "train",
            "pinwheel-gaussian-d2",
            "--out",
            str(tmp_path),
            "--epochs",
            "2",
            "--no-evaluate",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    model = load_model("pinwheel-gaussian-d2", directory=tmp_path)
    assert model.data_dim == 2 and model.amortized_posterior is not None
    bad = runner.invoke(app, ["train", "no-such-model"])
    assert bad.exit_code == 2 and "unknown model 'no-such-model'" in bad.output


def test_run_names_its_device(quick_run):
    _, output = quick_run
    assert "device: CPU" in output or "device: GPU" in output


def test_rerun_with_one_model_keeps_the_others_in_the_report(quick_run, tmp_path):
    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = runner.invoke(
        app, ["run", "--quick", "--quiet", "--models", "gmm", "--out", str(copy)]
    )
    assert result.exit_code == 0, result.output
    markdown = (copy / "report.md").read_text()
    for model in ("gmm", "linear_gaussian", "infinite_mixture"):
        assert f"**{model}**" in markdown
    assert len(pd.read_csv(copy / "summary.csv")) == 3 * 4 * 3
    assert "kept from earlier runs" in markdown


def test_a_failure_inside_the_library_is_a_traceback_not_a_usage_error(
    quick_run, monkeypatch, tmp_path
):
    import estimators.sweep

    def broken(*args, **kwargs):
        raise ValueError("a bug inside the sweep")

    monkeypatch.setattr(estimators.sweep, "sweep", broken)
    result = runner.invoke(app, ["run", "--quick", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    code = (
        "import sys, estimators.comparison as c\n"
        "def broken(*a, **k): raise ValueError('a bug inside compare')\n"
        "c.compare = broken\n"
        "from estimators.cli import main\n"
        f"sys.argv = ['estimators', 'compare', {str(quick_run[0])!r}, {str(quick_run[0])!r}]\n"
        "main()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (
        done.returncode == 1
        and "Traceback" in done.stderr
        and "a bug inside compare" in done.stderr
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--quick", "--num-samples", "0,4"], "positive integers"),
        (["compare", ".", ".", "--alpha", "2"], "--alpha"),
    ],
)
def test_bad_numbers_give_a_usage_error(args, message, tmp_path):
    result = runner.invoke(app, args + (["--out", str(tmp_path)] if args[0] == "run" else []))
    assert result.exit_code == 2 and message in result.output, result.output


def test_tensorflow_starts_quietly():
    """No C++ start-up chatter (cuInit, cuda drivers, oneDNN) unless --verbose."""
    code = (
        "from estimators.environment import quiet_tensorflow; quiet_tensorflow(); "
        "import tensorflow as tf; tf.constant(1.0) + 1"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
