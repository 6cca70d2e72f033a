"""``defensive_is``: importance sampling from the defensive mixture (Hesterberg 1995)

    r(z | x) = alpha p(z) + (1 - alpha) q(z | x),     q: posterior_is's proposal
    log w    = log p(z) + log p(x | z) - log r(z | x),   z ~ r
    log p^(x) = logsumexp_i log w_i - log M

E_r[w] = p(x) for any alpha in [0, 1), so p^ is unbiased (a stochastic lower bound on log p(x)),
and since r >= alpha p(z), every weight is at most p(x | z) / alpha: a q(z|x) that is too narrow
can no longer produce the rare huge weights that ruin posterior_is (alpha = 0 is posterior_is).
Each sample picks its component by a uniform draw (prior with probability alpha); both
components are drawn and one is kept, so a sample costs two draws, one likelihood evaluation and
both log densities. Diagnostics as posterior_is: ``ess`` and (with diagnostics) ``khat``.
"""

import numpy as np
import tensorflow as tf

from estimators import sampling
from estimators.algorithms import importance


def log_weights(model, spec, x, q, seed, size):
    """[size, N] log weights of ``size`` draws from the mixture alpha p(z) + (1 - alpha) q(z|x)."""
    alpha = spec.kwargs["alpha"]
    n = tf.shape(x)[0]
    seeds = [
        tf.random.experimental.stateless_fold_in(seed, k, alg=sampling.RNG_ALG) for k in range(3)
    ]
    z_prior = sampling.sample(model.prior, [size, n], seeds[0])
    z_q = sampling.sample(q, [size], seeds[1])
    from_prior = sampling.uniform([size, n], seeds[2], model.dtype) < alpha
    if model.latent_dim:
        from_prior = from_prior[..., None]
    z = tf.where(from_prior, z_prior, z_q)
    log_prior = model.prior.log_prob(z)
    log_q = q.log_prob(z)
    dtype = log_prior.dtype
    log_alpha = np.log(alpha) if alpha > 0 else -np.inf
    log_mixture = tf.reduce_logsumexp(
        tf.stack([log_alpha + log_prior, tf.cast(np.log1p(-alpha), dtype) + log_q]), axis=0
    )
    return log_prior + model.likelihood(z).log_prob(x) - log_mixture


VARIANT = importance.Variant(log_weights=log_weights)


def run(spec, model, x, num_samples, seed, context):
    return importance.run(spec, model, x, num_samples, seed, context, VARIANT)


compile_options = importance.compile_options
