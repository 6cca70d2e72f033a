"""Named sweep configurations: what ``estimators run --preset NAME`` runs.

A preset is a function ``quick -> Preset`` registered under a name:

    @register("mine")
    def mine(quick=False):
        '''One line that ``estimators list`` shows.'''
        model = ...                                    # import TensorFlow inside the function,
        return Preset(models={"m": model},             # so `estimators list` stays instant
                      data={"m": x}, methods=["posterior_is", "ais:steps=100"], num_samples=[1, 16, 256], repeats=32)

``get_preset(name, quick=True)`` applies ``shrink`` to any preset (a smoke run of seconds), so a
preset only needs to honour ``quick`` when even building it is slow (e.g. loading big data).
"""

from dataclasses import dataclass, field, replace

import numpy as np

from estimators import methods as registry

QUICK_REPEATS = 4
QUICK_POINTS = 16
QUICK_MAX_SAMPLES = 16


@dataclass
class Preset:
    """A sweep's inputs: ``sweep(p.models, p.methods, p.num_samples, p.repeats, p.data)``."""

    models: dict  # name -> model
    data: dict  # name -> x [N, D] (numpy)
    # names or specs from estimators.methods (default: the registry's textbook IS methods)
    methods: tuple = field(default_factory=lambda: tuple(registry.preset_default_names()))
    # the M values, or {method: [M, ...]} where methods need different budgets (AIS: K chains)
    num_samples: object = field(default_factory=lambda: [4**k for k in range(7)])
    repeats: int = 32
    description: str = ""
    min_chunk: int = 1  # see sweep(): > 1 shares one compilation across small M
    latents: dict = field(default_factory=dict)  # name -> z [N, d]: exact posterior draws (bdmc)


PRESETS = {}  # name -> function(quick: bool) -> Preset


class UnknownNameError(ValueError):
    """A preset, model or method name that does not exist."""


def register(name):
    """Decorator: make ``fn(quick=False) -> Preset`` available as preset ``name``."""

    def decorate(fn):
        PRESETS[name] = fn
        return fn

    return decorate


def describe(name):
    """The first line of the preset function's docstring."""
    return (PRESETS[name].__doc__ or "").strip().splitlines()[0] if name in PRESETS else ""


def get_preset(name: str, quick: bool = False) -> Preset:
    """Build preset ``name``; with ``quick``, shrunk to a smoke run (see ``shrink``)."""
    if name not in PRESETS:
        raise UnknownNameError(f"unknown preset {name!r}; choose from {', '.join(sorted(PRESETS))}")
    preset = PRESETS[name](quick=quick)
    if not preset.description:
        preset = replace(preset, description=describe(name))
    return shrink(preset) if quick else preset


def shrink(preset):
    """A smoke-run version: M <= 16 (at most three values), 4 repeats, 16 data points, and one
    compiled function per (model, method) (chunk 16 for every M: its timings are not meaningful)."""

    def small(values):
        return [m for m in values if m <= QUICK_MAX_SAMPLES][:3] or list(values)[:1]

    if isinstance(preset.num_samples, dict):
        num_samples = {method: small(values) for method, values in preset.num_samples.items()}
        largest = max(max(v) for v in num_samples.values())
    else:
        num_samples = small(preset.num_samples)
        largest = max(num_samples)
    return replace(
        preset,
        num_samples=num_samples,
        repeats=min(preset.repeats, QUICK_REPEATS),
        min_chunk=largest,
        data={k: np.asarray(x)[:QUICK_POINTS] for k, x in preset.data.items()},
        latents={k: np.asarray(z)[:QUICK_POINTS] for k, z in preset.latents.items()},
    )


def select(preset, models=None, methods=None, num_samples=None, repeats=None):
    """Restrict or override parts of a preset; unknown model or method names raise."""
    if models:
        unknown = [m for m in models if m not in preset.models]
        if unknown:
            raise UnknownNameError(
                f"unknown model(s) {', '.join(unknown)}; this preset has {', '.join(preset.models)}"
            )
        preset = replace(
            preset,
            models={m: preset.models[m] for m in models},
            data={m: preset.data[m] for m in models},
        )
    if methods:
        for method in methods:
            try:
                registry.parse(method)
            except ValueError as err:
                raise UnknownNameError(str(err)) from None
        preset = replace(preset, methods=tuple(methods))
    if num_samples:
        preset = replace(preset, num_samples=list(num_samples))
    if repeats:
        preset = replace(preset, repeats=int(repeats))
    return preset


# --------------------------------------------------------------------------- presets


@register("default")
def default(quick=False):
    """2-D GMM, linear-Gaussian (D=16, d=4), nonlinear 2-D-latent infinite mixture (D=12); all methods, M = 1..4096."""
    models = {
        "gmm": gaussian_mixture_2d(),
        "linear_gaussian": linear_gaussian(16, 4),
        "infinite_mixture": nonlinear_infinite_mixture(data_dim=12),
    }
    # Data drawn from each model with a fixed seed; truths are exact (GMM, linear-Gaussian) or
    # grid quadrature (the 2-D-latent infinite mixture).
    data = {name: model.sample(64, seed=2024).numpy() for name, model in models.items()}
    return Preset(models=models, data=data, num_samples=[4**k for k in range(7)], repeats=32)


@register("digits")
def digits(quick=False):
    """Trained VAEs on 8x8 digits (D = 64, d = 8; Bernoulli and Gaussian): naive MC collapses in 64 dimensions."""
    from estimators.zoo import digits_preset  # the shipped models and their data

    return Preset(**digits_preset(quick))


@register("digits28")
def digits28(quick=False):
    """The field's table at MNIST size (28x28 digits, D = 784, d = 32): IWAE to M = 5000, AIS at T = 100 and 1000, SMC, ELBO; BDMC sandwich on simulated points (~15 min)."""
    from estimators.zoo import digits28_preset

    return Preset(**digits28_preset("quick" if quick else "default"))


@register("digits28-full")
def digits28_full(quick=False):
    """digits28 at the field's scale: all four 784-d models, 100 test + 25 simulated points, 10 repeats, T up to 10,000 (hours on 2 cores: for a cluster or a GPU)."""
    from estimators.zoo import digits28_preset

    return Preset(**digits28_preset("quick" if quick else "full"))


@register("sandwich")
def sandwich(quick=False):
    """Digits VAEs on data simulated with their latents: ais below, bdmc above, the reference between, against T."""
    from estimators.zoo import DIGITS_MODELS, load_model

    num_points, steps = (4, [4, 16]) if quick else (16, [10, 100, 1000])
    models, data, latents = {}, {}, {}
    for name in DIGITS_MODELS:
        models[name] = load_model(name)
        # (x, z) ~ p(x, z): each z is an exact draw from p(z | x), which reverse AIS starts from.
        x, z = models[name].sample(num_points, seed=2024, return_latents=True)
        data[name], latents[name] = x.numpy(), z.numpy()
    lower, upper = (registry.method_with(sandwich_side=side) for side in ("lower", "upper"))
    methods = [f"{lower}:steps={T}" for T in steps] + [f"{upper}:steps={T}" for T in steps]
    return Preset(
        models=models,
        data=data,
        latents=latents,
        methods=methods,
        num_samples={m: [4] for m in methods},
        repeats=4,
        min_chunk=4,
    )


@register("autoregressive")
def autoregressive(quick=False):
    """Digits VAEs with autoregressive components (MADE, -ar) beside their independent-pixel twins; all methods."""
    from estimators.zoo import autoregressive_preset  # the shipped models and their data

    return Preset(**autoregressive_preset(quick))


@register("targets")
def targets(quick=False):
    """The field's standard targets (funnel, many-well, 40-mode GMM, breast-cancer logistic regression): log Z by AIS, SMC, fitted-Gaussian IS and naive MC against the known or referenced log Z."""
    from estimators.targets import TARGETS, load_target

    # --quick: the two cheap targets (compiling AIS and SMC per target dominates a smoke run)
    names = QUICK_TARGETS if quick else TARGETS
    models = {name: load_target(name) for name in names}
    naive = registry.method_with(baseline_role="prior")
    fitted = registry.method_with(baseline_role="posterior")  # q(z): the target's fitted Gaussian
    steps = TARGET_AIS_STEPS[quick]
    lower = registry.method_with(sandwich_side="lower")
    ais = f"{lower}:start=prior,steps={steps}"  # from the reference p(z), as the field runs it
    ais_fitted = f"{lower}:start=posterior,steps={steps}"  # from the fitted Gaussian
    smc = registry.method_with(samples="particles") + ":start=prior"
    # Few budgets per method: every new chunk size (and k-hat's tail capacity, which grows with
    # M) is a compilation, and on 2 cores compiling is most of this preset's time. SMC stays at
    # K <= 256, the sweep's largest chunk: its untimed warm-up runs K = chunk particles, so a
    # larger K would compile inside the timed call.
    importance = [256, 4096, 65536]
    num_samples = {
        naive: importance,
        fitted: importance,
        ais: [8, 32],
        ais_fitted: [8, 32],
        smc: [64, 256],
    }
    if quick:  # shrink() would make every chunk the largest M: keep them all small
        num_samples = {naive: [16], fitted: [16], ais: [8], ais_fitted: [8], smc: [16]}
    return Preset(
        models=models,
        data={name: model.data(1) for name, model in models.items()},  # one dummy point each
        methods=list(num_samples),
        num_samples=num_samples,
        repeats=8,
    )


TARGET_AIS_STEPS = {False: 1000, True: 100}  # the targets preset's AIS temperatures (by quick)
QUICK_TARGETS = ("funnel", "gmm40")


def gaussian_mixture_2d():
    """Four well-separated 2-D Gaussians on the corners of a square, unequal weights."""
    from estimators.models import GaussianMixture

    return GaussianMixture(
        weights=[0.4, 0.3, 0.2, 0.1],
        locs=[[-3.0, -3.0], [3.0, -3.0], [-3.0, 3.0], [3.0, 3.0]],
        scales=[[0.8, 0.8], [0.6, 1.0], [1.0, 0.6], [0.7, 0.7]],
    )


def linear_gaussian(data_dim, latent_dim, sigma=1.0, seed=0):
    """p(x|z) = N(W z + b, sigma^2 I) with W, b ~ N(0, 1): posterior sd ~ 1/sqrt(1 + D/sigma^2)."""
    from estimators.models import LinearGaussian

    rng = np.random.default_rng(seed)
    return LinearGaussian(rng.normal(size=(data_dim, latent_dim)), rng.normal(size=data_dim), sigma)


def nonlinear_infinite_mixture(data_dim=12, scale=0.25, seed=1):
    """A 2-D latent through a fixed random tanh MLP [2, 32, 32, D]; Gaussian noise ``scale``.

    The noise is well below the decoder's output spread, so p(z|x) is several times narrower
    than the prior (and curved): naive MC is hard, a Gaussian proposal is good but not exact.
    Its ``amortized_posterior`` is a ``regression_posterior`` (posterior_is and elbo use it).
    """
    from estimators.models import InfiniteMixture
    from estimators.nn import MLP

    decoder = MLP([2, 32, 32, data_dim], activation="tanh", seed=seed)
    decoder.weights[0].assign(decoder.weights[0] * 2.0)  # a more curved decoder
    model = InfiniteMixture(decoder, latent_dim=2, scale=scale)
    model.amortized_posterior = regression_posterior(model, seed=seed)
    return model


def autoregressive_infinite_mixture(
    likelihood="autoregressive_bernoulli",
    data_dim=6,
    latent_dim=2,
    hidden_units=(32,),
    latent_weight=2.0,
    raw_scale_bias=-1.5,
    min_scale=0.01,
    seed=0,
    posterior_pairs=20_000,
    dtype=None,
):
    """An infinite mixture of autoregressive components with a 1- or 2-D latent: exact truths.

    p(x | z) = prod_i p(x_i | x_<i, z) from a random ``ConditionalMADE`` (Glorot weights, seeded),
    its weights on z scaled by ``latent_weight`` so the mixture really depends on z. Bernoulli
    or Gaussian conditionals (``raw_scale_bias``: the Gaussian scales start near
    min_scale + softplus(raw_scale_bias), ~0.2). With latent_dim <= 2, ``log_marginal`` is grid
    quadrature: every estimator can be checked against an exact log p(x). Its
    ``amortized_posterior`` is a ``regression_posterior`` fitted on ``posterior_pairs`` draws
    (0: none, for uses that need no encoder).
    """
    import tensorflow as tf

    from estimators.models import InfiniteMixture
    from estimators.models.autoregressive import AUTOREGRESSIVE_KINDS, ConditionalMADE

    dtype = tf.float32 if dtype is None else dtype
    network = ConditionalMADE(
        data_dim, latent_dim, hidden_units, AUTOREGRESSIVE_KINDS[likelihood], seed=seed, dtype=dtype
    )
    for v in network.cond_weights:
        v.assign(v * latent_weight)
    if likelihood == "autoregressive_gaussian":
        bias = network.biases[-1]
        bias.assign(
            tf.concat(
                [bias[:data_dim], tf.fill([data_dim], tf.constant(raw_scale_bias, network.dtype))],
                axis=0,
            )
        )
    model = InfiniteMixture(network, latent_dim, likelihood, min_scale=min_scale, dtype=dtype)
    if posterior_pairs:
        model.amortized_posterior = regression_posterior(model, posterior_pairs, seed=seed)
    return model


def regression_posterior(model, num_pairs=20_000, hidden=256, ridge=1e-3, inflate=1.5, seed=0):
    """An amortized Gaussian q(z|x) fitted in closed form, without gradient training.

    Draw (z, x) ~ p(z) p(x|z) and regress on random tanh features h(x) = tanh(x A + c), by ridge
    least squares (the same design matrix for every fit):
    1. z on h(x): approximates the posterior mean E[z|x] (the minimiser of E||z - f(x)||^2);
    2. log|r| on h(x), r the residual: for r ~ N(0, s(x)^2), E log|r| = log s(x) - 0.635, so
       s(x) ~ exp(fit + 0.635) estimates the posterior spread (plus the mean fit's error);
    3. softplus^-1(inflate * s(x)) on h(x): the encoder's raw scale output.
    ``inflate`` > 1 makes q wider than p(z|x), as importance sampling wants (light-tailed
    weights): with 1.5 the default preset's posterior_is variance falls as 1/M from M = 16 on.
    Returned as an ``AmortizedPosterior`` over an ``MLP([D, hidden, 2d])``: outputs (loc, raw).
    """
    import tensorflow as tf

    from estimators.models import AmortizedPosterior
    from estimators.nn import MLP
    from estimators.sampling import sample

    rng = np.random.default_rng(seed)
    d, D = model.latent_dim, model.data_dim
    z = rng.normal(size=(num_pairs, d))
    x = (
        sample(model.likelihood(tf.constant(z, model.dtype)), [], tf.constant([seed, 1], tf.int64))
        .numpy()
        .astype(np.float64)
    )
    mean, sd = x.mean(axis=0), x.std(axis=0) + 1e-8
    proj = rng.normal(size=(D, hidden)) / np.sqrt(D)  # on standardised x: pre-activations ~ N(0, 1)
    w1 = proj / sd[:, None]
    b1 = rng.uniform(-1.0, 1.0, size=hidden) - (mean / sd) @ proj
    design = np.hstack([np.tanh(x @ w1 + b1), np.ones((num_pairs, 1))])
    gram = design.T @ design + ridge * num_pairs * np.eye(hidden + 1)

    def fit(target):
        return np.linalg.solve(gram, design.T @ target)  # [hidden + 1, d]: weights, then bias

    loc = fit(z)
    spread = np.exp(design @ fit(np.log(np.abs(z - design @ loc) + 1e-12)) + 0.635)
    raw = fit(np.log(np.expm1(inflate * spread)))  # softplus^-1
    encoder = MLP([D, hidden, 2 * d], activation="tanh", seed=seed, dtype=model.dtype)
    cast = model.dtype.as_numpy_dtype
    encoder.weights[0].assign(w1.astype(cast))
    encoder.biases[0].assign(b1.astype(cast))
    encoder.weights[1].assign(np.hstack([loc[:-1], raw[:-1]]).astype(cast))
    encoder.biases[1].assign(np.concatenate([loc[-1], raw[-1]]).astype(cast))
    return AmortizedPosterior(encoder)
