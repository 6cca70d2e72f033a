"""Shared fixed-seed models for the tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import MLP, GaussianMixture, InfiniteMixture, LinearGaussian

tfd = tfp.distributions


def make_linear_gaussian(D=5, d=2, sigma=0.8, dtype=tf.float32, seed=0):
    rng = np.random.default_rng(seed)
    return LinearGaussian(rng.normal(size=(D, d)), rng.normal(size=D), sigma, dtype=dtype)


def make_gmm(dtype=tf.float32):
    return GaussianMixture(
        [0.5, 0.3, 0.2],
        [[-2.0, 0.0], [2.0, 1.0], [0.0, 3.0]],
        [[1.0, 0.5], [0.7, 1.2], [0.5, 0.5]],
        dtype=dtype,
    )


class LinearDecoder(tf.Module):
    """g(z) = W z + b: turns an InfiniteMixture into a LinearGaussian, for checking quadrature."""

    def __init__(self, lg):
        super().__init__()
        self.W, self.b = lg.W, lg.b

    def __call__(self, z):
        return tf.linalg.matvec(self.W, z) + self.b


def linear_infinite_mixture(lg):
    return InfiniteMixture(
        LinearDecoder(lg),
        lg.latent_dim,
        data_dim=lg.data_dim,
        scale=float(lg.sigma.numpy()),
        dtype=lg.dtype,
    )


def make_nonlinear(dtype=tf.float32, D=6, scale=0.3, seed=3):
    decoder = MLP([2, 16, D], activation="tanh", seed=seed, dtype=dtype)
    return InfiniteMixture(decoder, 2, scale=scale, dtype=dtype)


@pytest.fixture(autouse=True, scope="session")
def cache_in_a_temporary_folder(tmp_path_factory):
    """Caches (the reference's) go to a temporary folder: tests never write to ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ESTIMATORS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def lg():
    return make_linear_gaussian()


@pytest.fixture(scope="module")
def gmm():
    return make_gmm()
