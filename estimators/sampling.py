"""Reparameterized sampling with the Philox generator.

Why this file exists: under XLA on CPU, TensorFlow's auto-selected stateless RNG is 13-30x
slower than Philox (see PERFORMANCE.md), and TFP's ``sample()`` uses the auto-selected one.
So base noise is drawn here with ``alg="philox"`` and pushed through each distribution's
reparameterization:

    Normal / MVN:       z = loc + scale @ eps,           eps ~ N(0, I)
    Transformed:        z = bijector(z_base)
    Categorical:        k = argmax(logits + Gumbel),     Gumbel = -log(-log U)
    Bernoulli:          x = [log U < log sigmoid(logits)]

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
        u = _uniform(shape, seed, logits.dtype)
        gumbel = -tf.math.log(-tf.math.log(u))
        return tf.argmax(logits + gumbel, axis=-1, output_type=dist.dtype)
    if isinstance(dist, tfd.Bernoulli):
        logits = dist.logits_parameter()
        u = _uniform(tf.concat([sample_shape, tf.shape(logits)], axis=0), seed, logits.dtype)
        return tf.cast(tf.math.log(u) < tf.math.log_sigmoid(logits), dist.dtype)
    if type(dist) is tfd.TransformedDistribution:
        return dist.bijector.forward(sample(dist.distribution, sample_shape, seed))
    # TFP's stateless samplers take int32 seeds.
    return dist.sample(sample_shape, seed=tf.cast(seed, tf.int32))


def _uniform(shape, seed, dtype):
    """U(0, 1) excluding 0, so log(U) is finite."""
    tiny = np.finfo(dtype.as_numpy_dtype).tiny
    return tf.random.stateless_uniform(shape, seed=seed, minval=tiny, maxval=1.0, dtype=dtype,
                                       alg=RNG_ALG)
