"""The model zoo: trained infinite mixtures shipped with the package, loaded without training.

    load_model("digits-bernoulli-d8")   -> InfiniteMixture with .amortized_posterior set
    manifest("digits-bernoulli-d8")     -> dict: data, seed, epochs, train/test ELBO, test log p(x), ...
    available_models()                  -> names of the shipped models

Each model is two small files in this folder: ``<name>.npz`` (the weights, plain float arrays,
loaded with ``allow_pickle=False``) and ``<name>.json`` (the manifest: architecture, training
settings, results and the command that reproduces them, ``estimators train <name>``), read by
``estimators.manifests`` (no TensorFlow needed).
Weights are stored under the keys ``decoder/w0, decoder/b0, ...``, ``encoder/w0, ...`` and, for a
learned Gaussian scale, ``log_scale``; an autoregressive decoder (``ConditionalMADE``) adds its
weights on z as ``decoder/v0, ...``.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from estimators.files import atomic_write
from estimators.manifests import ZOO_DIR, manifest
from estimators.manifests import available_models as available_models  # re-exported
from estimators.models import AmortizedPosterior, InfiniteMixture
from estimators.models.autoregressive import AUTOREGRESSIVE_KINDS, ConditionalMADE
from estimators.nn import MLP


def load_model(
    name: str, directory: str | Path | None = None, dtype: tf.DType = tf.float32
) -> InfiniteMixture:
    """The trained InfiniteMixture ``name`` with its encoder as ``.amortized_posterior``."""
    spec = manifest(name, directory)["architecture"]
    with np.load(Path(directory or ZOO_DIR) / f"{name}.npz", allow_pickle=False) as arrays:
        return model_from_arrays(dict(arrays), spec, dtype=dtype)


def model_from_arrays(arrays, spec, dtype=tf.float32):
    """Rebuild a model from its weight arrays and the manifest's ``architecture`` dict."""
    encoder = MLP.from_arrays(arrays, spec["activation"], prefix="encoder/", dtype=dtype)
    if spec["likelihood"] in AUTOREGRESSIVE_KINDS:
        network = ConditionalMADE.from_arrays(
            arrays,
            spec["activation"],
            prefix="decoder/",
            num_params=AUTOREGRESSIVE_KINDS[spec["likelihood"]],
            dtype=dtype,
        )
        model = InfiniteMixture(
            network,
            spec["latent_dim"],
            spec["likelihood"],
            min_scale=spec["min_scale"],
            dtype=dtype,
        )
        model.amortized_posterior = AmortizedPosterior(encoder)
        return model
    decoder = MLP.from_arrays(arrays, spec["activation"], prefix="decoder/", dtype=dtype)
    kwargs = {}
    if spec["likelihood"] == "gaussian":
        if spec["scale"] == "learned":
            np_dtype = tf.as_dtype(dtype).as_numpy_dtype
            kwargs["log_scale"] = tf.Variable(
                arrays["log_scale"].astype(np_dtype), name="log_scale"
            )
        else:
            kwargs["scale"] = float(spec["scale"])
    model = InfiniteMixture(decoder, spec["latent_dim"], spec["likelihood"], dtype=dtype, **kwargs)
    model.amortized_posterior = AmortizedPosterior(encoder)
    return model


def model_to_arrays(model):
    """The weights of a zoo-style model (MLP decoder and encoder) as a flat dict of arrays."""
    arrays = {
        **model.decoder.to_arrays("decoder/"),
        **model.amortized_posterior.encoder.to_arrays("encoder/"),
    }
    if model.log_scale is not None:
        arrays["log_scale"] = model.log_scale.numpy()
    return arrays


def architecture(model, scale):
    """The manifest's description of a model, enough for ``model_from_arrays``."""
    if model.autoregressive:
        return dict(
            latent_dim=model.latent_dim,
            data_dim=model.data_dim,
            likelihood=model.likelihood_kind,
            activation=model.decoder.activation,
            decoder="ConditionalMADE (masked MLP in x, z fed to every layer)",
            decoder_hidden=model.decoder.hidden_units,
            min_scale=model.min_scale,
            encoder_sizes=model.amortized_posterior.encoder.sizes,
        )
    return dict(
        latent_dim=model.latent_dim,
        data_dim=model.data_dim,
        likelihood=model.likelihood_kind,
        activation=model.decoder.activation,
        decoder_sizes=model.decoder.sizes,
        encoder_sizes=model.amortized_posterior.encoder.sizes,
        scale="learned" if model.log_scale is not None else scale,
    )


def save_model(model, name, directory, info):
    """Write ``<name>.npz`` and ``<name>.json`` (``info`` plus the architecture) atomically."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{name}.npz", lambda f: np.savez_compressed(f, **model_to_arrays(model)))
    text = json.dumps(info, indent=2, sort_keys=False) + "\n"
    atomic_write(folder / f"{name}.json", lambda f: f.write(text.encode()))
    return folder / f"{name}.npz", folder / f"{name}.json"


# ----------------------------------------------------------------------------- evaluation


def mean_estimate_with_se(model, x, method, num_samples, seed):
    """Mean over the rows of x of ``estimate(...)`` and the Monte Carlo standard error of that mean.

    Two independent runs a, b (seeds [seed, 0], [seed, 1]) give e_n = (a_n + b_n) / 2. Their
    difference d_n = a_n - b_n has variance 2 s_n^2 (s_n^2: one run's variance at point n), so
    Var(mean_n e_n) = sum_n s_n^2 / (2 N^2) is estimated by sum_n d_n^2 / (4 N^2):
        SE = sqrt(sum_n d_n^2) / (2 N).
    """
    from estimators.estimator import estimate

    a = np.asarray(estimate(model, x, method, num_samples, seed=[seed, 0]), np.float64)
    b = np.asarray(estimate(model, x, method, num_samples, seed=[seed, 1]), np.float64)
    return float(np.mean((a + b) / 2)), float(np.sqrt(np.sum((a - b) ** 2)) / (2 * len(a)))


def variance_at(model, x, method, num_samples, repeats=16, seed=0):
    """Per-point variance of ``method``'s estimate over ``repeats`` seeds, averaged over points."""
    from estimators.estimator import estimate

    runs = np.stack(
        [
            np.asarray(estimate(model, x, method, num_samples, seed=[seed, r]), np.float64)
            for r in range(repeats)
        ]
    )
    return float(np.mean(np.var(runs, axis=0, ddof=1)))


ACTIVE_KL_THRESHOLD = 0.01  # nats: a latent dimension with less average KL is counted unused


def latent_usage(model, x, log_p, threshold=ACTIVE_KL_THRESHOLD):
    """How much the model uses its latent, on data x [N, D] with reference log p(x) [N].

    kl_per_dim[j] = mean_n KL(q(z_j | x_n) || N(0, 1))
                  = mean_n [ (mu_j^2 + sigma_j^2 - 1) / 2 - log sigma_j ]   (the encoder's q)
    active_dims   = #{j : kl_per_dim[j] > threshold} (a collapsed dimension has q = prior, KL 0);
    rate          = sum_j kl_per_dim[j] = mean_n KL(q(z | x_n) || p(z)): about the information
                    I(x; z) the latent carries (exactly so for q = p(z | x), on the model's data);
    latent_carries = mean_n [log p(x_n) - log p(x_n | z = 0)]: what the mixture over z adds to
                    the component at the prior mean. Large for an independent-pixel decoder (the
                    image is in z); small when an autoregressive decoder explains x by itself.
    """
    x = model.check_data(x)
    q = model.amortized_posterior(x)
    mu, sigma = np.asarray(q.mean(), np.float64), np.asarray(q.stddev(), np.float64)
    kl = np.mean(0.5 * (mu**2 + sigma**2 - 1.0) - np.log(sigma), axis=0)
    z0 = tf.zeros([len(mu), model.latent_dim], model.dtype)
    log_p_at_mean = np.asarray(model.likelihood(z0).log_prob(x), np.float64)
    return dict(
        kl_per_dim=[float(v) for v in kl],
        active_dims=int(np.sum(kl > threshold)),
        active_threshold_nats=threshold,
        rate=float(np.sum(kl)),
        log_p_given_prior_mean=float(np.mean(log_p_at_mean)),
        latent_carries=float(np.mean(np.asarray(log_p, np.float64) - log_p_at_mean)),
        note="kl_per_dim: mean over the test set of KL(q(z_j|x) || N(0,1)) under the "
        "encoder; active: above active_threshold_nats; rate: their sum; "
        "latent_carries: test log p(x) - mean log p(x | z = 0)",
    )


# ----------------------------------------------------------------------------- the digits preset

DIGITS_MODELS = ("digits-bernoulli-d8", "digits-gaussian-d8")


def digits_preset(quick=False):
    """The ``digits`` preset: the importance samplers, AIS and SMC on the shipped digits models.

    Returns dict(models={name: model}, data={name: x_test[:n]}, methods=[...],
    num_samples={method: [M, ...]} (1, 4, ..., 2^14 for importance sampling; K chains or particles
    for AIS and SMC), repeats=R, description=...): the fields of
    ``estimators.presets.Preset``, so ``Preset(**digits_preset(quick))`` registers it. ``quick`` shrinks it to a smoke run of seconds
    (4 points, M <= 256, 3 repeats). Data are the first test points of each model's test split.
    """
    from estimators import methods as registry
    from estimators.data import load_data

    num_points, max_log4, repeats = (4, 4, 3) if quick else (32, 7, 10)
    models = {name: load_model(name) for name in DIGITS_MODELS}
    data = {name: load_data(name, "test")[:num_points] for name in DIGITS_MODELS}
    importance = {m: [4**i for i in range(max_log4 + 1)] for m in registry.preset_default_names()}
    # AIS at two budgets: K chains x T temperatures x L = 10 leapfrog steps per point. SMC with
    # K particles (and 16 pilot particles); target_ess = 0.9: at the default 0.5 it tempers from
    # the encoder's q(z|x) in 2-3 stages here and is hardly better than posterior-IS.
    ais = registry.method_with(sandwich_side="lower")
    smc = registry.method_with(samples="particles")
    annealing = {
        f"{ais}:steps=50": [4, 16],
        f"{ais}:steps=200": [4, 16],
        f"{smc}:target_ess=0.9": [16, 64],
    }
    return dict(
        models=models,
        data=data,
        methods=[*importance, *annealing],
        num_samples=importance | annealing,
        repeats=repeats,
        description="Trained VAEs on 8x8 digits (D = 64, d = 8; Bernoulli and Gaussian): "
        "naive MC collapses in 64 dimensions, posterior-IS does not",
    )


# ----------------------------------------------------------------------------- the autoregressive preset

# Each digits model beside its twin with an autoregressive component (same data, same d = 8).
AUTOREGRESSIVE_MODELS = (
    "digits-bernoulli-d8",
    "digits-bernoulli-ar-d8",
    "digits-gaussian-d8",
    "digits-gaussian-ar-d8",
)


def autoregressive_preset(quick=False):
    """The ``autoregressive`` preset: every estimator on the digits models with autoregressive
    components and on their independent-pixel twins (fields of ``estimators.presets.Preset``).

    Same grid as ``digits_preset``: the first 32 test points of each model's data, M = 1, 4, ...,
    4^7 = 16384, 10 repeats (``quick``: 4 points, M <= 256, 3 repeats). The report adds each
    model's manifest numbers (active latent dimensions, what the latent carries) to its own.
    """
    from estimators import methods as registry
    from estimators.data import load_data

    num_points, max_log4, repeats = (4, 4, 3) if quick else (32, 7, 10)
    models = {name: load_model(name) for name in AUTOREGRESSIVE_MODELS}
    data = {name: load_data(name, "test")[:num_points] for name in AUTOREGRESSIVE_MODELS}
    return dict(
        models=models,
        data=data,
        methods=registry.preset_default_names(),
        num_samples=[4**i for i in range(max_log4 + 1)],
        repeats=repeats,
        description="Infinite mixtures of autoregressive components (MADE decoders, -ar) "
        "beside their independent-pixel twins on 8x8 digits (D = 64, d = 8): "
        "a stronger component uses the latent less and moves the ELBO gap "
        "and the estimators' variance",
    )


# ----------------------------------------------------------------------------- the digits28 preset

# The MNIST-sized models (D = 784): digits28 runs the d = 32 pair, digits28-full all four.
DIGITS28_MODELS = (
    "digits28-bernoulli-d32",
    "digits28-gaussian-d32",
    "digits28-bernoulli-d50",
    "digits28-gaussian-d50",
)
SIMULATED = "-simulated"  # the suffix of a model's entry on data simulated with its latents
DIGITS28_SIZES = {
    # points (test, simulated), repeats, AIS/BDMC temperatures, IWAE's largest M
    "quick": dict(points=(2, 2), repeats=2, steps=(10, 20), iwae=(1, 16)),
    "default": dict(points=(6, 3), repeats=3, steps=(100, 1000), iwae=(1, 10, 100, 1000, 5000)),
    "full": dict(
        points=(100, 25), repeats=10, steps=(100, 1000, 10000), iwae=(1, 10, 100, 1000, 5000)
    ),
}


def digits28_preset(size="default", models=None):
    """The ``digits28`` preset (fields of ``estimators.presets.Preset``): the field's table on
    the MNIST-sized models (D = 784, d = 32 or 50).

    Per model two entries: ``<name>`` on its first test points and ``<name>-simulated`` on
    points drawn with their latents (x, z) ~ p(x, z), where reverse AIS (BDMC) can start from the
    exact posterior draws and sandwich log p(x). Methods: posterior-IS with the encoder (the
    IWAE bound) at M up to 5000, the ELBO, forward AIS (K = 16, from the encoder) at T = 100 and
    1000, reverse AIS at the same T on the simulated points, SMC (K = 16 and 64 particles).
    ``size``: "default" (6 test + 3 simulated points, 3 repeats: under 20 minutes on 2 cores),
    "quick" (a smoke run) or "full" (100 + 25 points, 10 repeats, T up to 10,000: for a
    cluster or a GPU). ``models``: zoo names (default: the d = 32 Bernoulli and Gaussian pair;
    ``full``: all four).
    """
    from estimators import methods as registry
    from estimators.data import load_data

    sizes = DIGITS28_SIZES[size]
    names = models or (DIGITS28_MODELS if size == "full" else DIGITS28_MODELS[:2])
    n_test, n_sim = sizes["points"]
    model_set, data, latents = {}, {}, {}
    for name in names:
        model = load_model(name)
        model_set[name] = model
        data[name] = load_data(name, "test")[:n_test]
        x, z = model.sample(n_sim, seed=2024, return_latents=True)
        model_set[name + SIMULATED] = model
        data[name + SIMULATED], latents[name + SIMULATED] = x.numpy(), z.numpy()
    iwae = registry.method_with(baseline_role="posterior")
    elbo = registry.method_with(returns="ELBO")
    lower, upper = (registry.method_with(sandwich_side=side) for side in ("lower", "upper"))
    smc = registry.method_with(samples="particles")
    chains = 16
    annealing = {f"{side}:steps={T}": [chains] for T in sizes["steps"] for side in (lower, upper)}
    num_samples = {
        iwae: list(sizes["iwae"]),
        elbo: [1, 100] if size != "quick" else [1],
        **annealing,
        f"{smc}:target_ess=0.9": [16, 64] if size != "quick" else [16],
    }
    return dict(
        models=model_set,
        data=data,
        latents=latents,
        methods=list(num_samples),
        num_samples=num_samples,
        repeats=sizes["repeats"],
        min_chunk=chains,
        description="The field's table at MNIST size (28x28 digits, D = 784, d = 32): "
        "IWAE, AIS, SMC and the ELBO at equal seconds; the BDMC sandwich on simulated points",
    )
