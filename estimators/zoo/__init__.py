"""The model zoo: trained infinite mixtures shipped with the package, loaded without training.

    load_model("digits-bernoulli-d8")   -> InfiniteMixture with .amortized_posterior set
    manifest("digits-bernoulli-d8")     -> dict: data, seed, epochs, train/test ELBO, test log p(x), ...
    available_models()                  -> names of the shipped models

Each model is two small files in this folder: ``<name>.npz`` (the weights, plain float arrays,
loaded with ``allow_pickle=False``) and ``<name>.json`` (the manifest: architecture, training
settings, results and the command that reproduces them, ``estimators train <name>``), read by
``estimators.manifests`` (no TensorFlow needed).
Weights are stored under the keys ``decoder/w0, decoder/b0, ...``, ``encoder/w0, ...`` and, for a
learned Gaussian scale, ``log_scale``.
"""
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from estimators.files import atomic_write
from estimators.manifests import ZOO_DIR, manifest
from estimators.manifests import available_models as available_models  # re-exported
from estimators.models import AmortizedPosterior, InfiniteMixture
from estimators.nn import MLP


def load_model(name: str, directory: str | Path | None = None,
               dtype: tf.DType = tf.float32) -> InfiniteMixture:
    """The trained InfiniteMixture ``name`` with its encoder as ``.amortized_posterior``."""
    spec = manifest(name, directory)["architecture"]
    with np.load(Path(directory or ZOO_DIR) / f"{name}.npz", allow_pickle=False) as arrays:
        return model_from_arrays(dict(arrays), spec, dtype=dtype)


def model_from_arrays(arrays, spec, dtype=tf.float32):
    """Rebuild a model from its weight arrays and the manifest's ``architecture`` dict."""
    decoder = MLP.from_arrays(arrays, spec["activation"], prefix="decoder/", dtype=dtype)
    encoder = MLP.from_arrays(arrays, spec["activation"], prefix="encoder/", dtype=dtype)
    kwargs = {}
    if spec["likelihood"] == "gaussian":
        if spec["scale"] == "learned":
            np_dtype = tf.as_dtype(dtype).as_numpy_dtype
            kwargs["log_scale"] = tf.Variable(arrays["log_scale"].astype(np_dtype), name="log_scale")
        else:
            kwargs["scale"] = float(spec["scale"])
    model = InfiniteMixture(decoder, spec["latent_dim"], spec["likelihood"], dtype=dtype, **kwargs)
    model.amortized_posterior = AmortizedPosterior(encoder)
    return model


def model_to_arrays(model):
    """The weights of a zoo-style model (MLP decoder and encoder) as a flat dict of arrays."""
    arrays = {**model.decoder.to_arrays("decoder/"),
              **model.amortized_posterior.encoder.to_arrays("encoder/")}
    if model.log_scale is not None:
        arrays["log_scale"] = model.log_scale.numpy()
    return arrays


def architecture(model, scale):
    """The manifest's description of a model, enough for ``model_from_arrays``."""
    return dict(latent_dim=model.latent_dim, data_dim=model.data_dim,
                likelihood=model.likelihood_kind, activation=model.decoder.activation,
                decoder_sizes=model.decoder.sizes,
                encoder_sizes=model.amortized_posterior.encoder.sizes,
                scale="learned" if model.log_scale is not None else scale)


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

    runs = np.stack([np.asarray(estimate(model, x, method, num_samples, seed=[seed, r]), np.float64)
                     for r in range(repeats)])
    return float(np.mean(np.var(runs, axis=0, ddof=1)))


# ----------------------------------------------------------------------------- the digits preset

DIGITS_MODELS = ("digits-bernoulli-d8", "digits-gaussian-d8")


def digits_preset(quick=False):
    """The ``digits`` preset: the four estimators on the shipped digits models.

    Returns dict(models={name: model}, data={name: x_test[:n]}, methods=[...],
    num_samples=[1, 4, ..., 2^14], repeats=R, description=...): the fields of
    ``estimators.presets.Preset``, so ``Preset(**digits_preset(quick))`` registers it. ``quick`` shrinks it to a smoke run of seconds
    (4 points, M <= 256, 3 repeats). Data are the first test points of each model's test split.
    """
    from estimators.data import load_data
    from estimators.estimator import METHODS

    num_points, max_log4, repeats = (4, 4, 3) if quick else (32, 7, 10)
    models = {name: load_model(name) for name in DIGITS_MODELS}
    data = {name: load_data(name, "test")[:num_points] for name in DIGITS_MODELS}
    return dict(models=models, data=data, methods=list(METHODS),
                num_samples=[4 ** i for i in range(max_log4 + 1)], repeats=repeats,
                description="Trained VAEs on 8x8 digits (D = 64, d = 8; Bernoulli and Gaussian): "
                            "naive MC collapses in 64 dimensions, posterior-IS does not")
