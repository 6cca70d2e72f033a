"""Bring your own model: Keras decoders and encoders, TensorFlow callables, CallableModel.

Each user-shaped model is built with the same weights as an ``MLP``-based InfiniteMixture and
must give the same estimates (float32 round-off), through ``estimate`` and through the sweep.
Also: single-row data (N = 1) through estimate, reference_log_marginal and the sweep.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from estimators import (
    MLP,
    CallableModel,
    InfiniteMixture,
    LinearGaussian,
    estimate,
    methods,
    reference_log_marginal,
)
from estimators.fingerprint import FingerprintError, model_fingerprint
from estimators.models import networks
from estimators.sweep import sweep

tfd = tfp.distributions
d, H, D, SCALE = 2, 8, 4, 0.5
TIGHT = dict(rtol=2e-5, atol=2e-5)


def keras_copy(mlp, activation="tanh"):
    """A tf_keras Sequential starting with Input((in,)) holding the MLP's weights."""
    layers = [tf_keras.layers.Input((mlp.in_dim,))]
    for i, w in enumerate(mlp.weights):
        last = i == len(mlp.weights) - 1
        layers.append(tf_keras.layers.Dense(w.shape[1], activation=None if last else activation))
    net = tf_keras.Sequential(layers)
    for layer, w, b in zip(net.layers, mlp.weights, mlp.biases, strict=True):
        layer.set_weights([w.numpy(), b.numpy()])
    return net


@pytest.fixture(scope="module")
def models():
    """{name: model}: the MLP-based reference and three user-shaped equivalents."""
    decoder, encoder = MLP([d, H, D], seed=1), MLP([D, H, 2 * d], seed=2)
    reference = InfiniteMixture(decoder, d, scale=SCALE, encoder=encoder)
    keras = InfiniteMixture(keras_copy(decoder), d, scale=SCALE)  # data_dim: one trial call
    keras.attach_encoder(keras_copy(encoder))  # one [B, 2d] tensor: softplus scale ("auto")

    def log_likelihood(x, z):
        return tf.reduce_sum(tfd.Normal(decoder(z), SCALE).log_prob(x), -1)

    def sample_likelihood(z, seed):
        loc = decoder(z)
        return loc + SCALE * tf.random.stateless_normal(tf.shape(loc), seed, alg="philox")

    def encode(x):  # a pair (loc, log scale) computed by hand from the encoder's weights
        h = encoder(x)
        return h[:, :d], tf.math.log(tf.math.softplus(h[:, d:]) + networks.SOFTPLUS_FLOOR)

    callables = CallableModel(
        log_likelihood,
        latent_dim=d,
        sample_likelihood=sample_likelihood,
        encoder=encode,
        encoder_output="loc_log_scale",
        log_marginal=reference.log_marginal,  # the same p(x): quadrature, d = 2
    )
    return {"mlp": reference, "keras": keras, "callables": callables}


@pytest.fixture(scope="module")
def x(models):
    return models["mlp"].sample(6, seed=1).numpy()


def test_the_keras_decoder_with_an_input_layer_fails_on_three_dimensional_z_by_itself(models):
    """The problem: the suite calls decoders on z [S, N, d], which a Keras Input((d,)) refuses;
    the model flattens the leading dimensions around it (networks.flat_call)."""
    net = models["keras"].decoder
    with pytest.raises(ValueError, match="incompatible"):
        net(tf.zeros([3, 5, d]))
    assert models["keras"].data_dim == D
    assert models["keras"].likelihood(tf.zeros([3, 5, d])).batch_shape == [3, 5]


@pytest.mark.parametrize("method", ["naive_mc", "posterior_is", "ais", "smc"])
def test_user_models_give_the_mlp_models_estimates(models, x, method):
    """Graph mode (jit_compile=False) keeps these tests quick: an XLA compilation costs
    seconds per model and method, a graph trace a fraction of that; the numbers are the
    same code."""
    options = {"steps": 8, "adapt": "none"} if method == "ais" else {}  # no pilot: a quick trace
    results = {
        name: estimate(
            model, x, method, 32, seed=3, return_diagnostics=True, jit_compile=False, **options
        )
        for name, model in models.items()
    }
    want, want_diag = results.pop("mlp")
    for name, (got, diag) in results.items():
        np.testing.assert_allclose(got, want, **TIGHT, err_msg=name)
        np.testing.assert_allclose(diag["se"], want_diag["se"], rtol=1e-3, atol=1e-5)


def test_simulation_and_posterior_agree(models):
    want_x, want_z = models["mlp"].sample(5, seed=7, return_latents=True)
    for name in ("keras", "callables"):
        got_x, got_z = models[name].sample(5, seed=7, return_latents=True)
        np.testing.assert_allclose(got_z, want_z, **TIGHT)
        np.testing.assert_allclose(got_x, want_x, **TIGHT, err_msg=name)
    q_want = models["mlp"].amortized_posterior(tf.constant(want_x))
    for name in ("keras", "callables"):
        q = models[name].amortized_posterior(tf.constant(want_x))
        np.testing.assert_allclose(q.mean(), q_want.mean(), **TIGHT)
        np.testing.assert_allclose(q.stddev(), q_want.stddev(), **TIGHT)


def test_a_custom_prior_is_sampled_and_evaluated_through_the_callables(models, x):
    """sample_prior / log_prior equal to N(0, I) give the default prior's numbers (graph mode:
    under XLA the Philox stream of [S N, d] differs from that of [S, N, d])."""
    default = models["callables"]
    custom = CallableModel(
        default.log_likelihood_fn,
        data_dim=D,
        sample_prior=lambda n, seed: tf.random.stateless_normal(
            tf.stack([n, d]), seed, alg="philox"
        ),
        log_prior=lambda z: tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(z), -1),
    )
    assert custom.latent_dim == d
    for method, options in (
        ("naive_mc", {}),
        ("ais", {"steps": 5, "start": "prior", "adapt": "none"}),
    ):
        want = estimate(default, x, method, 16, seed=2, jit_compile=False, **options)
        got = estimate(custom, x, method, 16, seed=2, jit_compile=False, **options)
        np.testing.assert_allclose(got, want, **TIGHT, err_msg=method)
    z = tf.random.normal([3, 5, d])
    np.testing.assert_allclose(custom.prior.log_prob(z), default.prior.log_prob(z), **TIGHT)


def test_the_sweep_gives_the_same_table_for_every_model(models, x):
    tables = {
        name: sweep(
            {"m": model},
            ["naive_mc", "ais:steps=5,adapt=none"],
            [8],
            2,
            {"m": x},
            seed=1,
            progress=False,
            jit_compile=False,
        )
        for name, model in models.items()
    }
    want = tables.pop("mlp")
    for name, got in tables.items():
        np.testing.assert_allclose(got["estimate"], want["estimate"], **TIGHT, err_msg=name)


def test_encoder_conventions_are_checked_with_a_clear_error(models):
    model = models["mlp"]
    pair = lambda x: (x[:, :d], x[:, :d])  # noqa: E731
    wide = MLP([D, 3 * d], seed=0)
    with pytest.raises(ValueError, match=r"expects one \[B, 2d\] = \[1, 4\] tensor.*a pair"):
        model.attach_encoder(pair, "concat_loc_log_scale")
    with pytest.raises(
        ValueError, match=r"expects a pair of \[B, d\].*one tensor of shape \[1, 6\]"
    ):
        model.attach_encoder(wide, "loc_scale")
    with pytest.raises(ValueError, match=r"expects one \[B, 2d\].*shape \[1, 6\]"):
        model.attach_encoder(wide)
    with pytest.raises(ValueError, match="unknown encoder_output"):
        model.attach_encoder(pair, "loc_and_scale")
    with pytest.raises(ValueError, match=r"encoder fails on an input of shape \[1, 4\]"):
        model.attach_encoder(keras_copy(MLP([3, 2 * d])))
    # concat_loc_log_scale: scale = exp(second half)
    concat = CallableModel(models["callables"].log_likelihood_fn, latent_dim=d, data_dim=D)
    concat.attach_encoder(
        lambda x: tf.concat([x[:, :d], tf.zeros_like(x[:, :d])], -1), "concat_loc_log_scale"
    )
    q = concat.amortized_posterior(tf.ones([3, D]))
    np.testing.assert_allclose(q.stddev(), np.ones((3, d)))


def test_callable_model_errors_name_the_problem():
    loglik = lambda x, z: tf.reduce_sum(x, -1) + tf.reduce_sum(z, -1)  # noqa: E731
    with pytest.raises(ValueError, match="pass latent_dim"):
        CallableModel(loglik, data_dim=3)
    with pytest.raises(ValueError, match="pass data_dim"):
        CallableModel(loglik, latent_dim=2)
    with pytest.raises(ValueError, match="give both sample_prior and log_prior"):
        CallableModel(loglik, data_dim=3, sample_prior=lambda n, s: tf.zeros([n, 2]))
    with pytest.raises(
        ValueError, match=r"sample_prior\(n, seed\) must return z of shape \[n, d\]"
    ):
        CallableModel(
            loglik, data_dim=3, sample_prior=lambda n, s: tf.zeros([2]), log_prior=lambda z: z
        )
    with pytest.raises(ValueError, match=r"log_likelihood\(x, z\) must return \[B\]"):
        CallableModel(lambda x, z: x, latent_dim=2, sample_likelihood=lambda z, s: tf.zeros([1, 3]))
    model = CallableModel(loglik, latent_dim=2, data_dim=3)
    with pytest.raises(NotImplementedError, match="pass sample_likelihood"):
        model.sample(2, seed=0)
    with pytest.raises(NotImplementedError, match="no log_marginal"):
        model.log_marginal(np.zeros((1, 3)))


def test_fingerprints_of_user_models(models):
    """A Keras model is fingerprinted by its config and variables; plain functions cannot be;
    bound methods are fingerprinted by the object they are bound to."""
    keras = models["keras"]
    before = model_fingerprint(keras)
    kernel = keras.decoder.layers[0].kernel
    saved = kernel.numpy()
    kernel.assign(saved + 1.0)
    assert model_fingerprint(keras) != before
    kernel.assign(saved)
    assert model_fingerprint(keras) == before
    with pytest.raises(FingerprintError, match="log_likelihood"):
        model_fingerprint(models["callables"])

    class Owner(tf.Module):
        def __init__(self):
            super().__init__()
            self.shift = tf.Variable(0.0)

        def log_likelihood(self, x, z):
            return tf.reduce_sum(x, -1) * 0.0 + tf.reduce_sum(z, -1) + self.shift

    owner = Owner()
    bound = CallableModel(owner.log_likelihood, latent_dim=2, data_dim=3)
    first = model_fingerprint(bound)
    owner.shift.assign(1.0)
    assert model_fingerprint(bound) != first


# ------------------------------------------------------------------------------- N = 1


def single_row_model():
    rng = np.random.default_rng(4)
    return LinearGaussian(rng.normal(size=(5, 3)), np.zeros(5), 0.5)


@pytest.mark.parametrize("method", methods.names())
def test_estimate_on_a_single_row(method):
    """N = 1 as the model's first call: every method gives one finite estimate and se."""
    if methods.missing_packages(method):  # an optional peer library (pip install -e ".[peers]")
        pytest.skip(f"{method} needs {', '.join(methods.missing_packages(method))}")
    model = single_row_model()  # fresh: nothing compiled for it yet
    x1, z1 = model.sample(1, seed=0, return_latents=True)
    given = z1 if methods.REGISTRY[method].sandwich_side else None
    log_p, diag = estimate(
        model,
        x1,
        method,
        32,
        seed=0,
        return_diagnostics=True,
        posterior_samples=given,
        jit_compile=False,  # the same trace as XLA's, without XLA's compilation time
    )
    assert log_p.shape == [1] and np.isfinite(log_p.numpy()).all()
    assert diag["se"].shape == [1]


def test_reference_on_a_single_row():
    """The reference's IS pass on one row as its first call (it failed: 'Fill:0 enters the loop
    with shape (1,)') agrees with quadrature; a closed form gives SE 0."""
    model = InfiniteMixture(MLP([2, 8, 3], seed=5), 2, scale=0.7)
    x1 = model.sample(1, seed=0).numpy()
    one, one_se = reference_log_marginal(model, x1, method="is", num_samples=4096, cache=False)
    exact, _ = reference_log_marginal(model, x1, method="exact")
    assert one.shape == (1,) and one_se.shape == (1,) and 0 < one_se[0] < 0.05
    np.testing.assert_allclose(one, exact, atol=5 * one_se[0])
    closed, se = reference_log_marginal(single_row_model(), np.ones((1, 5)))
    assert closed.shape == (1,) and se[0] == 0


def test_sweep_on_a_single_row(models):
    model = models["keras"]
    x1 = model.sample(1, seed=2).numpy()
    df = sweep(
        {"m": model},
        ["naive_mc", "ais:steps=5,adapt=none"],
        [8],
        2,
        {"m": x1},
        progress=False,
        jit_compile=False,
    )
    assert len(df) == 2 * 2 and np.isfinite(df["estimate"]).all()
