"""sweep(): the tidy table, its parquet metadata, exactness, the 1/M law, and resuming."""

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

import estimators.sweep as sweep_module
from estimators import GaussianMixture, LinearGaussian
from estimators.results import COLUMNS, METADATA_KEY, ResultsError, load_results, save_results
from estimators.summary import fit_slopes, summarize
from estimators.sweep import driver, sweep


def small_models(dtype=tf.float32):
    rng = np.random.default_rng(0)
    models = {
        "lg": LinearGaussian(rng.normal(size=(3, 1)), rng.normal(size=3), 0.8, dtype=dtype),
        "gmm": GaussianMixture(
            [0.6, 0.4], [[-2.0, 0.0], [2.0, 0.0]], [[1.0, 1.0], [0.5, 0.5]], dtype=dtype
        ),
    }
    data = {name: model.sample(6, seed=3).numpy() for name, model in models.items()}
    return models, data


SMALL = dict(methods=["naive_mc", "posterior_is"], num_samples=[1, 8], repeats=3)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    models, data = small_models()
    out = tmp_path_factory.mktemp("run")
    return sweep(models, data=data, out=out, progress=False, seed=5, **SMALL), out


def test_tidy_table_schema_and_parquet_metadata(small_run):
    df, out = small_run
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 2 * 2 * 2 * 3 * 6  # models x methods x M x repeats x points
    assert not df.duplicated(["model", "method", "num_samples", "repeat", "point"]).any()
    assert df["num_samples"].dtype == np.int64 and df["estimate"].dtype == np.float64
    assert (df["seconds"] > 0).all() and (df["ess"] >= 1 - 1e-6).all()
    meta = json.loads(pq.read_schema(out / "results.parquet").metadata[METADATA_KEY])
    assert meta["config"]["seed"] == 5 and meta["config"]["repeats"] == 3
    assert meta["config"]["models"] == ["lg", "gmm"]
    env = meta["environment"]
    for key in ("packages", "device", "xla", "git_commit", "cpu", "python"):
        assert key in env
    assert env["packages"]["tensorflow"] == tf.__version__
    assert len(meta["cells"]) == 2 * 2 * 2
    assert all(r["compile_seconds"] >= 0 for r in meta["cells"])
    loaded = load_results(out)
    pd.testing.assert_frame_equal(loaded, df)
    assert loaded.attrs["config"] == df.attrs["config"]


def test_exact_posterior_is_has_zero_bias_and_variance():
    models, data = small_models(dtype=tf.float64)
    df = sweep(
        {"lg": models["lg"]}, ["posterior_is"], [1, 16], 4, {"lg": data["lg"]}, progress=False
    )
    error = df["estimate"] - df["truth"]
    # float64 round-off of log p ~ a few nats: 1e-12 is ~1e4 ulps of headroom.
    assert np.abs(error).max() < 1e-12
    summary = summarize(df).cells
    assert (summary["variance"] < 1e-24).all() and (summary["bias"].abs() < 1e-12).all()


def test_naive_mc_variance_falls_like_one_over_m():
    """On a mildly informative linear-Gaussian model (posterior sd 0.8 of the prior's), Var(w)/p^2
    is ~0.3, so M >= 32 is in the asymptotic regime Var(log p^) ~ Var(w) / (M p^2). The slope's
    standard error here is ~0.03 (variance estimated from R N = 512 draws per M): +-0.35 is 10 SE."""
    model = LinearGaussian([[0.5], [0.5]], [0.0, 0.0], 1.0)
    x = model.sample(16, seed=11).numpy()
    df = sweep(
        {"lg": model}, ["naive_mc"], [32, 128, 512, 2048], 32, {"lg": x}, seed=1, progress=False
    )
    summary = summarize(df).cells
    slope = fit_slopes(summary)["variance_slope"].iloc[0]
    assert slope == pytest.approx(-1.0, abs=0.35)
    # Delta method: bias ~ -variance / 2; checked at M = 32 within 4 standard errors of the mean
    first = summary.iloc[0]
    standard_error = np.sqrt(first["variance"] / (first["num_points"] * first["repeats"]))
    assert abs(first["bias"] + first["variance"] / 2) < 4 * standard_error


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_identical_table(small_run, tmp_path, monkeypatch):
    models, data = small_models()
    reference, _ = small_run
    real_compute, calls = driver.compute_cell, []

    def compute_then_fail(cell, given, truth):
        if len(calls) == 3:
            raise Interrupt("simulated kill after 3 cells")
        calls.append(cell.cell_id)
        return real_compute(cell, given, truth)

    monkeypatch.setattr(driver, "compute_cell", compute_then_fail)
    with pytest.raises(Interrupt):
        sweep(models, data=data, out=tmp_path, progress=False, seed=5, **SMALL)
    assert len(list((tmp_path / "cells").glob("*.parquet"))) == 3
    assert not (tmp_path / "results.parquet").exists()
    monkeypatch.setattr(driver, "compute_cell", real_compute)

    resumed = sweep(models, data=data, out=tmp_path, progress=False, seed=5, **SMALL)
    assert resumed.attrs["run"]["loaded_cells"] == 3
    assert resumed.attrs["run"]["computed_cells"] == 8 - 3
    # Same numbers as the uninterrupted run; only wall times differ between runs.
    pd.testing.assert_frame_equal(
        resumed.drop(columns="seconds"), reference.drop(columns="seconds")
    )
    pd.testing.assert_frame_equal(load_results(tmp_path), resumed)


def test_deleted_cells_are_recomputed_and_others_kept(small_run, tmp_path):
    models, data = small_models()
    first, out = small_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    victim = sorted((tmp_path / "cells").glob("*.parquet"))[0]
    victim.unlink()
    again = sweep(models, data=data, out=tmp_path, progress=False, seed=5, **SMALL)
    assert again.attrs["run"]["computed_cells"] == 1
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), first.drop(columns="seconds"))
    kept = again["seconds"] == first["seconds"]
    assert kept.sum() == len(first) - 3 * 6  # every row but the recomputed cell's R x N


def test_mismatched_or_corrupt_results_raise(small_run):
    models, data = small_models()
    _, out = small_run
    with pytest.raises(ResultsError, match="different configuration"):
        sweep(models, data=data, out=out, progress=False, seed=6, **SMALL)
    cell = sorted((out / "cells").glob("*.parquet"))[0]
    good = cell.read_bytes()
    try:
        (out / "results.parquet").rename(out / "results.saved")
        cell.write_bytes(good[: len(good) // 2])
        with pytest.raises(ResultsError, match="unreadable"):
            sweep(models, data=data, out=out, progress=False, seed=5, **SMALL)
        assert cell.read_bytes() == good[: len(good) // 2]  # not overwritten
    finally:
        cell.write_bytes(good)
        (out / "results.saved").rename(out / "results.parquet")


def test_bad_arguments_raise_value_error():
    models, data = small_models()
    with pytest.raises(ValueError, match="unknown method"):
        sweep(models, ["nope"], [1], 2, data, progress=False)
    with pytest.raises(ValueError, match="repeats"):
        sweep(models, ["naive_mc"], [1], 1, data, progress=False)
    with pytest.raises(ValueError, match="no entry"):
        sweep(models, ["naive_mc"], [1], 2, {"lg": data["lg"]}, progress=False)


# --------------------------------------------------------------------------- a folder's results


def test_rerun_with_a_subset_keeps_every_finished_cell(small_run, tmp_path):
    """Rerunning fewer models or methods into a folder keeps the other cells in its results."""
    models, data = small_models()
    reference, out = small_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    subset = sweep(
        {"gmm": models["gmm"]},
        ["posterior_is"],
        [8],
        3,
        {"gmm": data["gmm"]},
        seed=5,
        out=tmp_path,
        progress=False,
    )
    assert subset.attrs["run"]["loaded_cells"] == 1 and subset.attrs["run"]["kept_cells"] == 7
    pd.testing.assert_frame_equal(subset, reference)  # every cell, in the first run's order
    pd.testing.assert_frame_equal(load_results(tmp_path), reference)
    assert subset.attrs["config"]["models"] == ["lg", "gmm"]
    assert len(subset.attrs["cells"]) == 8
    # A new model with the same settings joins the others.
    extra = sweep(
        {"lg2": models["lg"]},
        ["naive_mc"],
        [1],
        3,
        {"lg2": data["lg"]},
        seed=5,
        out=tmp_path,
        progress=False,
    )
    assert extra.groupby(["model", "method", "num_samples"]).ngroups == 9
    assert extra.attrs["config"]["models"] == ["lg", "gmm", "lg2"]


def test_cells_that_cannot_share_a_table_are_refused(small_run, tmp_path):
    models, data = small_models()
    _, out = small_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    with pytest.raises(ResultsError, match="other settings.*repeats"):
        sweep(
            {"new": models["lg"]},
            ["naive_mc"],
            [1],
            4,
            {"new": data["lg"]},
            seed=5,
            out=tmp_path,
            progress=False,
        )
    changed = LinearGaussian(np.ones((3, 1)), np.zeros(3), 0.8)
    with pytest.raises(ResultsError, match="model 'lg' computed from other parameters"):
        sweep(
            {"lg": changed},
            ["elbo"],
            [1],
            3,
            {"lg": data["lg"]},
            seed=5,
            out=tmp_path,
            progress=False,
        )
    assert not list((tmp_path / "cells").glob("*elbo*"))  # refused before computing anything


def test_load_results_adds_cells_the_results_file_lacks(small_run, tmp_path):
    """An interrupted rerun leaves cells that results.parquet does not list: the folder's
    results (and so its report) include them."""
    reference, out = small_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    partial = reference[reference["model"] == "lg"].copy()
    partial.attrs = json.loads(json.dumps(reference.attrs))
    partial.attrs["config"]["cell_fingerprints"] = {
        k: v
        for k, v in reference.attrs["config"]["cell_fingerprints"].items()
        if k.startswith("lg/")
    }
    save_results(partial, tmp_path)
    merged = load_results(tmp_path)
    assert merged.attrs["run"]["kept_cells"] == 4
    pd.testing.assert_frame_equal(merged, reference)
    (tmp_path / "results.parquet").unlink()
    with pytest.raises(ResultsError, match="unfinished run"):
        load_results(tmp_path)


def test_a_model_that_cannot_be_fingerprinted_is_not_saved_for_resuming(tmp_path):
    from estimators import InfiniteMixture

    model = InfiniteMixture(lambda z: tf.concat([z, -z], axis=-1), 1, data_dim=2, scale=0.5)
    data = {"f": model.sample(4, seed=1).numpy()}
    with pytest.raises(ValueError, match="model 'f' cannot be saved for resuming.*decoder"):
        sweep({"f": model}, ["naive_mc"], [4], 2, data, out=tmp_path, progress=False)
    df = sweep({"f": model}, ["naive_mc"], [4], 2, data, progress=False)  # nothing saved: fine
    assert len(df) == 2 * 4


def test_measure_picks_the_faster_mode():
    import time

    from estimators import compile_mode

    def call(jit_compile):  # XLA 10x slower here
        time.sleep(0.01 if jit_compile else 0.001)

    timings = compile_mode.measure(call)
    assert timings["jit_compile"] is False
    assert timings["xla_seconds"] > 5 * timings["graph_seconds"]


def test_auto_follows_the_rule_with_no_clock(tmp_path, monkeypatch):
    """On CPU, "auto" takes each (model, method)'s mode from ``compile_mode.rule``, measuring
    nothing: graph mode for importance sampling on the small GMM, XLA for the ELBO and for the
    linear-Gaussian; two fresh cache folders give identical tables."""
    from estimators import compile_mode

    monkeypatch.setattr(compile_mode, "measure", lambda call: pytest.fail("measured"))
    models, data = small_models()
    runs = []
    for cache in ("a", "b"):
        monkeypatch.setenv("ESTIMATORS_CACHE", str(tmp_path / cache))
        runs.append(sweep(models, ["naive_mc", "elbo"], [4], 2, data, progress=False))
    chosen = {(r["model"], r["method"]): r["jit_compile"] for r in runs[0].attrs["compile_modes"]}
    assert chosen == {
        ("lg", "naive_mc"): True,
        ("lg", "elbo"): True,
        ("gmm", "naive_mc"): False,
        ("gmm", "elbo"): True,
    }
    assert {r["source"].split(":")[0] for r in runs[0].attrs["compile_modes"]} == {"rule"}
    pd.testing.assert_frame_equal(runs[0].drop(columns="seconds"), runs[1].drop(columns="seconds"))


def test_timed_chooses_per_model_and_method_remembers_and_resumes(tmp_path, monkeypatch):
    """On CPU, "timed" runs each (model, method) in its measured mode (here forced: graph for
    naive MC, XLA for posterior-IS); a second run remembers the choice without measuring; a
    resumed folder keeps its cells' modes; an unreadable choices file is measured again."""
    from estimators import compile_mode

    monkeypatch.setenv("ESTIMATORS_CACHE", str(tmp_path / "cache"))
    measured = []

    def fake_measure(call):
        call(True)  # the probe call must run in both modes
        call(False)
        method = "posterior_is" if len(measured) % 2 else "naive_mc"
        measured.append(method)
        return {
            "xla_seconds": 1.0,
            "graph_seconds": 2.0,
            "jit_compile": method == "posterior_is",
            "compile_seconds": 0.0,
        }

    monkeypatch.setattr(compile_mode, "measure", fake_measure)
    models, data = small_models()
    lg = {"lg": models["lg"]}, {"lg": data["lg"]}
    out = tmp_path / "run"
    timed = dict(progress=False, jit_compile="timed")
    first = sweep(*lg[:1], ["naive_mc", "posterior_is"], [1, 8], 2, lg[1], out=out, **timed)
    assert first.attrs["config"]["jit_compile"] == sweep_module.PER_METHOD
    chosen = {r["method"]: (r["jit_compile"], r["source"]) for r in first.attrs["compile_modes"]}
    assert chosen == {"naive_mc": (False, "measured"), "posterior_is": (True, "measured")}
    ran = {(r["method"], r["jit_compile"]) for r in first.attrs["cells"]}
    assert ran == {("naive_mc", False), ("posterior_is", True)}
    assert len(measured) == 2

    again = sweep(*lg[:1], ["naive_mc", "posterior_is"], [1, 8], 2, lg[1], **timed)
    assert {r["source"] for r in again.attrs["compile_modes"]} == {"remembered"}
    assert len(measured) == 2
    pd.testing.assert_frame_equal(
        first.drop(columns="seconds"), again.drop(columns="seconds"), check_like=True
    )

    resumed = sweep(*lg[:1], ["naive_mc"], [1, 8, 16], 2, lg[1], out=out, **timed)
    assert resumed.attrs["compile_modes"][0]["source"] == "results folder"
    modes = {(r["method"], r["num_samples"], r["jit_compile"]) for r in resumed.attrs["cells"]}
    assert ("naive_mc", 16, False) in modes  # the new cell, in the folder's mode
    assert {m for method, _, m in modes if method == "naive_mc"} == {False}

    compile_mode.choices_path().write_text("{not json")
    sweep(*lg[:1], ["naive_mc"], [1], 2, lg[1], **timed)
    assert len(measured) == 3


def test_explicit_compile_mode_measures_nothing():
    models, data = small_models()
    df = sweep(
        {"lg": models["lg"]},
        ["naive_mc"],
        [4],
        2,
        {"lg": data["lg"]},
        jit_compile=False,
        progress=False,
    )
    assert df.attrs["compile_modes"] == []
    assert {r["jit_compile"] for r in df.attrs["cells"]} == {False}


def test_warm_up_uses_the_registrys_overrides(monkeypatch):
    """The untimed warm-up compiles; options the compiled function does not depend on come from
    ``Method.warm_up`` (AIS: a 2-step path; one compilation serves every T), the timed calls
    run the cell's own."""
    from estimators import methods
    from estimators.sweep import cell as cell_module

    ais = methods.method_with(sandwich_side="lower")
    assert methods.REGISTRY[ais].warm_up == {"steps": 2}
    calls = []
    real = cell_module.estimate

    def recording(model, x, method, num_samples, **kwargs):
        calls.append((num_samples, kwargs.get("steps")))
        return real(model, x, method, num_samples, **kwargs)

    monkeypatch.setattr(cell_module, "estimate", recording)
    models, data = small_models()
    df = sweep(
        {"lg": models["lg"]},
        data={"lg": data["lg"]},
        methods=[f"{ais}:steps=30"],
        num_samples=[4],
        repeats=2,
        progress=False,
    )
    assert calls[0][1] == 2  # the warm-up: a 2-step path
    assert all(steps is None for _, steps in calls[1:])  # timed calls: the spec's T = 30
    assert np.all(np.isfinite(df["estimate"]))
