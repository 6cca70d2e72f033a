"""``naive_mc``: importance sampling from the prior, the simplest estimator of p(x).

    z_1..z_M ~ p(z),   log p^(x) = logsumexp_i log p(x | z_i) - log M

Unbiased for p(x) (a stochastic lower bound on log p(x)), with a variance that explodes when the
posterior is narrow next to the prior: most z land where p(x | z) is negligible.
"""

from estimators.algorithms import importance

VARIANT = importance.Variant(proposal=importance.PRIOR)


def run(spec, model, x, num_samples, seed, context):
    return importance.run(spec, model, x, num_samples, seed, context, VARIANT)


compile_options = importance.compile_options
