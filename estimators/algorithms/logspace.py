"""Reductions in log space that stream over chunks: memory flat in the number of samples.

A running logsumexp keeps (m, s) with m = max so far and s = sum exp(lw - m); folding a chunk
rescales s to the new max. ``-inf`` weights (masked samples) contribute exactly 0, and a column
that has seen only ``-inf`` stays at (-inf, 0) until a finite weight arrives.
"""

from typing import NamedTuple

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


class WeightSums(NamedTuple):
    """Streamed sums of the weights w and of w^2, both kept relative to one running max m of
    log w: s1 = sum exp(log w - m), s2 = sum exp(2 log w - 2 m). Sharing the max is what keeps
    their ratio exact: s2 / s1^2 = sum w^2 / (sum w)^2 carries no round-off of the log w's size
    (at log w ~ -1e5, log sum w itself is only known to float32's 0.008 nats)."""

    m: tf.Tensor  # [N] the largest log w so far (-inf before any)
    s1: tf.Tensor  # [N]
    s2: tf.Tensor  # [N]


def empty_weight_sums(n, dtype):
    m, s = empty(n, dtype)
    return WeightSums(m, s, s)


def update_weight_sums(sums, lw):
    """Fold a chunk lw [C, N] of log weights (-inf: masked) into ``sums``."""
    m_new = tf.maximum(sums.m, tf.reduce_max(lw, axis=0))
    shift = tf.where(tf.math.is_finite(m_new), m_new, tf.zeros_like(m_new))
    # Written as the two separate running log-sum-exps of lw and 2 lw were: the same bits.
    s1 = sums.s1 * tf.exp(sums.m - shift) + tf.reduce_sum(tf.exp(lw - shift), axis=0)
    s2 = sums.s2 * tf.exp(2.0 * sums.m - 2.0 * shift) + tf.reduce_sum(
        tf.exp(2.0 * lw - 2.0 * shift), axis=0
    )
    return WeightSums(m_new, s1, s2)


def log_sums(sums):
    """(log sum w [N], log sum w^2 [N])."""
    return finish_logsumexp(sums.m, sums.s1), finish_logsumexp(2.0 * sums.m, sums.s2)


def sums_ess(sums):
    """The Kish ESS (sum w)^2 / sum w^2 = s1^2 / s2, exact at any log w; 0 with no weight."""
    return tf.where(sums.s2 > 0, tf.square(sums.s1) / tf.where(sums.s2 > 0, sums.s2, 1.0), 0.0)


def delta_method_se(sums, num_samples):
    """The delta-method standard error of log p^ = log mean w from the same M weights:

        SE(log p^) ~= sd(w) / (sqrt(M) mean w),   sd with the M - 1 divisor
                    = sqrt((M s2 / s1^2 - 1) / (M - 1)).

    0 (not NaN) when every weight is equal; NaN at M = 1 (one weight has no spread) and where no
    weight was finite. It is the spread of the weights the sample saw: with heavy-tailed
    weights (k-hat > 0.7) the sample rarely sees the tail, and it is too small."""
    m = tf.cast(num_samples, sums.s1.dtype)
    ratio = sums.s2 / tf.square(sums.s1)  # both relative to the same max: exact ratio
    variance = tf.maximum(m * ratio - 1.0, 0.0) / (m - 1.0)
    ok = (m > 1.0) & (sums.s1 > 0)
    return tf.where(ok, tf.sqrt(tf.where(ok, variance, 0.0)), tf.constant(np.nan, sums.s1.dtype))


class MeanVariance(NamedTuple):
    """Streamed count, mean and sum of squared deviations of values (Chan et al.'s pairwise
    update): no sum of squares of large values is ever formed, so log w ~ -1e5 loses nothing."""

    count: tf.Tensor  # [N]
    mean: tf.Tensor  # [N]
    m2: tf.Tensor  # [N] sum of squared deviations from the mean


def empty_mean_variance(n, dtype):
    zeros = tf.zeros([n], dtype)
    return MeanVariance(zeros, zeros, zeros)


def update_mean_variance(acc, values, valid):
    """Fold a chunk values [C, N] (``valid`` [C] or [C, N]: which count) into ``acc``."""
    valid = tf.broadcast_to(valid if valid.shape.rank == 2 else valid[:, None], tf.shape(values))
    weight = tf.cast(valid, values.dtype)
    n_b = tf.reduce_sum(weight, axis=0)
    safe = tf.where(valid, values, tf.zeros_like(values))
    mean_b = tf.math.divide_no_nan(tf.reduce_sum(safe, axis=0), n_b)
    m2_b = tf.reduce_sum(weight * tf.square(safe - mean_b), axis=0)
    count = acc.count + n_b
    delta = mean_b - acc.mean
    mean = acc.mean + tf.math.divide_no_nan(delta * n_b, count)
    m2 = acc.m2 + m2_b + tf.math.divide_no_nan(tf.square(delta) * acc.count * n_b, count)
    return MeanVariance(count, mean, m2)


def standard_error_of_mean(acc):
    """sd / sqrt(n) with the n - 1 divisor; NaN for n < 2."""
    ok = acc.count > 1.0
    variance = tf.math.divide_no_nan(acc.m2, acc.count - 1.0)
    return tf.where(
        ok, tf.sqrt(variance / tf.maximum(acc.count, 1.0)), tf.constant(np.nan, acc.m2.dtype)
    )
