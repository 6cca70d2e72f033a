"""Hamiltonian Monte Carlo on a tempered path, as small pure functions (``evaluate``, ``step``).

A point on the path carries the two log densities the path mixes and their gradients in z,

    log f_beta(z) = log f_0(z) + beta (log p(x, z) - log f_0(z)),

so the target at any beta, and its gradient, is recombined exactly from the cached parts: moving
to a new temperature never reuses an energy computed at the old one. (TFP's
``sample_annealed_importance_chain`` keeps the previous temperature's cached target inside the
kernel, which makes the accept test wrong by the size of the AIS increment.)

One HMC move (``step``): momentum p ~ N(0, I); L leapfrog steps of size eps under f_beta; accept
with probability min(1, exp(H0 - H1)), H = -log f_beta(z) + |p|^2 / 2, both energies at the same
beta. It leaves f_beta invariant for any fixed eps. A proposal that diverges (non-finite energy)
is rejected.
"""

from typing import NamedTuple

import tensorflow as tf

from estimators import sampling


class PathPoint(NamedTuple):
    """Chains' positions [C, N, d] with log f_0, log p(x, z) [C, N] and their gradients."""

    z: tf.Tensor
    log_start: tf.Tensor
    log_joint: tf.Tensor
    grad_start: tf.Tensor
    grad_joint: tf.Tensor


def evaluate(log_start_fn, log_joint_fn, z):
    """A ``PathPoint`` at z: both log densities and their gradients (one backward pass each)."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        log_start = log_start_fn(z)
        log_joint = log_joint_fn(z)
    # Chains and points are independent, so the gradient of the sum is the per-row gradient.
    grad_start = tape.gradient(log_start, z)
    grad_joint = tape.gradient(log_joint, z)
    del tape
    return PathPoint(z, log_start, log_joint, grad_start, grad_joint)


def log_target(point, beta):
    """log f_beta at the point; ``beta`` [N] (one temperature per data point)."""
    return point.log_start + beta * (point.log_joint - point.log_start)


def grad_target(point, beta):
    return point.grad_start + beta[:, None] * (point.grad_joint - point.grad_start)


def step(evaluate_fn, point, beta, step_size, num_leapfrog, seed):
    """One HMC move leaving f_beta invariant. ``step_size`` broadcasts to [C, N] (per point, or
    per chain and point). Returns (new point, acceptance probability [C, N])."""
    momentum_seed, accept_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2, alg=sampling.RNG_ALG)
    )
    dtype = point.z.dtype
    eps = tf.broadcast_to(step_size, tf.shape(point.log_joint))[..., None]  # [C, N, 1]
    p0 = sampling.standard_normal(tf.shape(point.z), momentum_seed, dtype)
    half_kick = p0 + 0.5 * eps * grad_target(point, beta)

    def leapfrog(i, z, p, _):
        z = z + eps * p
        new = evaluate_fn(z)
        return i + 1, z, p + eps * grad_target(new, beta), new

    # The loop adds full kicks; the last one is a half kick, so take half back after the loop.
    _, _, p1, proposal = tf.while_loop(
        lambda i, *_: i < num_leapfrog, leapfrog, (tf.constant(0), point.z, half_kick, point)
    )
    p1 = p1 - 0.5 * eps * grad_target(proposal, beta)
    kinetic = lambda p: 0.5 * tf.reduce_sum(tf.square(p), axis=-1)  # noqa: E731
    log_accept = (log_target(proposal, beta) - kinetic(p1)) - (
        log_target(point, beta) - kinetic(p0)
    )
    log_accept = tf.where(tf.math.is_nan(log_accept), tf.constant(-float("inf"), dtype), log_accept)
    log_u = tf.math.log(sampling.uniform(tf.shape(log_accept), accept_seed, dtype))
    accept = log_u < log_accept
    moved = PathPoint(
        *(
            tf.where(accept if new.shape.rank == 2 else accept[..., None], new, old)
            for new, old in zip(proposal, point, strict=False)
        )
    )
    return moved, tf.exp(tf.minimum(log_accept, 0.0))
