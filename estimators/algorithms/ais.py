"""``ais``: forward annealed importance sampling (Neal 2001), K chains per data point.

    log p^(x) = log (1/K) sum_k w_k,   E[w_k] = p(x)   (a stochastic lower bound on log p(x))

The path, schedules, HMC moves and step-size tuning are in ``annealing``; this file only chooses
the forward direction. Diagnostics: Kish ESS of the K weights, mean HMC acceptance, final step.
"""

from estimators.algorithms import annealing


def run(spec, model, x, num_chains, seed, context):
    return annealing.run(spec, model, x, num_chains, seed, context, reverse=False)


compile_options = annealing.compile_options
