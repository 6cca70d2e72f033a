"""``bdmc``: reverse AIS from exact posterior samples (Grosse et al. 2015), K chains per point.

Chains start at z ~ p(z | x) and walk the AIS path from beta = 1 back to the start density;
the reverse weights satisfy E[w_rev] = 1 / p(x), so

    log p^_upper(x) = -log (1/K) sum_k w_rev,k       (a stochastic upper bound on log p(x)).

With ``ais`` on the same path it sandwiches log p(x); the width of [ais, bdmc] bounds the error
of both. Exact posterior draws come from the model's exact posterior (linear-Gaussian), or, on
any model, from data simulated with ``model.sample(n, seed, return_latents=True)``: pass the
latents as ``estimate(..., posterior_samples=z)`` (every chain of a point starts from its draw).
"""

from estimators.algorithms import annealing


def run(spec, model, x, num_chains, seed, context):
    return annealing.run(spec, model, x, num_chains, seed, context, reverse=True)


compile_options = annealing.compile_options
