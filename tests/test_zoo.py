"""The shipped models, their data, their reference truths and the digits preset."""

import numpy as np
import pytest

from estimators import data as datasets
from estimators import methods, zoo
from estimators.fingerprint import model_fingerprint
from estimators.reference import reference_log_marginal

SHIPPED = ("digits-bernoulli-d8", "digits-gaussian-d8", "pinwheel-gaussian-d2")


@pytest.fixture(scope="module")
def models():
    return {name: zoo.load_model(name) for name in SHIPPED}


# ----------------------------------------------------------------------------- data


def test_data_splits_are_fixed_and_preprocessed():
    bern = datasets.load_data("digits-bernoulli", "train")
    assert bern.shape == (1437, 64) and bern.dtype == np.float32
    assert set(np.unique(bern)) == {0.0, 1.0}
    gauss = datasets.load_data("digits-gaussian", "test")
    assert gauss.shape == (360, 64) and 0.0 <= gauss.min() and gauss.max() < 1.0
    # The Gaussian and Bernoulli versions are the same images: binarizing the dequantized
    # intensities (v + u) / 17 at v >= 8 recovers the Bernoulli test split.
    v = np.floor(gauss * 17.0)
    np.testing.assert_array_equal(
        (v >= 8).astype(np.float32), datasets.load_data("digits-bernoulli", "test")
    )
    np.testing.assert_array_equal(
        datasets.load_data("pinwheel", "test"), datasets.load_data("pinwheel", "test")
    )
    assert not np.allclose(
        datasets.load_data("ring", "train")[:500], datasets.load_data("ring", "test")
    )


def test_model_names_resolve_to_their_data():
    assert datasets.dataset_name("digits-bernoulli-d8") == "digits-bernoulli"
    assert datasets.dataset_name("pinwheel-gaussian-d2") == "pinwheel"
    np.testing.assert_array_equal(
        datasets.load_data("digits-gaussian-d8", "test"),
        datasets.load_data("digits-gaussian", "test"),
    )
    for name in SHIPPED:
        assert zoo.manifest(name)["data"] == datasets.dataset_name(name)
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load_data("digits-d8")
    with pytest.raises(ValueError, match="split"):
        datasets.load_data("ring", "valid")


# ----------------------------------------------------------------------------- the shipped files


def test_shipped_files_are_small_pickle_free_and_complete(models):
    small = [p for p in zoo.ZOO_DIR.glob("*.*") if p.suffix in (".npz", ".json")]
    small = [p for p in small if not p.name.startswith("digits28-")]  # tests/test_digits28.py
    total = sum(p.stat().st_size for p in small)
    assert total < 1_000_000  # six small models, ~680 kB in all: the package stays small
    assert set(SHIPPED) <= set(zoo.available_models())
    for name, model in models.items():
        info = zoo.manifest(name)
        for key in ("train_elbo", "test_elbo", "test_log_p", "test_log_p_se", "elbo_gap"):
            assert np.isfinite(info["results"][key]), (name, key)
        assert info["reproduce"]["command"].startswith(f"estimators train {name}")
        assert info["training"]["seed"] == 0
        assert model.amortized_posterior is not None
        assert model.latent_dim == info["architecture"]["latent_dim"]
        with np.load(zoo.ZOO_DIR / f"{name}.npz", allow_pickle=False) as arrays:
            assert all(a.dtype == np.float32 for a in arrays.values())


@pytest.mark.parametrize("name", SHIPPED)
def test_loaded_model_reproduces_the_manifest_test_elbo(models, name):
    """The test ELBO of the loaded model, from fresh noise, equals the manifest's to 0.05 nats.

    Both numbers are Monte Carlo means over the test set; their standard errors are measured from
    two independent runs each (see zoo.mean_estimate_with_se). The test asserts that the combined
    SE is below 0.01, so 0.05 nats is a > 5-sigma band: a failure means the weights or the
    estimator changed, not bad luck.
    """
    results = zoo.manifest(name)["results"]
    x = datasets.load_data(name, "test")
    elbo, se = zoo.mean_estimate_with_se(models[name], x, "elbo", 256, seed=99)
    combined_se = np.hypot(se, results["test_elbo_se"])
    assert combined_se < 0.01
    assert abs(elbo - results["test_elbo"]) < 0.05


# ----------------------------------------------------------------------------- reference truths


def test_is_reference_agrees_with_quadrature_on_a_2d_latent_model(models, tmp_path):
    model = models["pinwheel-gaussian-d2"]
    x = datasets.load_data(model_name := "pinwheel-gaussian-d2", "test")[:12]
    exact, exact_se = reference_log_marginal(model, x, method="exact", cache_dir=tmp_path)
    assert np.all(exact_se < 1e-4)  # the quadrature's own error estimate (float32 round-off)
    log_p, se = reference_log_marginal(model, x, method="is", cache_dir=tmp_path)
    assert np.all(se > 0) and np.all(se < 0.05), model_name
    # 12 points at 4.5 SE: a false alarm has probability < 1e-4. The 2e-4 covers the
    # quadrature's own error (~1e-4) and float32 round-off in the logsumexp.
    np.testing.assert_array_less(np.abs(log_p - exact), 4.5 * np.hypot(se, exact_se) + 2e-4)


def test_delta_method_se_matches_the_spread_of_repeats(models, tmp_path):
    """The delta-method SE (from one run's weights) predicts the scatter across independent runs."""
    model, x = models["digits-bernoulli-d8"], datasets.load_data("digits-bernoulli", "test")[:16]
    runs, ses = [], []
    for r in range(6):
        lp, se = reference_log_marginal(model, x, num_samples=2000, seed=r, cache=False)
        runs.append(lp)
        ses.append(se)
    predicted = np.mean(np.square(ses))  # mean over points and runs of the SE^2
    observed = np.mean(np.var(np.stack(runs), axis=0, ddof=1))  # 16 x 5 degrees of freedom
    # A chi-square with 80 dof has relative sd 0.16 (more with per-point spread in the variance);
    # the band 0.5 .. 2 is > 3 sd wide on each side. Measured: 1.0 on both digits models.
    assert 0.5 < observed / predicted < 2.0


def test_reference_cache_hits_and_keys_on_weights(models, tmp_path, monkeypatch):
    model, x = models["digits-bernoulli-d8"], datasets.load_data("digits-bernoulli", "test")[:4]
    first = reference_log_marginal(model, x, num_samples=1000, cache_dir=tmp_path)
    files = list((tmp_path / "reference").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary file left behind
    import estimators.reference as reference

    monkeypatch.setattr(reference, "estimate", lambda *a, **k: pytest.fail("cache missed"))
    second = reference_log_marginal(model, x, num_samples=1000, cache_dir=tmp_path)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    monkeypatch.undo()
    before = model_fingerprint(model)
    bias = model.decoder.biases[-1]
    bias.assign_add(np.full(bias.shape, 0.01, np.float32))
    try:
        assert model_fingerprint(model) != before
        reference_log_marginal(model, x, num_samples=1000, cache_dir=tmp_path)
        assert len(list((tmp_path / "reference").iterdir())) == 2
    finally:
        bias.assign_sub(np.full(bias.shape, 0.01, np.float32))


# ----------------------------------------------------------------------------- the digits models


@pytest.mark.parametrize(
    "name,floor", [("digits-gaussian-d8", 100.0), ("digits-bernoulli-d8", 30.0)]
)
def test_posterior_is_beats_naive_mc_in_variance_at_m64(models, name, floor):
    """Var(log p^) at M = 64: per point over 16 seeds, averaged over the first 32 test points.

    The Gaussian model's ratio naive / posterior-IS is ~1400 over the whole test set (manifest),
    so 100x is a safe floor. The Bernoulli model's is ~115 over the test set and 70 - 180 on
    subsets of 32 points: a property of the model (its posteriors are far from Gaussian: the ELBO
    gap is ~1.2 nats), not of sampling noise, so its floor here is 30x. With 15 degrees of
    freedom per point and 32 points, each averaged variance carries ~10% relative error.
    """
    model, x = models[name], datasets.load_data(name, "test")[:32]
    naive = zoo.variance_at(model, x, "naive_mc", 64, repeats=16)
    posterior = zoo.variance_at(model, x, "posterior_is", 64, repeats=16)
    assert naive > floor * posterior


def test_digits_model_beats_the_independent_pixel_baseline(models, tmp_path):
    """Held-out log p(x) of the Bernoulli digits model vs the best independent-pixel Bernoulli.

    On 64 test points with a 5000-sample reference (per-point SE 0.02 - 0.3 nats, so the SE of
    the mean is ~0.01): the model must win by 3 nats per image, with 3 SE to spare; the
    manifest's full-budget numbers (all 360 points, 1e5 samples) are checked too."""
    name = "digits-bernoulli-d8"
    x = datasets.load_data(name, "test")[:64]
    log_p, se = reference_log_marginal(models[name], x, num_samples=5000, cache_dir=tmp_path)
    baseline = datasets.independent_baseline_log_p(name, "test")[:64]
    se_mean = np.sqrt(np.sum(se**2)) / len(se)
    assert np.mean(log_p) - 3 * se_mean - np.mean(baseline) > 3.0
    results = zoo.manifest(name)["results"]
    assert results["test_log_p"] > results["baseline_test_log_p"] + 3.0
    gauss = zoo.manifest("digits-gaussian-d8")["results"]
    assert gauss["test_log_p"] > gauss["baseline_test_log_p"]


def test_digits_preset_shape():
    quick, full = zoo.digits_preset(quick=True), zoo.digits_preset(quick=False)
    for preset in (quick, full):
        assert set(preset) == {"models", "data", "methods", "num_samples", "repeats", "description"}
        assert set(preset["models"]) == set(preset["data"]) == set(zoo.DIGITS_MODELS)
        importance = methods.preset_default_names()
        assert preset["methods"][: len(importance)] == importance
        assert {"ais:steps=50", "ais:steps=200", "smc:target_ess=0.9"} <= set(preset["methods"])
        assert set(preset["num_samples"]) == set(preset["methods"])
        assert all(preset["num_samples"][m][0] == 1 for m in importance)
    assert max(full["num_samples"]["posterior_is"]) >= 2**14
    assert max(quick["num_samples"]["posterior_is"]) <= 256
    from estimators.presets import Preset

    Preset(**full)


def test_the_tests_cache_references_in_a_temporary_folder(tmp_path_factory):
    """conftest points $ESTIMATORS_CACHE at a temporary folder: no test writes ~/.cache."""
    from estimators.reference import reference_cache_dir

    assert tmp_path_factory.getbasetemp() in reference_cache_dir().parents
