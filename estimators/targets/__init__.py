"""The field's standard targets, as models with one dummy data point (``models.target.Target``).

    load_target(name, dtype=tf.float32) -> Target         names: TARGETS
    target.data()                        -> x = [[0.]]     (the dummy data point)
    estimate(target, target.data(), method, M, seed=0)     -> one estimate of log Z

| target | d | density gamma(z) | reference p(z) | log Z |
|---|---|---|---|---|
| ``funnel`` | 10 | N(z0; 0, 3^2) prod_i N(zi; 0, e^z0) (Neal 2003) | N(0, I) | 0 (normalized) |
| ``many_well`` | 32 | exp(-sum_k E(z_2k, z_2k+1)), E = x1^4 - 6 x1^2 - 0.5 x1 + 0.5 x2^2 | N(0, I) | 164.6957 (quadrature) |
| ``gmm40`` | 2 | (1/40) sum_k N(z; mu_k, I), mu_k ~ U[-40, 40]^2 (shipped) | N(0, 20^2 I) | 0 (normalized) |
| ``logistic_regression`` | 31 | N(theta; 0, 10^2 I) prod_n Bernoulli(y_n; sigmoid(x_n theta)) | N(0, 10^2 I) | the suite's long run (``references.json``) |

docs/targets.md gives each definition, its convention and its source; ``PUBLISHED`` holds the
published numbers each target is compared with (the report cannot show them yet: see the
docs). Every target carries a fitted Gaussian q(z) as its ``amortized_posterior`` (moments for
the first three, the Laplace approximation for the logistic regression): the fitted-proposal
importance sampler of the ``targets`` preset.
"""

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators.models.target import LogZ, Target

tfd = tfp.distributions

HERE = Path(__file__).resolve().parent
GMM40_MEANS_FILE = HERE / "gmm40_means.json"
REFERENCES_FILE = HERE / "references.json"

FUNNEL_DIM, FUNNEL_SCALE = 10, 3.0
MANY_WELL_DIM = 32
GMM40_COMPONENTS, GMM40_REFERENCE_SCALE = 40, 20.0
LOGISTIC_PRIOR_SCALE = 10.0
MANY_WELL_LOG_Z_PUBLISHED = 164.696  # Midgley et al. (2023), to the digits they print
VIPS_ELBO = -78.15  # Arenz et al. (2018): best of 5 runs of a mixture-of-Gaussians ELBO

# Published numbers to compare with, per target (docs/targets.md says where each comes from),
# kept as data so that the report reads them without TensorFlow (``manifests.published``).
PUBLISHED = json.loads((Path(__file__).resolve().parent / "published.json").read_text())


# ------------------------------------------------------------------------------- the funnel


class Funnel(Target):
    """Neal's funnel in d dimensions, a normalized density (log Z = 0):

        z0 ~ N(0, 3^2),   z_i | z0 ~ N(0, e^z0)  (i = 1..d-1)

    against the reference p(z) = N(0, I_d): l(z) = log funnel(z) - log N(z; 0, I). Fitted
    q(z): the funnel's own moments, N(0, diag(9, e^4.5, ..., e^4.5)) (Var z_i = E e^z0 = e^4.5).
    """

    def __init__(self, dim=FUNNEL_DIM, scale=FUNNEL_SCALE, dtype=tf.float32, name=None):
        super().__init__(name=name)
        if int(dim) != dim or dim < 2:
            raise ValueError(f"the funnel needs dim >= 2; got {dim!r}")
        self.dtype = tf.as_dtype(dtype)
        self.latent_dim = int(dim)
        self.scale = float(scale)
        variance = np.full(self.latent_dim, math.exp(self.scale**2 / 2))
        variance[0] = self.scale**2
        self.attach_fitted_proposal(
            np.zeros(self.latent_dim), np.diag(variance), "the funnel's exact moments"
        )

    def constructor_arguments(self):
        return {"dim": self.latent_dim, "scale": self.scale, "dtype": self.dtype}

    @property
    def prior(self):
        zeros = tf.zeros([self.latent_dim], self.dtype)
        return tfd.MultivariateNormalDiag(zeros, tf.ones_like(zeros))

    def log_funnel(self, z):
        """The normalized log density [...] of z [..., d]."""
        z = tf.convert_to_tensor(z, self.dtype)
        z0, rest = z[..., 0], z[..., 1:]
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        head = -0.5 * tf.square(z0 / self.scale) - math.log(self.scale) - half_log_2pi
        tail = tf.reduce_sum(-0.5 * tf.square(rest) * tf.exp(-z0)[..., None], axis=-1)
        return head + tail - (self.latent_dim - 1) * (0.5 * z0 + half_log_2pi)

    def log_likelihood(self, z):
        return self.log_funnel(z) - self.prior.log_prob(z)

    @property
    def log_z(self):
        return LogZ(0.0, 0.0, True, "a normalized density")

    def exact_sample(self, num_samples, seed=0):
        """Exact draws from the funnel, [num_samples, d] float64 (NumPy)."""
        rng = np.random.default_rng(seed)
        z0 = rng.normal(0.0, self.scale, size=num_samples)
        rest = rng.normal(size=(num_samples, self.latent_dim - 1)) * np.exp(z0 / 2)[:, None]
        return np.column_stack([z0, rest])


# ---------------------------------------------------------------------------- the many-well


def double_well_energy(x1, x2):
    """E(x1, x2) = x1^4 - 6 x1^2 - 0.5 x1 + 0.5 x2^2 (NumPy or TensorFlow)."""
    return x1**4 - 6.0 * x1**2 - 0.5 * x1 + 0.5 * x2**2


def _double_well_exponent(x):
    return -(x**4) + 6.0 * x**2 + 0.5 * x


@cache
def double_well_moments():
    """(log I, mean, variance) of the x1 marginal of one double well, I = \\int exp(-x^4 + 6 x^2
    + 0.5 x) dx, by adaptive quadrature (scipy.integrate.quad) in float64 around the peak."""
    from scipy.integrate import quad

    grid = np.linspace(-6.0, 6.0, 120_001)
    peak = _double_well_exponent(grid).max()

    def integral(power):
        value, _ = quad(
            lambda x: x**power * np.exp(_double_well_exponent(x) - peak),
            -8.0,
            8.0,
            points=[-1.75, 0.0, 1.75],
            epsabs=0.0,
            epsrel=1e-13,
            limit=400,
        )
        return value

    mass = integral(0)
    mean = integral(1) / mass
    return peak + math.log(mass), mean, integral(2) / mass - mean**2


def many_well_log_z(dim=MANY_WELL_DIM):
    """log Z of the many-well, (d/2) (log I + (1/2) log 2 pi), by quadrature (164.6957 at d = 32)."""
    log_i, _, _ = double_well_moments()
    return dim // 2 * (log_i + 0.5 * math.log(2 * math.pi))


class ManyWell(Target):
    """d/2 independent copies of the 2-d double well (Noe et al. 2019; Midgley et al. 2023):

        gamma(z) = exp(-sum_k E(z_2k, z_2k+1)),   E(x1, x2) = x1^4 - 6 x1^2 - 0.5 x1 + 0.5 x2^2

    2^(d/2) modes; log Z = (d/2) (log \\int exp(-x^4 + 6 x^2 + 0.5 x) dx + (1/2) log 2 pi) by
    quadrature (164.6957 at d = 32). Reference p(z) = N(0, I): l(z) = -E(z) - log N(z; 0, I),
    flat in the x2 coordinates (their marginal is N(0, 1) exactly). Fitted q(z): the exact
    per-coordinate moments (x1's by quadrature)."""

    def __init__(self, dim=MANY_WELL_DIM, dtype=tf.float32, name=None):
        super().__init__(name=name)
        if int(dim) != dim or dim < 2 or dim % 2:
            raise ValueError(f"the many-well needs an even dim >= 2; got {dim!r}")
        self.dtype = tf.as_dtype(dtype)
        self.latent_dim = int(dim)
        _, mean, variance = double_well_moments()
        loc = np.tile([mean, 0.0], self.latent_dim // 2)
        var = np.tile([variance, 1.0], self.latent_dim // 2)
        self.attach_fitted_proposal(loc, np.diag(var), "the exact per-coordinate moments")

    def constructor_arguments(self):
        return {"dim": self.latent_dim, "dtype": self.dtype}

    @property
    def prior(self):
        zeros = tf.zeros([self.latent_dim], self.dtype)
        return tfd.MultivariateNormalDiag(zeros, tf.ones_like(zeros))

    def energy(self, z):
        """sum_k E(z_2k, z_2k+1), [...] for z [..., d]."""
        z = tf.convert_to_tensor(z, self.dtype)
        return tf.reduce_sum(double_well_energy(z[..., 0::2], z[..., 1::2]), axis=-1)

    def log_likelihood(self, z):
        return -self.energy(z) - self.prior.log_prob(z)

    @property
    def log_z(self):
        return LogZ(many_well_log_z(self.latent_dim), 0.0, True, "quadrature (scipy quad, float64)")


# ---------------------------------------------------------------------------------- gmm40


def gmm40_means():
    """The 40 component means [40, 2] (float64), shipped in gmm40_means.json."""
    with GMM40_MEANS_FILE.open() as f:
        return np.asarray(json.load(f)["means"], np.float64)


class GaussianMixtureTarget(Target):
    """An equal-weight mixture of unit-variance Gaussians, a normalized density (log Z = 0):

        gamma(z) = (1/K) sum_k N(z; mu_k, I)

    ``gmm40``: K = 40 means in 2-d, uniform in [-40, 40]^2 (Midgley et al. 2023), drawn once and
    shipped (gmm40_means.json). Reference p(z) = N(0, ``reference_scale``^2 I), 20 by default:
    it covers the box at two standard deviations. Fitted q(z): the mixture's moments,
    N(mean of mu, I + Cov(mu))."""

    def __init__(self, means, reference_scale=GMM40_REFERENCE_SCALE, dtype=tf.float32, name=None):
        super().__init__(name=name)
        means = np.asarray(means, np.float64)
        if means.ndim != 2 or not len(means):
            raise ValueError(f"means must be [K, d]; got shape {means.shape}")
        self.dtype = tf.as_dtype(dtype)
        self.latent_dim = means.shape[1]
        self.means = tf.constant(means, self.dtype)
        self.reference_scale = float(reference_scale)
        centred = means - means.mean(0)
        cov = np.eye(self.latent_dim) + centred.T @ centred / len(means)
        self.attach_fitted_proposal(means.mean(0), cov, "the mixture's exact moments")

    def constructor_arguments(self):
        return {"means": self.means, "reference_scale": self.reference_scale, "dtype": self.dtype}

    @property
    def prior(self):
        zeros = tf.zeros([self.latent_dim], self.dtype)
        return tfd.MultivariateNormalDiag(
            zeros, tf.fill([self.latent_dim], tf.constant(self.reference_scale, self.dtype))
        )

    def log_mixture(self, z):
        """The normalized log density [...] of z [..., d]."""
        z = tf.convert_to_tensor(z, self.dtype)
        squared = tf.reduce_sum(tf.square(z[..., None, :] - self.means), axis=-1)  # [..., K]
        k = tf.cast(tf.shape(self.means)[0], self.dtype)
        constant = 0.5 * self.latent_dim * math.log(2 * math.pi)
        return tf.reduce_logsumexp(-0.5 * squared, axis=-1) - constant - tf.math.log(k)

    def log_likelihood(self, z):
        return self.log_mixture(z) - self.prior.log_prob(z)

    @property
    def log_z(self):
        return LogZ(0.0, 0.0, True, "a normalized density")

    def exact_sample(self, num_samples, seed=0):
        """Exact draws from the mixture, [num_samples, d] float64 (NumPy)."""
        rng = np.random.default_rng(seed)
        means = self.means.numpy().astype(np.float64)
        pick = rng.integers(len(means), size=num_samples)
        return means[pick] + rng.normal(size=(num_samples, self.latent_dim))


# -------------------------------------------------------------------- logistic regression


def breast_cancer():
    """(features [569, 31], labels [569]) float64: scikit-learn's ``load_breast_cancer()`` (it
    ships with the package: no download), each feature divided by its standard deviation
    (ddof = 0), not centred, and a column of ones prepended (the intercept)."""
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    features = features / features.std(axis=0)
    return np.column_stack([np.ones(len(features)), features]), labels.astype(np.float64)


def logistic_log_likelihood(theta, features, labels):
    """sum_n [y_n eta_n - log(1 + e^eta_n)], eta = X theta, in NumPy (float64): theta [..., d]
    -> [...]. The reference implementation the tests compare the target's TensorFlow with."""
    eta = np.asarray(theta) @ features.T
    return np.sum(labels * eta - np.logaddexp(0.0, eta), axis=-1)


def laplace_fit(features, labels, prior_scale, iterations=100):
    """(theta_MAP [d], inverse Hessian [d, d]) of the log posterior, by Newton's method (float64)."""
    d = features.shape[1]
    theta = np.zeros(d)
    precision = np.eye(d) / prior_scale**2
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(features @ theta)))
        gradient = features.T @ (labels - p) - precision @ theta
        hessian = features.T @ (features * (p * (1 - p))[:, None]) + precision
        step = np.linalg.solve(hessian, gradient)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-12:
            break
    p = 1.0 / (1.0 + np.exp(-(features @ theta)))
    hessian = features.T @ (features * (p * (1 - p))[:, None]) + precision
    return theta, np.linalg.inv(hessian)


def stored_reference(name):
    """The stored long-run reference of target ``name`` (a dict from references.json), or None."""
    if not REFERENCES_FILE.exists():
        return None
    with REFERENCES_FILE.open() as f:
        return json.load(f).get(name)


class LogisticRegressionTarget(Target):
    """Bayesian logistic regression, the posterior's normalizer (the evidence) as log Z:

        gamma(theta) = N(theta; 0, s^2 I) prod_n Bernoulli(y_n; sigmoid(x_n . theta))

    The prior is the reference p(z) (s = 10), the Bernoulli log likelihood is l(z). The
    ``logistic_regression`` target uses the breast-cancer data (``breast_cancer``: d = 31). No
    closed form: log Z is the suite's own long run, stored in references.json with its standard
    error and the run that made it (``compute_logistic_reference``). Fitted q(z): the Laplace
    approximation N(theta_MAP, H^-1)."""

    def __init__(
        self, features, labels, prior_scale=LOGISTIC_PRIOR_SCALE, dtype=tf.float32, name=None
    ):
        super().__init__(name=name)
        features, labels = np.asarray(features, np.float64), np.asarray(labels, np.float64)
        if features.ndim != 2 or labels.shape != (features.shape[0],):
            raise ValueError(
                f"need features [n, d] and labels [n]; got {features.shape}, {labels.shape}"
            )
        if not np.all((labels == 0) | (labels == 1)):
            raise ValueError("labels must be 0 or 1")
        self.dtype = tf.as_dtype(dtype)
        self.latent_dim = features.shape[1]
        self.features = tf.constant(features, self.dtype)
        self.labels = tf.constant(labels, self.dtype)
        self.prior_scale = float(prior_scale)
        theta, cov = laplace_fit(features, labels, self.prior_scale)
        self.attach_fitted_proposal(theta, cov, "the Laplace approximation N(theta_MAP, H^-1)")
        self.reference_name = None  # set by logistic_regression(): its entry in references.json

    def constructor_arguments(self):
        return {
            "features": self.features,
            "labels": self.labels,
            "prior_scale": self.prior_scale,
            "dtype": self.dtype,
        }

    @property
    def prior(self):
        zeros = tf.zeros([self.latent_dim], self.dtype)
        return tfd.MultivariateNormalDiag(
            zeros, tf.fill([self.latent_dim], tf.constant(self.prior_scale, self.dtype))
        )

    def log_likelihood(self, z):
        z = tf.convert_to_tensor(z, self.dtype)
        eta = tf.tensordot(z, self.features, [[-1], [1]])  # [..., n]
        return tf.reduce_sum(self.labels * eta - tf.math.softplus(eta), axis=-1)

    @property
    def log_z(self):
        found = stored_reference(self.reference_name) if self.reference_name else None
        if found is None:
            raise NotImplementedError(
                "no stored reference log Z for this logistic regression: compute one with "
                "estimators.targets.compute_logistic_reference"
            )
        return LogZ(found["log_z"], found["se"], False, found["source"])

    def referenced_log_marginal(self, x):
        try:
            return super().referenced_log_marginal(x)
        except NotImplementedError:
            return None


# ------------------------------------------------------------------------------- registry


def funnel(dtype=tf.float32):
    """Neal's funnel, d = 10 (log Z = 0)."""
    return Funnel(FUNNEL_DIM, FUNNEL_SCALE, dtype=dtype)


def many_well(dtype=tf.float32):
    """The many-well, d = 32: 16 double wells (log Z = 164.6957 by quadrature)."""
    return ManyWell(MANY_WELL_DIM, dtype=dtype)


def gmm40(dtype=tf.float32):
    """40 unit-variance Gaussians in 2-d, means uniform in [-40, 40]^2 (log Z = 0)."""
    return GaussianMixtureTarget(gmm40_means(), GMM40_REFERENCE_SCALE, dtype=dtype)


def logistic_regression(dtype=tf.float32):
    """Bayesian logistic regression on breast cancer (569 x 30 + intercept), prior N(0, 10^2 I)."""
    features, labels = breast_cancer()
    target = LogisticRegressionTarget(features, labels, LOGISTIC_PRIOR_SCALE, dtype=dtype)
    target.reference_name = "logistic_regression"
    return target


TARGETS = {
    "funnel": funnel,
    "many_well": many_well,
    "gmm40": gmm40,
    "logistic_regression": logistic_regression,
}


def load_target(name, dtype=tf.float32):
    """The standard target ``name`` (one of ``TARGETS``)."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    return TARGETS[name](dtype=dtype)


def published_table():
    """The published comparison, one row per (target, quantity): a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(
        [{"target": name, **row} for name, rows in PUBLISHED.items() for row in rows]
    )
