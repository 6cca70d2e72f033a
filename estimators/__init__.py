"""estimators: bias, variance and speed of Monte Carlo estimators of log p(x).

    from estimators import LinearGaussian, estimate
    model = LinearGaussian(W, b, sigma=0.5)
    log_p_hat = estimate(model, x, "posterior_is", num_samples=1024, seed=0)

The public names below are imported lazily (PEP 562 ``__getattr__``): ``import estimators.summary``
or ``estimators report`` must not pay for loading TensorFlow (docs/architecture.md), and Python runs this
file before any submodule. ``from estimators import estimate`` works as usual. (The estimator
lives in ``estimators.estimator``: a submodule named ``estimate`` would shadow the function.)
"""

from estimators.lazy import lazy_exports

_EXPORTS = {
    "METHODS": "estimators.estimator",
    "estimate": "estimators.estimator",
    "AmortizedPosterior": "estimators.models",
    "CallableModel": "estimators.models",
    "ConditionalMADE": "estimators.models",
    "GaussianMixture": "estimators.models",
    "InfiniteMixture": "estimators.models",
    "LatentVariableModel": "estimators.models",
    "LinearGaussian": "estimators.models",
    "MLP": "estimators.nn",
    "reference_log_marginal": "estimators.reference",
    "load_model": "estimators.zoo",
    "load_data": "estimators.data",
    "summarize": "estimators.summary",
    "Summary": "estimators.summary",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
