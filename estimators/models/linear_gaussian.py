"""The linear-Gaussian model (probabilistic PCA): an infinite mixture with a linear decoder.

p(z) = N(0, I_d),   p(x | z) = N(x; W z + b, sigma^2 I_D)
p(x) = N(x; b, W W^T + sigma^2 I)
p(z | x) = N(z; S W^T (x - b) / sigma^2, S),   S = (I + W^T W / sigma^2)^{-1}
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators.models.base import LatentVariableModel

tfd = tfp.distributions


class LinearGaussian(LatentVariableModel):
    """Probabilistic PCA: z ~ N(0, I_d), x | z ~ N(W z + b, sigma^2 I_D); exact p(x) and p(z | x).

    W: [D, d], b: [D], sigma > 0 (a scalar). The closed forms are computed once, in float64.
    """

    def __init__(self, W, b, sigma, dtype=tf.float32, name=None):
        super().__init__(name=name)
        self.dtype = tf.as_dtype(dtype)
        W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
        if W.ndim != 2 or b.shape != (W.shape[0],):
            raise ValueError(f"need W[D, d] and b[D]; got {W.shape} and {b.shape}")
        if np.ndim(sigma) != 0 or float(sigma) <= 0:
            raise ValueError(f"sigma must be a positive scalar; got {sigma!r}")
        self.data_dim, self.latent_dim = W.shape
        self.W = tf.constant(W, self.dtype)
        self.b = tf.constant(b, self.dtype)
        self.sigma = tf.constant(float(sigma), self.dtype)
        # Closed forms are computed once in float64 and stored in the model's dtype.
        cov_x = W @ W.T + float(sigma) ** 2 * np.eye(self.data_dim)
        post_cov = np.linalg.inv(np.eye(self.latent_dim) + W.T @ W / float(sigma) ** 2)
        self._marginal_scale_tril = tf.constant(np.linalg.cholesky(cov_x), self.dtype)
        self._post_cov_tril = tf.constant(np.linalg.cholesky(post_cov), self.dtype)
        self._post_gain = tf.constant(post_cov @ W.T / float(sigma) ** 2, self.dtype)  # [d, D]

    def constructor_arguments(self):
        return {"W": self.W, "b": self.b, "sigma": self.sigma, "dtype": self.dtype}

    @property
    def prior(self):
        zeros = tf.zeros([self.latent_dim], self.dtype)
        return tfd.MultivariateNormalDiag(zeros, tf.ones_like(zeros))

    def decode(self, z):
        return tf.linalg.matvec(self.W, z) + self.b

    def likelihood(self, z):
        loc = self.decode(z)
        return tfd.MultivariateNormalDiag(loc, tf.fill(tf.shape(loc), self.sigma))

    def log_marginal(self, x):
        marginal = tfd.MultivariateNormalTriL(self.b, self._marginal_scale_tril)
        return marginal.log_prob(tf.convert_to_tensor(x, self.dtype))

    def posterior(self, x):
        x = tf.convert_to_tensor(x, self.dtype)
        loc = tf.linalg.matvec(self._post_gain, x - self.b)  # [N, d]
        return tfd.MultivariateNormalTriL(loc, self._post_cov_tril)
