"""``evaluate`` / ``estimators evaluate``: certify on simulations, run on data, report, resume.

The model is tests/user_models.py's linear-Gaussian written as TensorFlow callables, named by
its object path ``user_models:linear_gaussian`` (the tests folder is on sys.path), with an
encoder 1.5x wider than its posterior and its closed-form log p(x). Graph mode
(``jit_compile=False``) keeps the compilations short; one evaluation (a module fixture) serves
most tests, and reruns reuse its stages.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from scipy import stats
from typer.testing import CliRunner

import estimators.evaluate as evaluate_module
from estimators import CallableModel, GaussianMixture, LinearGaussian
from estimators.cli import app
from estimators.evaluate import evaluate
from estimators.fingerprint import FingerprintError
from estimators.report.evaluation import GROSSE, certified_lines
from estimators.results import ResultsError, read_table
from estimators.user_inputs import InputError, load_user_model, read_data

MODEL = "user_models:linear_gaussian"
FAST = dict(jit_compile=False, steps=(10, 30, 100), budget=120.0, seed=0)
POINTS = 200
runner = CliRunner()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    model = load_user_model(MODEL)
    x = model.sample(POINTS, seed=11).numpy()
    out = tmp_path_factory.mktemp("evaluate") / "lg"
    lines = []
    result = evaluate(model, x, out=out, log=lines.append, model_name=MODEL, **FAST)
    return model, x, out, result, lines


def copy_of(out, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    return target


def test_the_intervals_cover_the_exact_log_p_at_the_nominal_rate(evaluated):
    model, x, _, result, _ = evaluated
    points = result.points
    np.testing.assert_allclose(points["exact"], model.log_marginal(x).numpy(), rtol=1e-6)
    assert np.isfinite(points["se"]).all() and (points["se"] > 0).all()
    covered = int(points["covered"].sum())
    # two-sided binomial test of the nominal 95% at level 0.001
    assert stats.binomtest(covered, POINTS, 0.95).pvalue > 1e-3, covered
    assert result.summary["exact"]["covered"] == covered
    # the mean over points and its SE: the exact mean lies within 3 of the Monte Carlo SEs
    log_p = result.summary["log_p"]
    assert abs(log_p["mean"] - points["exact"].mean()) < 3 * log_p["mc_se"] + 1e-3


def test_it_certified_an_estimator_on_simulated_data(evaluated):
    _, _, _, result, lines = evaluated
    cert = result.summary["certification"]
    assert cert["certified"] and cert["reference"] == "sandwich"
    assert cert["width"] <= 0.1 and cert["bound"] <= 0.1
    assert cert["exact_on_simulations"]["inside"] >= cert["simulated_points"] - 1
    chosen = result.candidates[result.candidates["chosen"]]
    assert len(chosen) == 1 and chosen["meets"].all()
    # nothing certified is slower than the choice
    certified = result.candidates[result.candidates["meets"]]
    assert chosen["seconds_per_point"].iloc[0] == certified["seconds_per_point"].min()
    assert any(line.startswith("sandwich T = 10") for line in lines)
    for column in ("iwae_estimate", "elbo_estimate"):  # the encoder's bounds at equal time
        assert column in result.points or result.summary["iwae_bound"].get("same_as_estimate")
    assert result.summary["elbo_bound"]["mean"] < result.summary["log_p"]["mean"]


def test_the_report_says_what_was_certified_and_what_was_not(evaluated):
    _, _, out, result, _ = evaluated
    for name in evaluate_module.FILES:
        assert (out / name).exists(), name
    report = (out / "report.md").read_text()
    for heading in ("## What was certified", "## What was not certified", "## The data"):
        assert heading in report
    assert GROSSE in report and "Grosse et al. 2015" in report
    assert "points simulated from the model" in report and "is certified" in report
    assert "## Against the exact log p(x)" in report
    html = (out / "report.html").read_text()
    assert "What was certified" in html and "Grosse et al. 2015" in html
    table = pd.read_csv(out / "points.csv")
    assert len(table) == POINTS and {"estimate", "se", "khat", "exact"} <= set(table.columns)
    stored = read_table(out / "points.parquet")
    assert stored.attrs["summary"]["points"] == POINTS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["configuration"]["method"] == result.summary["configuration"]["method"]


def test_a_rerun_resumes_every_stage(evaluated, tmp_path, monkeypatch):
    model, x, out, result, _ = evaluated
    out = copy_of(out, tmp_path)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a stored stage was recomputed")

    monkeypatch.setattr(evaluate_module, "timed_estimate", must_not_run)
    again = evaluate(model, x, out=out, model_name=MODEL, **FAST)
    pd.testing.assert_frame_equal(again.points, result.points)


def test_an_interrupted_run_resumes_where_it_stopped(evaluated, tmp_path, monkeypatch):
    """Without the data stage's files (as if killed there), only the data are recomputed."""
    model, x, out, result, _ = evaluated
    out = copy_of(out, tmp_path)
    for path in (out / "stages").glob("data-*.parquet"):
        path.unlink()
    calls = []
    original = evaluate_module.timed_estimate

    def counting(model, rows, config, *args):
        assert len(rows) != 16, "a simulated-point stage was recomputed"
        calls.append(config)
        return original(model, rows, config, *args)

    monkeypatch.setattr(evaluate_module, "timed_estimate", counting)
    again = evaluate(model, x, out=out, model_name=MODEL, **FAST)
    assert calls
    chosen = result.summary["configuration"]["method"]
    assert {c.method for c in calls} >= {chosen}
    timing = [c for c in result.points if c.endswith("seconds")]
    pd.testing.assert_frame_equal(
        again.points.drop(columns=timing), result.points.drop(columns=timing)
    )


def test_a_single_data_point(evaluated, tmp_path):
    model, x, out, _, _ = evaluated
    single = evaluate(model, x[:1], out=copy_of(out, tmp_path), model_name=MODEL, **FAST)
    assert len(single.points) == 1 and np.isfinite(single.points["estimate"]).all()
    assert np.isfinite(single.points["se"]).all()
    assert single.summary["points"] == 1 and np.isnan(single.summary["log_p"]["se"])
    assert "n/a" in (tmp_path / "copy" / "report.md").read_text()


def test_another_models_folder_is_refused(evaluated):
    _, x, out, _, _ = evaluated
    other = LinearGaussian(np.ones((4, 2)), np.zeros(4), 0.5)
    with pytest.raises(ResultsError, match="holds the evaluation of another model"):
        evaluate(other, x, out=out, **FAST)


def test_a_model_that_cannot_be_fingerprinted_says_so_once_and_runs(
    evaluated, tmp_path, monkeypatch
):
    model, x, _, _, _ = evaluated

    def refuse(model):
        raise FingerprintError("model.log_likelihood (function <lambda>) cannot be fingerprinted")

    monkeypatch.setattr(evaluate_module, "model_fingerprint", refuse)
    modes, original = set(), evaluate_module.estimate

    def recording(*args, **kwargs):
        modes.add(kwargs["jit_compile"])
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "estimate", recording)
    said = []
    result = evaluate(model, x[:8], out=tmp_path / "new", notify=said.append, **FAST)
    assert modes == {False}  # every stage ran in the mode asked for
    assert len(said) == 1 and "without resuming" in said[0] and "\n" not in said[0]
    assert len(result.points) == 8 and (tmp_path / "new" / "report.md").exists()
    assert not (tmp_path / "new" / "stages").exists()  # nothing stored: nothing to resume


def test_the_command_line_resumes_and_reports(evaluated, tmp_path):
    _, x, out, result, _ = evaluated
    out = copy_of(out, tmp_path)
    data = tmp_path / "x.npy"
    np.save(data, x)
    done = runner.invoke(
        app, ["evaluate", MODEL, "--data", str(data), "--out", str(out), "--no-xla", "--quiet"]
    )
    assert done.exit_code == 0, done.output
    assert "Mean log p(x)" in done.output and "report:" in done.output
    again = read_table(out / "points.parquet")
    np.testing.assert_allclose(again["estimate"], result.points["estimate"])


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("nan", "NaN or infinite values in 1 row(s), first at row 2"),
        ("flat", "is 1-D"),
        ("columns", "x has D = 5 columns but the model expects D = 4"),
        ("suffix", "has suffix '.txt'"),
        ("module", "cannot import 'no_such_module'"),
        ("attribute", "has no attribute 'nope'"),
        ("not a model", "is a int, not a model"),
        ("unknown", "unknown model 'nothing-like-this'"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(case, message, tmp_path):
    x = np.zeros((4, 4))
    model, path = MODEL, tmp_path / "x.npy"
    if case == "nan":
        x[2, 1] = np.nan
    elif case == "flat":
        x = np.zeros(4)
    elif case == "columns":
        x = np.zeros((4, 5))
    elif case == "suffix":
        path = tmp_path / "x.txt"
    elif case == "module":
        model = "no_such_module:model"
    elif case == "attribute":
        model = "user_models:nope"
    elif case == "not a model":
        model = "user_models:not_a_model"
    elif case == "unknown":
        model = "nothing-like-this"
    if case != "missing":
        np.save(path, x) if path.suffix == ".npy" else path.write_text("1,2\n")
    done = runner.invoke(app, ["evaluate", model, "--data", str(path), "--out", str(tmp_path)])
    assert done.exit_code == 2, done.output
    assert message in done.output, done.output
    assert "Traceback" not in done.output and len(done.output.strip().splitlines()) == 1


def test_data_files_of_every_kind(tmp_path):
    x = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", x=x, y=np.ones(2))
    np.savez(tmp_path / "c.npz", x)
    pd.DataFrame(x, columns=["u", "v", "w"]).to_csv(tmp_path / "d.csv", index=False)
    np.savetxt(tmp_path / "e.csv", x, delimiter=",")
    pd.DataFrame(x, columns=["u", "v", "w"]).to_parquet(tmp_path / "f.parquet")
    for name in ("a.npy", "b.npz", "c.npz", "d.csv", "e.csv", "f.parquet"):
        np.testing.assert_array_equal(read_data(tmp_path / name), x, err_msg=name)
    np.testing.assert_array_equal(read_data(tmp_path / "a.npy", points=2), x[:2])
    pd.DataFrame({"u": [1.0], "name": ["a"]}).to_parquet(tmp_path / "g.parquet")
    with pytest.raises(InputError, match="non-numeric column"):
        read_data(tmp_path / "g.parquet")
    np.savez(tmp_path / "h.npz", a=x, b=x)
    with pytest.raises(InputError, match="name the data 'x'"):
        read_data(tmp_path / "h.npz")
    (tmp_path / "i.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read"):
        read_data(tmp_path / "i.npy")


def test_a_saved_keras_decoder_and_encoder_make_a_model(tmp_path):
    import tf_keras

    decoder = tf_keras.Sequential(
        [tf_keras.layers.Input((2,)), tf_keras.layers.Dense(8, "tanh"), tf_keras.layers.Dense(4)]
    )
    encoder = tf_keras.Sequential([tf_keras.layers.Input((4,)), tf_keras.layers.Dense(4)])
    decoder.save(tmp_path / "decoder.keras")
    encoder.save(tmp_path / "encoder.keras")
    model = load_user_model(
        str(tmp_path / "decoder.keras"),
        scale="0.3",
        encoder=tmp_path / "encoder.keras",
        encoder_output="concat_loc_log_scale",
    )
    assert (model.latent_dim, model.data_dim) == (2, 4)
    assert model.amortized_posterior.encoder_output == "concat_loc_log_scale"
    x = model.sample(3, seed=0)
    np.testing.assert_allclose(
        model.likelihood(np.zeros((3, 2), np.float32)).mean(),
        np.tile(decoder(np.zeros((1, 2))), (3, 1)),
        rtol=1e-6,
    )
    assert model.amortized_posterior(x).batch_shape == [3]
    with pytest.raises(InputError, match="needs --scale SIGMA"):
        load_user_model(str(tmp_path / "decoder.keras"))
    with pytest.raises(InputError, match="expects a pair"):
        load_user_model(
            str(tmp_path / "decoder.keras"),
            scale=0.3,
            encoder=tmp_path / "encoder.keras",
            encoder_output="loc_scale",
        )


def test_a_model_without_a_sandwich_is_judged_against_its_exact_log_p(tmp_path):
    """A Gaussian mixture: a discrete latent (no AIS/BDMC), but an exact log p(x) and posterior."""
    model = GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 1.0]], [[1.0, 0.5], [0.7, 1.2]])
    result = evaluate(model, model.sample(20, seed=1), out=tmp_path, **FAST)
    cert = result.summary["certification"]
    assert cert["certified"] and cert["reference"] == "exact" and cert["steps"] is None
    assert "sandwich does not apply" in cert["stop"]
    assert result.summary["exact"]["max_abs_error"] < 1e-4  # the exact posterior: exact IS
    assert "judged against the exact log p(x)" in (tmp_path / "report.md").read_text()


def test_a_model_that_cannot_simulate_is_not_certified(monkeypatch):
    """No sample_likelihood: no simulated data, so nothing to certify on; a default runs."""
    monkeypatch.setattr(evaluate_module, "UNCERTIFIED_STEPS", 20)  # the default's T: quick

    def loglik(x, z):
        return -0.5 * tf.reduce_sum(tf.square(x - tf.reduce_sum(z, -1, keepdims=True)), -1)

    model = CallableModel(loglik, latent_dim=1, data_dim=2)
    result = evaluate(model, np.zeros((2, 2)), notify=lambda line: None, **FAST)
    cert = result.summary["certification"]
    assert not cert["certified"] and cert["reference"] is None and not cert["simulated"]
    assert "cannot simulate" in cert["reason"]
    assert np.isfinite(result.points["estimate"]).all()
    text = " ".join(certified_lines(result.summary))
    assert "Nothing was certified" in text
