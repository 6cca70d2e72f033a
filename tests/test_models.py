"""Models: closed forms against independent computations, quadrature against closed forms."""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from estimators import (
    MLP,
    AmortizedPosterior,
    GaussianMixture,
    InfiniteMixture,
    LinearGaussian,
    quadrature,
)

from conftest import linear_infinite_mixture, make_gmm, make_linear_gaussian, make_nonlinear


def test_gmm_log_marginal_matches_scipy():
    gmm = make_gmm(tf.float64)
    x = gmm.sample(50, seed=1).numpy()
    w, mu, s = gmm.weights.numpy(), gmm.locs.numpy(), gmm.scales.numpy()
    dens = sum(
        w[k] * scipy.stats.multivariate_normal(mu[k], np.diag(s[k] ** 2)).pdf(x)
        for k in range(len(w))
    )
    np.testing.assert_allclose(gmm.log_marginal(x).numpy(), np.log(dens), rtol=0, atol=1e-10)


def test_gmm_posterior_is_bayes_rule():
    gmm = make_gmm(tf.float64)
    x = gmm.sample(20, seed=2)
    post = gmm.posterior(x).probs_parameter().numpy()
    k = np.arange(gmm.num_components)
    joint = np.exp(
        gmm.prior.log_prob(k).numpy()[None, :]
        + gmm.likelihood(k).log_prob(x.numpy()[:, None, :]).numpy()
    )
    np.testing.assert_allclose(post, joint / joint.sum(1, keepdims=True), atol=1e-12)


@pytest.mark.parametrize("dtype, atol", [(tf.float64, 1e-9), (tf.float32, 2e-4)])
def test_linear_gaussian_log_marginal_matches_scipy(dtype, atol):
    lg = make_linear_gaussian(D=7, d=3, dtype=dtype)
    x = lg.sample(40, seed=1).numpy()
    W, b, s = (np.float64(a.numpy()) for a in (lg.W, lg.b, lg.sigma))
    want = scipy.stats.multivariate_normal(b, W @ W.T + s**2 * np.eye(7)).logpdf(x)
    np.testing.assert_allclose(lg.log_marginal(x).numpy(), want, atol=atol)


def test_linear_gaussian_posterior_satisfies_bayes_identity():
    # log p(z) + log p(x|z) - log p(z|x) = log p(x) for every z.
    lg = make_linear_gaussian(D=6, d=3, dtype=tf.float64)
    x = lg.sample(10, seed=1)
    z = tf.random.stateless_normal([4, 10, 3], seed=[1, 2], dtype=tf.float64)
    lhs = lg.prior.log_prob(z) + lg.likelihood(z).log_prob(x) - lg.posterior(x).log_prob(z)
    np.testing.assert_allclose(
        lhs.numpy(), np.broadcast_to(lg.log_marginal(x).numpy(), (4, 10)), atol=1e-10
    )


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("sigma", [1.0, 0.05])  # 0.05: a posterior far narrower than the prior
def test_quadrature_matches_linear_gaussian_closed_form(d, sigma):
    lg = make_linear_gaussian(D=8, d=d, sigma=sigma, dtype=tf.float64, seed=d)
    x = lg.sample(30, seed=3)
    err = np.abs(linear_infinite_mixture(lg).log_marginal(x).numpy() - lg.log_marginal(x).numpy())
    assert err.max() < 1e-6


@pytest.mark.parametrize("sigma", [0.003, 0.001])
def test_quadrature_zooms_in_on_very_narrow_posteriors(sigma):
    # D = 64, posterior sd ~ sigma / 8: hundreds of times narrower than the first grid's spacing.
    lg = make_linear_gaussian(D=64, d=2, sigma=sigma, dtype=tf.float64, seed=2)
    x = lg.sample(5, seed=3)
    log_p, error = quadrature.log_marginal_and_error(linear_infinite_mixture(lg), x)
    assert np.abs(log_p.numpy() - lg.log_marginal(x).numpy()).max() < 1e-6
    assert error.numpy().max() < 1e-6


class Square(tf.Module):
    """g(z) = z^2 (elementwise): the posterior of x > 0 has two modes per dimension, at +-sqrt(x)."""

    def __call__(self, z):
        return tf.square(z)


def test_quadrature_on_a_bimodal_posterior_matches_brute_force():
    sigma = 0.01
    model = InfiniteMixture(Square(), 1, data_dim=1, scale=sigma, dtype=tf.float64)
    x = np.array([[4.0], [1.0], [0.3]])
    log_p, error = quadrature.log_marginal_and_error(model, x)
    z = np.linspace(-8, 8, 800_001)  # brute force: a dense trapezoid, spacing 2e-5 << sd 1e-3
    log_joint = scipy.stats.norm.logpdf(z)[None, :] + scipy.stats.norm.logpdf(
        x, loc=z[None, :] ** 2, scale=sigma
    )
    brute = scipy.special.logsumexp(log_joint, axis=1) + np.log(z[1] - z[0])
    np.testing.assert_allclose(log_p.numpy(), brute, atol=1e-7)
    assert np.all(error.numpy() < 1e-6)


def test_quadrature_2d_bimodal_is_the_product_of_1d():
    m1 = InfiniteMixture(Square(), 1, data_dim=1, scale=0.1, dtype=tf.float64)
    m2 = InfiniteMixture(Square(), 2, data_dim=2, scale=0.1, dtype=tf.float64)
    log_p1 = quadrature.log_marginal(m1, np.array([[4.0], [1.0]])).numpy()
    log_p2, error = quadrature.log_marginal_and_error(m2, np.array([[4.0, 4.0], [1.0, 1.0]]))
    np.testing.assert_allclose(log_p2.numpy(), 2 * log_p1, atol=1e-6)
    assert np.all(error.numpy() < 1e-5)


def test_quadrature_float32_within_1e4_nats():
    lg = make_linear_gaussian(D=8, d=2, sigma=0.3, dtype=tf.float32)
    x = lg.sample(30, seed=3)
    err = np.abs(linear_infinite_mixture(lg).log_marginal(x).numpy() - lg.log_marginal(x).numpy())
    assert err.max() < 1e-4


def test_quadrature_nonlinear_float32_agrees_with_float64():
    m32, m64 = make_nonlinear(tf.float32), make_nonlinear(tf.float64)
    x = m64.sample(20, seed=5).numpy()
    np.testing.assert_allclose(m32.log_marginal(x).numpy(), m64.log_marginal(x).numpy(), atol=1e-4)


def test_quadrature_refuses_large_latent():
    m = InfiniteMixture(MLP([3, 4]), 3)
    with pytest.raises(NotImplementedError, match="latent_dim = 3"):
        m.log_marginal(np.zeros((1, 4)))


def test_infinite_mixture_likelihood_kinds():
    z = tf.zeros([5, 7, 2])
    fixed = InfiniteMixture(MLP([2, 3]), 2, scale=0.5)
    per_dim = InfiniteMixture(
        MLP([2, 3]), 2, log_scale=tf.Variable(np.log([0.1, 0.2, 0.3]), dtype=tf.float32)
    )
    hetero = InfiniteMixture(MLP([2, 6]), 2, scale=None)
    binary = InfiniteMixture(MLP([2, 3]), 2, likelihood="bernoulli")
    for model in (fixed, per_dim, hetero, binary):
        assert model.data_dim == 3
        assert model.likelihood(z).batch_shape == [5, 7]
        assert model.likelihood(z).event_shape == [3]
    np.testing.assert_allclose(
        per_dim.likelihood(z).distribution.stddev().numpy()[0, 0], [0.1, 0.2, 0.3], rtol=1e-6
    )
    x = binary.sample(4, seed=0).numpy()
    assert set(np.unique(x)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="unknown likelihood"):
        InfiniteMixture(MLP([2, 3]), 2, likelihood="poisson")
    with pytest.raises(ValueError, match="scale must be positive"):
        InfiniteMixture(MLP([2, 3]), 2, scale=0.0)
    assert InfiniteMixture(lambda z: 2 * z, 2).data_dim == 2  # read from one trial call
    with pytest.raises(ValueError, match=r"decoder maps z of shape \[1, 2\] to shape \[1, 2, 1\]"):
        InfiniteMixture(lambda z: z[..., None], 2)


def test_amortized_posterior_shapes():
    q = AmortizedPosterior(MLP([5, 8, 4]))
    dist = q(tf.zeros([3, 5]))
    assert dist.batch_shape == [3] and dist.event_shape == [2]
    assert np.all(dist.stddev().numpy() > 0)


def test_model_sample_shapes(lg, gmm):
    assert lg.sample(11, seed=0).shape == (11, lg.data_dim)
    assert gmm.sample(11, seed=0).shape == (11, 2)
    np.testing.assert_array_equal(lg.sample(3, seed=4).numpy(), lg.sample(3, seed=4).numpy())


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: GaussianMixture([0.5, 0.6], [[0.0], [1.0]], [[1.0], [1.0]]), "sum to 1"),
        (lambda: GaussianMixture([0.5, 0.5], [[0.0], [1.0]], [[1.0], [-1.0]]), "positive"),
        (lambda: GaussianMixture([1.0], [[0.0, 1.0]], [[1.0]]), "shape of locs"),
        (lambda: LinearGaussian(np.ones((3, 2)), np.ones(2), 1.0), "b\\[D\\]"),
        (lambda: LinearGaussian(np.ones((3, 2)), np.ones(3), -1.0), "positive scalar"),
    ],
)
def test_bad_model_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build()
