"""``prior_is``: importance sampling from a fixed proposal q(z) that does not look at x.

    z_1..z_M ~ q(z),   log w_i = log p(z_i) + log p(x | z_i) - log q(z_i)

By default q is a Gaussian moment-matched to the aggregate posterior (1/N) sum_n p(z | x_n) of
the data set (``importance.default_prior_proposal``); ``proposal=`` gives another (batch shape []).
"""

from estimators.algorithms import importance

VARIANT = importance.Variant(proposal=importance.FIXED)


def run(spec, model, x, num_samples, seed, context):
    return importance.run(spec, model, x, num_samples, seed, context, VARIANT)


compile_options = importance.compile_options
