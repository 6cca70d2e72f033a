from estimators.models.amortized_posterior import AmortizedPosterior
from estimators.models.autoregressive import AutoregressiveLikelihood, ConditionalMADE
from estimators.models.base import LatentVariableModel
from estimators.models.callable_model import CallableModel
from estimators.models.gaussian_mixture import GaussianMixture
from estimators.models.infinite_mixture import InfiniteMixture
from estimators.models.linear_gaussian import LinearGaussian

__all__ = [
    "AmortizedPosterior",
    "AutoregressiveLikelihood",
    "CallableModel",
    "ConditionalMADE",
    "GaussianMixture",
    "InfiniteMixture",
    "LatentVariableModel",
    "LinearGaussian",
]
