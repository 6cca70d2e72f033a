"""Implementations of the registered methods, one module per idea (see ``estimators.methods``).

Each module defines ``run(spec, model, x, num_samples, seed, context) -> (estimate [N],
diagnostics {name: [N]})``; ``estimators.estimate`` validates the inputs and dispatches to it.
Shared pieces: ``logspace`` (running logsumexp over chunks), ``hmc`` (the HMC kernel),
``annealing`` (the tempered path and the AIS loop that ``ais`` and ``bdmc`` run).
"""
