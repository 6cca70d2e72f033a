"""``jackknife_iwae``: Nowozin's (2018) jackknife bias correction of the IWAE estimate.

With the posterior_is weights w_1..w_M, S = sum_i w_i, L_M = log(S / M) and the leave-one-out
L_{M-1}^(-i) = log((S - w_i) / (M - 1)), the first-order jackknife is

    J = M L_M - (M - 1) mean_i L_{M-1}^(-i).

L_M's bias is a/M + O(1/M^2); the jackknife cancels the a/M term, so J's bias is O(1/M^2). J is
no longer a bound: it can land on either side of log p(x). Needs M >= 2.

Streamed in one pass with flat memory. Writing r_i = w_i / S,

    J = L_M + (M - 1) log(1 - 1/M) + ((M - 1) / M) T,   T = -sum_i log(1 - r_i)

(algebra only: nothing large is subtracted from anything large). T is split where it is exact:
  * the ``TOP`` = 8 largest weights (kept as a running top): log(1 - r_i) = log S_(-i) - log S,
    with S_(-i) summed from the other weights, never as S - w_i (which cancels when w_i
    dominates);
  * every other weight has r_i <= 1/9 (eight weights are at least as large), so
    -log(1 - r) = sum_p r^p / p converges fast: the running power sums sum_i w_i^p,
    p = 1..``POWERS`` = 8, of the weights outside the top give it with a truncation error below
    (1/9)^8 / 8 ~ 3e-9 nats.
A weight that leaves the running top joins the power sums. The final algebra runs in float64.
"""

import numpy as np
import tensorflow as tf

from estimators import methods
from estimators.algorithms import importance
from estimators.algorithms.logspace import log_add

TOP = 8  # the largest weights, handled exactly
POWERS = 8  # terms of the series for the others


def init(n, dtype):
    """(running top [N, TOP], log power sums [POWERS, N] of the weights outside the top)."""
    empty = tf.constant(-np.inf, dtype)
    return tf.fill([n, TOP], empty), tf.fill([POWERS, n], empty)


def update(state, log_w):
    """Fold a chunk log_w [C, N]: the new top, and the power sums of whatever left it."""
    top, log_powers = state
    merged = tf.concat([top, tf.transpose(log_w)], axis=1)  # [N, TOP + C]
    top = tf.math.top_k(merged, k=TOP, sorted=True).values
    tau = top[:, -1]  # every weight outside the new top is <= tau
    finite = tf.math.is_finite(tau)
    safe_tau = tf.where(finite, tau, tf.zeros_like(tau))
    below = merged < tau[:, None]
    # Ties with tau beyond the TOP kept ones also leave: count them as copies of tau.
    ties = tf.reduce_sum(tf.cast(merged >= tau[:, None], top.dtype), axis=1) - TOP
    ratio = tf.where(below, tf.exp(merged - safe_tau[:, None]), tf.zeros_like(merged))  # <= 1
    power, chunk = tf.ones_like(ratio), []
    for p in range(1, POWERS + 1):
        power *= ratio
        total = tf.reduce_sum(power, axis=1) + ties
        chunk.append(
            tf.where(
                finite & (total > 0),
                tf.math.log(total) + p * safe_tau,
                tf.constant(-np.inf, top.dtype),
            )
        )
    return top, log_add(log_powers, tf.stack(chunk))


def finish(stats):
    """J from the final top and power sums; ESS and k-hat of the raw weights as posterior_is."""
    top, log_powers = (tf.cast(t, tf.float64) for t in stats.extra)
    dtype = stats.log_sum_w.dtype
    log_rest = log_powers[0]  # log of the sum of the weights outside the top
    log_s = tf.reduce_logsumexp(tf.concat([top, log_rest[:, None]], axis=1), axis=1)
    # log S_(-i) for each top weight i: the others of the top plus the rest.
    others = tf.where(
        tf.eye(TOP, dtype=tf.bool)[None], tf.constant(-np.inf, tf.float64), top[:, None, :]
    )
    others = tf.concat([others, tf.tile(log_rest[:, None, None], [1, TOP, 1])], axis=2)
    log_leave_out = tf.reduce_logsumexp(others, axis=2)  # [N, TOP]
    in_top = tf.math.is_finite(top)
    top_part = -tf.reduce_sum(tf.where(in_top, log_leave_out - log_s[:, None], 0.0), axis=1)
    p = tf.range(1, POWERS + 1, dtype=tf.float64)[:, None]
    rest_part = tf.reduce_sum(tf.exp(log_powers - p * log_s[None]) / p, axis=0)
    m = tf.cast(stats.num_samples, tf.float64)
    jackknife = (
        log_s
        - tf.math.log(m)
        + (m - 1.0) * tf.math.log1p(-1.0 / m)
        + (m - 1.0) / m * (top_part + rest_part)
    )
    # The jackknife SE: sqrt((M - 1)/M sum_i (L_(-i) - mean L_(-i))^2), where L_(-i) - L_M
    # = a_i - log(1 - 1/M) with a_i = log(1 - r_i); sum a_i = -T, and sum a_i^2 comes from
    # the same split: exactly for the top, and for the rest from the series
    # log(1 - r)^2 = sum_{p >= 2} (2 H_(p-1) / p) r^p (H: harmonic numbers) on the power sums.
    top_a = tf.where(in_top, log_leave_out - log_s[:, None], 0.0)
    harmonic = tf.math.cumsum(1.0 / p, axis=0, exclusive=True)  # H_(p-1)
    series = tf.where(p >= 2.0, 2.0 * harmonic / p, 0.0)
    rest_a2 = tf.reduce_sum(series * tf.exp(log_powers - p * log_s[None]), axis=0)
    sum_a2 = tf.reduce_sum(tf.square(top_a), axis=1) + rest_a2
    sum_a = -(top_part + rest_part)
    spread = tf.maximum(sum_a2 - tf.square(sum_a) / m, 0.0)
    diagnostics = importance.plain_finish(stats)[1]
    diagnostics["se"] = tf.cast(tf.sqrt((m - 1.0) / m * spread), dtype)
    return tf.cast(jackknife, dtype), diagnostics


VARIANT = importance.Variant(init=init, update=update, finish=finish)


def run(spec, model, x, num_samples, seed, context):
    methods.check_num_samples(spec, num_samples)  # estimate() checks too; run may be called alone
    return importance.run(spec, model, x, num_samples, seed, context, VARIANT)


compile_options = importance.compile_options
