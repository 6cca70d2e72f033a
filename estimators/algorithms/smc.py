"""``smc``: sequential Monte Carlo with adaptive tempering, K particles per data point.

The particles walk the same tempered path as AIS, from a normalised start density f_0 (the prior
p(z), or q(z|x)) to p(x, z):

    log f_beta(z) = log f_0(z) + beta ell(z),   ell(z) = log p(x, z) - log f_0(z)

(ell = log p(x | z) on the prior path), but the temperatures are chosen from particles. A stage,
for each point that has not reached beta = 1:

1. Temperature step. delta in [0, 1 - beta] by bisection (``BISECTION_STEPS`` halvings) so that
   the Kish ESS of the cumulative weights after the step,
       ESS(delta) = (sum_k W_k e^{delta ell_k})^2 / sum_k W_k^2 e^{2 delta ell_k},
   equals ``target_ess`` K (W: the normalised weights so far). The sign is that of the weight
   update below, +delta ell. If ESS(1 - beta) >= target_ess K the step is the last,
   delta = 1 - beta. (With uniform W, ESS(delta) falls monotonically in delta: its log-derivative
   is 2 (E_delta[ell] - E_{2 delta}[ell]) <= 0, tilting W by e^{delta ell} and e^{2 delta ell}.)
2. Increment. log Z += log sum_k W_k e^{delta ell_k}, and W_k <- W_k e^{delta ell_k} / sum.
3. Resampling (systematic: one uniform per point, ancestors at (k + u) / K on the weights' CDF),
   then ``moves`` HMC moves (``hmc.step``, L = ``leapfrog``) that leave f_beta at the *new* beta
   invariant. Every stage that does not end the path resamples: the bisection leaves the ESS
   just below target_ess K, and from such weights the next stage could not advance (the ESS of
   cumulative weights cannot rise again), so any resampling threshold would be crossed at every
   stage. (The solver still takes the cumulative weights, so it stays right if resampling is
   ever made conditional.)

log p^(x) = the sum of the increments. For temperatures and HMC kernels that do not depend on
the particles, E[p^] = p(x) (a stochastic lower bound on log p(x), like AIS).

Adaptation (``adapt``). Step 1 picks the temperatures, and the step size of stage t is
eps_t = s_t * spread_t: spread_t is the smallest per-coordinate standard deviation of the
resampled particles of stage t (before they move) and log s_t = log s_{t-1} + (mean acceptance of
stage t-1's moves - 0.65), s_1 = ``step_size``. Only information from before a move enters its
kernel, so each move leaves f_beta invariant. Which particles choose:
    pilot       (default) ``pilot_particles`` extra particles per point, an independent SMC run
                in lockstep with the measured one: at every stage they choose delta and eps by
                the rules above, and the K measured particles take the same delta and eps. The
                schedule and the kernels are then independent of the measured particles, so
                E[p^] = p(x) exactly (as AIS's step sizes frozen from a pilot).
    population  the K measured particles choose for themselves (BlackJAX ``adaptive_tempered``,
                TFP's SMC). The temperatures and kernels then depend on the particles that
                estimate p(x): p^ is consistent but biased. Measured on a 2-d linear-Gaussian
                from a q(z|x) 0.8x as wide as p(z|x) (a right-skewed ell; 2000 runs each):
                E[p^/p] = 0.961 +- 0.006 at K = 16 and 0.970 +- 0.003 at K = 64 (tested), where
                the pilot gives 1.004 +- 0.012 and 0.997 +- 0.004; from the prior or a wide q
                the bias is below the tests' resolution.

Batching. Points reach beta = 1 at different stages; all N run in one compiled ``tf.while_loop``
over stages that stops when every point is done or at ``max_stages``. A finished point's
particles, weights and estimate no longer change (its lanes of the batched computation are
masked). A point that has not reached beta = 1 at the cap is a ``ValueError`` naming it, never a
truncated estimate.

Memory and compilation. SMC needs the whole population at once, so particles are not chunked:
memory is O((K + pilot) N d) (positions, two gradients, the momentum), and ``chunk_size`` is
ignored. The particle array holds C >= K measured rows and C_p >= pilot rows, each a power of two
(``capacity``); rows beyond K (or the pilot's count) are padding with weight 0. K and every
option are tensor values: one trace per (model, start distribution, adapt), and XLA compiles once
per (N, C, C_p).

Cost. K (S + (S - 1) m L) evaluations of log p(x, z) and its gradient per point for S stages (one
for each weight increment, as AIS counts them, and L per move), plus the same for the pilot; the
``evaluations`` diagnostic gives it per point (lanes of finished points, computed in the batch
but masked, are not counted).

Diagnostics per point: ``stages`` (S), ``ess`` (Kish ESS of the final weights), ``accept`` (mean
HMC acceptance probability of the measured particles' moves; NaN with no moves),
``evaluations`` and ``se``: the sum over stages of each increment's delta-method variance
(``increment_variance``), square-rooted.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from estimators import sampling
from estimators.algorithms import hmc
from estimators.algorithms.compiled import cached_function
from estimators.algorithms.proposals import checked_posterior
from estimators.algorithms.step_size import TARGET_ACCEPT
from estimators.algorithms.tempered_path import resolve_start, tempered_path

BISECTION_STEPS = 50  # halvings of [0, 1 - beta]: below float64 resolution of delta
LOG_STEP_SCALE_RANGE = (np.log(1e-3), np.log(10.0))  # clip of log s_t


class Groups(NamedTuple):
    """Which rows of the particle array [C + C_p, N, d] are what ([C + C_p] bool each)."""

    measured: tf.Tensor  # the K particles that estimate p(x): rows [0, K)
    pilot: tf.Tensor  # the pilot's particles: rows [C, C + K_pilot) (none with population)
    chooser: tf.Tensor  # the particles that choose delta and eps: pilot, or measured


class Population(NamedTuple):
    """The loop state: particles and their weights, temperatures and running sums, per point."""

    point: hmc.PathPoint  # particles [C + C_p, N, d] with their log densities and gradients
    log_w: tf.Tensor  # log weights [C + C_p, N], normalised in each group; -inf: padding
    beta: tf.Tensor  # [N]
    log_z: tf.Tensor  # the running sum of the measured particles' increments [N]
    log_z_var: tf.Tensor  # the running sum of the increments' delta-method variances [N]
    stages: tf.Tensor  # stages used [N] int32
    done: tf.Tensor  # reached beta = 1 [N] bool
    log_scale: tf.Tensor  # log s_t: step size relative to the spread [N]
    spread: tf.Tensor  # last positive spread of the choosing particles [N]
    accept_sum: tf.Tensor  # measured particles' mean acceptance probability summed over moves
    num_moves: tf.Tensor  # moves made [N]


def run(spec, model, x, num_particles, seed, context):
    """(log p^(x) [N], diagnostics) for ``smc``; ValueError naming the points that did not reach
    beta = 1 within ``max_stages``."""
    options = spec.kwargs
    start = resolve_start(spec, model, context)
    posterior = None
    if start == "posterior":
        posterior = checked_posterior(model, x, spec.name, context.proposal)
    fn = compiled_smc(model, posterior, options["adapt"], context.jit_compile)
    dtype = model.dtype
    pilot = options["pilot_particles"] if options["adapt"] == "pilot" else 0
    log_z, ess, accept, stages, evaluations, done, beta, se = fn(
        x,
        tf.constant(num_particles, tf.int32),
        tf.zeros([capacity(num_particles)], tf.int32),
        tf.constant(pilot, tf.int32),
        tf.zeros([capacity(pilot)], tf.int32),
        seed,
        tf.constant(options["target_ess"], dtype),
        tf.constant(options["leapfrog"], tf.int32),
        tf.constant(options["moves"], tf.int32),
        tf.constant(options["step_size"], dtype),
        tf.constant(options["max_stages"], tf.int32),
    )
    check_finished(spec, done.numpy(), beta.numpy())
    return log_z, {
        "ess": ess,
        "accept": accept,
        "stages": stages,
        "evaluations": evaluations,
        "se": se,
    }


def capacity(num_particles):
    """Rows for ``num_particles`` particles: the next power of two (XLA compiles per size); 0
    for none."""
    return 0 if num_particles == 0 else 1 << (int(num_particles) - 1).bit_length()


def check_finished(spec, done, beta):
    """ValueError naming the points (rows of x) that stopped short of beta = 1."""
    short = np.flatnonzero(~done)
    if short.size:
        shown = ", ".join(f"{i} (beta = {beta[i]:.3g})" for i in short[:10])
        more = f" and {short.size - 10} more" if short.size > 10 else ""
        raise ValueError(
            f"{spec.canonical}: {short.size} point(s) did not reach beta = 1 within max_stages = "
            f"{spec.kwargs['max_stages']}: rows {shown}{more}; raise max_stages (or lower "
            "target_ess: bigger temperature steps)"
        )


def compiled_smc(model, posterior, adapt, jit_compile):
    """The cached compiled function fn(x, K, slots, K_pilot, pilot_slots, seed, target_ess,
    leapfrog, moves, step_size, max_stages) -> (log p^ [N], ESS [N], acceptance [N], stages [N],
    evaluations [N], done [N], beta [N]). ``slots`` is any [C] tensor, C >= K: its shape sets the
    measured rows of the particle array, and rows k >= K are padding (``capacity``), so K itself
    is a value, never a shape; the same for the pilot (K_pilot 0 with adapt=population).
    ``posterior`` (q(z|x) for start=posterior, else None) is compiled in."""

    def compute(
        x,
        num_particles,
        slots,
        pilot_particles,
        pilot_slots,
        seed,
        target_ess,
        leapfrog,
        moves,
        step_size,
        max_stages,
    ):
        dtype = model.dtype
        n = tf.shape(x)[0]
        evaluate, sample_start = tempered_path(model, x, posterior)

        measured_rows = tf.shape(slots)[0]
        size = measured_rows + tf.shape(pilot_slots)[0]
        row = tf.range(size)
        measured = row < num_particles
        pilot = (row >= measured_rows) & (row < measured_rows + pilot_particles)
        groups = Groups(measured, pilot, pilot if adapt == "pilot" else measured)
        choosers = tf.cast(pilot_particles if adapt == "pilot" else num_particles, dtype)

        init_seed, loop_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 2, alg=sampling.RNG_ALG)
        )
        z = sample_start(size, init_seed)
        uniform_log_w = tf.broadcast_to(
            uniform_weights(groups, num_particles, pilot_particles, dtype)[:, None], [size, n]
        )
        first = Population(
            point=evaluate(z),
            log_w=uniform_log_w,
            beta=tf.zeros([n], dtype),
            log_z=tf.zeros([n], dtype),
            log_z_var=tf.zeros([n], dtype),
            stages=tf.zeros([n], tf.int32),
            done=tf.zeros([n], tf.bool),
            log_scale=tf.fill([n], tf.math.log(step_size)),
            spread=tf.where(choosers > 1, particle_spread(z, groups.chooser), tf.ones([n], dtype)),
            accept_sum=tf.zeros([n], dtype),
            num_moves=tf.zeros([n], dtype),
        )
        log_target_ess = tf.math.log(target_ess * choosers)
        # (rows, first row, count) of each group that resamples and normalises its weights
        parts = [(measured, 0, num_particles)]
        if adapt == "pilot":
            parts.append((pilot, measured_rows, pilot_particles))
        step = hmc_step(evaluate, leapfrog)

        def stage(s, pop):
            resample_seed, move_seed = tf.unstack(
                tf.random.experimental.stateless_split(
                    fold_in(loop_seed, s), 2, alg=sampling.RNG_ALG
                )
            )
            ell = pop.point.log_joint - pop.point.log_start
            ell = tf.where((measured | pilot)[:, None], ell, tf.zeros_like(ell))  # padding: 0
            delta, last = next_temperature_step(
                within(groups.chooser, pop.log_w), ell, 1.0 - pop.beta, log_target_ess
            )
            pop, movers = reweight(pop, parts, ell, delta, last)
            point = resample(pop.point, pop.log_w, parts, movers, resample_seed)
            spread = particle_spread(point.z, groups.chooser)
            spread = tf.where(movers & (spread > 0) & tf.math.is_finite(spread), spread, pop.spread)
            eps = tf.exp(pop.log_scale) * spread
            point, accept = move(step, point, pop.beta, eps, movers, groups, moves, move_seed)
            moved = tf.cast(movers, dtype)
            return s + 1, pop._replace(
                point=point,
                log_w=tf.where(movers, uniform_log_w, pop.log_w),
                log_scale=tf.clip_by_value(
                    pop.log_scale + moved * (accept.chooser - TARGET_ACCEPT), *LOG_STEP_SCALE_RANGE
                ),
                spread=spread,
                accept_sum=pop.accept_sum + moved * accept.measured * tf.cast(moves, dtype),
                num_moves=pop.num_moves + moved * tf.cast(moves, dtype),
            )

        _, last = tf.while_loop(
            lambda s, pop: (s < max_stages) & tf.reduce_any(~pop.done),
            stage,
            (tf.constant(0), first),
        )
        ess = tf.exp(-tf.reduce_logsumexp(within(measured, 2.0 * last.log_w), axis=0))
        accept = tf.where(
            last.num_moves > 0,
            last.accept_sum / tf.maximum(last.num_moves, 1.0),
            tf.constant(np.nan, dtype),
        )
        stages = tf.cast(last.stages, dtype)
        evaluations = tf.cast(num_particles + pilot_particles, dtype) * (
            stages + last.num_moves * tf.cast(leapfrog, dtype)
        )
        se = tf.where(num_particles > 1, tf.sqrt(last.log_z_var), tf.constant(np.nan, dtype))
        return last.log_z, ess, accept, last.stages, evaluations, last.done, last.beta, se

    # One trace for every N, K and option value (the signature leaves every size open). No
    # autograph: the loops are explicit tf.while_loops, and converting every called function
    # (TFP, the kernel) would cost most of the tracing time.
    count, dtype = tf.TensorSpec([], tf.int32), model.dtype
    signature = [
        tf.TensorSpec([None, model.data_dim], dtype),
        count,
        tf.TensorSpec([None], tf.int32),
        count,
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([2], tf.int64),
        tf.TensorSpec([], dtype),
        count,
        count,
        tf.TensorSpec([], dtype),
        count,
    ]
    return cached_function(
        model,
        "smc",
        (adapt, jit_compile),
        lambda: compute,
        owner=posterior,
        input_signature=signature,
        jit_compile=jit_compile,
        autograph=False,
    )


def fold_in(seed, i):
    return tf.random.experimental.stateless_fold_in(seed, i, alg=sampling.RNG_ALG)


def within(rows, log_w):
    """log_w [C, N] with the rows outside ``rows`` [C] set to -inf (weight 0)."""
    return tf.where(rows[:, None], log_w, tf.constant(-np.inf, log_w.dtype))


def uniform_weights(groups, num_particles, pilot_particles, dtype):
    """[C + C_p] normalised uniform log weights of each group: -log K, -log K_pilot, -inf."""
    minus_inf = tf.constant(-np.inf, dtype)
    pilot = tf.where(groups.pilot, -tf.math.log(tf.cast(pilot_particles, dtype)), minus_inf)
    return tf.where(groups.measured, -tf.math.log(tf.cast(num_particles, dtype)), pilot)


def hmc_step(evaluate, leapfrog):
    """``hmc.step`` with the path and the number of leapfrog steps bound."""

    def step(point, beta, eps, seed):
        return hmc.step(evaluate, point, beta, eps, leapfrog, seed)

    return step


def reweight(pop, parts, ell, delta, last):
    """Step 2 for the points not yet done: the measured particles' increment, and the weights of
    each group (``parts``, the measured first) normalised, for the step delta [N] (``last``: it
    ends the path, beta = 1). Returns (population, movers [N]: the points that go on to resample
    and move)."""
    active = ~pop.done
    delta = tf.where(active, delta, tf.zeros_like(delta))
    log_w = pop.log_w + tempered(delta, ell)
    normalised = tf.fill(tf.shape(log_w), tf.constant(-np.inf, log_w.dtype))
    for rows, _, _ in parts:
        total = tf.reduce_logsumexp(within(rows, log_w), axis=0)
        normalised = tf.where(rows[:, None] & tf.math.is_finite(total), log_w - total, normalised)
    increment = tf.reduce_logsumexp(within(parts[0][0], log_w), axis=0)
    count = tf.reduce_sum(tf.cast(parts[0][0], log_w.dtype))
    variance = increment_variance(within(parts[0][0], log_w), increment, count)
    finished = active & last
    return pop._replace(
        log_w=tf.where(active, normalised, pop.log_w),
        log_z=pop.log_z + tf.where(active, increment, tf.zeros_like(increment)),
        log_z_var=pop.log_z_var + tf.where(active, variance, tf.zeros_like(variance)),
        beta=tf.where(finished, tf.ones_like(pop.beta), pop.beta + delta),
        stages=pop.stages + tf.cast(active, tf.int32),
        done=pop.done | finished,
    ), active & ~last


def increment_variance(log_w, increment, count):
    """The delta-method variance of one stage's increment log sum_k W_k g_k [N], from the
    measured particles' log W_k g_k [C, N] (-inf: not measured), the increment itself and the
    number K of measured particles.

    Every stage starts from uniform weights W = 1/K (each stage resamples), so the increment is
    log mean_k g_k and its variance is (K sum g^2 / (sum g)^2 - 1) / (K - 1). ``se`` sums these
    over the stages as if the stages were independent, which they are when the moves after each
    resampling mix well; with poorly mixing moves the stages are correlated and it understates
    the error. (Lee and Whiteley's 2018 unbiased estimator, which tracks each particle's
    first-stage ancestor, is not used: it needs the whole genealogy.)"""
    ratio = tf.exp(tf.reduce_logsumexp(2.0 * log_w, axis=0) - 2.0 * increment)
    spread = tf.maximum(count * ratio - 1.0, 0.0) / tf.maximum(count - 1.0, 1.0)
    return tf.where(tf.math.is_finite(spread), spread, tf.zeros_like(spread))


def tempered(delta, ell):
    """delta ell [C, N] for delta [N] >= 0, with 0 where delta = 0 (even where ell = -inf) and
    a NaN ell counted as -inf (weight 0)."""
    ell = tf.where(tf.math.is_nan(ell), tf.constant(-np.inf, ell.dtype), ell)
    return tf.where(delta > 0, delta * ell, tf.zeros_like(ell))


def log_ess(log_w, delta, ell):
    """log of the Kish ESS of the weights W e^{delta ell}: 2 lse(lw) - lse(2 lw), per point."""
    lw = log_w + tempered(delta, ell)
    return 2.0 * tf.reduce_logsumexp(lw, axis=0) - tf.reduce_logsumexp(2.0 * lw, axis=0)


def next_temperature_step(log_w, ell, max_delta, log_target_ess):
    """(delta [N], last [N]): the step with ESS(W e^{delta ell}) = target by bisection on
    [0, max_delta], or delta = max_delta (last = True) when even that keeps the ESS at or above
    the target. Bisection keeps ESS(lo) >= target > ESS(hi) and returns hi, so a stage that does
    not end the path leaves the ESS just below the target."""
    last = log_ess(log_w, max_delta, ell) >= log_target_ess

    def halve(i, lo, hi):
        mid = 0.5 * (lo + hi)
        keeps = log_ess(log_w, mid, ell) >= log_target_ess
        return i + 1, tf.where(keeps, mid, lo), tf.where(keeps, hi, mid)

    _, _, hi = tf.while_loop(
        lambda i, *_: i < BISECTION_STEPS,
        halve,
        (tf.constant(0), tf.zeros_like(max_delta), max_delta),
    )
    return tf.where(last, max_delta, hi), last


def particle_spread(z, rows):
    """The smallest per-coordinate standard deviation over the particles of z [C, N, d] in
    ``rows`` [C] -> [N]."""
    z = tf.where(rows[:, None, None], z, tf.zeros_like(z))
    count = tf.reduce_sum(tf.cast(rows, z.dtype))
    mean = tf.reduce_sum(z, axis=0) / count
    squares = tf.where(rows[:, None, None], tf.square(z - mean), tf.zeros_like(z))
    return tf.sqrt(tf.reduce_min(tf.reduce_sum(squares, axis=0) / count, axis=-1))


def systematic_ancestors(log_w, first, count, seed):
    """Ancestor rows [C, N] by systematic resampling of the ``count`` rows from ``first`` (log_w
    [C, N]: -inf outside them): one u ~ U(0, 1) per point, row first + k (k < count) takes the
    row whose interval of the weights' CDF holds (k + u) / count (never a weight-0 row). The
    other rows keep their own index."""
    size = tf.shape(log_w)[0]
    dtype = log_w.dtype
    weights = tf.exp(log_w - tf.reduce_logsumexp(log_w, axis=0))
    cdf = tf.transpose(tf.cumsum(weights, axis=0))  # [N, C]
    cdf = cdf / cdf[:, -1:]
    u = sampling.uniform([tf.shape(log_w)[1], 1], seed, dtype)
    own = tf.range(size)[None, :] + tf.zeros_like(cdf, tf.int32)  # [N, C]
    positions = (tf.cast(own - first, dtype) + u) / tf.cast(count, dtype)
    ancestors = tf.minimum(tf.searchsorted(cdf, positions, side="right"), first + count - 1)
    return tf.transpose(tf.where((own >= first) & (own < first + count), ancestors, own))


def resample(point, log_w, parts, movers, seed):
    """The particles (with their cached densities and gradients) resampled within each group of
    ``parts`` ((rows, first row, count) each) for the ``movers`` [N]; the other points'
    particles unchanged."""
    ancestors = tf.range(tf.shape(log_w)[0])[:, None] + tf.zeros_like(log_w, tf.int32)
    for i, (rows, first, count) in enumerate(parts):
        chosen = systematic_ancestors(within(rows, log_w), first, count, fold_in(seed, i))
        ancestors = tf.where(rows[:, None] & movers, chosen, ancestors)
    by_point = tf.transpose(ancestors)  # [N, C]

    def gather(t):
        perm = [1, 0] + list(range(2, t.shape.rank))  # particles and points swapped
        return tf.transpose(tf.gather(tf.transpose(t, perm), by_point, batch_dims=1), perm)

    return hmc.PathPoint(*(gather(t) for t in point))


class Acceptance(NamedTuple):
    measured: tf.Tensor  # mean acceptance probability of the measured particles [N]
    chooser: tf.Tensor  # and of the particles that choose the step size [N]


def move(step, point, beta, eps, movers, groups, moves, seed):
    """``moves`` HMC moves (``step``) at temperature beta [N] with step sizes eps [N] for the
    ``movers``; returns (particles, ``Acceptance``: mean acceptance probabilities over moves)."""

    def share(rows):
        rows = tf.cast(rows, beta.dtype)[:, None]
        return rows / tf.maximum(tf.reduce_sum(rows), 1.0)

    shares = (share(groups.measured), share(groups.chooser))

    def one(j, point, sums):
        moved, accept = step(point, beta, eps, fold_in(seed, j))
        point = hmc.PathPoint(
            *(
                tf.where(movers if new.shape.rank == 2 else movers[:, None], new, old)
                for new, old in zip(moved, point, strict=False)
            )
        )
        accept = tf.where(tf.math.is_nan(accept), tf.zeros_like(accept), accept)  # padding
        return (
            j + 1,
            point,
            tuple(
                total + tf.reduce_sum(w * accept, axis=0)
                for total, w in zip(sums, shares, strict=False)
            ),
        )

    zeros = tf.zeros_like(beta)
    _, point, sums = tf.while_loop(
        lambda j, *_: j < moves, one, (tf.constant(0), point, (zeros, zeros))
    )
    return point, Acceptance(*(total / tf.cast(moves, beta.dtype) for total in sums))
