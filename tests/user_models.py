"""Models as a user writes them, importable by object path (``user_models:linear_gaussian``)
with the tests folder on sys.path (the CLI also imports from the current folder).

``linear_gaussian()``: probabilistic PCA written as plain TensorFlow callables (a
``CallableModel``), with an encoder 1.5x wider than the exact posterior (so importance sampling
has real, finite variance) and the closed-form log p(x) for checking. Its callables are bound
methods of a ``tf.Module`` whose parameters are variables, so it can be fingerprinted (resumed).
"""

import math

import numpy as np
import tensorflow as tf

from estimators import CallableModel, LinearGaussian

D, d, SIGMA, WIDTH = 4, 2, 0.6, 1.5


def linear_gaussian_parameters(seed=0):
    """W [D, d] with orthogonal columns (a diagonal posterior covariance), b [D]."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(D, d)))
    return q * np.array([1.5, 0.8]), rng.normal(size=D)


class LinearGaussianCallables(tf.Module):
    """log p(x | z), a draw of x | z and a diagonal q(z | x) as methods over matrices."""

    def __init__(self, W, b, sigma, width):
        super().__init__()
        self.W = tf.Variable(W, dtype=tf.float32, trainable=False)
        self.b = tf.Variable(b, dtype=tf.float32, trainable=False)
        self.sigma = float(sigma)
        post_var = 1.0 / (1.0 + np.sum(np.square(W), axis=0) / sigma**2)  # diagonal: W^T W is
        self.post_sd = tf.Variable(width * np.sqrt(post_var), dtype=tf.float32, trainable=False)
        self.gain = tf.Variable(post_var[:, None] * W.T / sigma**2, dtype=tf.float32)

    def log_likelihood(self, x, z):  # x [B, D], z [B, d] -> [B]
        r = (x - tf.linalg.matvec(self.W, z) - self.b) / self.sigma
        return -0.5 * tf.reduce_sum(r * r, -1) - D * (
            math.log(self.sigma) + 0.5 * math.log(2 * math.pi)
        )

    def sample_likelihood(self, z, seed):  # z [B, d] -> x [B, D]
        loc = tf.linalg.matvec(self.W, z) + self.b
        return loc + self.sigma * tf.random.stateless_normal(tf.shape(loc), seed, alg="philox")

    def encode(self, x):  # x [B, D] -> (loc [B, d], scale [B, d])
        loc = tf.linalg.matvec(self.gain, x - self.b)
        return loc, tf.broadcast_to(self.post_sd, tf.shape(loc))


def linear_gaussian():
    W, b = linear_gaussian_parameters()
    parts = LinearGaussianCallables(W, b, SIGMA, WIDTH)
    exact = LinearGaussian(W, b, SIGMA)
    model = CallableModel(
        parts.log_likelihood,
        latent_dim=d,
        sample_likelihood=parts.sample_likelihood,
        encoder=parts.encode,
        encoder_output="loc_scale",
        log_marginal=exact.log_marginal,
    )
    model.parts = parts  # keeps the module (and its variables) alive with the model
    return model


def not_a_model():
    return 42
