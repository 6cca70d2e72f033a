"""Pareto k-hat and Pareto-smoothed importance weights (Vehtari et al. 2024), as pure functions.

The M importance weights' right tail is modelled by a generalized Pareto distribution (GPD):

    tail size    S = ceil(min(M / 5, 3 sqrt(M)))
    cutoff       u = the (S+1)-th largest weight (not below exp(log(tiny)) times the largest)
    exceedances  e_i = w_i - u for the weights w_i > u (at most S of them; ties with u drop out)
    fit          the Zhang & Stephens (2009) empirical-Bayes GPD fit to e (below), then the
                 weak prior toward 1/2:  k <- (n k + 5) / (n + 10),  n = number of exceedances
    smoothing    the i-th smallest exceedance is replaced by the GPD quantile at (i - 1/2) / n,
                 the smoothed weight u + quantile is truncated at the largest raw weight.

k-hat estimates the tail index: the weights have finite moments of order < 1/k. Above
min(1 - 1/log10 M, 0.7) the PSIS estimate is unreliable; above 0.7 plain importance sampling's
error converges impractically slowly (``summary.khat_threshold`` holds that rule).

Zhang & Stephens: with m = 30 + floor(sqrt(n)) grid points j = 1..m,
    b_j = 1 / e_max + (1 - sqrt(m / (j - 1/2))) / (3 e_(n/4))     (e_(n/4): the first quartile)
    k(b) = mean_i log(1 - b e_i),   L(b) = n (log(-b / k(b)) - k(b) - 1)   (the profile likelihood)
    b^ = sum_j b_j softmax(L)_j,    k^ = k(b^),    sigma^ = -k^ / b^
as ArviZ's ``psislw`` and loo's ``gpdfit`` compute it (grid weights below 10 eps are dropped).

Streaming: only the S + 1 largest log weights matter, so the estimators keep a running top of
fixed ``capacity`` >= S + 1 across chunks (``update_top``): memory is flat in M (up to the
O(sqrt(M)) top itself). The PSIS estimate
also needs the sum of the weights outside the tail; it is *added up* (``update_top_and_rest``:
each weight that leaves the running top joins a running sum), never taken as the total minus the
tail, which cancels catastrophically when one weight dominates. Everything after the chunk loop
runs in float64 (the tail is small), whatever the model's dtype.

Where the tail has fewer than ``MIN_TAIL`` = 5 exceedances (M < ``MIN_SAMPLES`` = 21, or weights
with ties at the cutoff: a discrete latent, or all weights equal) there is nothing to fit: k-hat
is NaN and no weight is smoothed (ArviZ returns k = inf there). The same holds where the tail's
log weights span no more than their round-off (``FLAT_TAIL`` eps of the weights' dtype, relative
to the largest): under an exact posterior every weight is p(x) up to float error, and a fit to
that noise would be meaningless.
"""

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from estimators.algorithms import logspace

MIN_TAIL = 5  # the fewest exceedances the GPD fit accepts (as ArviZ and loo)
PRIOR_WEIGHT = 10.0  # the weak prior: (n k + PRIOR_WEIGHT * PRIOR_K) / (n + PRIOR_WEIGHT)
PRIOR_K = 0.5
FLAT_TAIL = 64.0  # a tail within this many eps (relative) of its largest log weight is flat
_LOG_TINY = float(np.log(np.finfo(np.float64).tiny))  # lowest cutoff relative to the max


def tail_size(num_samples):
    """S = ceil(min(M / 5, 3 sqrt(M))): how many of the largest weights the GPD is fitted to."""
    return int(math.ceil(min(num_samples / 5.0, 3.0 * math.sqrt(num_samples))))


def _min_samples():
    m = 1
    while tail_size(m) < MIN_TAIL:
        m += 1
    return m


MIN_SAMPLES = _min_samples()  # 21: the smallest M with a tail of MIN_TAIL weights


def capacity(num_samples, chunk_size=1):
    """Size of the running top for M samples drawn ``chunk_size`` at a time: 0 when
    M < MIN_SAMPLES (no fit), else the next power of two >= max(S + 1, chunk size, 8). Each
    chunk is merged with the top, so a top smaller than a chunk saves little; at this size one
    compiled function serves every M up to about (chunk size)^2 / 9 (the default 256: M <= 7225)."""
    if num_samples < MIN_SAMPLES:
        return 0
    return max(8, 1 << (max(tail_size(num_samples) + 1, chunk_size) - 1).bit_length())


def empty_top(n, size, dtype):
    """A running top of ``size`` log weights per column, all -inf: [n, size]."""
    return tf.fill([n, size], tf.constant(-np.inf, dtype))


def update_top(top, log_w):
    """Fold a chunk log_w [C, N] (-inf for samples beyond M) into the running top [N, size]:
    the ``size`` largest log weights seen so far per column, in no particular order (unsorted
    selection is 2-3x faster than a sort in TensorFlow's graph mode; ``pareto_tail`` sorts)."""
    size = top.shape[1]
    merged = tf.concat([top, tf.transpose(log_w)], axis=1)
    return tf.math.top_k(merged, k=size, sorted=False).values


def empty_rest(n, dtype):
    """log sum w and log sum w^2 of no weights: ([N] -inf, [N] -inf)."""
    empty = tf.fill([n], tf.constant(-np.inf, dtype))
    return empty, empty


def update_top_and_rest(top, rest, log_w):
    """``update_top``, plus the running (log sum w, log sum w^2) ``rest`` of every weight that
    is not (or no longer) in the top: those below the new top's smallest value tau, and the
    copies of tau beyond the top's size."""
    size = top.shape[1]
    merged = tf.concat([top, tf.transpose(log_w)], axis=1)
    top = tf.math.top_k(merged, k=size, sorted=False).values
    tau = tf.reduce_min(top, axis=1)
    leaving = merged < tau[:, None]
    log_ties = tf.math.log(
        tf.reduce_sum(tf.cast(merged >= tau[:, None], merged.dtype), axis=1) - size
    )  # -inf without ties
    neg_inf = tf.constant(-np.inf, merged.dtype)
    new = []
    for power, running in zip((1.0, 2.0), rest, strict=False):
        chunk = tf.reduce_logsumexp(tf.where(leaving, power * merged, neg_inf), axis=1)
        ties = tf.where(tf.math.is_finite(tau), log_ties + power * tau, neg_inf)
        new.append(logspace.log_add(running, logspace.log_add(chunk, ties)))
    return top, tuple(new)


class Tail(NamedTuple):
    """The fitted and smoothed tail of each column's weights (float64, [N] each)."""

    khat: tf.Tensor  # NaN where no fit (fewer than MIN_TAIL exceedances)
    sigma: tf.Tensor  # the GPD scale, relative to the largest weight
    count: tf.Tensor  # n: exceedances fitted (0 .. S)
    log_raw: tf.Tensor  # log sum of the raw tail weights (-inf for an empty tail)
    log_smoothed: tf.Tensor  # log sum of the smoothed tail weights (= log_raw without a fit)
    log_raw_sq: tf.Tensor  # log sum of their squares (for the effective sample size)
    log_smoothed_sq: tf.Tensor
    log_body: tf.Tensor  # log sum of the top's weights outside the tail
    log_body_sq: tf.Tensor


def fit_generalized_pareto(exceedances, count):
    """Zhang & Stephens's GPD fit with the weak prior, per column.

    exceedances: [N, C] float64 in decreasing order, the first ``count`` [N] of them positive
    (the rest are ignored). Returns (k-hat, sigma) [N]; meaningless where count < MIN_TAIL.
    """
    dtype = exceedances.dtype
    size = exceedances.shape[1]
    n = tf.cast(count, dtype)
    valid = tf.range(size)[None, :] < count[:, None]
    e = tf.where(valid, exceedances, tf.zeros_like(exceedances))
    largest = e[:, 0]
    # ArviZ's first quartile ary[int(n/4 + 0.5) - 1] of the increasing array, here decreasing.
    quartile_index = tf.maximum(count - tf.cast(tf.floor(n / 4.0 + 0.5), count.dtype), 0)
    quartile = tf.gather(e, quartile_index, axis=1, batch_dims=1)
    grid_size = 30 + int(math.isqrt(max(size, 1)))  # the most grid points any column needs
    points = 30.0 + tf.floor(tf.sqrt(n))  # m per column
    j = tf.range(1, grid_size + 1, dtype=dtype)[None, :]
    b = (1.0 - tf.sqrt(points[:, None] / (j - 0.5))) / (3.0 * quartile[:, None]) + 1.0 / largest[
        :, None
    ]

    def mean_log1p(b_column):  # b_column [N] -> mean_i log(1 - b e_i) over valid i
        return tf.reduce_sum(tf.math.log1p(-b_column[:, None] * e), axis=1) / n

    k_grid = tf.transpose(
        tf.map_fn(mean_log1p, tf.transpose(b), fn_output_signature=tf.TensorSpec([None], dtype))
    )
    profile = n[:, None] * (tf.math.log(-b / k_grid) - k_grid - 1.0)
    in_grid = j <= points[:, None]
    profile = tf.where(in_grid, profile, tf.constant(-np.inf, dtype))
    weights = tf.nn.softmax(profile, axis=1)
    weights = tf.where(weights >= 10.0 * np.finfo(np.float64).eps, weights, tf.zeros_like(weights))
    weights /= tf.reduce_sum(weights, axis=1, keepdims=True)
    b_post = tf.reduce_sum(weights * tf.where(in_grid, b, tf.zeros_like(b)), axis=1)
    k_post = mean_log1p(b_post)
    sigma = -k_post / b_post
    khat = (n * k_post + PRIOR_WEIGHT * PRIOR_K) / (n + PRIOR_WEIGHT)
    return khat, sigma


def gpd_quantile(probs, k, sigma):
    """The GPD's inverse CDF: sigma ((1 - p)^-k - 1) / k  (-sigma log(1 - p) at k = 0)."""
    tiny_k = tf.abs(k) < np.finfo(np.float64).eps
    safe_k = tf.where(tiny_k, tf.ones_like(k), k)
    general = tf.math.expm1(-safe_k * tf.math.log1p(-probs)) / safe_k
    return sigma * tf.where(tiny_k, -tf.math.log1p(-probs), general)


def pareto_tail(top, num_samples):
    """Fit and smooth the tail of each column from its running top [N, capacity] (the largest
    log weights in any order, -inf padded) for M = ``num_samples`` (a scalar tensor or int);
    see ``Tail``."""
    eps = np.finfo(top.dtype.as_numpy_dtype).eps
    top = tf.sort(tf.cast(top, tf.float64), axis=1, direction="DESCENDING")
    size = top.shape[1]
    m = tf.cast(num_samples, tf.float64)
    tail = tf.cast(tf.math.ceil(tf.minimum(m / 5.0, 3.0 * tf.sqrt(m))), tf.int32)
    tail = tf.minimum(tail, size - 1)  # capacity >= S + 1 is checked by the caller
    largest = top[:, 0]
    finite = tf.math.is_finite(largest)
    shift = tf.where(finite, largest, tf.zeros_like(largest))
    x = top - shift[:, None]  # log weights relative to the largest: <= 0
    cutoff = tf.maximum(
        tf.gather(x, tf.fill(tf.shape(largest), tail), axis=1, batch_dims=1), _LOG_TINY
    )
    position = tf.range(size)[None, :]
    in_tail = (position < tail) & (x > cutoff[:, None])
    flat = -cutoff <= FLAT_TAIL * eps * (1.0 + tf.abs(shift))  # round-off apart: no tail
    in_tail &= ~flat[:, None]
    count = tf.reduce_sum(tf.cast(in_tail, tf.int32), axis=1)  # a prefix: x is decreasing
    exceedances = tf.where(in_tail, tf.exp(x) - tf.exp(cutoff)[:, None], tf.zeros_like(x))
    khat, sigma = fit_generalized_pareto(exceedances, count)
    fitted = (count >= MIN_TAIL) & finite & tf.math.is_finite(khat) & (sigma > 0)
    khat = tf.where((count >= MIN_TAIL) & finite, khat, tf.constant(np.nan, tf.float64))

    # Smoothed tail: the exceedance of rank i (1 = smallest) becomes the GPD quantile at
    # (i - 1/2) / n; position p (0 = largest) has rank n - p.
    n = tf.cast(tf.maximum(count, 1), tf.float64)[:, None]
    probs = (n - tf.cast(position, tf.float64) - 0.5) / n
    probs = tf.where(in_tail, probs, 0.5 * tf.ones_like(probs))
    quantiles = gpd_quantile(probs, khat[:, None], sigma[:, None])
    smoothed = tf.minimum(tf.math.log(quantiles + tf.exp(cutoff)[:, None]), 0.0)
    smoothed = tf.where(fitted[:, None] & in_tail, smoothed, x)

    neg_inf = tf.constant(-np.inf, tf.float64)

    def log_sum(values, power=1.0, where=in_tail):
        return shift * power + tf.reduce_logsumexp(tf.where(where, power * values, neg_inf), axis=1)

    return Tail(
        khat,
        sigma,
        count,
        log_sum(x),
        log_sum(smoothed),
        log_sum(x, 2.0),
        log_sum(smoothed, 2.0),
        log_sum(x, 1.0, ~in_tail),
        log_sum(x, 2.0, ~in_tail),
    )


def smoothed_log_sums(tail, rest):
    """(log sum of the smoothed weights, log sum of their squares): the weights outside the
    running top (``rest``, from ``update_top_and_rest``), the top's weights outside the tail,
    and the smoothed tail, all added (float64)."""
    rest = [tf.cast(r, tf.float64) for r in rest]
    total = logspace.log_add(logspace.log_add(rest[0], tail.log_body), tail.log_smoothed)
    total_sq = logspace.log_add(logspace.log_add(rest[1], tail.log_body_sq), tail.log_smoothed_sq)
    return total, total_sq
