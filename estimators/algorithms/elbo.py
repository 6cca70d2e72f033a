"""``elbo``: the evidence lower bound, the mean log weight under posterior_is's proposal.

    ELBO^(x) = (1/M) sum_i [log p(x, z_i) - log q(z_i | x)],   z_i ~ q(z | x)

E[ELBO^] = log p(x) - KL(q || p(z | x)) <= log p(x). Its standard error is sd(log w) / sqrt(M),
streamed with the mean and spread of the log weights (``logspace.MeanVariance``): the error of
the ELBO estimate, not of log p(x) (the KL gap is a bias it does not see).
"""

from estimators.algorithms import importance

VARIANT = importance.Variant(
    finish=importance.elbo_finish, needs_log_w_spread=True, reports_khat=False
)


def run(spec, model, x, num_samples, seed, context):
    return importance.run(spec, model, x, num_samples, seed, context, VARIANT)


def compile_options(spec, num_samples, chunk_size):
    return {}  # no running top: the ELBO reports no k-hat
