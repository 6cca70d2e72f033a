"""Annealed importance sampling along a tempered path, forward (``ais``) or reverse (``bdmc``).

The path runs from a normalised start density f_0 (the prior p(z), or q(z|x)) to p(x, z):

    log f_beta(z) = log f_0(z) + beta (log p(x, z) - log f_0(z)),   0 = beta_0 < ... < beta_T = 1.

Forward (Neal 2001): z_0 ~ f_0; for t = 0..T-1, at the current state
    log w += (beta_{t+1} - beta_t) (log p(x, z) - log f_0(z)),
then (unless t = T-1) one HMC move that leaves f_{beta_{t+1}} invariant. E[w] = p(x), so
log mean_k w_k is a stochastic lower bound on log p(x).
Reverse (Grosse et al. 2015): z_T ~ p(z | x) exactly, the same path walked from beta = 1 to 0
(increments (beta_{t-1} - beta_t)(...), moves under f_{beta_{t-1}}). E[w_rev] = 1 / p(x), so
-log mean_k w_rev,k is a stochastic upper bound: with the forward run it sandwiches log p(x).

Schedules (functions of u = t / T, so every T shares one compiled function):
    linear      beta = u
    sigmoid     beta = (s(u) - s(0)) / (s(1) - s(0)),  s(u) = sigmoid(4 (2u - 1))  (Wu et al.)
    geometric   beta = 10^(-4 (1 - u)) for t >= 1, beta_0 = 0

Step sizes (``adapt``): "pilot" runs ``pilot_chains`` chains over min(T, ``pilot_steps``)
temperatures first, moving each point's step size after every move toward acceptance 0.65
(log eps += accept - 0.65), and records it per temperature and point; the measured chains then
use those sizes, frozen (interpolated in the path position), so every kernel is fixed in advance
and the estimate stays unbiased. "online" adapts each chain's step size from its own acceptances
during the measured run (x1.02 if its moving-average acceptance > 0.65, else x0.98, clipped to
[1e-4, 0.5], as eval_gen and the BDMC code do): the kernels then depend on the chain's past, which
biases p^ slightly (tested). "none" keeps ``step_size``.

Chains run in chunks of ``chunk_size`` in a ``tf.while_loop``: memory is flat in K. K and T are
tensor arguments: one compiled function per (model, options other than steps). With diagnostics
(and K >= 21) the loop also keeps a running top of the chains' log weights for their Pareto
k-hat (``pareto``; for bdmc, of the reverse weights, whose mean estimates 1/p(x)).
"""

import math

import numpy as np
import tensorflow as tf

from estimators import sampling
from estimators.algorithms import hmc, logspace, pareto
from estimators.algorithms.compiled import cached_function
from estimators.algorithms.importance import resolve_tail_capacity
from estimators.algorithms.proposals import checked_posterior
from estimators.algorithms.step_size import (
    ONLINE_SLOWNESS,
    ONLINE_STEP_RANGE,
    PILOT_STEP_RANGE,
    TARGET_ACCEPT,
)
from estimators.algorithms.tempered_path import resolve_start, tempered_path


def run(spec, model, x, num_chains, seed, context, reverse=False):
    """(per-chain log weights reduced: log mean w [N], diagnostics) for ais / bdmc."""
    options = spec.kwargs
    start = resolve_start(spec, model, context)
    posterior = (
        checked_posterior(model, x, spec.name, context.proposal) if start == "posterior" else None
    )
    # Given draws matter to the reverse path only: forward AIS on data that come with latents
    # must run the function compiled for data without them (one compilation per model).
    given = reverse and context.posterior_samples is not None
    capacity = (
        resolve_tail_capacity(num_chains, max(context.chunk_size, 2), context.tail_capacity)
        if context.diagnostics
        else 0
    )
    # At least two chains per chunk: with a chunk of one, shape inference broadcasts the chains'
    # leading 1 away inside the loops (a K = 1 call failed to trace); the spare chain is masked.
    chunk = max(context.chunk_size, 2)
    fn = compiled_annealer(
        model, spec, posterior, reverse, given, chunk, context.jit_compile, capacity
    )
    args = (x, tf.constant(num_chains, tf.int32), tf.constant(options["steps"], tf.int32), seed)
    if reverse:  # without given draws, the model's exact posterior is sampled inside
        args += (
            context.posterior_samples if given else tf.zeros([0, model.latent_dim], model.dtype),
        )
    log_mean_w, ess, accept, step_size, khat, se = fn(*args)
    diagnostics = {"ess": ess, "accept": accept, "step_size": step_size, "se": se}
    if context.diagnostics:
        diagnostics["khat"] = khat
    return log_mean_w, diagnostics


def compile_options(spec, num_chains, chunk_size):
    """The ``estimate`` keywords that pick the compiled function of a diagnostics call with K
    chains (the capacity of k-hat's running top; see ``estimator.compile_options``)."""
    if num_chains < pareto.MIN_SAMPLES:
        return {}
    return {"tail_capacity": pareto.capacity(num_chains, chunk_size)}


def schedule(kind, t, num_steps, dtype):
    """beta_t for integer t in [0, T] (tensors), increasing from 0 to 1."""
    u = tf.cast(t, dtype) / tf.cast(num_steps, dtype)
    if kind == "linear":
        return u
    if kind == "sigmoid":
        s0, s1 = 1.0 / (1.0 + math.exp(4.0)), 1.0 / (1.0 + math.exp(-4.0))
        return (tf.sigmoid(4.0 * (2.0 * u - 1.0)) - s0) / (s1 - s0)
    if kind == "geometric":
        return tf.where(t > 0, tf.pow(tf.constant(10.0, dtype), -4.0 * (1.0 - u)), tf.zeros_like(u))
    raise ValueError(f"unknown schedule {kind!r}")


def compiled_annealer(
    model, spec, posterior, reverse, given_samples, chunk_size, jit_compile, tail_capacity=0
):
    """The cached compiled function fn(x, K, T, seed[, exact_z]) -> (log mean w or its negative
    for reverse [N], ESS [N], mean acceptance [N], final step size [N], k-hat [N]: NaN unless
    ``tail_capacity`` > 0 keeps a running top of the log weights)."""
    options = spec.kwargs
    key = (
        spec.name,
        tuple((k, v) for k, v in spec.options if k != "steps"),
        reverse,
        given_samples,
        chunk_size,
        jit_compile,
        tail_capacity,
    )
    dtype = model.dtype
    kind, leapfrog, adapt = options["schedule"], options["leapfrog"], options["adapt"]
    pilot_chains, pilot_steps = options["pilot_chains"], options["pilot_steps"]
    initial_step = options["step_size"]

    def compute(x, num_chains, num_steps, seed, exact_z=None):
        n = tf.shape(x)[0]
        evaluate, sample_start = tempered_path(model, x, posterior)

        def initial(size, seed):
            """[size, N, d] starting states: f_0 forward, exact posterior draws in reverse."""
            if not reverse:
                return sample_start(size, seed)
            if given_samples:
                return tf.broadcast_to(exact_z, tf.concat([[size], tf.shape(exact_z)], 0))
            return sampling.sample(model.posterior(x), [size], seed)

        def temperatures(k, steps):
            """(beta_from, beta_to) [N] of move k along the walked path."""
            t_from, t_to = (steps - k, steps - k - 1) if reverse else (k, k + 1)
            ones = tf.ones([n], dtype)
            return (
                ones * schedule(kind, t_from, steps, dtype),
                ones * schedule(kind, t_to, steps, dtype),
            )

        def anneal(size, steps, seed, step_policy, final_increment):
            """Walk ``size`` chains along the path; returns (log w [size, N], policy state,
            acceptance probability summed over moves [size, N]). ``step_policy`` = (state, eps_of(k, state), update(k, state,
            accept))."""
            state0, eps_of, update = step_policy
            num_moves = steps - 1 if final_increment else steps
            point = evaluate(
                initial(
                    size, tf.random.experimental.stateless_fold_in(seed, -1, alg=sampling.RNG_ALG)
                )
            )

            def body(k, point, log_w, state, accept_sum):
                beta_from, beta_to = temperatures(k, steps)
                log_w += (beta_to - beta_from) * (point.log_joint - point.log_start)
                move_seed = tf.random.experimental.stateless_fold_in(seed, k, alg=sampling.RNG_ALG)
                point, accept = hmc.step(
                    evaluate, point, beta_to, eps_of(k, state), leapfrog, move_seed
                )
                return k + 1, point, log_w, update(k, state, accept), accept_sum + accept

            zeros = tf.zeros([size, n], dtype)
            k, point, log_w, state, accept_sum = tf.while_loop(
                lambda k, *_: k < num_moves, body, (tf.constant(0), point, zeros, state0, zeros)
            )
            if final_increment:
                beta_from, beta_to = temperatures(num_moves, steps)
                log_w += (beta_to - beta_from) * (point.log_joint - point.log_start)
            return log_w, state, accept_sum

        measured_policy, final_step = step_sizes(x, n, num_steps, num_chains, seed, anneal)
        num_chunks = (num_chains + chunk_size - 1) // chunk_size

        def chunk(i, sums, accept_sum, last_state, top):
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, i, alg=sampling.RNG_ALG)
            log_w, state, accepted = anneal(
                chunk_size, num_steps, chunk_seed, measured_policy, final_increment=True
            )
            valid = tf.range(chunk_size) + i * chunk_size < num_chains  # the overhang: weight 0
            log_w = tf.where(valid[:, None], log_w, -np.inf)
            sums = logspace.update_weight_sums(sums, log_w)
            accepted = tf.reduce_sum(tf.where(valid[:, None], accepted, 0.0), axis=0)
            if tail_capacity:
                top = pareto.update_top(top, log_w)
            return i + 1, sums, accept_sum + accepted, final_step(state, valid), top

        _, sums, accept_sum, last_step, top = tf.while_loop(
            lambda i, *_: i < num_chunks,
            chunk,
            (
                tf.constant(0),
                logspace.empty_weight_sums(n, dtype),
                tf.zeros([n], dtype),
                tf.fill([n], tf.constant(initial_step, dtype)),
                pareto.empty_top(n, tail_capacity, dtype) if tail_capacity else (),
            ),
        )
        khat = (
            tf.cast(pareto.pareto_tail(top, num_chains).khat, dtype)
            if tail_capacity
            else tf.fill([n], tf.constant(np.nan, dtype))
        )
        log_sum_w, _ = logspace.log_sums(sums)
        ess = logspace.sums_ess(sums)
        # The delta method over the K chains' independent weights (for bdmc, on 1/p: the
        # reverse weights; -log mean has the same SE as log mean).
        se = logspace.delta_method_se(sums, num_chains)
        log_mean_w = log_sum_w - tf.math.log(tf.cast(num_chains, dtype))
        moves = tf.cast((num_steps - 1) * num_chains, dtype)
        accept = tf.where(
            moves > 0, accept_sum / tf.maximum(moves, 1.0), tf.constant(np.nan, dtype)
        )  # no moves when T = 1
        return (-log_mean_w if reverse else log_mean_w), ess, accept, last_step, khat, se

    def step_sizes(x, n, num_steps, num_chains, seed, anneal):
        """The measured run's step policy (after a pilot run for adapt=pilot) and a function
        (policy state, valid chains) -> final step size [N] for the diagnostics."""
        eps0 = tf.constant(initial_step, dtype)
        if adapt == "none":
            return (
                (tf.zeros([n], dtype), lambda k, s: eps0, lambda k, s, a: s),
                lambda state, valid: state + eps0,
            )
        if adapt == "online":

            def update(k, state, accept):
                eps, rate = state
                rate = ONLINE_SLOWNESS * rate + (1.0 - ONLINE_SLOWNESS) * accept
                eps = tf.clip_by_value(
                    tf.where(rate > TARGET_ACCEPT, eps * 1.02, eps * 0.98), *ONLINE_STEP_RANGE
                )
                return eps, rate

            shape = [chunk_size, n]
            state0 = (tf.fill(shape, eps0), tf.fill(shape, tf.constant(TARGET_ACCEPT, dtype)))

            def final(state, valid):
                w = tf.cast(valid, dtype)[:, None]
                return tf.reduce_sum(state[0] * w, axis=0) / tf.reduce_sum(w)

            return (state0, lambda k, s: s[0], update), final
        # adapt == "pilot": tune per point on a pilot run, then freeze per temperature.
        pilot_moves = tf.minimum(num_steps, pilot_steps)

        def pilot_update(k, state, accept):
            log_eps, table = state
            log_eps = tf.clip_by_value(
                log_eps + tf.reduce_mean(accept, axis=0) - TARGET_ACCEPT,
                *np.log(PILOT_STEP_RANGE).astype(dtype.as_numpy_dtype),
            )
            return log_eps, tf.tensor_scatter_nd_update(table, [[k]], log_eps[None])

        pilot_state0 = (tf.fill([n], tf.math.log(eps0)), tf.zeros([pilot_steps, n], dtype))
        pilot_seed = tf.random.experimental.stateless_fold_in(seed, 2**30, alg=sampling.RNG_ALG)
        _, (_, table), _ = anneal(
            pilot_chains,
            pilot_moves,
            pilot_seed,
            (pilot_state0, lambda k, s: tf.exp(s[0]), pilot_update),
            final_increment=False,
        )

        def frozen(k, _):
            """Step size of measured move k: the pilot's, interpolated at path position (k+1)/T."""
            position = tf.cast(k + 1, dtype) / tf.cast(num_steps, dtype)
            r = tf.clip_by_value(
                position * tf.cast(pilot_moves, dtype) - 1.0, 0.0, tf.cast(pilot_moves - 1, dtype)
            )
            lo = tf.cast(tf.floor(r), tf.int32)
            hi = tf.minimum(lo + 1, pilot_moves - 1)
            w = r - tf.cast(lo, dtype)
            # tf.gather, not table[lo]: a slice index XLA must know at compile time would make
            # num_steps a compile-time constant (a new compilation for every T).
            return tf.exp((1.0 - w) * tf.gather(table, lo) + w * tf.gather(table, hi))

        last = lambda state, valid: frozen(tf.maximum(num_steps - 2, 0), None)  # noqa: E731
        return (tf.zeros([n], dtype), frozen, lambda k, s, a: s), last

    # Every size open: one trace for every N (a first call on one row must not trace N = 1, which
    # broadcasting in the HMC loop would turn into an unknown dimension), K and T.
    signature = [
        tf.TensorSpec([None, model.data_dim], dtype),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([2], tf.int64),
    ]
    if reverse:
        signature.append(tf.TensorSpec([None, model.latent_dim], dtype))
    return cached_function(
        model,
        "annealing",
        key,
        lambda: compute,
        owner=posterior,
        input_signature=signature,
        jit_compile=jit_compile,
    )
