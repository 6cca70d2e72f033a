"""``posterior_is``: importance sampling from q(z | x), the IWAE bound when q is amortized.

    z_1..z_M ~ q(z | x),   log p^(x) = logsumexp_i [log p(x, z_i) - log q(z_i | x)] - log M

q is the exact posterior p(z | x) where the model has one (then every weight equals p(x): zero
variance), else the model's amortized q_phi(z | x), or ``proposal=``.
"""

from estimators.algorithms import importance

VARIANT = importance.POSTERIOR


def run(spec, model, x, num_samples, seed, context):
    return importance.run(spec, model, x, num_samples, seed, context, VARIANT)


compile_options = importance.compile_options
