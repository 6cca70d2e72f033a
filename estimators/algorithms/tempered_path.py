"""The tempered path from a start density f_0 to p(x, z), shared by AIS, BDMC and SMC:

    log f_beta(z) = log f_0(z) + beta (log p(x, z) - log f_0(z)),   beta in [0, 1]

f_0 is the prior p(z) or a posterior q(z | x) (``resolve_start``). ``tempered_path`` gives the
path's two ends as used inside a compiled function: ``evaluate(z)`` (log f_0 and log p(x, z)
with their gradients, ``hmc.evaluate``) and ``sample_start(size, seed)``.
"""

import tensorflow as tf

from estimators import sampling
from estimators.algorithms import hmc


def resolve_start(spec, model, context):
    """ "prior" or "posterior": ``start=auto`` means the posterior where one exists."""
    start = spec.kwargs["start"]
    if start == "auto":
        has = (
            context.proposal is not None
            or model.has_exact_posterior
            or model.amortized_posterior is not None
        )
        start = "posterior" if has else "prior"
    return start


def tempered_path(model, x, posterior):
    """The ends of the path f_beta = f_0^(1 - beta) p(x, z)^beta for data x [N, D], as used
    inside a compiled function: (evaluate, sample_start). f_0 is q(z|x) = ``posterior(x)``, or
    the prior p(z) when ``posterior`` is None; ``evaluate(z)`` is ``hmc.evaluate`` of log f_0 and
    log p(x, z) at z [..., N, d]; ``sample_start(size, seed)`` draws [size, N, d] from f_0."""
    q = posterior(x) if posterior is not None else None
    log_start = q.log_prob if q is not None else model.prior.log_prob

    def log_joint(z):
        return model.prior.log_prob(z) + model.likelihood(z).log_prob(x)

    def evaluate(z):
        return hmc.evaluate(log_start, log_joint, z)

    def sample_start(size, seed):
        if q is not None:
            return sampling.sample(q, [size], seed)
        return sampling.sample(model.prior, [size, tf.shape(x)[0]], seed)

    return evaluate, sample_start
