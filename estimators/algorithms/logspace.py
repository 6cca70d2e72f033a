"""Reductions in log space that stream over chunks: memory flat in the number of samples.

A running logsumexp keeps (m, s) with m = max so far and s = sum exp(lw - m); folding a chunk
rescales s to the new max. ``-inf`` weights (masked samples) contribute exactly 0, and a column
that has seen only ``-inf`` stays at (-inf, 0) until a finite weight arrives.
"""

import numpy as np
import tensorflow as tf


def running_logsumexp(m, s, lw):
    """Fold a chunk lw [C, N] into the running (max m [N], sum s [N] of exp(lw - m))."""
    m_new = tf.maximum(m, tf.reduce_max(lw, axis=0))
    shift = tf.where(tf.math.is_finite(m_new), m_new, tf.zeros_like(m_new))
    s_new = s * tf.exp(m - shift) + tf.reduce_sum(tf.exp(lw - shift), axis=0)
    return m_new, s_new


def finish_logsumexp(m, s):
    """log sum exp from the running pair (-inf when every weight was -inf)."""
    shift = tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))
    return shift + tf.math.log(s)


def empty(n, dtype):
    """The running pair of an empty sum over ``n`` columns."""
    return tf.fill([n], tf.constant(-np.inf, dtype)), tf.zeros([n], dtype)


def kish_ess(log_sum_w, log_sum_w2):
    """(sum w)^2 / sum w^2 from the two log sums; 0 where no weight was finite."""
    log_ess = 2.0 * log_sum_w - log_sum_w2
    return tf.where(tf.math.is_finite(log_ess), tf.exp(log_ess), tf.zeros_like(log_ess))


def log_add(a, b):
    """log(exp(a) + exp(b)) elementwise, -inf-safe."""
    big = tf.maximum(a, b)
    safe = tf.where(tf.math.is_finite(big), big, tf.zeros_like(big))
    return tf.where(
        tf.math.is_finite(big), safe + tf.math.log(tf.exp(a - safe) + tf.exp(b - safe)), big
    )


def log_mean_exp(lw, axis=0):
    """log (1/n) sum exp(lw) along ``axis``, overflow-free."""
    n = tf.cast(tf.shape(lw)[axis], lw.dtype)
    return tf.reduce_logsumexp(lw, axis=axis) - tf.math.log(n)
