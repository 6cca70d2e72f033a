"""``smc``: sequential Monte Carlo with adaptive tempering, K particles per data point.

The particles walk the same tempered path as AIS, from a normalised start density f_0 (the prior
p(z), or q(z|x)) to p(x, z):

    log f_beta(z) = log f_0(z) + beta ell(z),   ell(z) = log p(x, z) - log f_0(z)

(ell = log p(x | z) on the prior path), but the temperatures are chosen as the run goes. A stage,
for each point that has not reached beta = 1:

1. Temperature step. delta in [0, 1 - beta] by bisection (``BISECTION_STEPS`` halvings) so that
   the Kish ESS of the cumulative weights after the step,
       ESS(delta) = (sum_k W_k e^{delta ell_k})^2 / sum_k W_k^2 e^{2 delta ell_k},
   equals ``target_ess`` K (W: the normalised weights so far). The sign is that of the weight
   update below: +delta ell. If ESS(1 - beta) >= target_ess K the step is the last,
   delta = 1 - beta. (With uniform W, ESS(delta) falls monotonically in delta: its log-derivative
   is 2 (E_{2 delta}[ell] - E_{delta}[ell]) <= 0 under exponential tilts of W.)
2. Increment. log Z += log sum_k W_k e^{delta ell_k}, and W_k <- W_k e^{delta ell_k} / sum.
3. Resampling (systematic: one uniform per point, ancestors at (k + u) / K on the weights' CDF),
   then ``moves`` HMC moves (``hmc.step``, L = ``leapfrog``) that leave f_beta at the *new* beta
   invariant. Every stage that does not end the path resamples: the bisection leaves the ESS
   just below target_ess K, and from such weights the next stage's criterion could not advance
   (the ESS of the cumulative weights cannot rise again), so a threshold below which to resample
   would always be crossed. (The solver still takes the cumulative weights, so it stays right if
   resampling is ever made conditional.)

log p^(x) = sum of the increments: E[p^] = p(x) for a fixed sequence of temperatures and kernels,
so p^ is a stochastic lower bound on log p(x) (Jensen) like AIS.

Adaptation. The temperatures (step 1) and the step sizes are set from the particle population:
the step size of stage t is eps_t = s_t * spread_t, with spread_t the smallest per-coordinate
standard deviation of the resampled particles of stage t (before they move) and
log s_t = log s_{t-1} + (mean acceptance of stage t-1's moves - 0.65), s_1 = ``step_size``. Only
information from before the move enters the move's kernel, so each move leaves f_beta invariant.
Choosing the kernels and temperatures from the same population is the standard adaptive SMC
(BlackJAX ``adaptive_tempered``, TFP's SMC): it makes p^ consistent with a bias that vanishes as
O(1/K) (Beskos, Jasra, Kantas & Thiery 2016), not exactly unbiased as with a fixed schedule; the
tests check E[p^ / p] = 1 within 4 standard errors at their particle counts.

Batching. Points reach beta = 1 at different stages; all N run in one compiled ``tf.while_loop``
over stages that stops when every point is done or at ``max_stages``. A finished point's
particles, weights and estimate no longer change (its lanes of the batched computation are
masked). A point that has not reached beta = 1 at the cap is a ``ValueError`` naming it, never a
truncated estimate.

Memory and compilation. SMC needs the whole population at once, so particles are not chunked:
memory is O(K N d) (positions, two gradients and the momentum), and ``chunk_size`` is ignored. K,
target_ess, leapfrog, moves, step_size and max_stages are tensor arguments: one compiled function
per (model, start distribution).

Cost. Per point K (S + (S - 1) m L) evaluations of log p(x, z) and its gradient for S stages (one
for each weight increment, as AIS counts them, and L per move); the ``evaluations`` diagnostic
gives it per point (lanes of finished points computed in the batch but masked are not counted).

Diagnostics per point: ``stages`` (S), ``ess`` (Kish ESS of the final weights), ``accept`` (mean
HMC acceptance probability over all moves; NaN with no moves) and ``evaluations``.
"""
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from estimators import sampling
from estimators.algorithms import hmc
from estimators.algorithms.annealing import TARGET_ACCEPT, resolve_start
from estimators.algorithms.importance import callable_key, checked_posterior
from estimators.models.base import model_cache

BISECTION_STEPS = 50       # halvings of [0, 1 - beta]: below float64 resolution of delta
LOG_STEP_SCALE_RANGE = (np.log(1e-3), np.log(10.0))  # clip of log s_t


class Population(NamedTuple):
    """The loop state: particles and their weights, temperatures and running sums, per point."""
    point: hmc.PathPoint   # particles [C, N, d] with their log densities and gradients
    log_w: tf.Tensor       # normalised log weights [C, N] (logsumexp = 0; -inf for padding)
    beta: tf.Tensor        # [N]
    log_z: tf.Tensor       # the running sum of increments [N]
    stages: tf.Tensor      # stages used [N] int32
    done: tf.Tensor        # reached beta = 1 [N] bool
    log_scale: tf.Tensor   # log s_t: step size relative to the spread [N]
    spread: tf.Tensor      # last positive spread of the particles [N]
    accept_sum: tf.Tensor  # acceptance probabilities summed over moves (mean over particles) [N]
    num_moves: tf.Tensor   # moves made [N]


def run(spec, model, x, num_particles, seed, context):
    """(log p^(x) [N], diagnostics) for ``smc``; ValueError naming the points that did not reach
    beta = 1 within ``max_stages``."""
    options = spec.kwargs
    start = resolve_start(spec, model, context)
    posterior = checked_posterior(model, x, spec.name, context.proposal) if start == "posterior" else None
    fn = compiled_smc(model, posterior, context.jit_compile)
    dtype = model.dtype
    slots = tf.zeros([capacity(num_particles)], tf.int32)
    log_z, ess, accept, stages, evaluations, done, beta = fn(
        x, tf.constant(num_particles, tf.int32), slots, seed,
        tf.constant(options["target_ess"], dtype), tf.constant(options["leapfrog"], tf.int32),
        tf.constant(options["moves"], tf.int32), tf.constant(options["step_size"], dtype),
        tf.constant(options["max_stages"], tf.int32))
    check_finished(spec, done.numpy(), beta.numpy())
    return log_z, {"ess": ess, "accept": accept, "stages": stages, "evaluations": evaluations}


def capacity(num_particles):
    """The particle array size for K particles: the next power of two (XLA compiles per size)."""
    return 1 << (int(num_particles) - 1).bit_length()


def check_finished(spec, done, beta):
    """ValueError naming the points (rows of x) that stopped short of beta = 1."""
    short = np.flatnonzero(~done)
    if short.size:
        shown = ", ".join(f"{i} (beta = {beta[i]:.3g})" for i in short[:10])
        more = f" and {short.size - 10} more" if short.size > 10 else ""
        raise ValueError(
            f"{spec.canonical}: {short.size} point(s) did not reach beta = 1 within max_stages = "
            f"{spec.kwargs['max_stages']}: rows {shown}{more}; raise max_stages (or lower "
            "target_ess: bigger temperature steps)")


def compiled_smc(model, posterior, jit_compile):
    """The cached compiled function fn(x, K, slots, seed, target_ess, leapfrog, moves, step_size,
    max_stages) -> (log p^ [N], ESS [N], acceptance [N], stages [N], evaluations [N], done [N],
    beta [N]). ``slots`` is any [C] tensor, C >= K: its shape is the particle array's, and rows
    k >= K are padding with weight 0 (``capacity``), so K itself is a value, never a shape.
    ``posterior`` (q(z|x) for start=posterior, else None) is compiled in."""
    key = (callable_key(posterior), jit_compile)
    cache = model_cache(model, "smc")
    if key in cache and cache[key][0] == posterior:
        return cache[key][1]

    def compute(x, num_particles, slots, seed, target_ess, leapfrog, moves, step_size, max_stages):
        dtype = model.dtype
        n = tf.shape(x)[0]
        size = tf.shape(slots)[0]
        real = tf.range(size) < num_particles  # [C]: the K particles; the rest is padding
        q = posterior(x) if posterior is not None else None
        log_start_fn = q.log_prob if q is not None else model.prior.log_prob

        def log_joint_fn(z):
            return model.prior.log_prob(z) + model.likelihood(z).log_prob(x)

        def evaluate(z):
            return hmc.evaluate(log_start_fn, log_joint_fn, z)

        init_seed, loop_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 2, alg=sampling.RNG_ALG))
        if q is not None:
            z = sampling.sample(q, [size], init_seed)
        else:
            z = sampling.sample(model.prior, [size, n], init_seed)
        k = tf.cast(num_particles, dtype)
        log_target_ess = tf.math.log(target_ess * k)
        uniform_log_w = tf.where(real[:, None], -tf.math.log(k), tf.constant(-np.inf, dtype))
        uniform_log_w = tf.broadcast_to(uniform_log_w, [size, n])  # [C, N], normalised
        first = Population(
            point=evaluate(z), log_w=uniform_log_w,
            beta=tf.zeros([n], dtype), log_z=tf.zeros([n], dtype),
            stages=tf.zeros([n], tf.int32), done=tf.zeros([n], tf.bool),
            log_scale=tf.fill([n], tf.math.log(step_size)),
            spread=tf.where(num_particles > 1, particle_spread(z, real), tf.ones([n], dtype)),
            accept_sum=tf.zeros([n], dtype), num_moves=tf.zeros([n], dtype))

        def stage(s, pop):
            stage_seed = tf.random.experimental.stateless_fold_in(loop_seed, s, alg=sampling.RNG_ALG)
            resample_seed, move_seed = tf.unstack(
                tf.random.experimental.stateless_split(stage_seed, 2, alg=sampling.RNG_ALG))
            pop, movers = reweight(pop, real, log_target_ess)
            point = resample(pop.point, pop.log_w, num_particles, movers, resample_seed)
            log_w = tf.where(movers, uniform_log_w, pop.log_w)
            spread = particle_spread(point.z, real)
            spread = tf.where(movers & (spread > 0) & tf.math.is_finite(spread), spread, pop.spread)
            eps = tf.exp(pop.log_scale) * spread
            point, accept = move(evaluate, point, pop.beta, eps, movers, real, leapfrog, moves,
                                 move_seed)
            moved = tf.cast(movers, dtype)
            log_scale = tf.clip_by_value(pop.log_scale + moved * (accept - TARGET_ACCEPT),
                                         *LOG_STEP_SCALE_RANGE)
            return s + 1, pop._replace(
                point=point, log_w=log_w, log_scale=log_scale, spread=spread,
                accept_sum=pop.accept_sum + moved * accept * tf.cast(moves, dtype),
                num_moves=pop.num_moves + moved * tf.cast(moves, dtype))

        _, last = tf.while_loop(
            lambda s, pop: (s < max_stages) & tf.reduce_any(~pop.done), stage,
            (tf.constant(0), first))
        ess = tf.exp(-tf.reduce_logsumexp(2.0 * last.log_w, axis=0))
        accept = tf.where(last.num_moves > 0, last.accept_sum / tf.maximum(last.num_moves, 1.0),
                          tf.constant(np.nan, dtype))
        stages = tf.cast(last.stages, dtype)
        evaluations = k * (stages + last.num_moves * tf.cast(leapfrog, dtype))
        return last.log_z, ess, accept, last.stages, evaluations, last.done, last.beta

    # No autograph: the loops are explicit tf.while_loops, and converting every called
    # function (TFP, the kernel) costs most of the tracing time.
    fn = tf.function(compute, jit_compile=jit_compile, reduce_retracing=True, autograph=False)
    cache[key] = (posterior, fn)
    return fn


def reweight(pop, real, log_target_ess):
    """Steps 1-2 for the points not yet done: the next temperature, the increment and the new
    normalised weights. Returns (population, movers [N]: the points that go on moving)."""
    active = ~pop.done
    ell = pop.point.log_joint - pop.point.log_start
    ell = tf.where(real[:, None], ell, tf.zeros_like(ell))  # padding rows: weight stays 0
    delta, last = next_temperature_step(pop.log_w, ell, 1.0 - pop.beta, log_target_ess)
    delta = tf.where(active, delta, tf.zeros_like(delta))
    log_w = pop.log_w + tempered(delta, ell)
    increment = tf.reduce_logsumexp(log_w, axis=0)
    normalised = tf.where(tf.math.is_finite(increment), log_w - increment, pop.log_w)
    finished = active & last
    return pop._replace(
        log_w=tf.where(active, normalised, pop.log_w),
        log_z=pop.log_z + tf.where(active, increment, tf.zeros_like(increment)),
        beta=tf.where(finished, tf.ones_like(pop.beta), pop.beta + delta),
        stages=pop.stages + tf.cast(active, tf.int32),
        done=pop.done | finished), active & ~last


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

    _, _, hi = tf.while_loop(lambda i, *_: i < BISECTION_STEPS, halve,
                             (tf.constant(0), tf.zeros_like(max_delta), max_delta))
    return tf.where(last, max_delta, hi), last


def particle_spread(z, real):
    """The smallest per-coordinate standard deviation over the real particles of z [C, N, d]
    (``real`` [C]) -> [N]."""
    z = tf.where(real[:, None, None], z, tf.zeros_like(z))
    count = tf.reduce_sum(tf.cast(real, z.dtype))
    mean = tf.reduce_sum(z, axis=0) / count
    squares = tf.where(real[:, None, None], tf.square(z - mean), tf.zeros_like(z))
    return tf.sqrt(tf.reduce_min(tf.reduce_sum(squares, axis=0) / count, axis=-1))


def systematic_ancestors(log_w, num_particles, seed):
    """Ancestor indices [C, N] by systematic resampling of each point's weights (log_w [C, N],
    weight 0 for the padding rows k >= K): one u ~ U(0, 1) per point, particle k < K takes the
    ancestor whose CDF interval holds (k + u) / K (never a weight-0 row); padding rows keep
    their own index."""
    size = tf.shape(log_w)[0]
    dtype = log_w.dtype
    weights = tf.exp(log_w - tf.reduce_logsumexp(log_w, axis=0))
    cdf = tf.transpose(tf.cumsum(weights, axis=0))  # [N, K]
    cdf = cdf / cdf[:, -1:]
    u = sampling.uniform([tf.shape(log_w)[1], 1], seed, dtype)
    positions = (tf.cast(tf.range(size), dtype)[None, :] + u) / tf.cast(num_particles, dtype)
    ancestors = tf.minimum(tf.searchsorted(cdf, positions, side="right"), num_particles - 1)
    own = tf.range(size)[None, :] + tf.zeros_like(ancestors)
    return tf.transpose(tf.where(own < num_particles, ancestors, own))


def resample(point, log_w, num_particles, movers, seed):
    """The particles (with their cached densities and gradients) resampled for the ``movers``
    [N]; the other points' particles unchanged."""
    identity = tf.range(tf.shape(log_w)[0])[:, None] + tf.zeros_like(log_w, tf.int32)
    ancestors = tf.where(movers, systematic_ancestors(log_w, num_particles, seed), identity)
    by_point = tf.transpose(ancestors)  # [N, K]

    def gather(t):
        perm = [1, 0] + list(range(2, t.shape.rank))  # particles and points swapped
        return tf.transpose(tf.gather(tf.transpose(t, perm), by_point, batch_dims=1), perm)
    return hmc.PathPoint(*(gather(t) for t in point))


def move(evaluate, point, beta, eps, movers, real, leapfrog, moves, seed):
    """``moves`` HMC moves at temperature beta [N] with step sizes eps [N] for the ``movers``;
    returns (particles, mean acceptance probability over the real particles and moves [N])."""
    weight = tf.cast(real, beta.dtype)[:, None] / tf.reduce_sum(tf.cast(real, beta.dtype))

    def one(j, point, accept_sum):
        moved, accept = hmc.step(evaluate, point, beta, eps, leapfrog,
                                 tf.random.experimental.stateless_fold_in(seed, j, alg=sampling.RNG_ALG))
        point = hmc.PathPoint(*(tf.where(movers if new.shape.rank == 2 else movers[:, None], new, old)
                                for new, old in zip(moved, point)))
        accept = tf.where(real[:, None], accept, tf.zeros_like(accept))  # padding may be NaN
        return j + 1, point, accept_sum + tf.reduce_sum(weight * accept, axis=0)

    _, point, accept_sum = tf.while_loop(lambda j, *_: j < moves, one,
                                         (tf.constant(0), point, tf.zeros_like(beta)))
    return point, accept_sum / tf.cast(moves, beta.dtype)
