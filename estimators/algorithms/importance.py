"""Importance sampling: naive_mc, prior_is, posterior_is and elbo, one log-weight function.

    z_1..z_M ~ q(z | x)
    log w_i  = log p(z_i) + log p(x | z_i) - log q(z_i | x)
    log p^(x) = logsumexp_i log w_i - log M        (naive_mc, prior_is, posterior_is)
    ELBO^(x)  = mean_i log w_i                     (elbo)
    ESS(x)    = (sum_i w_i)^2 / sum_i w_i^2        (Kish), from the same running sums
    k-hat(x)  = the Pareto tail index of the w_i   (``pareto``; with diagnostics, M >= 21)

The methods differ only in the proposal q:
    naive_mc       q = p(z) (then log w = log p(x | z))
    prior_is       a fixed q(z) that ignores x: by default moment-matched to the aggregate posterior
    posterior_is   q = p(z | x) where exact, else the model's amortized q_phi(z | x)
    elbo           the same proposal as posterior_is

Samples are drawn in chunks of ``chunk_size`` inside one ``tf.while_loop`` whose trip count is a
tensor, with a running (max, sum-exp) logsumexp: memory is flat in M and one compiled function
serves every M (the number of samples is a tensor argument, never a Python constant).

k-hat needs the S + 1 largest log weights (S = ceil(min(M/5, 3 sqrt(M)))): the loop keeps a
running top of a fixed capacity (``pareto.capacity``: the next power of two >= S + 1 and >= the
chunk size) only when diagnostics are asked for or the method needs it (psis), so a plain call
pays nothing for it; one compiled function then serves every M of a capacity. Other importance-sampling methods (psis,
defensive_is, jackknife_iwae) reuse this loop through a ``Variant``: their own log weights, an
extra streamed statistic, or their own finish.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import methods, sampling
from estimators.algorithms import logspace, pareto
from estimators.models.base import as_seed, model_cache

tfd = tfp.distributions


PER_POINT = "per-point proposal"  # posterior_is/elbo given a distribution with batch shape [N]


def run(spec, model, x, num_samples, seed, context, variant=None):
    """log p^(x) (or the ELBO) [N] and diagnostics {"ess": Kish ESS [N], "khat": [N] with
    ``context.diagnostics``} for the importance-sampling method ``spec``."""
    variant = variant or PLAIN
    q, posterior = resolve_proposal(model, x, spec.name, context.proposal)
    reports_khat = spec.name != "elbo"
    capacity = 0
    if variant.needs_tail or (context.diagnostics and reports_khat):
        capacity = resolve_tail_capacity(num_samples, context.chunk_size, context.tail_capacity)
    fn = compiled_estimator(
        model, spec, posterior, context.chunk_size, context.jit_compile, capacity, variant
    )
    log_p, diagnostics = fn(x, tf.constant(num_samples, tf.int32), seed, q)
    if context.diagnostics and reports_khat and "khat" not in diagnostics:  # M < 21: no tail
        diagnostics["khat"] = tf.fill(tf.shape(log_p), tf.constant(np.nan, log_p.dtype))
    return log_p, diagnostics


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
    if spec.name == "elbo" or num_samples < pareto.MIN_SAMPLES:
        return {}
    return {"tail_capacity": pareto.capacity(num_samples, chunk_size)}


def check_event(model, q, what):
    """ValueError unless q draws z of the model's latent event shape and dtype."""
    want = [] if model.latent_dim == 0 else [model.latent_dim]
    if q.event_shape.as_list() != want:
        raise ValueError(
            f"{what} has event shape {q.event_shape.as_list()} but the model's "
            f"latent z has event shape {want}"
        )
    if q.dtype != model.prior.dtype:
        raise ValueError(
            f"{what} samples dtype {q.dtype.name}; the model's latent is {model.prior.dtype.name}"
        )


def resolve_proposal(model, x, method, proposal):
    """(q, posterior): the x-independent proposal passed to the compiled function as a tensor
    argument (prior_is), or the x -> q(z|x) callable compiled into it (every other method)."""
    if method == "naive_mc":
        if proposal is not None:
            raise ValueError("naive_mc samples from the prior; pass proposal= to prior_is instead")
        return None, None
    if method == "prior_is":
        if proposal is None:  # the default is built inside the compiled function (no eager cost)
            return None, None
        q = proposal
        if not isinstance(q, tfd.Distribution):
            raise ValueError(
                f"prior_is needs a tfp Distribution over z as proposal; got {type(q).__name__}"
            )
        check_event(model, q, "the prior_is proposal")
        if q.batch_shape.rank != 0:
            raise ValueError(f"the prior_is proposal must have batch shape []; got {q.batch_shape}")
        return q, None
    if isinstance(proposal, tfd.Distribution):  # q(z | x_n) fitted per point for exactly this x
        check_event(model, proposal, f"the {method} proposal")
        if proposal.batch_shape.as_list() != [int(x.shape[0])]:
            raise ValueError(
                f"a {method} proposal distribution must have batch shape [N] = "
                f"[{int(x.shape[0])}] (one q(z|x_n) per row of x); got "
                f"{proposal.batch_shape.as_list()}"
            )
        return proposal, PER_POINT
    return None, checked_posterior(model, x, method, proposal)


def checked_posterior(model, x, method, proposal):
    """The x -> q(z|x) callable for ``method`` (``proposal`` or the model's default), checked
    once per callable: building q(x[:1]) eagerly costs 3-40 ms, more than a compiled call."""
    posterior = proposal if proposal is not None else default_posterior(model)
    if not callable(posterior):
        raise ValueError(
            f"{method} needs a callable x -> distribution as proposal; got {type(posterior).__name__}"
        )
    checked = model_cache(model, "checked_posteriors")
    key = (method, callable_key(posterior))
    if key not in checked or checked[key] != posterior:
        q = posterior(tf.concat([x[:1], x[:1]], axis=0))  # two rows: a batch of [] would broadcast
        if not isinstance(q, tfd.Distribution):
            raise ValueError(
                f"the {method} proposal must return a tfp Distribution; got {type(q).__name__}"
            )
        check_event(model, q, f"the {method} proposal")
        if q.batch_shape.as_list() != [2]:
            raise ValueError(
                f"the {method} proposal must have batch shape [N] (one q(z|x) per row "
                f"of x); for 2 rows it has batch shape {q.batch_shape.as_list()}"
            )
        checked[key] = posterior
    return posterior


def default_posterior(model):
    """p(z | x) where exact, else the model's amortized posterior; ValueError if neither exists."""
    if model.has_exact_posterior:
        return model.posterior
    if model.amortized_posterior is not None:
        return model.amortized_posterior
    raise ValueError(
        f"{type(model).__name__} has no exact or amortized posterior: pass proposal= "
        "(a callable x -> distribution over z)"
    )


def default_prior_proposal(model, x, seed=0, pilot_samples=4096):
    """A fixed proposal moment-matched to the aggregate posterior (1/N) sum_n p(z | x_n).

    Discrete latent (GMM): Categorical(0.9 * mean responsibilities + 0.1 * prior), the defensive
    mixture keeping every component reachable. Continuous latent: N(m, C) with
    m = mean_n E[z | x_n] and C = mean_n Cov[z | x_n] + Cov_n(E[z | x_n]), the posterior moments
    taken from the exact or amortized posterior, else from self-normalised prior samples.
    """
    if model.latent_dim == 0:
        probs = tf.reduce_mean(model.posterior(x).probs_parameter(), axis=0)
        probs = 0.9 * probs + 0.1 * model.prior.probs_parameter()
        return tfd.Categorical(probs=probs, dtype=model.prior.dtype)
    try:
        post = default_posterior(model)(x)
        means, covs = post.mean(), post.covariance()
    except ValueError:
        means, covs = _snis_moments(model, x, seed, pilot_samples)
    m = tf.reduce_mean(means, axis=0)
    centred = means - m
    cov = tf.reduce_mean(covs, axis=0) + tf.matmul(centred, centred, transpose_a=True) / tf.cast(
        tf.shape(means)[0], model.dtype
    )
    cov += 1e-6 * tf.eye(model.latent_dim, dtype=model.dtype)
    return tfd.MultivariateNormalTriL(m, tf.linalg.cholesky(cov))


def _snis_moments(model, x, seed, num_samples):
    """Posterior mean/cov per x by self-normalised importance sampling from the prior."""
    z = sampling.sample(model.prior, [num_samples, 1], as_seed(seed) + 7919)  # [S, 1, d]
    log_w = model.likelihood(z).log_prob(x)  # [S, N]
    w = tf.nn.softmax(log_w, axis=0)[..., None]
    mean = tf.reduce_sum(w * z, axis=0)  # [N, d]
    c = z - mean
    cov = tf.einsum("snd,sne->nde", w * c, c)
    return mean, cov


class Stats(NamedTuple):
    """What the chunk loop hands to a method's ``finish``: streamed sums of the M log weights."""

    num_samples: tf.Tensor  # M, int32 []
    log_sum_w: tf.Tensor  # log sum_i w_i [N]
    log_sum_w2: tf.Tensor  # log sum_i w_i^2 [N]
    sum_log_w: tf.Tensor  # sum_i log w_i [N]
    tail: object  # pareto.Tail of the weights, or None when no running top was kept
    rest: object  # (log sum w, log sum w^2) outside the running top (needs_tail), or None
    extra: object  # the final state of the variant's own reduction, or ()


@dataclass(frozen=True)
class Variant:
    """How a method's compiled loop differs from plain importance sampling (all optional).

    log_weights(model, spec, x, q, seed, size) -> [size, N]: draws and weighs ``size`` samples
        (default ``standard_log_weights``: z ~ q, log p(z) + log p(x|z) - log q(z)).
    init(n, dtype) -> state; update(state, log_w [C, N]) -> state: an extra statistic streamed
        over the chunks (samples beyond M arrive as -inf).
    finish(stats: Stats) -> (estimate [N], {name: [N]}) (default ``plain_finish``).
    needs_tail: keep the running top of the log weights even without diagnostics, and the
        sums of the weights outside it (psis).
    """

    log_weights: object = None
    init: object = None
    update: object = None
    finish: object = None
    needs_tail: bool = False


PLAIN = Variant()


def standard_log_weights(model, spec, x, q, seed, size):
    """[size, N] log weights of ``size`` fresh samples from q (the prior for naive_mc)."""
    if spec.name == "naive_mc":
        z = sampling.sample(model.prior, [size, tf.shape(x)[0]], seed)
        return model.likelihood(z).log_prob(x)
    if spec.name == "prior_is":
        z, log_q = sampling.sample_and_log_prob(q, [size, tf.shape(x)[0]], seed)
    else:  # q(z | x) has batch shape [N]
        z, log_q = sampling.sample_and_log_prob(q, [size], seed)
    return model.prior.log_prob(z) + model.likelihood(z).log_prob(x) - log_q


def plain_finish(spec):
    """log p^ = log sum w - log M (the ELBO: mean log w), Kish ESS, and k-hat when kept."""

    def finish(stats):
        m = tf.cast(stats.num_samples, stats.log_sum_w.dtype)
        ess = logspace.kish_ess(stats.log_sum_w, stats.log_sum_w2)
        if spec.name == "elbo":
            return stats.sum_log_w / m, {"ess": ess}
        diagnostics = {"ess": ess}
        if stats.tail is not None:
            diagnostics["khat"] = tf.cast(stats.tail.khat, stats.log_sum_w.dtype)
        return stats.log_sum_w - tf.math.log(m), diagnostics

    return finish


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
    variant = variant or PLAIN
    posterior_fn = None
    if methods.NEEDS_POSTERIOR in spec.method.needs and posterior is not PER_POINT:
        posterior_fn = posterior if posterior is not None else default_posterior(model)
    cache = model_cache(model, "importance")
    key = (spec.canonical, callable_key(posterior_fn), chunk_size, jit_compile, tail_capacity)
    if (
        key in cache and cache[key][0] == posterior_fn
    ):  # a reused id of a dead object does not count
        return cache[key][1]
    log_weights = variant.log_weights or standard_log_weights
    finish = variant.finish or plain_finish(spec)

    def run_chunks(x, num_samples, seed, q):
        dtype = model.dtype
        n = tf.shape(x)[0]
        if posterior_fn is not None:
            q = posterior_fn(x)  # built once, outside the loop: the encoder runs once per call
        elif spec.name == "prior_is" and q is None:
            q = default_prior_proposal(model, x, seed)
        num_chunks = num_samples // chunk_size + tf.cast(num_samples % chunk_size > 0, tf.int32)
        m0, s0 = logspace.empty(n, dtype)
        top0 = pareto.empty_top(n, tail_capacity, dtype) if tail_capacity else ()
        rest0 = pareto.empty_rest(n, dtype) if variant.needs_tail else ()
        extra0 = variant.init(n, dtype) if variant.init else ()

        def body(i, m1, s1, m2, s2, total, top, rest, extra):
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, i, alg=sampling.RNG_ALG)
            lw = log_weights(model, spec, x, q, chunk_seed, chunk_size)
            # The last chunk may overhang M: its extra samples get weight 0 (log w = -inf).
            index = tf.cast(i, tf.int64) * chunk_size + tf.range(chunk_size, dtype=tf.int64)
            valid = index < tf.cast(num_samples, tf.int64)  # int64: M near 2^31 must not wrap
            lw = tf.where(valid[:, None], lw, -np.inf)
            m1, s1 = logspace.running_logsumexp(m1, s1, lw)
            m2, s2 = logspace.running_logsumexp(m2, s2, 2.0 * lw)
            total += tf.reduce_sum(tf.where(valid[:, None], lw, 0.0), axis=0)
            if variant.needs_tail:
                top, rest = pareto.update_top_and_rest(top, rest, lw)
            elif tail_capacity:
                top = pareto.update_top(top, lw)
            if variant.update:
                extra = variant.update(extra, lw)
            return i + 1, m1, s1, m2, s2, total, top, rest, extra

        _, m1, s1, m2, s2, total, top, rest, extra = tf.while_loop(
            lambda i, *_: i < num_chunks,
            body,
            (tf.constant(0, tf.int32), m0, s0, m0, s0, tf.zeros([n], dtype), top0, rest0, extra0),
        )
        tail = pareto.pareto_tail(top, num_samples) if tail_capacity else None
        stats = Stats(
            num_samples,
            logspace.finish_logsumexp(m1, s1),
            logspace.finish_logsumexp(m2, s2),
            total,
            tail,
            rest if variant.needs_tail else None,
            extra,
        )
        return finish(stats)

    fn = tf.function(run_chunks, jit_compile=jit_compile, reduce_retracing=True)
    cache[key] = (posterior_fn, fn)
    return fn


def callable_key(f):
    """A stable key for a callable: ``model.posterior`` is a new bound-method object on every
    access, so key bound methods by (instance id, function), anything else by id."""
    if f is None:
        return None
    if hasattr(f, "__self__") and hasattr(f, "__func__"):
        return (id(f.__self__), f.__func__)
    return id(f)
