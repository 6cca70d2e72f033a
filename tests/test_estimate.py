"""estimate(): exact answers, identities, unbiasedness, compilation and bad input.

Statistical checks use fixed seeds and tolerances of K standard errors of the quantity tested
(SE = sample sd / sqrt(n)); repeats are independent rows of a tiled x (each row gets its own
samples), so one call yields thousands of independent estimates.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import METHODS, estimate
from estimators.algorithms.importance import compiled_estimator
from estimators.algorithms.logspace import finish_logsumexp as _finish_logsumexp
from estimators.algorithms.logspace import running_logsumexp as _running_logsumexp
from estimators.estimator import DEFAULT_CHUNK_SIZE, default_chunk_size
from estimators.methods import parse
from estimators.models.base import model_cache

from conftest import make_gmm, make_linear_gaussian, make_nonlinear

tfd = tfp.distributions
K = 4.0  # tolerance in standard errors: a false alarm has probability ~6e-5 per check
POINTS, REPEATS = 10, 400


def repeated(model, seed=11):
    """POINTS data points, each repeated REPEATS times: rows [REPEATS * POINTS, D] and truths."""
    x = model.sample(POINTS, seed=seed).numpy()
    truth = np.asarray(model.log_marginal(x), np.float64)
    return np.tile(x, (REPEATS, 1)), np.tile(truth, REPEATS)


def mismatched_posterior(model):
    """A deliberately wrong but valid q(z|x): the posterior shifted by 0.3 and widened 1.5x."""

    def q(x):
        post = model.posterior(x)
        return tfd.MultivariateNormalDiag(post.mean() + 0.3, 1.5 * post.stddev())

    return q


def assert_mean_within(values, target, k=K):
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - target) < k * se + 1e-12, (values.mean(), target, se)


# ---------------------------------------------------------------- exact answers and identities


@pytest.mark.parametrize("make", [make_linear_gaussian, make_gmm])
@pytest.mark.parametrize("method", ["posterior_is", "elbo"])
def test_exact_posterior_gives_log_marginal_for_every_sample(make, method):
    model = make()
    x = model.sample(50, seed=2)
    truth = model.log_marginal(x).numpy()
    for num_samples in (1, 7, 300):
        est = estimate(model, x, method, num_samples, seed=num_samples).numpy()
        np.testing.assert_allclose(est, truth, atol=2e-5 * np.abs(truth).max())
    # Zero variance: M = 1 with many seeds gives the same number each time.
    draws = np.stack([estimate(model, x, method, 1, seed=s).numpy() for s in range(5)])
    assert draws.std(axis=0).max() < 1e-5 * np.abs(truth).max()


@pytest.mark.parametrize("make", [make_linear_gaussian, make_gmm])
def test_float64_matches_closed_form_to_1e8(make):
    model = make(dtype=tf.float64)
    x = model.sample(30, seed=4)
    est = estimate(model, x, "posterior_is", 64, seed=0)
    assert est.dtype == tf.float64
    np.testing.assert_allclose(est.numpy(), model.log_marginal(x).numpy(), rtol=0, atol=1e-8)


@pytest.mark.parametrize("make", [make_linear_gaussian, make_gmm])
def test_prior_is_with_prior_proposal_equals_naive_mc(make):
    model = make()
    x = model.sample(20, seed=5)
    naive = estimate(model, x, "naive_mc", 1000, seed=42).numpy()
    prior_is = estimate(model, x, "prior_is", 1000, seed=42, proposal=model.prior).numpy()
    np.testing.assert_allclose(prior_is, naive, rtol=1e-6)


def test_same_seed_same_numbers_other_seed_other_numbers(lg):
    x = lg.sample(10, seed=1)
    a = estimate(lg, x, "naive_mc", 500, seed=3).numpy()
    np.testing.assert_array_equal(a, estimate(lg, x, "naive_mc", 500, seed=3).numpy())
    np.testing.assert_array_equal(a, estimate(lg, x, "naive_mc", 500, seed=[0, 3]).numpy())
    assert np.all(a != estimate(lg, x, "naive_mc", 500, seed=4).numpy())


def test_ess_is_m_for_exact_posterior_and_at_most_m_otherwise(lg):
    x = lg.sample(10, seed=1)
    _, exact = estimate(lg, x, "posterior_is", 1000, seed=0, return_diagnostics=True)
    np.testing.assert_allclose(exact["ess"].numpy(), 1000, rtol=1e-3)
    _, naive = estimate(lg, x, "naive_mc", 1000, seed=0, return_diagnostics=True)
    assert np.all((naive["ess"].numpy() >= 1 - 1e-4) & (naive["ess"].numpy() <= 1000 * (1 + 1e-5)))
    assert naive["ess"].numpy().mean() < 500  # the prior is a poor proposal here


# ----------------------------------------------------------------------- unbiasedness, bounds


def _unbiased_cases():
    lg = make_linear_gaussian()
    return [
        ("lg-naive", lg, "naive_mc", None),
        ("lg-prior_is", lg, "prior_is", None),
        ("lg-posterior_is-mismatched", lg, "posterior_is", mismatched_posterior(lg)),
        ("gmm-naive", make_gmm(), "naive_mc", None),
        ("gmm-prior_is", make_gmm(), "prior_is", None),
        ("nonlinear-naive", make_nonlinear(), "naive_mc", None),
        ("nonlinear-prior_is", make_nonlinear(), "prior_is", None),  # proposal from SNIS moments
    ]


@pytest.mark.parametrize(
    "name, model, method, proposal",
    _unbiased_cases(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_estimate_of_p_is_unbiased_in_linear_space(name, model, method, proposal):
    """E[p^(x)] = p(x): the mean of exp(log p^ - log p) is 1 within K standard errors."""
    x, truth = repeated(model)
    est = estimate(model, x, method, 16, seed=7, proposal=proposal).numpy()
    ratio = np.exp(est - truth)
    assert_mean_within(ratio, 1.0)
    # The test has power: dropping the -log M term would move the mean to 16.
    assert ratio.std() / np.sqrt(ratio.size) < 0.05


def test_elbo_below_is_bound_below_log_p(lg):
    x, truth = repeated(lg)
    q = mismatched_posterior(lg)
    gap_elbo = estimate(lg, x, "elbo", 16, seed=1, proposal=q).numpy() - truth
    gap_is = estimate(lg, x, "posterior_is", 16, seed=2, proposal=q).numpy() - truth

    def se(v):
        return v.std(ddof=1) / np.sqrt(v.size)

    assert gap_elbo.mean() + K * se(gap_elbo) < 0  # ELBO <= log p(x)
    diff = gap_is - gap_elbo
    assert diff.mean() - K * se(diff) > 0  # IWAE is tighter than the ELBO
    assert gap_is.mean() < K * se(gap_is)  # and still a lower bound in expectation


def test_expected_log_estimate_rises_with_m(lg):
    x, truth = repeated(lg)
    means, ses = [], []
    for m in (1, 4, 16, 64):
        err = estimate(lg, x, "naive_mc", m, seed=m).numpy() - truth
        means.append(err.mean())
        ses.append(err.std(ddof=1) / np.sqrt(err.size))
    for i in range(3):
        assert means[i + 1] - means[i] > K * np.hypot(ses[i], ses[i + 1]), (means, ses)
    assert means[-1] < K * ses[-1]  # log p^ is biased low (Jensen) at every M


def test_chunked_and_unchunked_agree_statistically(lg):
    x, truth = repeated(lg)
    one_chunk = estimate(lg, x, "naive_mc", 64, seed=1, chunk_size=64).numpy() - truth
    small_chunks = estimate(lg, x, "naive_mc", 64, seed=2, chunk_size=5).numpy() - truth
    se = np.hypot(one_chunk.std(), small_chunks.std()) / np.sqrt(one_chunk.size)
    assert abs(one_chunk.mean() - small_chunks.mean()) < K * se
    # Variances agree too (ratio of sample variances of n = 4000 draws: sd of log ratio ~ 0.03).
    assert abs(np.log(one_chunk.var() / small_chunks.var())) < 0.2


def test_running_logsumexp_matches_reduce_logsumexp_on_extreme_values():
    rng = np.random.default_rng(0)
    lw = rng.normal(size=(37, 6)) * 50 + np.array([-1e5, -300, 0, 300, 80, -np.inf])
    lw[:, 5] = -np.inf
    lw[3, 5] = -2.0  # a column where every weight but one is exactly zero
    m, s = tf.fill([6], tf.constant(-np.inf, tf.float64)), tf.zeros([6], tf.float64)
    for start in range(0, 37, 8):
        m, s = _running_logsumexp(m, s, tf.constant(lw[start : start + 8]))
    np.testing.assert_allclose(
        _finish_logsumexp(m, s).numpy(), tf.reduce_logsumexp(lw, 0).numpy(), rtol=1e-12
    )


# ------------------------------------------------------------------------ numerics and compiling


def test_far_data_float32_is_finite_and_accurate():
    """log w ~ -1e5: the running max keeps exp() in range; float32 keeps ~7 significant digits."""
    lg32, lg64 = make_linear_gaussian(), make_linear_gaussian(dtype=tf.float64)
    x = lg64.sample(8, seed=1).numpy() + 250.0
    truth = lg64.log_marginal(x).numpy()
    assert truth.max() < -3e4
    for method in METHODS:
        if parse(method).method.packages:
            continue  # dynesty: nested sampling's cost grows with the information (~1e4 nats
            # here, far data); it is measured in tests/test_peers.py
        # Finiteness does not depend on the number of temperatures: a short path is as far out.
        short = {"steps": 10} if "steps" in parse(method).kwargs else {}
        est = estimate(lg32, x, method, 300, seed=0, **short).numpy()
        assert np.all(np.isfinite(est)), method
    est = estimate(lg32, x, "posterior_is", 300, seed=0).numpy()
    np.testing.assert_allclose(est, truth, rtol=2e-5)


def test_huge_positive_log_weights_do_not_overflow():
    """sigma = 1e-3 in D = 40: log p(x|z) reaches +250, far beyond float32's exp range (88)."""
    lg = make_linear_gaussian(D=40, d=2, sigma=1e-3)
    x = lg.sample(5, seed=0)
    truth = lg.log_marginal(x).numpy()
    assert truth.min() > 88
    est = estimate(lg, x, "posterior_is", 100, seed=0).numpy()
    np.testing.assert_allclose(est, truth, rtol=1e-4)
    assert np.all(np.isfinite(estimate(lg, x, "naive_mc", 100, seed=0).numpy()))


@pytest.mark.parametrize("method", ["naive_mc", "prior_is", "posterior_is"])
def test_one_compilation_serves_every_num_samples(method):
    model = make_linear_gaussian()
    x = model.sample(12, seed=0)
    for m in (3000, 3001, 4500, 1, 257, 10_000):
        estimate(model, x, method, m, seed=m, chunk_size=DEFAULT_CHUNK_SIZE)
    fn = compiled_estimator(model, method, None, DEFAULT_CHUNK_SIZE)
    assert fn.experimental_get_tracing_count() == 1


def test_default_chunk_shrinks_to_small_m_in_powers_of_two():
    """Without chunk_size, M below the default chunk runs a chunk of the next power of two >= M
    (a small M does not pay for 256 samples); from the default chunk on, one function."""
    model = make_linear_gaussian()
    x = model.sample(5, seed=0)
    spec = parse("posterior_is")
    for m in (1, 2, 3, 4, 100, 256, 257, 5000):
        estimate(model, x, "posterior_is", m, seed=m)
    cache = model_cache(model, "importance")
    chunks = sorted(key[0][1] for key in cache if key[0][0] == spec.canonical)
    assert chunks == [1, 2, 4, 128, 256]
    assert [default_chunk_size(spec, m) for m in (1, 5, 255, 256, 10**6)] == [1, 8, 256, 256, 256]


def test_graph_mode_agrees_with_xla_statistically(lg):
    # XLA and TensorFlow kernels turn Philox bits into normals differently, so the two modes are
    # different (equally valid) random streams: they agree in distribution, not number by number.
    x, truth = repeated(lg)
    xla = estimate(lg, x, "naive_mc", 64, seed=5).numpy() - truth
    graph = estimate(lg, x, "naive_mc", 64, seed=5, jit_compile=False).numpy() - truth
    np.testing.assert_array_equal(
        graph, estimate(lg, x, "naive_mc", 64, seed=5, jit_compile=False).numpy() - truth
    )
    se = np.hypot(xla.std(), graph.std()) / np.sqrt(xla.size)
    assert abs(xla.mean() - graph.mean()) < K * se


def test_amortized_posterior_is_used_by_default():
    from estimators import MLP, AmortizedPosterior

    model = make_nonlinear()
    x = model.sample(6, seed=0)
    with pytest.raises(ValueError, match="no exact or amortized posterior"):
        estimate(model, x, "posterior_is", 10, seed=0)
    model.amortized_posterior = AmortizedPosterior(MLP([model.data_dim, 16, 4], seed=1))
    est = estimate(model, x, "posterior_is", 10, seed=0)
    assert est.shape == [6] and np.all(np.isfinite(est.numpy()))
    # Replacing the encoder takes effect (the compiled function is keyed by the posterior).
    model.amortized_posterior = AmortizedPosterior(MLP([model.data_dim, 16, 4], seed=2))
    assert np.all(estimate(model, x, "posterior_is", 10, seed=0).numpy() != est.numpy())


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=np.zeros((3, 4))), "D = 4 columns but the model expects D = 5"),
        (dict(x=np.zeros(5)), "shape \\[N, D\\]"),
        (dict(x=np.zeros((0, 5))), "empty"),
        (dict(x=np.array([[0, 0, np.nan, 0, 0]])), "NaN or inf"),
        (dict(x=np.array([[0, 0, 0, np.inf, 0]])), "NaN or inf"),
        (dict(x="abc"), "numeric array"),
        (dict(num_samples=0), "positive integer"),
        (dict(num_samples=-3), "positive integer"),
        (dict(num_samples=2.5), "positive integer"),
        (dict(method="importance"), "unknown method 'importance'"),
        (
            dict(method="prior_is", proposal=tfd.MultivariateNormalDiag(tf.zeros(3), tf.ones(3))),
            "event shape \\[3\\]",
        ),
        (
            dict(
                method="prior_is",
                proposal=tfd.MultivariateNormalDiag(tf.zeros([4, 2]), tf.ones([4, 2])),
            ),
            "batch shape",
        ),
        (dict(method="prior_is", proposal="prior"), "tfp Distribution"),
        (
            dict(
                method="posterior_is",
                proposal=lambda x: tfd.MultivariateNormalDiag(tf.zeros([1, 3]), tf.ones([1, 3])),
            ),
            "event shape \\[3\\]",
        ),
        (
            dict(method="naive_mc", proposal=tfd.MultivariateNormalDiag(tf.zeros(2), tf.ones(2))),
            "fixed proposal instead",
        ),
        (
            dict(
                method="posterior_is",
                proposal=lambda x: tfd.MultivariateNormalDiag(tf.zeros(2), tf.ones(2)),
            ),
            "batch shape \\[N\\]",
        ),
        (
            dict(method="elbo", proposal=lambda x: "not a distribution"),
            "must return a tfp Distribution",
        ),
        (dict(x=np.full((1, 5), 1e39)), "too large for float32"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(seed=[1, 2, 3]), "seed"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(lg, kwargs, match):
    args = dict(x=np.zeros((3, 5)), method="naive_mc", num_samples=10, seed=0) | kwargs
    with pytest.raises(ValueError, match=match):
        estimate(lg, args.pop("x"), args.pop("method"), args.pop("num_samples"), **args)


def test_posterior_is_accepts_a_per_point_distribution():
    """A distribution with batch shape [N] (e.g. fitted per point) is the proposal for exactly
    this x: the exact posterior as such a distribution gives log p(x) exactly."""
    model = make_linear_gaussian(dtype=tf.float64)
    x = model.sample(7, seed=3)
    truth = model.log_marginal(x).numpy()
    for method in ("posterior_is", "elbo"):
        est = estimate(model, x, method, 5, seed=0, proposal=model.posterior(x)).numpy()
        np.testing.assert_allclose(est, truth, atol=1e-10)
    with pytest.raises(ValueError, match=r"batch shape \[N\] = \[7\].*got \[3\]"):
        estimate(model, x, "posterior_is", 5, seed=0, proposal=model.posterior(x[:3]))
