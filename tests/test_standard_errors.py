"""Every method's own standard error ``se``, held against the truth.

The coverage checks count how often log p^ +- 1.96 se contains the exact log p(x) of a
linear-Gaussian model over R independent repeats. With R repeats the share has binomial
standard error sqrt(0.95 0.05 / R); the tests allow 3 of them. The ratio of the mean reported se
to the observed SD of the estimates has a relative standard error of about 1 / sqrt(2 R) (the
SD's) plus the se's own spread; 10% is more than 4 of those at R = 1000.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import LinearGaussian, estimate, methods
from estimators.algorithms import logspace

tfd = tfp.distributions
Z = 1.96


def model_and_points(dtype=tf.float32):
    # A 2-d latent observed through 3 noisy coordinates: the posterior is a correlated Gaussian.
    model = LinearGaussian(
        [[1.0, 0.4], [0.3, -0.8], [0.5, 0.5]], [0.1, -0.2, 0.0], 0.7, dtype=dtype
    )
    x = model.sample(2, seed=3)
    return model, x


def scaled_posterior(model, x, scale, repeats):
    """q(z | x_n) = N(posterior mean, (scale x posterior scale)^2), batch [repeats N]."""
    post = model.posterior(x)
    loc = tf.tile(post.mean(), [repeats, 1])
    tril = tf.tile(scale * tf.linalg.cholesky(post.covariance()), [repeats, 1, 1])
    return tfd.MultivariateNormalTriL(loc, tril)


def repeated(model, x, method, num_samples, repeats, seed, **options):
    """(estimate, se, khat) [R, N]: R independent repeats as rows of one call."""
    rows = tf.tile(x, [repeats, 1])
    log_p, diag = estimate(
        model, rows, method, num_samples, seed=seed, return_diagnostics=True, **options
    )
    n = int(x.shape[0])
    shape = [repeats, n]
    khat = diag["khat"].numpy().reshape(shape) if "khat" in diag else None
    return log_p.numpy().reshape(shape), diag["se"].numpy().reshape(shape), khat


def coverage_and_ratio(log_p, se, truth):
    covered = np.abs(log_p - truth) <= Z * se
    ratio = np.mean(np.mean(se, axis=0) / np.std(log_p, axis=0, ddof=1))
    return covered.mean(), ratio


def binomial_limits(p, trials, k=3.0):
    half = k * np.sqrt(p * (1 - p) / trials)
    return p - half, p + half


def test_wide_proposal_error_bars_cover_at_the_nominal_rate():
    """q 1.5x wider than p(z | x): light-tailed weights (k-hat < 0.5); the delta-method se
    covers at 95% and matches the observed spread."""
    model, x = model_and_points()
    repeats = 500
    q = scaled_posterior(model, x, 1.5, repeats)
    log_p, se, khat = repeated(model, x, "posterior_is", 1024, repeats, 11, proposal=q)
    truth = model.log_marginal(x).numpy()
    coverage, ratio = coverage_and_ratio(log_p, se, truth)
    low, high = binomial_limits(0.95, log_p.size)
    assert low <= coverage <= high, coverage
    assert ratio == pytest.approx(1.0, abs=0.1)
    assert np.median(khat) < 0.5


def test_narrow_proposal_error_bars_fail_and_khat_says_so():
    """q 0.5x as wide: heavy-tailed weights. The se, computed from weights that rarely see the
    tail, is too small: coverage falls clearly below 95%, and k-hat flags those estimates."""
    model, x = model_and_points()
    repeats = 500
    q = scaled_posterior(model, x, 0.5, repeats)
    log_p, se, khat = repeated(model, x, "posterior_is", 1024, repeats, 12, proposal=q)
    truth = model.log_marginal(x).numpy()
    coverage, _ = coverage_and_ratio(log_p, se, truth)
    low, _ = binomial_limits(0.95, log_p.size)
    assert coverage < low - 0.05, coverage  # clearly below: not a binomial fluctuation
    assert np.mean(khat > 0.7) > 0.5  # k-hat flags most of these estimates


def test_ais_error_bars_cover_at_k_64():
    """AIS's se over its K = 64 chains' weights covers the exact log p(x) at the nominal rate."""
    model, x = model_and_points()
    repeats = 400
    log_p, se, _ = repeated(model, x, "ais:steps=20,start=prior", 64, repeats, 13)
    truth = model.log_marginal(x).numpy()
    coverage, ratio = coverage_and_ratio(log_p, se, truth)
    low, high = binomial_limits(0.95, log_p.size)
    assert low <= coverage <= high, coverage
    assert ratio == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("center", [-1e5, 1e2])
def test_weight_sums_are_exact_at_extreme_log_weights(center):
    """The streamed se and ESS at log w ~ -1e5 and +1e2 (float32, four chunks) against a float64
    NumPy computation: equal to float32 round-off, where forming log sum w and log sum w^2 and
    subtracting would lose ~1e-2 nats at -1e5."""
    rng = np.random.default_rng(0)
    log_w = center + rng.normal(scale=1.5, size=(1024, 3))
    sums = logspace.empty_weight_sums(3, tf.float32)
    for chunk in np.split(log_w.astype(np.float32), 4):
        sums = logspace.update_weight_sums(sums, tf.constant(chunk))
    got_se = logspace.delta_method_se(sums, 1024).numpy()
    w = np.exp(log_w.astype(np.float32).astype(np.float64) - log_w.max(axis=0))
    want_se = np.std(w, axis=0, ddof=1) / (np.sqrt(1024) * np.mean(w, axis=0))
    np.testing.assert_allclose(got_se, want_se, rtol=2e-5)
    ess = logspace.sums_ess(sums).numpy()
    np.testing.assert_allclose(ess, w.sum(0) ** 2 / (w**2).sum(0), rtol=2e-5)
    assert np.all(np.isfinite(got_se))


def test_equal_weights_give_se_zero_and_one_weight_none():
    sums = logspace.update_weight_sums(
        logspace.empty_weight_sums(2, tf.float32), tf.fill([64, 2], -7.5)
    )
    assert logspace.delta_method_se(sums, 64).numpy().tolist() == [0.0, 0.0]
    one = logspace.update_weight_sums(
        logspace.empty_weight_sums(1, tf.float32), tf.constant([[3.0]])
    )
    assert np.isnan(logspace.delta_method_se(one, 1).numpy()).all()


def test_exact_posterior_is_reports_a_vanishing_se():
    model, x = model_and_points(tf.float64)
    _, diag = estimate(model, x, "posterior_is", 256, seed=0, return_diagnostics=True)
    assert np.all(diag["se"].numpy() < 1e-6)  # float64 round-off of the weights


def test_elbo_se_is_the_spread_of_the_log_weights_and_survives_huge_log_w():
    """sd(log w) / sqrt(M) from the streamed mean and variance, also at log w ~ -1e5 where a
    sum of squares would cancel to nothing in float32."""
    rng = np.random.default_rng(1)
    values = -1e5 + rng.normal(size=(1000, 2)).astype(np.float32)
    acc = logspace.empty_mean_variance(2, tf.float32)
    valid = np.arange(1024) < 1000
    padded = np.concatenate([values, np.zeros((24, 2), np.float32)])
    for rows, ok in zip(np.split(padded, 4), np.split(valid, 4), strict=True):
        acc = logspace.update_mean_variance(acc, tf.constant(rows), tf.constant(ok))
    want = values.astype(np.float64).std(axis=0, ddof=1) / np.sqrt(1000)
    np.testing.assert_allclose(logspace.standard_error_of_mean(acc).numpy(), want, rtol=2e-2)


@pytest.mark.parametrize("name", sorted(methods.names()))
def test_every_method_returns_a_finite_se(name):
    if methods.missing_packages(name):  # an optional peer library (pip install -e ".[peers]")
        pytest.skip(f"{name} needs {', '.join(methods.missing_packages(name))}")
    model, x = model_and_points()
    z = model.posterior(x).sample(seed=(1, 2))
    spec = methods.parse(name)
    num_samples = max(32, spec.method.min_samples)
    options = {"steps": 5} if "steps" in dict(spec.options) else {}
    _, diag = estimate(
        model,
        x,
        name,
        num_samples,
        seed=0,
        return_diagnostics=True,
        posterior_samples=z if methods.NEEDS_EXACT_SAMPLES in spec.method.needs else None,
        **options,
    )
    se = diag["se"].numpy()
    assert se.shape == (2,) and np.all(np.isfinite(se)) and np.all(se >= 0)
