"""estimators: bias, variance and speed of Monte Carlo estimators of log p(x).

    from estimators import LinearGaussian, estimate
    model = LinearGaussian(W, b, sigma=0.5)
    log_p_hat = estimate(model, x, "posterior_is", num_samples=1024, seed=0)
"""
from estimators.estimate import METHODS, estimate
from estimators.models import (AmortizedPosterior, GaussianMixture, InfiniteMixture,
                               LatentVariableModel, LinearGaussian)
from estimators.nn import MLP

__all__ = ["METHODS", "MLP", "AmortizedPosterior", "GaussianMixture", "InfiniteMixture",
           "LatentVariableModel", "LinearGaussian", "estimate"]
