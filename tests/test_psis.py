"""Pareto k-hat, psis, defensive_is and jackknife_iwae against ArviZ and exact answers.

ArviZ (a test-only dependency, pinned in pyproject's ``test`` extra) is the reference for the
k-hat and the smoothed weights. Statistical checks use fixed seeds and tolerances of K standard
errors; repeats are rows of a tiled x (each row draws its own samples).
"""

import warnings

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import estimate, methods
from estimators.algorithms import importance, jackknife_iwae, pareto
from estimators.models.base import as_seed, model_cache
from estimators.sweep import sweep

from conftest import make_linear_gaussian

with warnings.catch_warnings():  # ArviZ announces its refactor with a FutureWarning on import
    warnings.simplefilter("ignore")
    import arviz

tfd = tfp.distributions
K = 4.0
LG = make_linear_gaussian(D=6, d=2, sigma=0.5)  # one model: compiled functions are shared


def scaled_posterior(model, scale, shift=0.0):
    """q(z|x): the exact posterior shifted and scaled. scale < 1 makes the weights heavy-tailed
    (for a Gaussian, w has moments of order < 1 / (1 - scale^2): Pareto k = 1 - scale^2)."""

    def q(x):
        post = model.posterior(x)
        return tfd.MultivariateNormalTriL(post.mean() + shift, scale * post.scale_tril)

    return q


NARROW = scaled_posterior(LG, 0.6)


def tiled(points, repeats, seed=5):
    x = LG.sample(points, seed=seed).numpy()
    return np.tile(x, (repeats, 1)), np.tile(LG.log_marginal(x).numpy().astype(np.float64), repeats)


def streamed_tail(log_w, chunk, rest=False):
    """pareto_tail of log_w [M, N] folded through the running top ``chunk`` samples at a time
    (with ``rest``: also the sums outside the top, as psis keeps them)."""
    num_samples, n = log_w.shape
    top = pareto.empty_top(n, pareto.capacity(num_samples), tf.float64)
    sums = pareto.empty_rest(n, tf.float64)
    for start in range(0, num_samples, chunk):
        lw = tf.constant(log_w[start : start + chunk])
        if rest:
            top, sums = pareto.update_top_and_rest(top, sums, lw)
        else:
            top = pareto.update_top(top, lw)
    tail = pareto.pareto_tail(top, num_samples)
    return (tail, sums) if rest else tail


def psis_log_mean(log_w, chunk=None):
    """The psis estimate from log weights [M, N], streamed in chunks."""
    tail, sums = streamed_tail(log_w, chunk or log_w.shape[0], rest=True)
    return pareto.smoothed_log_sums(tail, sums)[0].numpy() - np.log(log_w.shape[0])


def arviz_psis(log_w):
    """(k-hat [N], log mean of ArviZ's unnormalised smoothed weights [N]) for log_w [M, N]."""
    smoothed, khat = arviz.psislw(np.ascontiguousarray(log_w.T), normalize=False)
    return khat, np.log(
        np.mean(np.exp(smoothed - smoothed.max(axis=1, keepdims=True)), axis=1)
    ) + smoothed.max(axis=1)


def fixed_log_weights(kind, num_samples, columns=4, seed=0):
    rng = np.random.default_rng(seed)
    shape = (num_samples, columns)
    if kind == "normal":
        return 2.0 * rng.normal(size=shape)
    if kind == "student_t":  # log-Student-t weights: a very heavy tail
        return rng.standard_t(3, size=shape)
    if kind == "pareto":
        return -0.8 * np.log(rng.uniform(size=shape)) + 40.0  # large offset: shift handled
    if kind == "bounded":
        return np.log(rng.uniform(size=shape))
    raise ValueError(kind)


# ---------------------------------------------------------------------------------- ArviZ


@pytest.mark.parametrize("kind", ["normal", "student_t", "pareto", "bounded"])
@pytest.mark.parametrize("num_samples", [21, 64, 1000, 4096])
def test_khat_and_psis_estimate_agree_with_arviz(kind, num_samples):
    log_w = fixed_log_weights(kind, num_samples)
    khat, log_mean = arviz_psis(log_w)
    tail = streamed_tail(log_w, chunk=100)
    np.testing.assert_allclose(tail.khat.numpy(), khat, atol=1e-3)
    np.testing.assert_allclose(psis_log_mean(log_w, chunk=100), log_mean, atol=1e-9, rtol=1e-9)


def test_estimator_khat_and_psis_agree_with_arviz_on_their_own_weights():
    """Rebuild the estimator's log weights from its chunk seeds (graph mode = eager kernels)."""
    x = LG.sample(3, seed=1)
    num_samples, chunk, seed = 300, 64, 11
    log_p, diag = estimate(
        LG,
        x,
        "psis",
        num_samples,
        seed=seed,
        proposal=NARROW,
        chunk_size=chunk,
        jit_compile=False,
        return_diagnostics=True,
    )
    spec, q, base = methods.parse("psis"), NARROW(x), as_seed(seed)
    chunks = [
        importance.standard_log_weights(
            LG, spec, x, q, tf.random.experimental.stateless_fold_in(base, i, alg="philox"), chunk
        )
        for i in range(-(-num_samples // chunk))
    ]
    log_w = tf.concat(chunks, axis=0)[:num_samples].numpy().astype(np.float64)
    khat, log_mean = arviz_psis(log_w)
    np.testing.assert_allclose(diag["khat"].numpy(), khat, atol=1e-3)
    np.testing.assert_allclose(log_p.numpy(), log_mean, atol=1e-4)
    # The same weights through posterior_is (same chunk seeds): its k-hat and its plain estimate.
    plain, plain_diag = estimate(
        LG,
        x,
        "posterior_is",
        num_samples,
        seed=seed,
        proposal=NARROW,
        chunk_size=chunk,
        jit_compile=False,
        return_diagnostics=True,
    )
    np.testing.assert_allclose(plain_diag["khat"].numpy(), khat, atol=1e-3)
    np.testing.assert_allclose(plain.numpy(), np.log(np.mean(np.exp(log_w), axis=0)), atol=1e-4)


# ---------------------------------------------------------------------- the tail and its index


@pytest.mark.parametrize("k", [-0.2, 0.3, 0.7, 1.2])
def test_khat_recovers_a_known_tail_index(k):
    """Weights with an exact generalized Pareto tail of index k: k-hat over 64 columns at
    M = 20000 (a tail of 425 weights) is within K SE of k, plus the weak prior's known pull
    (n k + 5) / (n + 10) - k toward 1/2."""
    rng = np.random.default_rng(int(10 * k) + 100)
    num_samples, columns = 20_000, 64
    u = rng.uniform(size=(num_samples, columns))
    log_w = np.log1p(np.expm1(-k * np.log1p(-u)) / k)  # 1 + GPD(k, 1) quantiles
    khat = streamed_tail(log_w, chunk=4096).khat.numpy()
    n = pareto.tail_size(num_samples)
    se = khat.std(ddof=1) / np.sqrt(columns)
    assert abs(khat.mean() - k) < K * se + abs((n * k + 5) / (n + 10) - k), (khat.mean(), k, se)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_streaming_top_gives_the_same_khat_as_sorting_every_weight(chunk):
    log_w = fixed_log_weights("student_t", 1000, columns=5, seed=3)
    top = tf.sort(tf.constant(log_w.T), axis=1, direction="DESCENDING")[
        :, : pareto.tail_size(1000) + 1
    ]
    whole = pareto.pareto_tail(top, 1000)
    streamed = streamed_tail(log_w, chunk)
    np.testing.assert_array_equal(streamed.khat.numpy(), whole.khat.numpy())
    np.testing.assert_array_equal(streamed.log_smoothed.numpy(), whole.log_smoothed.numpy())


def test_tail_size_minimum_and_capacity():
    assert [pareto.tail_size(m) for m in (20, 21, 100, 1000)] == [4, 5, 20, 95]
    assert pareto.MIN_SAMPLES == methods.PSIS_MIN_SAMPLES == 21
    for m in (21, 22, 100, 1000, 4096, 10**6):
        assert pareto.capacity(m) >= pareto.tail_size(m) + 1
        assert pareto.capacity(m, 256) >= 256
    assert pareto.capacity(20) == 0
    assert [pareto.capacity(m) for m in (21, 100, 4096)] == [8, 32, 256]
    assert {pareto.capacity(m, 256) for m in range(21, 7226)} == {256}  # one compiled function
    assert pareto.capacity(7226, 256) == 512


def test_no_tail_to_fit_gives_nan_and_leaves_the_weights_alone():
    """All weights equal (up to round-off, as under an exact posterior), or M < 21: k-hat NaN,
    psis = plain IS."""
    equal = np.full((500, 2), -3.0)
    equal[:, 1] += 1e-14 * np.random.default_rng(0).normal(size=500)  # float64 round-off
    tail = streamed_tail(equal, 100)
    assert np.all(np.isnan(tail.khat.numpy()))
    np.testing.assert_allclose(psis_log_mean(equal), [-3.0, -3.0])
    x = LG.sample(4, seed=0)
    _, diag = estimate(LG, x, "posterior_is", 500, seed=0, return_diagnostics=True)
    assert np.all(np.isnan(diag["khat"].numpy()))  # exact posterior: every weight is p(x)
    _, diag = estimate(LG, x, "naive_mc", 20, seed=0, return_diagnostics=True)
    assert np.all(np.isnan(diag["khat"].numpy()))


# ---------------------------------------------------------------------------- the estimators


@pytest.mark.parametrize(
    "method", ["naive_mc", "prior_is", "posterior_is", "psis", "defensive_is", "jackknife_iwae"]
)
def test_every_importance_sampler_reports_khat_with_diagnostics(method):
    x = LG.sample(4, seed=2)
    proposal = None if method in ("naive_mc", "prior_is") else NARROW
    log_p, diag = estimate(
        LG, x, method, 64, seed=1, proposal=proposal, return_diagnostics=True, jit_compile=False
    )
    assert set(diag) == {"ess", "khat", "se"}
    assert np.all(np.isfinite(diag["khat"].numpy())) and np.all(np.isfinite(log_p.numpy()))
    _, diag = estimate(
        LG, x, "elbo", 64, seed=1, proposal=NARROW, return_diagnostics=True, jit_compile=False
    )
    assert set(diag) == {"ess", "se"}


def test_plain_calls_keep_no_running_top_and_capacities_share_functions():
    model = make_linear_gaussian(D=3, d=1)
    x = model.sample(5, seed=0)
    for m in (30, 300, 5000):
        estimate(model, x, "naive_mc", m, seed=m)
    capacities = {key[0][-1] for key in model_cache(model, "importance")}
    assert capacities == {0}  # no diagnostics: no top, one function for every M
    for m in (21, 300, 5000):  # capacity 256 (the chunk size) for all three
        estimate(model, x, "naive_mc", m, seed=m, return_diagnostics=True)
    # The sweep's warm-up: a smaller M with the same options runs the same function.
    options = importance.compile_options(methods.parse("naive_mc"), 8000, 256)
    assert options == {"tail_capacity": 512}
    estimate(model, x, "naive_mc", 4, seed=0, return_diagnostics=True, **options)
    estimate(model, x, "naive_mc", 8000, seed=0, return_diagnostics=True)
    for capacity in (256, 512):
        fn = importance.compiled_estimator(model, "naive_mc", None, 256, True, capacity)
        assert fn.experimental_get_tracing_count() == 1


def test_psis_has_no_larger_rmse_than_posterior_is_on_heavy_tails():
    """q(z|x) 0.6x as wide as p(z|x): Pareto k = 1 - 0.36 = 0.64. Same seeds, so the two
    estimators see the same weights: the paired difference of squared errors is tested."""
    x, truth = tiled(5, 1000)
    for num_samples in (32, 100):
        plain = (
            estimate(LG, x, "posterior_is", num_samples, seed=3, proposal=NARROW).numpy() - truth
        )
        smoothed = estimate(LG, x, "psis", num_samples, seed=3, proposal=NARROW).numpy() - truth
        diff = smoothed**2 - plain**2
        assert diff.mean() < K * diff.std(ddof=1) / np.sqrt(diff.size), num_samples
        assert np.sqrt(np.mean(smoothed**2)) < np.sqrt(np.mean(plain**2))


def test_defensive_is_is_unbiased_and_its_weights_are_bounded():
    """E[p^ / p] = 1 with the narrow q (whose plain weights are heavy-tailed); every weight is at
    most max_z p(x|z) / alpha = N(0; 0, sigma^2 I) / alpha."""
    x, truth = tiled(5, 800)
    for alpha in (0.1, 0.5):
        est = estimate(
            LG, x, "defensive_is", 4, seed=7, proposal=NARROW, alpha=alpha, jit_compile=False
        ).numpy()
        ratio = np.exp(est - truth)
        se = ratio.std(ddof=1) / np.sqrt(ratio.size)
        assert abs(ratio.mean() - 1.0) < K * se, (alpha, ratio.mean(), se)
        single = estimate(
            LG, x, "defensive_is", 1, seed=8, proposal=NARROW, alpha=alpha, jit_compile=False
        ).numpy()
        sigma = float(LG.sigma.numpy())
        bound = -0.5 * LG.data_dim * np.log(2 * np.pi * sigma**2) - np.log(alpha)
        assert single.max() <= bound + 1e-4


def test_jackknife_matches_the_leave_one_out_formula_even_with_a_dominant_weight():
    """The streamed J against M L_M - (M - 1) mean_i L_{M-1}^(-i) with every leave-one-out sum
    added up directly (float64); one column has a weight e^30 times the others."""
    rng = np.random.default_rng(4)
    num_samples = 50
    log_w = rng.normal(size=(num_samples, 4))
    log_w[7, 1] += 30.0
    log_w[:, 3] = -2.0  # all equal: J = log w exactly
    state = jackknife_iwae.init(4, tf.float64)
    for start in range(0, num_samples, 16):
        state = jackknife_iwae.update(state, tf.constant(log_w[start : start + 16]))
    stats = importance.Stats(
        num_samples=tf.constant(num_samples),
        log_sum_w=tf.reduce_logsumexp(log_w, axis=0),
        log_sum_w2=tf.reduce_logsumexp(2 * log_w, axis=0),
        sum_log_w=tf.reduce_sum(log_w, axis=0),
        se=tf.zeros([4], tf.float64),  # the delta method's: the jackknife reports its own
        ess=tf.ones([4], tf.float64),
        log_w_spread=None,
        tail=None,
        rest=None,
        extra=state,
    )
    got, diagnostics = jackknife_iwae.finish(stats)
    w = np.exp(log_w - log_w.max(axis=0))
    leave_out = np.array(
        [[np.log(np.sum(np.delete(w[:, j], i))) for i in range(num_samples)] for j in range(4)]
    ).T + log_w.max(axis=0)
    full = np.log(np.sum(w, axis=0)) + log_w.max(axis=0) - np.log(num_samples)
    want = num_samples * full - (num_samples - 1) * np.mean(
        leave_out - np.log(num_samples - 1), axis=0
    )
    np.testing.assert_allclose(got.numpy(), want, atol=1e-9)
    assert got.numpy()[3] == pytest.approx(-2.0, abs=1e-12)
    # The jackknife SE: sqrt((M - 1)/M sum_i (L_(-i) - mean_i L_(-i))^2), summed directly.
    spread = np.sum((leave_out - leave_out.mean(axis=0)) ** 2, axis=0)
    want_se = np.sqrt((num_samples - 1) / num_samples * spread)
    np.testing.assert_allclose(diagnostics["se"].numpy(), want_se, rtol=1e-6, atol=1e-9)
    assert diagnostics["se"].numpy()[3] == 0.0


def test_jackknife_removes_most_of_the_iwae_bias():
    """A shifted, widened q(z|x): IWAE's bias is resolved and ~a/M; the jackknife's (O(1/M^2))
    is less than half of it at M = 8, 16 (same weights: same seeds), by more than K SE."""
    q = scaled_posterior(LG, 1.6, shift=0.3)
    x, truth = tiled(5, 4000)
    for num_samples in (8, 16):
        iwae, jack = (
            estimate(LG, x, method, num_samples, seed=4, proposal=q, jit_compile=False).numpy()
            - truth
            for method in ("posterior_is", "jackknife_iwae")
        )
        se_iwae, se_jack = (e.std(ddof=1) / np.sqrt(e.size) for e in (iwae, jack))
        assert iwae.mean() < -K * se_iwae  # a resolved negative bias
        assert abs(jack.mean()) + K * se_jack < (abs(iwae.mean()) - K * se_iwae) / 2, num_samples


def test_ais_reports_khat_of_its_weights_with_diagnostics():
    x = LG.sample(3, seed=4)
    method = "ais:start=prior,steps=5,adapt=none"
    _, diag = estimate(LG, x, method, 32, seed=0, return_diagnostics=True, jit_compile=False)
    assert np.all(np.isfinite(diag["khat"].numpy()))
    _, diag = estimate(LG, x, method, 8, seed=0, return_diagnostics=True, jit_compile=False)
    assert np.all(np.isnan(diag["khat"].numpy()))


def test_sweep_skips_m_below_a_methods_minimum_and_stores_khat():
    data = {"lg": LG.sample(3, seed=0).numpy()}
    df = sweep({"lg": LG}, ["psis", "posterior_is"], [4, 32], 2, data, progress=False)
    assert sorted(df.loc[df["method"] == "psis", "num_samples"].unique()) == [32]
    assert df.attrs["skipped"] == [
        {"model": "lg", "method": "psis", "reason": "psis needs num_samples >= 21; skipped M = 4"}
    ]
    assert df.loc[df["method"] == "psis", "khat"].isna().all()  # exact posterior: a flat tail
    assert df.loc[df["num_samples"] == 4, "khat"].isna().all()


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "method, num_samples, kwargs, match",
    [
        ("psis", 20, {}, "psis needs num_samples >= 21"),
        ("jackknife_iwae", 1, {}, "jackknife_iwae needs num_samples >= 2"),
        ("psis:beta=1", 64, {}, "unknown option 'beta' for method psis"),
        ("defensive_is", 8, {"alpha": 1.0}, "alpha must be < 1.0"),
        ("defensive_is", 8, {"alpha": -0.1}, "alpha must be >= 0.0"),
        ("defensive_is", 8, {"alpha": "a lot"}, "alpha must be float"),
        ("naive_mc", 300, {"tail_capacity": 16}, "tail_capacity = 16 is too small for M = 300"),
        ("naive_mc", 300, {"tail_capacity": 0}, "tail_capacity must be a positive integer"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(method, num_samples, kwargs, match):
    x = LG.sample(2, seed=0)
    with pytest.raises(ValueError, match=match):
        estimate(LG, x, method, num_samples, seed=0, return_diagnostics=True, **kwargs)
