"""Infinite mixtures of autoregressive components: masks, normalisation, sampling, estimators.

Exact answers come from enumeration (all 2^6 binary x) and grid quadrature (2-D latent).
Statistical checks state their false-alarm rate; seeds are fixed, so a pass is reproducible.
"""

import itertools

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import InfiniteMixture, estimate, methods, presets, sampling
from estimators.models.autoregressive import AutoregressiveLikelihood, ConditionalMADE, made_masks

tfb = tfp.bijectors
KINDS = ("autoregressive_bernoulli", "autoregressive_gaussian")
D = 6
ALL_BINARY = np.array(list(itertools.product([0.0, 1.0], repeat=D)))  # [64, 6]
K = 4.0  # standard errors: a false alarm has probability ~6e-5 per check
POINTS, REPEATS = 10, 400


def exact_model(kind, latent_dim=1, seed=1):
    """A float64 model without encoder; d = 1 keeps quadrature over all 64 patterns cheap."""
    return presets.autoregressive_infinite_mixture(
        kind, data_dim=D, latent_dim=latent_dim, seed=seed, posterior_pairs=0, dtype=tf.float64
    )


@pytest.fixture(scope="module")
def bernoulli_exact():
    """(float64 Bernoulli model with d = 1, its quadrature log p(x) over all 64 patterns)."""
    model = exact_model("autoregressive_bernoulli")
    return model, np.asarray(model.log_marginal(ALL_BINARY), np.float64)


@pytest.fixture(scope="module")
def tiny(bernoulli_exact):
    """(model, x, log p(x)): the quadrature-truth model of the presets (D = 6, d = 1, Bernoulli,
    with a regression posterior; float32, as the estimators run) and 10 points drawn from it.
    Their truths are looked up in the quadrature table of its float64 twin (same weights)."""
    model = presets.autoregressive_infinite_mixture(
        data_dim=D, latent_dim=1, seed=1, posterior_pairs=5000
    )
    x = model.sample(POINTS, seed=11).numpy()
    return model, x, bernoulli_exact[1][_pattern_index(x)]


def _pattern_index(x):
    """The row of ALL_BINARY that each binary x [N, D] is."""
    return (np.asarray(x) @ (2 ** np.arange(D - 1, -1, -1))).astype(int)


def random_dense_weights(network, seed=0):
    """Overwrite every weight, masked entries included, with N(0, 1): the mask must still hold."""
    rng = np.random.default_rng(seed)
    for var in network.trainable_variables:
        var.assign(rng.normal(size=var.shape).astype(var.dtype.as_numpy_dtype))


# ----------------------------------------------------------------------------- the masks


def test_masks_are_tfps_connection_for_connection():
    """Our masks equal tfb.AutoregressiveNetwork's (its kernels are initialised masked, so their
    nonzero pattern is its mask). TFP orders outputs pixel-major (i * P + p); ours is (p * D + i)."""
    data_dim, latent_dim, hidden, params = 7, 3, [9, 5], 2
    tfp_net = tfb.AutoregressiveNetwork(
        params=params,
        event_shape=[data_dim],
        conditional=True,
        conditional_event_shape=[latent_dim],
        hidden_units=hidden,
    )
    tfp_net(tf.zeros([1, data_dim]), conditional_input=tf.zeros([1, latent_dim]))
    kernels = [
        v.numpy()
        for v in tfp_net.trainable_variables
        if v.shape.rank == 2 and v.shape[0] != latent_dim
    ]  # the masked (not the z) ones
    ours = made_masks(data_dim, hidden, params)
    assert len(kernels) == len(ours) == 3
    for k in range(2):
        np.testing.assert_array_equal(kernels[k] != 0, ours[k])
    tfp_out = (kernels[2] != 0).reshape(hidden[-1], data_dim, params)  # [H, pixel, param]
    np.testing.assert_array_equal(np.transpose(tfp_out, (0, 2, 1)).reshape(hidden[-1], -1), ours[2])


@pytest.mark.parametrize("num_params", [1, 2])
def test_changing_x_j_never_changes_the_parameters_of_pixels_up_to_j(num_params):
    """For random x, z and random dense weights (masked entries nonzero too), changing x_j leaves
    the parameters of pixels i <= j unchanged and (power) changes those of pixel j + 1."""
    data_dim = 8
    network = ConditionalMADE(data_dim, 2, (16, 16), num_params, seed=3, dtype=tf.float64)
    random_dense_weights(network)
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(50, data_dim)), rng.normal(size=(50, 2))
    before = network(x, z).numpy()  # [50, P, D]
    for j in range(data_dim):
        changed = x.copy()
        changed[:, j] += rng.normal(size=50) * 3.0
        after = network(changed, z).numpy()
        np.testing.assert_array_equal(after[..., : j + 1], before[..., : j + 1])
        if j + 1 < data_dim:
            assert np.all(np.abs(after[..., j + 1] - before[..., j + 1]) > 0)


def test_the_autoregressive_property_survives_saving_and_loading():
    network = ConditionalMADE(5, 2, (7,), 2, seed=0)
    random_dense_weights(network)
    arrays = network.to_arrays("decoder/")
    assert all(np.all(arrays[f"decoder/w{k}"][~mask] == 0) for k, mask in enumerate(network.masks))
    loaded = ConditionalMADE.from_arrays(arrays, prefix="decoder/", num_params=2)
    x, z = np.ones((3, 5)), np.ones((3, 2))
    np.testing.assert_allclose(loaded(x, z).numpy(), network(x, z).numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------- normalisation


def test_log_p_x_given_z_sums_to_one_over_all_binary_x(bernoulli_exact):
    """sum over the 2^6 patterns of p(x | z) = 1 for every z (exact enumeration, float64), also
    with random dense weights, and the quadrature marginal p(x) sums to 1 as well."""
    model = exact_model("autoregressive_bernoulli")
    z = tf.random.stateless_normal([5, 1], seed=[0, 1], dtype=tf.float64) * 2.0
    for _weights in ("as built", "dense"):
        log_lik = model.likelihood(z).log_prob(ALL_BINARY[:, None, :])  # [64, 5]
        np.testing.assert_allclose(tf.reduce_logsumexp(log_lik, axis=0).numpy(), 0.0, atol=1e-12)
        random_dense_weights(model.decoder, seed=5)
    assert abs(np.logaddexp.reduce(bernoulli_exact[1])) < 1e-10  # quadrature error ~1e-15


def test_log_prob_is_the_sum_of_the_conditionals_and_broadcasts():
    """log p(x | z) for x [N, D] against z [S, N, d] is [S, N] and equals the chain rule computed
    pixel by pixel with tfd.Bernoulli / tfd.Normal on the network's outputs."""
    for kind in KINDS:
        model = exact_model(kind)
        x = model.sample(4, seed=2).numpy()
        z = tf.random.stateless_normal([3, 4, 1], seed=[0, 2], dtype=tf.float64)
        got = model.likelihood(z).log_prob(x).numpy()
        assert got.shape == (3, 4)
        params = model.decoder(np.broadcast_to(x, (3, 4, D)), z).numpy()  # [3, 4, P, D]
        if kind == "autoregressive_bernoulli":  # log sigmoid(l) if x = 1, log sigmoid(-l) if 0
            logit = params[:, :, 0]
            want = x * logit - np.logaddexp(0.0, logit)
        else:
            scale = 0.01 + np.logaddexp(0.0, params[:, :, 1])
            want = scipy.stats.norm.logpdf(x, params[:, :, 0], scale)
        np.testing.assert_allclose(got, want.sum(-1), rtol=1e-12)


# ----------------------------------------------------------------------------- sampling


def _chi_squared_against(counts, probs):
    """Pearson's statistic and its degrees of freedom, pooling cells with expected count < 5."""
    expected = counts.sum() * probs
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    return float(np.sum((obs[keep] - exp[keep]) ** 2 / exp[keep])), int(keep.sum() - 1)


def _pattern_counts(x):
    return np.bincount(_pattern_index(x), minlength=2**D)


def test_sampled_patterns_match_exp_log_prob_chi_squared(bernoulli_exact):
    """x ~ p(x | z) by the D-pass sampler, 20000 draws at each of 3 z: the 64 pattern counts
    against exp(log p(x | z)), and model.sample's x ~ p(x) against the quadrature p(x).
    One Pearson chi-squared test over all 4 independent tables (dof summed): false-alarm rate
    1e-3. Power: the same draws with two pixels swapped (a sampler that mixes up the order) fail."""
    model, log_p = bernoulli_exact
    z = tf.constant([[0.0], [1.5], [-2.0]], tf.float64)
    draws = sampling.sample(model.likelihood(z), [20000], tf.constant([7, 1], tf.int64)).numpy()
    probs = np.exp(model.likelihood(z).log_prob(ALL_BINARY[:, None, :]).numpy())  # [64, 3]
    stat, dof = 0.0, 0
    for k in range(3):
        s, d = _chi_squared_against(_pattern_counts(draws[:, k]), probs[:, k])
        stat, dof = stat + s, dof + d
    x = model.sample(20000, seed=3).numpy()
    s, d = _chi_squared_against(_pattern_counts(x), np.exp(log_p))
    stat, dof = stat + s, dof + d
    assert scipy.stats.chi2.sf(stat, dof) > 1e-3, (stat, dof)
    # Power: the same draws with pixels 0 and 1 swapped are rejected.
    swapped = draws[:, 1][:, [1, 0, 2, 3, 4, 5]]
    s, d = _chi_squared_against(_pattern_counts(swapped), probs[:, 1])
    assert scipy.stats.chi2.sf(s, d) < 1e-6


def test_gaussian_sampler_residuals_are_standard_normal_and_reparameterized():
    """x ~ p(x | z) (Gaussian): the residuals eps_i = (x_i - m_i(x_<i, z)) / s_i(x_<i, z), from one
    network pass on the drawn x, are N(0, 1) in every pixel (KS test over 6 pixels x 8000 draws,
    Bonferroni: family false-alarm rate 1e-3), and the draw is differentiable in z."""
    model = exact_model("autoregressive_gaussian")
    z = tf.Variable(tf.constant([[0.5]], tf.float64))
    with tf.GradientTape() as tape:
        x = sampling.sample(
            model.likelihood(z), [8000], tf.constant([3, 3], tf.int64)
        )  # [8000, 1, 6]
        total = tf.reduce_sum(x)
    grad = tape.gradient(total, z)
    assert grad is not None and np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0)
    cond = model.likelihood(z).conditionals(x)
    eps = ((x - cond.loc) / cond.scale).numpy()[:, 0]
    for i in range(D):
        assert scipy.stats.kstest(eps[:, i], "norm").pvalue > 1e-3 / D, i


def test_likelihood_is_differentiable_in_z():
    """AIS and HMC need d log p(x | z) / dz: finite, and equal to a central finite difference."""
    for kind in KINDS:
        model = exact_model(kind)
        x = model.sample(3, seed=1)
        z = tf.Variable(tf.random.stateless_normal([3, 1], seed=[1, 1], dtype=tf.float64))
        with tf.GradientTape() as tape:
            log_lik = tf.reduce_sum(model.likelihood(z).log_prob(x))
        grad = tape.gradient(log_lik, z).numpy()
        h = 1e-6
        step = np.zeros((3, 1))
        step[:, 0] = h
        fd = (
            tf.reduce_sum(model.likelihood(z + step).log_prob(x))
            - tf.reduce_sum(model.likelihood(z - step).log_prob(x))
        ).numpy() / (2 * h)
        assert fd == pytest.approx(grad[:, 0].sum(), rel=1e-5, abs=1e-7)


def test_sample_returns_latents_and_the_same_x():
    model = exact_model("autoregressive_bernoulli")
    x, z = model.sample(5, seed=4, return_latents=True)
    assert x.shape == (5, D) and z.shape == (5, 1)
    np.testing.assert_array_equal(x.numpy(), model.sample(5, seed=4).numpy())
    assert set(np.unique(x.numpy())) <= {0.0, 1.0}
    assert isinstance(model.likelihood(z), AutoregressiveLikelihood)
    assert model.likelihood(z).batch_shape == [5] and model.likelihood(z).event_shape == [D]


# ----------------------------------------------------------------------------- the estimators


@pytest.mark.parametrize("method", methods.names())
def test_every_estimator_against_the_quadrature_truth(tiny, bernoulli_exact, method):
    """Every registered method on the quadrature-truth model, judged by its bound direction:
    unbiased for p(x) -> the mean of p^ / p over 10 points x R repeats is 1 within K standard
    errors; unbiased for 1/p(x) (bdmc, from simulated pairs (x, z), each z an exact posterior
    draw) -> the mean of p / p^ is 1; a deterministic lower bound (the ELBO) -> its mean is below
    log p(x) by more than K SE; no bound -> its mean error is within K SE of 0 or of a small bias.
    Importance samplers run in graph mode (compiles ~3x faster here), annealing methods in XLA."""
    model, x, truth = tiny
    spec = methods.parse(method)
    if spec.method.peer:
        pytest.skip(
            "a peer library is measured against exact answers (tests/test_peers.py), not held to a bound"
        )
    options, repeats, jit, latents = {}, REPEATS, False, None
    num_samples = max(16, spec.method.min_samples)  # psis needs a Pareto tail of 5 weights
    if spec.method.samples != "samples":  # chains or particles: a few temperatures, XLA
        options, num_samples, repeats, jit = (
            {"steps": 10} if "steps" in spec.kwargs else {},
            4,
            100,
            True,
        )
    rows, truths = np.tile(x, (repeats, 1)), np.tile(truth, repeats)
    if methods.NEEDS_EXACT_SAMPLES in spec.method.needs:
        rows, latents = model.sample(POINTS * repeats, seed=5, return_latents=True)
        truths = bernoulli_exact[1][_pattern_index(rows.numpy())]
    est = estimate(
        model,
        rows,
        method,
        num_samples,
        seed=7,
        jit_compile=jit,
        posterior_samples=latents,
        **options,
    )
    error = np.asarray(est, np.float64) - truths
    se_error = error.std(ddof=1) / np.sqrt(error.size)
    if spec.method.bound == methods.LOWER:
        assert error.mean() + K * se_error < 0
        return
    if spec.method.bound == methods.NO_BOUND:
        assert abs(error.mean()) < K * se_error + 0.05, (error.mean(), se_error)
        return
    ratio = np.exp(-error if spec.method.bound == methods.STOCHASTIC_UPPER else error)
    se = ratio.std(ddof=1) / np.sqrt(ratio.size)
    assert abs(ratio.mean() - 1.0) < K * se, (ratio.mean(), se)
    assert se < 0.05  # power: a missing -log M would move the mean to M


# ----------------------------------------------------------------------------- input checks


def test_bernoulli_likelihoods_reject_non_binary_x(tiny):
    model = tiny[0]
    x = np.zeros((3, D))
    x[2, 4] = 0.5
    with pytest.raises(ValueError, match=r"binary x \(0 or 1\); x\[2, 4\] = 0.5"):
        estimate(model, x, "naive_mc", 4, seed=0)
    with pytest.raises(ValueError, match="binary"):
        model.log_prob(x)
    exact_model("autoregressive_gaussian").check_data(x)  # the Gaussian variant takes any real x


def test_bad_networks_are_rejected():
    net = ConditionalMADE(4, 2, (8,), num_params=1)
    with pytest.raises(ValueError, match="num_params = 2"):
        InfiniteMixture(net, 2, "autoregressive_gaussian")
    with pytest.raises(ValueError, match="latent_dim = 3"):
        InfiniteMixture(net, 3, "autoregressive_bernoulli")
    with pytest.raises(ValueError, match="min_scale"):
        InfiniteMixture(ConditionalMADE(4, 2, (8,), 2), 2, "autoregressive_gaussian", min_scale=0)
    with pytest.raises(ValueError, match="not log_scale"):
        InfiniteMixture(
            ConditionalMADE(4, 2, (8,), 2),
            2,
            "autoregressive_gaussian",
            log_scale=tf.Variable(tf.zeros([4])),
        )
    with pytest.raises(ValueError, match="z has last dimension 3"):
        net(np.zeros((1, 4)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="activation"):
        ConditionalMADE(4, 2, (8,), activation="sine")


# ----------------------------------------------------------------------------- zoo, training, preset

AR_MODELS = ("digits-bernoulli-ar-d8", "digits-gaussian-ar-d8")


@pytest.mark.parametrize("name", AR_MODELS)
def test_shipped_autoregressive_model_reproduces_its_manifest(name):
    """The loaded model's test ELBO, from fresh noise, equals the manifest's to 0.05 nats (both are
    Monte Carlo means over the 360 test points; the combined SE is asserted below 0.01, so 0.05
    is a > 5-sigma band). The manifest's latent usage is consistent with its own threshold."""
    from estimators import data as datasets
    from estimators import zoo

    model, info = zoo.load_model(name), zoo.manifest(name)
    assert model.autoregressive and model.likelihood_kind == info["architecture"]["likelihood"]
    assert datasets.dataset_name(name) == info["data"]
    results = info["results"]
    elbo, se = zoo.mean_estimate_with_se(
        model, datasets.load_data(name, "test"), "elbo", 256, seed=99
    )
    assert np.hypot(se, results["test_elbo_se"]) < 0.01
    assert abs(elbo - results["test_elbo"]) < 0.05
    latent = results["latent"]
    assert latent["active_dims"] == sum(
        kl > latent["active_threshold_nats"] for kl in latent["kl_per_dim"]
    )
    assert results["test_log_p_se"] < 0.01 and results["test_log_p"] > results["test_elbo"]


@pytest.mark.parametrize("name", AR_MODELS)
def test_the_stronger_component_is_not_the_worse_model(name):
    """A model with an autoregressive component is at least as good on held-out data as its
    independent-pixel twin (manifests: reference log p(x) over all 360 test points, 1e5 samples
    each): within 3 combined SEs or better. The binary twin once lost 0.42 nats by overfitting;
    its recipe now decays the decoder's weights and warms the KL term up."""
    from estimators import zoo

    ar, twin = zoo.manifest(name)["results"], zoo.manifest(name.replace("-ar", ""))["results"]
    se = np.hypot(ar["test_log_p_se"], twin["test_log_p_se"])
    assert ar["test_log_p"] > twin["test_log_p"] - 3 * se


def test_training_an_autoregressive_mixture_improves_it_and_keeps_the_masks():
    """Three epochs of the IWAE objective (the zoo recipes use the ELBO) through the ordinary
    training loop raise the validation bound, and the masked weights stay exactly 0 (they get
    zero gradient, so Adam never moves them)."""
    from estimators.data import load_data
    from estimators.train import train

    x = load_data("digits-bernoulli", "train")[:256]
    result = train(
        x,
        latent_dim=2,
        likelihood="autoregressive_bernoulli",
        objective="iwae",
        num_importance=4,
        epochs=3,
        eval_samples=4,
        decoder_hidden=(32,),
        encoder_hidden=(16,),
        learning_rate=3e-3,
        seed=0,
        progress=False,
    )
    valid = [h["valid"] for h in result.history]
    assert max(valid) > valid[0] and np.isfinite(result.final_valid_elbo)
    network = result.model.decoder
    for weights, mask in zip(network.weights, network.masks, strict=False):
        assert np.all(weights.numpy()[~mask] == 0)


def test_autoregressive_preset_pairs_each_model_with_its_twin():
    from estimators import zoo

    preset = presets.get_preset("autoregressive", quick=True)
    assert list(preset.models) == list(zoo.AUTOREGRESSIVE_MODELS)
    assert list(preset.methods) == methods.preset_default_names()
    for name, model in preset.models.items():
        assert model.autoregressive == ("-ar-" in name)
        model.check_data(preset.data[name])  # binary data for the Bernoulli models
    twins = {name.replace("-ar", ""): name for name in preset.models if "-ar-" in name}
    for plain, ar in twins.items():
        np.testing.assert_array_equal(preset.data[plain], preset.data[ar])
    assert "autoregressive" in presets.PRESETS and presets.describe("autoregressive")


def test_report_models_table_reads_the_run_and_the_manifests():
    """ELBO gap = -(mean ELBO bias over M); Var at M = 64 from the run; latent usage from the
    shipped manifest (a model without one gets dashes)."""
    import pandas as pd

    from estimators import zoo
    from estimators.report import model_facts

    rows = []
    for model in ("digits-bernoulli-ar-d8", "toy"):
        for method, bias, variance in (
            ("elbo", -0.5, 0.1),
            ("naive_mc", -2.0, 3.0),
            ("posterior_is", -0.01, 0.02),
        ):
            for m in (16, 64):
                rows.append(
                    dict(
                        model=model,
                        method=method,
                        num_samples=m,
                        bias=bias * (1.2 if m == 64 else 0.8),
                        variance=variance * m,
                    )
                )
    facts = model_facts(pd.DataFrame(rows)).set_index("model")
    assert facts.loc["toy", "ELBO gap"] == pytest.approx(0.5)
    assert facts.loc["toy", "Var naive MC M=64"] == pytest.approx(3.0 * 64)
    assert facts.loc["toy", "Var posterior-IS M=64"] == pytest.approx(0.02 * 64)
    assert facts.loc["toy", "active dims"] == "—" and np.isnan(facts.loc["toy", "latent carries"])
    latent = zoo.manifest("digits-bernoulli-ar-d8")["results"]["latent"]
    assert facts.loc["digits-bernoulli-ar-d8", "active dims"].startswith(
        f"{latent['active_dims']} / 8"
    )
    assert facts.loc["digits-bernoulli-ar-d8", "latent carries"] == latent["latent_carries"]
