"""``psis``: Pareto-smoothed importance sampling (Vehtari et al. 2024) of the posterior_is weights.

    w_i = p(x, z_i) / q(z_i | x),  z_i ~ q(z | x),  i = 1..M
    w~_i = w_i for all but the S = ceil(min(M/5, 3 sqrt(M))) largest weights; those are replaced
           by the quantiles of a generalized Pareto distribution fitted to them (``pareto``),
           each truncated at the largest raw weight
    log p^(x) = log (1/M) sum_i w~_i

Streamed: the loop of ``importance`` keeps a running top of the S + 1 largest weights and the
running sums of the weights that are not in it; afterwards the smoothed tail is added to those
(in float64; subtracting the raw tail from the total instead would cancel catastrophically when
one weight dominates). Diagnostics: ``khat`` (the fitted tail index of the raw weights) and ``ess``,
the Kish effective sample size of the smoothed weights. Needs M >= 21 (a tail of 5 weights).
Smoothing leaves the weights alone where the tail cannot be fitted (fewer than 5 distinct
exceedances, e.g. all weights equal): there the estimate is posterior_is's.
"""

import tensorflow as tf

from estimators import methods
from estimators.algorithms import importance, logspace, pareto


def finish(stats):
    """log mean of the smoothed weights, with k-hat and their Kish ESS."""
    tail = stats.tail
    dtype = stats.log_sum_w.dtype
    log_sum, log_sum_sq = pareto.smoothed_log_sums(tail, stats.rest)
    log_mean = log_sum - tf.math.log(tf.cast(stats.num_samples, tf.float64))
    m = tf.cast(stats.num_samples, tf.float64)
    # The delta method on the smoothed weights. It sees the smoothed tail, not the raw one: at
    # k-hat > 0.7 it understates the error, as the raw weights' SE does.
    relative = tf.exp(log_sum_sq - 2.0 * log_sum)  # float64: no loss at log w ~ -1e5
    se = tf.sqrt(tf.maximum(m * relative - 1.0, 0.0) / (m - 1.0))
    return tf.cast(log_mean, dtype), {
        "ess": tf.cast(logspace.kish_ess(log_sum, log_sum_sq), dtype),
        "khat": tf.cast(tail.khat, dtype),
        "se": tf.cast(se, dtype),
    }


VARIANT = importance.Variant(finish=finish, needs_tail=True)


def run(spec, model, x, num_samples, seed, context):
    methods.check_num_samples(spec, num_samples)  # estimate() checks too; run may be called alone
    return importance.run(spec, model, x, num_samples, seed, context, VARIANT)


compile_options = importance.compile_options
