"""A finite Gaussian mixture with diagonal components.

    p(k) = w_k,   p(x | k) = N(x; mu_k, diag(s_k^2)),   p(x) = \\sum_k w_k N(x; mu_k, diag(s_k^2))
    p(k | x) = w_k N(x; mu_k, s_k) / p(x)          (the responsibilities: the exact posterior)

The latent is the component index k (a scalar int), so ``latent_dim == 0``.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators.models.base import LatentVariableModel

tfd = tfp.distributions


class GaussianMixture(LatentVariableModel):
    """A mixture of K diagonal Gaussians in D dimensions; the latent is the component index k.

    weights: [K] (non-negative, summing to 1), locs and scales: [K, D] (scales > 0).
    Exact p(x) and exact responsibilities p(k | x); ``latent_dim`` is 0.
    """

    def __init__(self, weights, locs, scales, dtype=tf.float32, name=None):
        super().__init__(name=name)
        self.dtype = tf.as_dtype(dtype)
        weights, locs, scales = (np.asarray(a, np.float64) for a in (weights, locs, scales))
        if weights.ndim != 1 or locs.ndim != 2 or locs.shape[0] != weights.shape[0]:
            raise ValueError(
                f"need weights[K] and locs[K, D]; got {weights.shape} and {locs.shape}"
            )
        if scales.shape != locs.shape:
            raise ValueError(f"scales must have the shape of locs {locs.shape}; got {scales.shape}")
        if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
            raise ValueError(
                f"weights must be non-negative and sum to 1; they sum to {weights.sum()}"
            )
        if np.any(scales <= 0):
            raise ValueError("scales must be positive")
        self.num_components, self.data_dim = locs.shape
        self.latent_dim = 0
        self.weights = tf.constant(weights, self.dtype)
        self.locs = tf.constant(locs, self.dtype)
        self.scales = tf.constant(scales, self.dtype)

    def constructor_arguments(self):
        return {
            "weights": self.weights,
            "locs": self.locs,
            "scales": self.scales,
            "dtype": self.dtype,
        }

    @property
    def prior(self):
        return tfd.Categorical(logits=tf.math.log(self.weights), dtype=tf.int32)

    def likelihood(self, z):
        return tfd.MultivariateNormalDiag(tf.gather(self.locs, z), tf.gather(self.scales, z))

    def _components(self):
        return tfd.MultivariateNormalDiag(self.locs, self.scales)

    def _log_joint_all(self, x):
        # [N, K]: log w_k + log N(x_n; mu_k, s_k)
        return tf.math.log(self.weights) + self._components().log_prob(x[:, None, :])

    @property
    def marginal(self):
        """p(x) itself, as a TFP distribution."""
        return tfd.MixtureSameFamily(tfd.Categorical(probs=self.weights), self._components())

    def log_marginal(self, x):
        return self.marginal.log_prob(tf.convert_to_tensor(x, self.dtype))

    def posterior(self, x):
        return tfd.Categorical(
            logits=self._log_joint_all(tf.convert_to_tensor(x, self.dtype)), dtype=tf.int32
        )
