"""Training: the objectives say what their docstrings say, and a small budget clearly helps."""

import math

import numpy as np
import pytest
import tensorflow as tf

from estimators.data import load_data
from estimators.train import build_model, objective_value, train

SMALL = dict(decoder_hidden=(32,), encoder_hidden=(32,), progress=False)


@pytest.fixture(scope="module")
def digits_bernoulli():
    return load_data("digits-bernoulli", "train")


def test_training_raises_the_validation_elbo(digits_bernoulli):
    # The ELBO starts near -27 nats (random encoder) and, within 8 epochs, passes the independent-
    # pixel fit (about -25 nats per image); 4 nats is 20x the epoch-to-epoch noise of the
    # validation ELBO (~0.2 nats: 144 images, 16 fixed samples each).
    result = train(
        digits_bernoulli,
        latent_dim=4,
        likelihood="bernoulli",
        epochs=8,
        seed=0,
        learning_rate=3e-3,
        **SMALL,
    )
    assert result.final_valid_elbo > result.initial_valid_elbo + 4.0
    assert result.final_valid_elbo > -24.0
    assert len(result.history) == result.epochs == 8
    assert result.config["n_train"] + result.config["n_valid"] == len(digits_bernoulli)


def test_same_seed_same_weights(digits_bernoulli):
    x = digits_bernoulli[:64]
    runs = [
        train(x, latent_dim=2, likelihood="bernoulli", epochs=1, seed=3, **SMALL) for _ in range(2)
    ]
    for a, b in zip(
        runs[0].model.trainable_variables, runs[1].model.trainable_variables, strict=True
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize(
    "objective,kwargs",
    [("iwae", dict(num_importance=4)), ("ml", dict(num_importance=64, scale=0.2))],
)
def test_other_objectives_train(objective, kwargs):
    x = load_data("digits-gaussian", "train")[:256]
    result = train(
        x,
        latent_dim=2,
        likelihood="gaussian",
        objective=objective,
        epochs=3,
        seed=0,
        **kwargs,
        **SMALL,
    )
    phases = {h["phase"] for h in result.history}
    assert phases == ({"ml", "encoder"} if objective == "ml" else {objective})
    first = [h for h in result.history if h["phase"] == objective][0]
    best = max(h["valid"] for h in result.history if h["phase"] == objective)
    assert best > first["valid"]
    assert np.isfinite(result.final_valid_elbo)


def test_ml_objective_is_a_soft_min_of_l2_errors():
    """With fixed sigma: logsumexp_i log N(x; g(z_i), sigma^2 I) - log k
    = logsumexp_i(-||x - g(z_i)||^2 / (2 sigma^2)) - D log(sigma sqrt(2 pi)) - log k."""
    sigma, k = 0.3, 16
    x = load_data("digits-gaussian", "train")[:5]
    model = build_model(64, 2, "gaussian", scale=sigma, decoder_hidden=(8,), encoder_hidden=(8,))
    seed = tf.constant([0, 7], tf.int64)
    got = float(objective_value(model, x, "ml", k, seed))
    from estimators import sampling

    z = sampling.sample(model.prior, [k, 1], seed)
    g = model.decoder(z).numpy()  # [k, 1, D]
    sq = np.sum((x[None].astype(np.float64) - g) ** 2, axis=-1)  # [k, N]
    lse = np.logaddexp.reduce(-sq / (2 * sigma**2), axis=0)
    want = np.mean(lse) - 64 * math.log(sigma * math.sqrt(2 * math.pi)) - math.log(k)
    assert got == pytest.approx(want, abs=1e-3 * abs(want))


def test_elbo_objective_equals_the_estimator_elbo():
    x = load_data("digits-bernoulli", "test")[:8]
    model = build_model(64, 3, "bernoulli", decoder_hidden=(8,), encoder_hidden=(8,), seed=1)
    from estimators.estimator import estimate

    a = float(objective_value(model, x, "elbo", 5000, tf.constant([0, 1], tf.int64)))
    b = float(np.mean(estimate(model, x, "elbo", 5000, seed=2)))
    # Two independent means of 8 x 5000 log w (sd of log w here < 5 nats): SE of a - b < 0.04.
    assert a == pytest.approx(b, abs=0.2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(objective="nope"), "objective"),
        (dict(objective="iwae", num_importance=1), "num_importance"),
        (dict(objective="ml"), "fixes the decoder variance"),
        (dict(objective="iwae", num_importance=2, warmup_epochs=5), "warm-up"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    x = load_data("pinwheel", "train")[:64]
    with pytest.raises(ValueError, match=match):
        train(x, latent_dim=2, likelihood="gaussian", epochs=1, **kwargs, **SMALL)


def test_train_named_writes_a_loadable_model(tmp_path):
    from estimators import zoo
    from estimators.zoo.recipes import train_named

    info = train_named("pinwheel-gaussian-d2", tmp_path, epochs=1, progress=False, evaluate=False)
    assert info["reproduce"]["command"] == "estimators train pinwheel-gaussian-d2 --epochs 1"
    assert zoo.available_models(tmp_path) == ["pinwheel-gaussian-d2"]
    model = zoo.load_model("pinwheel-gaussian-d2", tmp_path)
    assert zoo.manifest("pinwheel-gaussian-d2", tmp_path)["training"]["epochs_run"] == 1
    x = load_data("pinwheel-gaussian-d2", "test")[:4]
    assert np.all(np.isfinite(model.amortized_posterior(x).mean().numpy()))
    with pytest.raises(ValueError, match="no recipe"):
        train_named("digits-d3", tmp_path)


def test_weight_decay_shrinks_the_decoder_weights_only(digits_bernoulli):
    """weight_decay adds -lambda ||W||^2 / n_train to the objective for the decoder's weight
    matrices: with a large lambda they end smaller than without, same seed; the encoder's and
    every bias are not decayed (the encoder's norm moves by training alone)."""
    x = digits_bernoulli[:256]
    # Adam moves each weight by about the learning rate per step whatever the gradient's size:
    # with the penalty dominating, 15 steps of 0.01 take ~0.15 off every |w| (typically 0.1-0.3).
    settings = dict(latent_dim=2, likelihood="bernoulli", epochs=5, learning_rate=1e-2, seed=1)
    runs = {wd: train(x, weight_decay=wd, **settings, **SMALL) for wd in (0.0, 500.0)}

    def norm(model, part):
        return sum(float(tf.reduce_sum(w**2)) for w in getattr(model, part).weights)

    plain, decayed = runs[0.0].model, runs[500.0].model
    assert norm(decayed, "decoder") < 0.5 * norm(plain, "decoder")
    encoder = plain.amortized_posterior.encoder, decayed.amortized_posterior.encoder
    ratio = sum(float(tf.reduce_sum(w**2)) for w in encoder[1].weights) / sum(
        float(tf.reduce_sum(w**2)) for w in encoder[0].weights
    )
    assert 0.8 < ratio < 1.25
