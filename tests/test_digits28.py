"""The MNIST-sized zoo: the 28x28 digits, dynamic binarization, the shipped 784-d models and
the digits28 preset."""

import numpy as np
import pytest

from estimators import data as datasets
from estimators import zoo
from estimators.train import train

DIGITS28 = zoo.DIGITS28_MODELS


def test_28x28_digits_have_mnists_layout_and_fixed_splits():
    grey = datasets.grey_levels("test")
    assert grey.shape == (360, 784) and grey.dtype == np.float32
    assert np.array_equal(grey, np.round(grey)) and grey.min() == 0 and grey.max() == 255
    images = grey.reshape(-1, 28, 28)
    border = np.ones((28, 28), bool)
    border[4:24, 4:24] = False
    assert not images[:, border].any()  # the digit sits in the central 20x20 box
    # The Gaussian data dequantize the grey levels: floor(256 x) recovers them.
    gauss = datasets.load_data("digits28-gaussian", "test")
    np.testing.assert_array_equal(np.floor(gauss * 256.0), grey)
    # The Bernoulli data: one fixed binarization x ~ Bernoulli(g / 255) per split.
    bern = datasets.load_data("digits28-bernoulli-d32", "test")
    np.testing.assert_array_equal(bern, datasets.load_data("digits28-bernoulli", "test"))
    assert set(np.unique(bern)) == {0.0, 1.0}
    assert not bern[:, border.ravel()].any()  # g = 0 gives x = 0
    p = grey / 255.0
    se = np.sqrt(np.sum(p * (1 - p))) / p.size  # binomial SE of the mean pixel
    assert abs(bern.mean() - p.mean()) < 4 * se
    assert datasets.load_data("digits28-gaussian", "train").shape == (1437, 784)
    with pytest.raises(ValueError, match="split"):
        datasets.grey_levels("valid")


def test_dynamic_binarization_trains_on_fresh_draws_and_validates_on_one():
    grey = datasets.grey_levels("train")[:256]
    settings = dict(
        latent_dim=2,
        likelihood="bernoulli",
        decoder_hidden=(16,),
        encoder_hidden=(16,),
        epochs=2,
        batch_size=64,
        progress=False,
    )
    result = train(grey, dynamic_binarization=True, **settings)
    assert np.isfinite(result.final_valid_elbo) and len(result.history) == 2
    with pytest.raises(ValueError, match="Bernoulli"):
        train(grey, dynamic_binarization=True, **dict(settings, likelihood="gaussian"))


# ----------------------------------------------------------------------------- the shipped models


@pytest.mark.parametrize("name", DIGITS28)
def test_shipped_784d_models_are_small_complete_and_beat_the_independent_fit(name):
    path = zoo.ZOO_DIR / f"{name}.npz"
    assert path.stat().st_size < 2_500_000  # 784-200-200-d encoder and decoder, float32
    info = zoo.manifest(name)
    results = info["results"]
    assert info["architecture"]["data_dim"] == 784
    assert info["architecture"]["decoder_sizes"][1:3] == [200, 200]
    for key in ("train_elbo", "test_elbo", "test_log_p", "test_log_p_se", "elbo_gap"):
        assert np.isfinite(results[key]), key
    # log p(x) >= ELBO (the reference is an IS estimate, so within its SE); both well above the
    # best independent-pixel fit on the same test points.
    assert results["test_log_p"] > results["test_elbo"] - 3 * results["test_log_p_se"]
    assert results["test_log_p"] > results["baseline_test_log_p"] + 10.0
    if "bernoulli" in name:
        assert info["training"]["dynamic_binarization"] is True
    # the manifest says plainly what the data are
    assert info["data_description"] == datasets.describe(name)
    assert info["data_description"].startswith("NOT MNIST")


@pytest.mark.parametrize("name", DIGITS28[:2])
def test_loaded_784d_model_reproduces_the_manifest_test_elbo(name):
    """The manifest's test ELBO (first ``points`` test points, 1024 samples each, two seeds)
    from fresh noise: within 5 combined standard errors, each measured by two runs."""
    results = zoo.manifest(name)["results"]
    x = datasets.load_data(name, "test")[: results["test_points"]]
    elbo, se = zoo.mean_estimate_with_se(zoo.load_model(name), x, "elbo", 256, seed=99)
    combined_se = np.hypot(se, results["test_elbo_se"])
    assert combined_se < 0.1
    assert abs(elbo - results["test_elbo"]) < 5 * combined_se


def test_digits28_preset_pairs_test_and_simulated_points():
    preset = zoo.digits28_preset("quick")
    names = list(preset["models"])
    assert names == [n + s for n in DIGITS28[:2] for s in ("", zoo.SIMULATED)]
    for name in names:
        simulated = name.endswith(zoo.SIMULATED)
        assert (name in preset["latents"]) == simulated
        assert preset["data"][name].shape[1] == 784
    full = zoo.digits28_preset("full")
    assert len(full["models"]) == 8
    assert max(full["num_samples"]["posterior_is"]) == 5000


def test_reference_warns_where_importance_sampling_degenerates(tmp_path):
    """Points simulated from the 784-d Gaussian decoder lie where its encoder never looked: the
    reference's weights collapse onto a handful of samples and its delta-method SE (~1 nat)
    understates an error of thousands (the digits28 preset's sandwich showed it). The reference
    says so; on the model's own test points it does not."""
    from estimators.reference import reference_log_marginal

    model = zoo.load_model("digits28-gaussian-d32")
    x = model.sample(1, seed=2024).numpy()
    for _ in ("computed", "read from the cache"):  # the cache keeps the ESS: it warns again
        with pytest.warns(UserWarning, match="degenerated at 1 of 1 points"):
            reference_log_marginal(model, x, num_samples=2000, cache_dir=tmp_path)
    bern = zoo.load_model("digits28-bernoulli-d32")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reference_log_marginal(
            bern,
            datasets.load_data("digits28-bernoulli", "test")[:2],
            num_samples=2000,
            cache=False,
        )
