"""The zoo's recipes: how each shipped model was trained, and the numbers its manifest keeps.

    train_named("digits-bernoulli-d8")     # or: estimators train digits-bernoulli-d8

``RECIPES`` holds each shipped model's data set and ``train.train`` settings; ``train_named``
retrains one and writes ``<name>.npz`` + ``<name>.json`` (``zoo.save_model``), with the numbers of
``evaluate_model`` in the manifest. The training loop itself is ``estimators.train``.
"""

from pathlib import Path

import numpy as np

from estimators import data as datasets
from estimators import methods as registry
from estimators.environment import environment_info
from estimators.reference import reference_log_marginal
from estimators.train import ELBO, train
from estimators.zoo import (
    ZOO_DIR,
    architecture,
    latent_usage,
    mean_estimate_with_se,
    save_model,
    variance_at,
)

DIGITS28_LIKELIHOOD = {
    "bernoulli": dict(dynamic_binarization=True),
    # sigma's floor sits below the dequantization noise's sd (1 / (256 sqrt 12) = 0.0011): a
    # floor above it would cost the always-blank border pixels more than an independent fit.
    "gaussian": dict(scale="learned", scale_floor=1e-3),
}
# At D = 784 the manifest's numbers are computed on the first 100 test points, with 1e4 reference
# samples per point (1e5 on all 360 would take most of an hour on 2 cores).
DIGITS28_EVALUATION = dict(points=100, reference_samples=10_000)

# The recipes of the shipped models (estimators/zoo). ``data`` is a dataset name (estimators.data);
# everything else is passed to ``train``. Retraining one reproduces the shipped files.
RECIPES = {
    "digits-bernoulli-d8": dict(
        data="digits-bernoulli",
        latent_dim=8,
        likelihood="bernoulli",
        epochs=600,
        batch_size=64,
        learning_rate=1e-3,
        patience=40,
        refine_encoder_epochs=200,
    ),
    "digits-gaussian-d8": dict(
        data="digits-gaussian",
        latent_dim=8,
        likelihood="gaussian",
        scale="learned",
        scale_floor=0.01,
        epochs=1000,
        batch_size=64,
        learning_rate=1e-3,
        patience=50,
        refine_encoder_epochs=200,
    ),
    # The twins of the two digits models with an autoregressive component (a ConditionalMADE of
    # the same hidden sizes): same data, latent size, objective, schedule and encoder refinement.
    # The binary twin overfitted 1,293 images (test log p(x) 0.42 nats below its independent
    # twin's) and leaned on its autoregressive part: a Gaussian prior on the decoder's weights
    # (weight_decay 2) and a KL warm-up over 100 epochs (the latent must carry the image before
    # the pixels can), chosen among smaller networks (64 and 64-64 hidden: worse), weight decay
    # alone (2, 4, 10) and IWAE training; see README.
    "digits-bernoulli-ar-d8": dict(
        data="digits-bernoulli",
        latent_dim=8,
        likelihood="autoregressive_bernoulli",
        decoder_hidden=(128, 128),
        weight_decay=2.0,
        warmup_epochs=100,
        epochs=600,
        batch_size=64,
        learning_rate=1e-3,
        patience=40,
        refine_encoder_epochs=200,
    ),
    "digits-gaussian-ar-d8": dict(
        data="digits-gaussian",
        latent_dim=8,
        likelihood="autoregressive_gaussian",
        decoder_hidden=(128, 128),
        scale_floor=0.01,
        epochs=1000,
        batch_size=64,
        learning_rate=1e-3,
        patience=50,
        refine_encoder_epochs=200,
    ),
    # The MNIST-sized models (D = 784; see estimators.data for what the 28x28 digits are): the
    # architecture of Burda et al. (2016)'s one-stochastic-layer models, 784-200-200-d with tanh,
    # at d = 32 and d = 50. Bernoulli models train on dynamically binarized data.
    **{
        f"digits28-{lik}-d{d}": dict(
            data=f"digits28-{lik}",
            latent_dim=d,
            likelihood=lik,
            decoder_hidden=(200, 200),
            encoder_hidden=(200, 200),
            **DIGITS28_LIKELIHOOD[lik],
            epochs=1000,
            batch_size=64,
            learning_rate=1e-3,
            patience=50,
            refine_encoder_epochs=200,
            evaluation=DIGITS28_EVALUATION,
        )
        for lik in ("bernoulli", "gaussian")
        for d in (32, 50)
    },
    "pinwheel-gaussian-d2": dict(
        data="pinwheel",
        latent_dim=2,
        likelihood="gaussian",
        scale="learned",
        scale_floor=0.01,
        init_scale=0.1,
        warmup_epochs=50,
        epochs=1000,
        batch_size=32,
        learning_rate=2e-3,
        patience=100,
    ),
    "ring-gaussian-d2": dict(
        data="ring",
        latent_dim=2,
        likelihood="gaussian",
        scale="learned",
        scale_floor=0.01,
        init_scale=0.1,
        warmup_epochs=50,
        epochs=1000,
        batch_size=32,
        learning_rate=2e-3,
        patience=100,
    ),
}

ELBO_SAMPLES = {"train": 256, "test": 1024}  # per point, for the manifest's ELBOs
ELBO_SEED = 1234
VARIANCE_REPEATS, VARIANCE_M = 16, 64  # the manifest's variances: every test point, 16 seeds


def train_named(
    name: str,
    out_dir: str | Path | None = None,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    evaluate: bool = True,
) -> dict:
    """Train the zoo model ``name`` from its recipe and save ``<name>.npz`` + ``<name>.json``.

    name: one of ``RECIPES`` (``digits-bernoulli-d8``, ``digits-gaussian-d8``,
    ``digits-bernoulli-ar-d8``, ``digits-gaussian-ar-d8``, ``pinwheel-gaussian-d2``,
    ``ring-gaussian-d2``). out_dir: where to write (default: the
    package's own zoo folder, replacing the shipped files). epochs / seed: override the recipe
    (the manifest then records the override in its reproduce command). progress: show a progress
    bar. evaluate: also compute the manifest's train/test ELBO, the reference test log p(x),
    the independent-dimension baseline and the M = 64 variances (about a minute for digits).
    Returns the manifest (a dict). Same recipe, same seed, same machine: the same weights.
    """
    if name not in RECIPES:
        raise ValueError(f"no recipe for {name!r}; choose from {', '.join(RECIPES)}")
    recipe = dict(RECIPES[name])
    overrides = {k: v for k, v in dict(epochs=epochs, seed=seed).items() if v is not None}
    recipe.update(overrides)
    data_name = recipe.pop("data")
    evaluation = recipe.pop("evaluation", {})
    if recipe.get("dynamic_binarization"):
        x_train = datasets.grey_levels("train")  # binarized afresh for every batch
    else:
        x_train = datasets.load_data(data_name, "train")
    result = train(x_train, progress=progress, **recipe)
    command = " ".join([f"estimators train {name}"] + [f"--{k} {v}" for k, v in overrides.items()])
    call = ", ".join([repr(name)] + [f"{k}={v!r}" for k, v in overrides.items()])
    info = dict(
        name=name,
        data=data_name,
        data_description=datasets.describe(data_name),
        architecture=architecture(result.model, recipe.get("scale", "learned")),
        training=dict(
            result.config,
            epochs_run=result.epochs,
            best_epoch=result.best_epoch,
            seconds=round(result.seconds, 1),
            initial_valid_elbo=result.initial_valid_elbo,
            final_valid_elbo=result.final_valid_elbo,
        ),
        reproduce=dict(
            command=command,
            python=f"from estimators.zoo.recipes import train_named; train_named({call})",
        ),
        environment=environment_info(),
    )
    if evaluate:
        info["results"] = evaluate_model(result.model, data_name, **evaluation)
    save_model(result.model, name, out_dir or ZOO_DIR, info)
    return info


def evaluate_model(model, data_name, points=None, reference_samples=None):
    """The manifest's numbers: ELBOs (with MC standard errors), the reference test log p(x) (with
    its standard error), the ELBO gap, an independent-dimension baseline and the variance of
    log p^ for naive MC, prior-IS and posterior-IS at M = 64 (per test point over 16 seeds,
    averaged over the test set), and how much the latent is used (``zoo.latent_usage``: KL per
    dimension, active dimensions, and log p(x) - log p(x | z = 0)). ``points`` (default: all)
    limits the test-set numbers to the first test points; ``reference_samples`` (default 1e5)
    sets the reference's samples per point: both for the 784-d models, where the defaults are
    slow."""
    x_train, x_test = datasets.load_data(data_name, "train"), datasets.load_data(data_name, "test")
    x_test = x_test[:points]
    reference = {} if reference_samples is None else dict(num_samples=reference_samples)
    out = {}
    for split, x in (("train", x_train), ("test", x_test)):
        elbo, se = mean_estimate_with_se(model, x, ELBO, ELBO_SAMPLES[split], ELBO_SEED)
        out[f"{split}_elbo"], out[f"{split}_elbo_se"] = elbo, se
    out["elbo_eval"] = dict(
        method=ELBO,
        num_samples=ELBO_SAMPLES,
        seed=ELBO_SEED,
        note="mean over the split of the mean of estimate(..., seed=[seed, 0]) "
        "and estimate(..., seed=[seed, 1])",
    )
    log_p, se = reference_log_marginal(model, x_test, **reference)
    out["test_log_p"] = float(np.mean(log_p))
    out["test_log_p_se"] = float(np.sqrt(np.sum(se**2)) / len(se))
    out["test_log_p_method"] = (
        "quadrature"
        if model.latent_dim <= 2
        else f"adaptive IS, {reference.get('num_samples', 100_000):,} samples per point"
    )
    out["elbo_gap"] = out["test_log_p"] - out["test_elbo"]
    out["latent"] = latent_usage(model, x_test, log_p)
    out["test_points"] = len(x_test)
    baseline = datasets.independent_baseline_log_p(data_name)[: len(x_test)]
    out["baseline_test_log_p"] = float(np.mean(baseline))
    # The registry's textbook importance samplers (the ELBO is a bound: no variance to compare).
    var = {
        m: variance_at(model, x_test, m, VARIANCE_M, VARIANCE_REPEATS)
        for m in registry.preset_default_names()
        if registry.REGISTRY[m].bound == registry.STOCHASTIC_LOWER
    }
    out["variance_m64"] = dict(
        var,
        ratio_naive_to_posterior=var[registry.method_with(baseline_role="prior")]
        / var[registry.method_with(baseline_role="posterior")],
        points=len(x_test),
        repeats=VARIANCE_REPEATS,
    )
    return out
