"""A target: an unnormalized density over z with a known or referenced normalizer, as a model.

    gamma(z) = p(z) exp(l(z)),        Z = \\int gamma(z) dz,        log Z = log p(x)

The field's sampling benchmarks (the funnel, the many-well, a Gaussian mixture, a Bayesian
logistic regression) are densities, not latent-variable models with data. In the suite's terms a
target is a model with **one fixed data point** x: a dummy [N, 1] row (its value is ignored),
the **reference** distribution p(z) as the prior (what naive MC, AIS and SMC start from), and
the likelihood p(x | z) := exp(l(z)), l(z) = log gamma(z) - log p(z). Then p(x) = Z, and
``estimate(target, target.data(), method, M, seed=0)`` returns one estimate of log Z per row:
every estimator, the sweep, the report and the presets treat a target as any model (repeats
are rows of the same dummy point).

    prior              p(z): the reference, a Gaussian the estimators can sample
    likelihood(z)      a distribution over the dummy x whose log_prob(x) is l(z), batched over z
    log_marginal(x)    log Z for every row, where it is exact (closed form or quadrature)
    log_z              the ``LogZ`` record: value, SE, exact or not, and where it comes from
    referenced_log_marginal(x)   (log Z [N], its SE [N]): what ``reference_log_marginal`` scores
                                 against, also where log Z is a long run's estimate (no closed form)
    amortized_posterior  a fitted Gaussian q(z) (moments or Laplace, per target; it ignores x):
                         the proposal of posterior_is, of prior_is's default and of AIS/SMC
                         with start=posterior

A target cannot simulate data (x is not random): ``model.sample`` raises NotImplementedError, so
``bdmc`` needs ``posterior_samples=`` (exact draws from gamma / Z, which some targets provide).
"""

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators.models.base import LatentVariableModel
from estimators.models.callable_model import CallableLikelihood

tfd = tfp.distributions


@dataclass(frozen=True)
class LogZ:
    """The normalizer of a target: log Z, its standard error (0 where exact), whether it is
    exact (a closed form or quadrature to float64 precision) and where it comes from."""

    value: float
    se: float
    exact: bool
    source: str


class Target(LatentVariableModel):
    """Base class of targets gamma(z) = p(z) exp(l(z)) (see the module docstring).

    A subclass sets ``latent_dim`` and ``dtype``, and defines ``prior`` (the reference p(z)),
    ``log_likelihood(z)`` (l(z) for z [..., d] -> [...]), ``log_z`` (a ``LogZ``) and
    ``constructor_arguments``; it calls ``attach_fitted_proposal(mean, cov)`` with its fitted
    Gaussian."""

    data_dim = 1

    def log_likelihood(self, z):
        """l(z) = log gamma(z) - log p(z), [...] for z [..., d]."""
        raise NotImplementedError

    @property
    def log_z(self) -> LogZ:
        raise NotImplementedError

    def log_density(self, z):
        """The unnormalized log density log gamma(z) = log p(z) + l(z), [...] for z [..., d]."""
        z = tf.convert_to_tensor(z, self.dtype)
        return self.prior.log_prob(z) + self.log_likelihood(z)

    def likelihood(self, z):
        """A distribution over the dummy x [..., 1], batched over z [..., d], whose log_prob is
        l(z) (x's value is ignored); it cannot be sampled: a target's x is fixed."""
        return CallableLikelihood(
            lambda x, z: self.log_likelihood(z), None, z, self.data_dim, self.dtype
        )

    def log_marginal(self, x):
        found = self.log_z
        if not found.exact:
            raise NotImplementedError(
                f"{type(self).__name__}'s log Z has no closed form: its reference is "
                f"{found.value:.4f} +- {found.se:.4f} ({found.source}); see "
                "referenced_log_marginal"
            )
        x = tf.convert_to_tensor(x, self.dtype)
        return tf.fill(tf.shape(x)[:1], tf.constant(found.value, self.dtype))

    def referenced_log_marginal(self, x):
        """(log Z [N], its standard error [N]) as float64 NumPy for the N rows of x: the value
        ``reference_log_marginal`` scores estimates against."""
        found = self.log_z
        n = int(np.shape(x)[0])
        return np.full(n, float(found.value)), np.full(n, float(found.se))

    def data(self, num_points=1):
        """The dummy data: ``num_points`` rows of x = 0, shape [num_points, 1] (each row is one
        more independent estimate of the same log Z)."""
        return np.zeros((num_points, 1), self.dtype.as_numpy_dtype)

    def attach_fitted_proposal(self, mean, cov, description):
        """Attach N(mean, cov) as the target's q(z) (``amortized_posterior``)."""
        self.amortized_posterior = FittedGaussian(mean, np.linalg.cholesky(cov), self.dtype)
        self.fitted_proposal_description = description
        return self.amortized_posterior

    def sample(self, num_points, seed=0, return_latents=False):
        raise NotImplementedError(
            f"{type(self).__name__} is a target with one fixed (dummy) data point: it does not "
            "simulate x; use target.data(n) for n rows of it"
        )


class FittedGaussian(tf.Module):
    """q(z) = N(loc, L L^T), fitted to a target; called on x [N, D] it returns the distribution
    with batch shape [N] (the same q for every row), as an amortized posterior does."""

    def __init__(self, loc, scale_tril, dtype=tf.float32, name=None):
        super().__init__(name=name)
        loc, scale_tril = np.asarray(loc, np.float64), np.asarray(scale_tril, np.float64)
        if loc.ndim != 1 or scale_tril.shape != (loc.size, loc.size):
            raise ValueError(
                f"need loc [d] and scale_tril [d, d]; got {loc.shape}, {scale_tril.shape}"
            )
        self.dtype = tf.as_dtype(dtype)
        self.loc = tf.constant(loc, self.dtype)
        self.scale_tril = tf.constant(scale_tril, self.dtype)

    def constructor_arguments(self):
        return {"loc": self.loc, "scale_tril": self.scale_tril, "dtype": self.dtype}

    def __call__(self, x):
        n = tf.shape(x)[0]
        loc = tf.broadcast_to(self.loc, tf.stack([n, tf.shape(self.loc)[0]]))
        return tfd.MultivariateNormalTriL(loc, self.scale_tril)


class FittedStudentT(tf.Module):
    """q(z) = multivariate Student-t(df, loc, L L^T): a heavier-tailed fitted proposal, called
    like ``FittedGaussian`` (batch shape [N] for x [N, D]); its covariance is
    df / (df - 2) L L^T."""

    def __init__(self, df, loc, scale_tril, dtype=tf.float32, name=None):
        super().__init__(name=name)
        loc, scale_tril = np.asarray(loc, np.float64), np.asarray(scale_tril, np.float64)
        if loc.ndim != 1 or scale_tril.shape != (loc.size, loc.size):
            raise ValueError(
                f"need loc [d] and scale_tril [d, d]; got {loc.shape}, {scale_tril.shape}"
            )
        if not float(df) > 2:
            raise ValueError(f"df must be > 2 (a finite covariance); got {df!r}")
        self.dtype = tf.as_dtype(dtype)
        self.df = float(df)
        self.loc = tf.constant(loc, self.dtype)
        self.scale_tril = tf.constant(scale_tril, self.dtype)

    def constructor_arguments(self):
        return {"df": self.df, "loc": self.loc, "scale_tril": self.scale_tril, "dtype": self.dtype}

    def __call__(self, x):
        n = tf.shape(x)[0]
        loc = tf.broadcast_to(self.loc, tf.stack([n, tf.shape(self.loc)[0]]))
        return tfd.MultivariateStudentTLinearOperator(
            tf.constant(self.df, self.dtype),
            loc,
            tf.linalg.LinearOperatorLowerTriangular(self.scale_tril),
        )
