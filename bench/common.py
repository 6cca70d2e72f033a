"""Fixed models and data shared by every benchmark.

APPEND ONLY. asv compares numbers across commits, so a model or data set defined here must never
change once results exist for it: to benchmark something new, add a new name; never edit an old one.

Everything is built with NumPy from fixed seeds, never with the library's own samplers or
initialisers, so the models and data a benchmark sees do not move when the code under test moves.

TensorFlow is imported only inside functions: the accuracy benchmarks read numbers computed once
in ``setup_cache`` and their processes then start in a fraction of a second, without TensorFlow.
"""

import functools
import time

import numpy as np

from estimators import methods as registry

MODELS = ("gmm", "linear_gaussian", "infinite_mixture")
# The methods come from the one registry: the textbook importance samplers (cost M per point).
# AIS, whose cost is K x T x L, has its own benchmarks (annealing.py).
METHODS = tuple(registry.preset_default_names())


method_with = registry.method_with
NAIVE_MC = method_with(baseline_role="prior")  # importance sampling from the prior
POSTERIOR_IS = method_with(baseline_role="posterior")  # importance sampling from q(z|x)
AIS = method_with(sandwich_side="lower")  # forward annealed importance sampling
NUM_POINTS = 32  # data points x per call; each gets its own M samples
DATA_SEED = 1234


def _gmm_arrays():
    """8 well-separated diagonal Gaussians in 8 dimensions."""
    rng = np.random.default_rng(101)
    weights = rng.dirichlet(np.full(8, 5.0))
    locs = rng.normal(0.0, 3.0, size=(8, 8))
    scales = rng.uniform(0.5, 1.5, size=(8, 8))
    return weights, locs, scales


def _linear_gaussian_arrays():
    """Probabilistic PCA: x = W z + b + 0.5 eps, z in R^4, x in R^16."""
    rng = np.random.default_rng(102)
    return rng.normal(size=(16, 4)), rng.normal(size=16), 0.5


def _decoder_arrays():
    """A fixed tanh MLP decoder z (2) -> 32 -> 32 -> x (8); Glorot-scaled normal weights."""
    rng = np.random.default_rng(103)
    sizes = [2, 32, 32, 8]
    arrays = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        arrays[f"w{i}"] = (
            rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=(fan_in, fan_out)) * 2.0
        )
        arrays[f"b{i}"] = rng.normal(0.0, 0.5, size=fan_out)
    return arrays


INFINITE_MIXTURE_SCALE = 0.3


def _decode(arrays, z):
    """NumPy forward pass of the decoder (used to draw the data, independently of the library)."""
    h = np.tanh(z @ arrays["w0"] + arrays["b0"])
    h = np.tanh(h @ arrays["w1"] + arrays["b1"])
    return h @ arrays["w2"] + arrays["b2"]


def _encoder_arrays():
    """A one-layer amortized posterior q(z|x) = N(A x + c, diag s^2) for the infinite mixture.

    No training: A, c are the least-squares regression of z on x over 4096 prior draws, and s is
    the residual standard deviation (a deliberately wide, safe proposal). Stored in the layout
    ``AmortizedPosterior`` reads: one linear layer whose output is [loc, softplus^-1(scale)].
    """
    rng = np.random.default_rng(104)
    dec = _decoder_arrays()
    z = rng.normal(size=(4096, 2))
    x = _decode(dec, z) + INFINITE_MIXTURE_SCALE * rng.normal(size=(4096, 8))
    design = np.hstack([x, np.ones((4096, 1))])
    coef, *_ = np.linalg.lstsq(design, z, rcond=None)  # [9, 2]
    resid_sd = (z - design @ coef).std(axis=0)
    raw_scale = np.log(np.expm1(resid_sd))  # softplus^-1
    return {
        "w0": np.hstack([coef[:-1], np.zeros((8, 2))]),
        "b0": np.concatenate([coef[-1], raw_scale]),
    }


def build_model(name):
    """A new instance of the named model (its compiled-estimator cache is empty)."""
    from estimators import MLP, AmortizedPosterior, GaussianMixture, InfiniteMixture, LinearGaussian

    if name == "gmm":
        return GaussianMixture(*_gmm_arrays())
    if name == "linear_gaussian":
        return LinearGaussian(*_linear_gaussian_arrays())
    if name == "infinite_mixture":
        decoder = MLP.from_arrays(_decoder_arrays(), activation="tanh")
        model = InfiniteMixture(decoder, latent_dim=2, scale=INFINITE_MIXTURE_SCALE)
        model.amortized_posterior = AmortizedPosterior(
            MLP.from_arrays(_encoder_arrays(), activation="linear")
        )
        return model
    raise ValueError(f"unknown benchmark model {name!r}; choose from {MODELS}")


@functools.cache
def cached_model(name):
    """One instance per process, so the compilation done in ``setup`` is reused by the timed calls."""
    return build_model(name)


@functools.cache
def data(name, num_points=NUM_POINTS, seed=DATA_SEED):
    """x ~ p(x) for the named model, [num_points, D] float32, drawn with NumPy (ancestral sampling)."""
    rng = np.random.default_rng([seed, MODELS.index(name)])
    if name == "gmm":
        weights, locs, scales = _gmm_arrays()
        k = rng.choice(len(weights), size=num_points, p=weights)
        x = locs[k] + scales[k] * rng.normal(size=locs[k].shape)
    elif name == "linear_gaussian":
        W, b, sigma = _linear_gaussian_arrays()
        z = rng.normal(size=(num_points, W.shape[1]))
        x = z @ W.T + b + sigma * rng.normal(size=(num_points, W.shape[0]))
    elif name == "infinite_mixture":
        z = rng.normal(size=(num_points, 2))
        x = _decode(_decoder_arrays(), z) + INFINITE_MIXTURE_SCALE * rng.normal(
            size=(num_points, 8)
        )
    else:
        raise ValueError(f"unknown benchmark model {name!r}; choose from {MODELS}")
    x = x.astype(np.float32)
    x.setflags(write=False)
    return x


@functools.cache
def warm_up_tensorflow():
    """Pay TensorFlow's one-off start-up (eager context, XLA service) once per process."""
    from estimators import estimate

    estimate(build_model("linear_gaussian"), data("linear_gaussian"), NAIVE_MC, 1, seed=0)


def best_seconds(fn, calls=3):
    """The fastest of ``calls`` timed calls of ``fn()``, after one untimed call (compilation)."""
    fn()
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def evaluation_rate(model, x, method, num_samples):
    """Evaluations of log p(x | z) (with gradients, for AIS) per second over all points of x,
    counted as the registry counts them (best of 3 warm calls)."""
    from estimators import estimate

    def call():
        estimate(model, x, method, num_samples, seed=1).numpy()

    return registry.parse(method).evaluations(num_samples) * x.shape[0] / best_seconds(call)
