"""Importance sampling: the one streamed loop that naive_mc, prior_is, posterior_is, elbo, psis,
defensive_is and jackknife_iwae run, each as a ``Variant`` (their own files say how they differ).

    z_1..z_M ~ q(z | x)
    log w_i  = log p(z_i) + log p(x | z_i) - log q(z_i | x)
    log p^(x) = logsumexp_i log w_i - log M
    SE(log p^) ~= sd(w) / (sqrt(M) mean w)       (the delta method, ``logspace.delta_method_se``)
    ESS(x)    = (sum_i w_i)^2 / sum_i w_i^2      (Kish), from the same running sums
    k-hat(x)  = the Pareto tail index of the w_i (``pareto``; with diagnostics, M >= 21)

Samples are drawn in chunks of ``chunk_size`` inside one ``tf.while_loop`` whose trip count is a
tensor, with running sums of w and w^2 relative to one running max (``logspace.WeightSums``):
memory is flat in M and one compiled function serves every M (the number of samples is a tensor
argument, never a Python constant).

k-hat needs the S + 1 largest log weights (S = ceil(min(M/5, 3 sqrt(M)))): the loop keeps a
running top of a fixed capacity (``pareto.capacity``: the next power of two >= S + 1 and >= the
chunk size) only when diagnostics are asked for or the method needs it (psis), so a plain call
pays nothing for it; one compiled function then serves every M of a capacity.
"""

import importlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import methods, sampling
from estimators.algorithms import logspace, pareto
from estimators.algorithms.compiled import cached_function
from estimators.algorithms.proposals import (
    FIXED,
    PER_POINT,
    POSTERIOR_PROPOSAL,
    PRIOR,
    default_posterior,
    default_prior_proposal,
    resolve_proposal,
)
from estimators.models.base import int32_scalar, model_cache

tfd = tfp.distributions


def run(spec, model, x, num_samples, seed, context, variant=None):
    """log p^(x) (or the ELBO) [N] and diagnostics {"ess": Kish ESS [N], "khat": [N] with
    ``context.diagnostics``} for the importance-sampling method ``spec``."""
    variant = variant or variant_of(spec)
    q, posterior = resolve_proposal(model, x, spec.name, context.proposal, variant.proposal)
    reports_khat = variant.reports_khat
    capacity = 0
    if variant.needs_tail or (context.diagnostics and reports_khat):
        capacity = resolve_tail_capacity(num_samples, context.chunk_size, context.tail_capacity)
    fn = compiled_estimator(
        model, spec, posterior, context.chunk_size, context.jit_compile, capacity, variant
    )
    log_p, diagnostics = call_compiled(model, fn, x, int32_scalar(num_samples), seed, q)
    if context.diagnostics and reports_khat and "khat" not in diagnostics:  # M < 21: no tail
        diagnostics["khat"] = tf.fill(tf.shape(log_p), tf.constant(np.nan, log_p.dtype))
    return log_p, diagnostics


def call_compiled(model, fn, x, num_samples, seed, q):
    """fn(x, num_samples, seed, q), through fn's concrete function for x's shape when q is None.

    Calling a tf.function re-derives the trace types of its arguments and looks up the function
    on every call: ~0.3-0.5 ms here, more than the compiled work of a small M (a warm call at
    M = 1 cost 2x a bare compiled function for that alone). A concrete function skips that
    lookup; it is cached per (fn, x's shape and dtype). A proposal argument (a distribution, whose
    structure would have to enter the key) takes the ordinary call."""
    if q is not None:
        return fn(x, num_samples, seed, q)
    concrete = model_cache(model, "concrete_functions")
    key = (id(fn), tuple(x.shape.as_list()), x.dtype)  # fn lives in the same model's cache
    if key not in concrete:
        concrete[key] = fn.get_concrete_function(x, num_samples, seed, None)
    return concrete[key](x, num_samples, seed, None)


def resolve_tail_capacity(num_samples, chunk_size, given=None):
    """The running top's size for M samples: ``given`` (checked: >= S + 1), else the default
    ``pareto.capacity(M, chunk_size)``: 0 below ``pareto.MIN_SAMPLES``, where k-hat is not
    defined (with a ``given`` capacity the top is kept anyway and k-hat comes out NaN, so a
    warm-up call at a small M compiles the function a larger M runs)."""
    if given is None:
        return pareto.capacity(num_samples, chunk_size)
    need = pareto.tail_size(num_samples) + 1
    if given < need:
        raise ValueError(
            f"tail_capacity = {given} is too small for M = {num_samples}: k-hat "
            f"needs the {need} largest log weights"
        )
    return int(given)


def compile_options(spec, num_samples, chunk_size):
    """The ``estimate`` keywords that pick the compiled function a diagnostics call at M runs:
    a warm-up call at a smaller M with the same options compiles the same function."""
    if num_samples < pareto.MIN_SAMPLES:
        return {}
    return {"tail_capacity": pareto.capacity(num_samples, chunk_size)}


class Stats(NamedTuple):
    """What the chunk loop hands to a method's ``finish``: streamed sums of the M log weights."""

    num_samples: tf.Tensor  # M, int32 []
    log_sum_w: tf.Tensor  # log sum_i w_i [N]
    log_sum_w2: tf.Tensor  # log sum_i w_i^2 [N]
    sum_log_w: tf.Tensor  # sum_i log w_i [N]
    se: tf.Tensor  # the delta-method standard error of log (1/M) sum_i w_i [N]
    ess: tf.Tensor  # the Kish ESS of the weights [N]
    log_w_spread: object  # logspace.MeanVariance of the log w (needs_log_w_spread), or None
    tail: object  # pareto.Tail of the weights, or None when no running top was kept
    rest: object  # (log sum w, log sum w^2) outside the running top (needs_tail), or None
    extra: object  # the final state of the variant's own reduction, or ()


@dataclass(frozen=True)
class Variant:
    """How a method's compiled loop differs from posterior importance sampling (all optional).

    proposal: PRIOR, FIXED or POSTERIOR_PROPOSAL: where the samples come from.
    log_weights(model, spec, x, q, seed, size) -> [size, N]: draws and weighs ``size`` samples
        (default ``standard_log_weights``: z ~ q, log p(z) + log p(x|z) - log q(z)).
    init(n, dtype) -> state; update(state, log_w [C, N]) -> state: an extra statistic streamed
        over the chunks (samples beyond M arrive as -inf).
    finish(stats: Stats) -> (estimate [N], {name: [N]}) (default ``plain_finish``).
    needs_tail: keep the running top of the log weights even without diagnostics, and the
        sums of the weights outside it (psis).
    needs_log_w_spread: stream the mean and spread of the log weights themselves (elbo).
    reports_khat: k-hat of the weights is a diagnostic of the estimate (not of the ELBO).
    """

    proposal: str = POSTERIOR_PROPOSAL
    log_weights: object = None
    init: object = None
    update: object = None
    finish: object = None
    needs_tail: bool = False
    needs_log_w_spread: bool = False
    reports_khat: bool = True


POSTERIOR = Variant()


def variant_of(spec):
    """The ``Variant`` of an importance-sampling method: its module's ``VARIANT``."""
    return importlib.import_module(spec.method.module).VARIANT


def standard_log_weights(model, spec, x, q, seed, size):
    """[size, N] log weights of ``size`` fresh samples from q (a fixed q has batch shape [])."""
    z, log_q = sampling.sample_and_log_prob(
        q, [size] + ([] if q.batch_shape.rank else [tf.shape(x)[0]]), seed
    )
    return model.prior.log_prob(z) + model.likelihood(z).log_prob(x) - log_q


def prior_log_weights(model, spec, x, q, seed, size):
    """[size, N] log weights of ``size`` samples from the prior: log w = log p(x | z)."""
    z = sampling.sample(model.prior, [size, tf.shape(x)[0]], seed)
    return model.likelihood(z).log_prob(x)


def plain_finish(stats):
    """log p^ = log sum w - log M, its delta-method SE, Kish ESS, and k-hat when kept."""
    m = tf.cast(stats.num_samples, stats.log_sum_w.dtype)
    diagnostics = {"ess": stats.ess, "se": stats.se}
    if stats.tail is not None:
        diagnostics["khat"] = tf.cast(stats.tail.khat, stats.log_sum_w.dtype)
    return stats.log_sum_w - tf.math.log(m), diagnostics


def elbo_finish(stats):
    """ELBO^ = mean log w, with SE sd(log w) / sqrt(M) and the Kish ESS of the weights."""
    m = tf.cast(stats.num_samples, stats.log_sum_w.dtype)
    return stats.sum_log_w / m, {
        "ess": stats.ess,
        "se": logspace.standard_error_of_mean(stats.log_w_spread),
    }


def compiled_estimator(
    model, method, posterior, chunk_size, jit_compile=True, tail_capacity=0, variant=None
):
    """The cached compiled function for (model, method spec, posterior, chunk size, jit_compile,
    tail capacity).

    Signature: fn(x [N, D], num_samples int32 [], seed int64 [2], proposal or None)  (prior_is
    with proposal None builds the default, moment-matched to x, inside the compiled function;
    posterior_is/elbo with ``posterior=PER_POINT`` take q(z|x) as that argument, batch [N])
    -> (estimate [N], {"ess": [N], ...}). ``proposal`` is a TFP distribution, i.e. a
    CompositeTensor: a new proposal with the same structure reuses the trace. ``posterior`` (the
    methods that sample q(z|x); None means the model's default) is compiled in, so a different
    callable gets its own function. ``tail_capacity`` > 0 keeps a running top of that many log
    weights for Pareto k-hat (``pareto``); 0 keeps none. ``variant``: the method's ``Variant``
    (default: plain importance sampling). Exposed so tests can count traces.
    """
    spec = methods.parse(method)
    variant = variant or variant_of(spec)
    posterior_fn = None
    if variant.proposal == POSTERIOR_PROPOSAL and posterior is not PER_POINT:
        posterior_fn = posterior if posterior is not None else default_posterior(model)
    log_weights = variant.log_weights or (
        prior_log_weights if variant.proposal == PRIOR else standard_log_weights
    )
    finish = variant.finish or plain_finish

    def run_chunks(x, num_samples, seed, q):
        dtype = model.dtype
        n = tf.shape(x)[0]
        if posterior_fn is not None:
            q = posterior_fn(x)  # built once, outside the loop: the encoder runs once per call
        elif variant.proposal == FIXED and q is None:
            q = default_prior_proposal(model, x, seed)
        num_chunks = num_samples // chunk_size + tf.cast(num_samples % chunk_size > 0, tf.int32)
        sums0 = logspace.empty_weight_sums(n, dtype)
        spread0 = logspace.empty_mean_variance(n, dtype) if variant.needs_log_w_spread else ()
        top0 = pareto.empty_top(n, tail_capacity, dtype) if tail_capacity else ()
        rest0 = pareto.empty_rest(n, dtype) if variant.needs_tail else ()
        extra0 = variant.init(n, dtype) if variant.init else ()

        def body(i, sums, spread, total, top, rest, extra):
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, i, alg=sampling.RNG_ALG)
            lw = log_weights(model, spec, x, q, chunk_seed, chunk_size)
            # The last chunk may overhang M: its extra samples get weight 0 (log w = -inf).
            index = tf.cast(i, tf.int64) * chunk_size + tf.range(chunk_size, dtype=tf.int64)
            valid = index < tf.cast(num_samples, tf.int64)  # int64: M near 2^31 must not wrap
            if variant.needs_log_w_spread:
                spread = logspace.update_mean_variance(spread, lw, valid)
            lw = tf.where(valid[:, None], lw, -np.inf)
            sums = logspace.update_weight_sums(sums, lw)
            total += tf.reduce_sum(tf.where(valid[:, None], lw, 0.0), axis=0)
            if variant.needs_tail:
                top, rest = pareto.update_top_and_rest(top, rest, lw)
            elif tail_capacity:
                top = pareto.update_top(top, lw)
            if variant.update:
                extra = variant.update(extra, lw)
            return i + 1, sums, spread, total, top, rest, extra

        _, sums, spread, total, top, rest, extra = tf.while_loop(
            lambda i, *_: i < num_chunks,
            body,
            (tf.constant(0, tf.int32), sums0, spread0, tf.zeros([n], dtype), top0, rest0, extra0),
        )
        tail = pareto.pareto_tail(top, num_samples) if tail_capacity else None
        stats = Stats(
            num_samples,
            *logspace.log_sums(sums),
            total,
            logspace.delta_method_se(sums, num_samples),
            logspace.sums_ess(sums),
            spread if variant.needs_log_w_spread else None,
            tail,
            rest if variant.needs_tail else None,
            extra,
        )
        return finish(stats)

    return cached_function(
        model,
        "importance",
        (spec.canonical, chunk_size, jit_compile, tail_capacity),
        lambda: run_chunks,
        owner=posterior_fn,
        jit_compile=jit_compile,
        reduce_retracing=True,
    )
