"""Reparameterized sampling with the Philox generator.

Why this file exists: under XLA on CPU, TensorFlow's auto-selected stateless RNG is 13-30x
slower than Philox (see docs/performance.md), and TFP's ``sample()`` uses the auto-selected one.
So base noise is drawn here with ``alg="philox"`` and pushed through each distribution's
reparameterization:

    Normal / MVN:       z = loc + scale @ eps,           eps ~ N(0, I)
    Transformed:        z = bijector(z_base)
    Categorical:        k = argmax(logits + Gumbel),     Gumbel = -log(-log U)
    Bernoulli:          x = [log U < log sigmoid(logits)]

A distribution with a ``philox_sample(sample_shape, seed)`` method draws its own samples with
this file's generators (the autoregressive likelihood: D sequential passes in one compiled loop).
Any other TFP distribution falls back to its own stateless ``sample(seed=...)``: correct, slower.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

RNG_ALG = "philox"


def _full_shape(dist, sample_shape):
    return tf.concat(
        [tf.cast(sample_shape, tf.int32), dist.batch_shape_tensor(), dist.event_shape_tensor()],
        axis=0,
    )


def standard_normal(shape, seed, dtype):
    return tf.random.stateless_normal(shape, seed=seed, dtype=dtype, alg=RNG_ALG)


def sample(dist, sample_shape, seed):
    """Draw ``sample_shape`` samples of ``dist`` from the stateless ``seed`` ([2] int)."""
    sample_shape = tf.reshape(tf.convert_to_tensor(sample_shape, tf.int32), [-1])
    if isinstance(dist, tfd.Normal):
        eps = standard_normal(_full_shape(dist, sample_shape), seed, dist.dtype)
        return dist.loc + dist.scale * eps
    if isinstance(dist, tfd.MultivariateNormalLinearOperator):
        eps = standard_normal(_full_shape(dist, sample_shape), seed, dist.dtype)
        z = dist.scale.matvec(eps)
        return z if dist.loc is None else z + dist.loc
    if isinstance(dist, tfd.Independent):
        # Independent only reinterprets batch dims as event dims; samples are the same.
        return sample(dist.distribution, sample_shape, seed)
    if isinstance(dist, tfd.Categorical):
        logits = dist.logits_parameter()
        shape = tf.concat([sample_shape, tf.shape(logits)], axis=0)
        u = uniform(shape, seed, logits.dtype)
        gumbel = -tf.math.log(-tf.math.log(u))
        return tf.argmax(logits + gumbel, axis=-1, output_type=dist.dtype)
    if isinstance(dist, tfd.Bernoulli):
        logits = dist.logits_parameter()
        u = uniform(tf.concat([sample_shape, tf.shape(logits)], axis=0), seed, logits.dtype)
        return tf.cast(tf.math.log(u) < tf.math.log_sigmoid(logits), dist.dtype)
    if type(dist) is tfd.TransformedDistribution:
        return dist.bijector.forward(sample(dist.distribution, sample_shape, seed))
    if hasattr(dist, "philox_sample"):
        return dist.philox_sample(sample_shape, seed)
    # TFP's stateless samplers take int32 seeds.
    return dist.sample(sample_shape, seed=tf.cast(seed, tf.int32))


def sample_and_log_prob(dist, sample_shape, seed):
    """(z, log q(z)) for ``sample_shape`` draws of ``dist``.

    For a multivariate normal z = loc + L eps, so log q(z) = log N(eps; 0, I) - log|det L|:
    no triangular solve (the costly part of ``log_prob``, 2-3x the whole estimator's time for
    a full-covariance proposal). Other distributions use their own ``log_prob``.
    """
    if isinstance(dist, tfd.MultivariateNormalLinearOperator):
        sample_shape = tf.reshape(tf.convert_to_tensor(sample_shape, tf.int32), [-1])
        eps = standard_normal(_full_shape(dist, sample_shape), seed, dist.dtype)
        z = dist.scale.matvec(eps)
        z = z if dist.loc is None else z + dist.loc
        dim = tf.cast(tf.shape(eps)[-1], dist.dtype)
        log_q = (
            -0.5 * tf.reduce_sum(tf.square(eps), axis=-1)
            - 0.5 * dim * np.log(2 * np.pi)
            - dist.scale.log_abs_determinant()
        )
        return z, log_q
    z = sample(dist, sample_shape, seed)
    return z, dist.log_prob(z)


def uniform(shape, seed, dtype):
    """U(0, 1) excluding 0, so log(U) is finite."""
    tiny = np.finfo(dtype.as_numpy_dtype).tiny
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=tiny, maxval=1.0, dtype=dtype, alg=RNG_ALG
    )
