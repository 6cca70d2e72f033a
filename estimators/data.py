"""Datasets built without downloads: scikit-learn's digits (8x8, and upsampled to MNIST's 28x28)
and two 2-D toy sets.

    load_data(name, split="train" | "test") -> float32 array [N, D]

``name`` is a dataset name or a model name (``"digits-bernoulli-d8"``, ``"pinwheel-gaussian-d2"``):
a model's data are the data it was trained on, preprocessed the same way.

| dataset            | D  | train / test | preprocessing                                              |
|--------------------|----|--------------|------------------------------------------------------------|
| ``digits-gaussian``  | 64 | 1437 / 360  | x = (v + u) / 17, v in {0..16} the pixel, u ~ U(0, 1) fixed |
| ``digits-bernoulli`` | 64 | 1437 / 360  | x = 1[v >= 8] (intensity v / 16 >= 0.5)                     |
| ``digits28-gaussian``  | 784 | 1437 / 360 | x = (g + u) / 256, g in {0..255} the 28x28 grey level        |
| ``digits28-bernoulli`` | 784 | 1437 / 360 | x ~ Bernoulli(g / 255), one fixed draw (training: a new draw per batch) |
| ``pinwheel``         | 2  | 2000 / 500  | 5 curved arms (Johnson et al. 2016)                         |
| ``ring``             | 2  | 2000 / 500  | 8 Gaussians (sd 0.1) on a circle of radius 2                |

Why the Gaussian digits are dequantized: the pixels take 17 values, and a continuous density on
discrete data can put unbounded mass on them (sigma -> 0 on the always-black border pixels), so
log p(x) would mean nothing. Adding fixed uniform noise u within each intensity bin makes the data
continuous on [0, 1); the density of the dequantized data lower-bounds the discrete likelihood:
log P(v) >= E_u[log p((v + u) / 17)] - 64 log 17.

The 28x28 digits are *not* MNIST (which cannot be downloaded here): the same 1797 scikit-learn
digits, each 8x8 image upsampled bilinearly to 20x20 and centred in a 28x28 frame with a 4-pixel
border, as MNIST centres its digits in a 20x20 box; grey levels g = round(255 * intensity). They
have MNIST's shape and layout but only 8x8 images' detail, and 1,437 training images instead of
60,000. Bernoulli models are trained on *dynamically binarized* data (a fresh x ~ Bernoulli(g/255)
for every batch, ``grey_levels``) and evaluated on one fixed binarization (``load_data``), as
Burda et al. (2016) did with MNIST.

Every split is fixed: digits are split once by a permutation from ``SPLIT_SEED``; toy sets draw
train and test from separate seeds.
"""

import re

import numpy as np

SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360
BINARIZE_THRESHOLD = 0.5  # on intensities v / 16
TOY_SIZES = {"train": 2000, "test": 500}
TOY_SEEDS = {"train": 0, "test": 1}
SPLITS = ("train", "test")

DATASETS = (
    "digits-gaussian",
    "digits-bernoulli",
    "digits28-gaussian",
    "digits28-bernoulli",
    "pinwheel",
    "ring",
)
DIGITS28_BOX, DIGITS28_SIZE = 20, 28  # MNIST's layout: a 20x20 digit centred in 28x28
# What each data set is, in a sentence a manifest can carry (``describe``).
DESCRIPTIONS = {
    "digits-gaussian": "scikit-learn's 8x8 digits, dequantized: (v + u) / 17, u ~ U(0, 1) fixed",
    "digits-bernoulli": "scikit-learn's 8x8 digits, binarized at intensity 0.5",
    "digits28-gaussian": "NOT MNIST: scikit-learn's 1797 8x8 digits upsampled bilinearly to "
    "20x20, centred in 28x28 as MNIST is, grey levels g in 0..255, dequantized: (g + u) / 256",
    "digits28-bernoulli": "NOT MNIST: scikit-learn's 1797 8x8 digits upsampled bilinearly to "
    "20x20, centred in 28x28 as MNIST is; x ~ Bernoulli(g / 255) (trained on a fresh draw per "
    "batch, evaluated on one fixed draw)",
    "pinwheel": "5-arm pinwheel (Johnson et al. 2016), generated from fixed seeds",
    "ring": "8 Gaussians (sd 0.1) on a circle of radius 2, generated from fixed seeds",
}


def load_data(name: str, split: str = "train") -> np.ndarray:
    """The data set ``name`` (a dataset or model name) as float32 [N, D]; split "train" or "test"."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    dataset = dataset_name(name)
    if dataset.startswith("digits28-"):
        return _digits28(dataset.split("-")[1], split)
    if dataset.startswith("digits-"):
        return _digits(dataset.split("-")[1], split)
    generate = {"pinwheel": pinwheel, "ring": ring}[dataset]
    return generate(TOY_SIZES[split], seed=TOY_SEEDS[split])


def describe(name: str) -> str:
    """What the data set of ``name`` (a dataset or model name) is, in one sentence."""
    return DESCRIPTIONS[dataset_name(name)]


def dataset_name(name):
    """Resolve a dataset or model name to a dataset name.

    A model is named ``<data>[-<likelihood>][-ar]-d<latent_dim>``: ``digits-bernoulli-d8`` ->
    ``digits-bernoulli``; ``pinwheel-gaussian-d2`` -> ``pinwheel`` (toy sets are real-valued);
    ``-ar`` marks an autoregressive component (``digits-gaussian-ar-d8`` -> ``digits-gaussian``).
    """
    if name in DATASETS:
        return name
    match = re.fullmatch(r"(?P<base>.+?)(-(?P<lik>gaussian|bernoulli))?(-ar)?(-d\d+)?", str(name))
    if match:
        base, lik = match["base"], match["lik"]
        if lik and f"{base}-{lik}" in DATASETS:
            return f"{base}-{lik}"
        if base in DATASETS and base in ("pinwheel", "ring") and lik in (None, "gaussian"):
            return base
    raise ValueError(
        f"unknown dataset or model name {name!r}; datasets: {', '.join(DATASETS)} "
        "(model names add -<likelihood>-d<latent_dim>, e.g. digits-bernoulli-d8)"
    )


def _digit_pixels(split):
    """scikit-learn's 1797 8x8 digits (bundled with the package: no download), one fixed split:
    integers 0..16, [N, 64]."""
    from sklearn.datasets import load_digits

    pixels = load_digits().data  # [1797, 64], integers 0..16
    order = np.random.default_rng(SPLIT_SEED).permutation(len(pixels))
    test_idx, train_idx = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return pixels[train_idx if split == "train" else test_idx]


def _digits(kind, split):
    v = _digit_pixels(split)
    if kind == "bernoulli":
        return (v / 16.0 >= BINARIZE_THRESHOLD).astype(np.float32)
    # Dequantize: the noise is fixed per split, so the data set is the same on every call.
    u = np.random.default_rng([SPLIT_SEED, SPLITS.index(split)]).uniform(size=v.shape)
    return ((v + u) / 17.0).astype(np.float32)


def grey_levels(split: str = "train") -> np.ndarray:
    """The 28x28 digits' grey levels g in {0..255} as float32 [N, 784] (see the module docstring).

    Each 8x8 image (intensity v / 16) is upsampled bilinearly to 20x20, clipped to [0, 1] and
    centred in a 28x28 frame of zeros; g = round(255 * intensity)."""
    from scipy.ndimage import zoom

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    images = _digit_pixels(split).reshape(-1, 8, 8) / 16.0
    box = zoom(
        images,
        (1, DIGITS28_BOX / 8, DIGITS28_BOX / 8),
        order=1,
        grid_mode=True,
        mode="grid-constant",
    )
    pad = (DIGITS28_SIZE - DIGITS28_BOX) // 2
    frame = np.pad(np.clip(box, 0.0, 1.0), ((0, 0), (pad, pad), (pad, pad)))
    return np.round(255 * frame).reshape(len(images), -1).astype(np.float32)


def binarize(grey, rng):
    """One draw x ~ Bernoulli(g / 255) of binary images from grey levels g [N, D]."""
    return (rng.uniform(size=grey.shape) < grey / 255.0).astype(np.float32)


def _digits28(kind, split):
    g = grey_levels(split)
    rng = np.random.default_rng([SPLIT_SEED, SPLITS.index(split), 28])
    if kind == "bernoulli":  # one fixed binarization per split
        return binarize(g, rng)
    return ((g + rng.uniform(size=g.shape)) / 256.0).astype(np.float32)  # dequantized


def pinwheel(num_points, seed=0, num_arms=5, radial_std=0.3, tangential_std=0.05, rate=0.25):
    """Points on ``num_arms`` spiral arms: a Gaussian blob at radius 1, each point rotated by
    an angle that grows with its radius (angle = arm angle + rate * exp(r))."""
    rng = np.random.default_rng(seed)
    arm = rng.integers(num_arms, size=num_points)
    feats = rng.standard_normal((num_points, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angle = 2 * np.pi * arm / num_arms + rate * np.exp(feats[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    x = np.stack([feats[:, 0] * cos - feats[:, 1] * sin, feats[:, 0] * sin + feats[:, 1] * cos], 1)
    return x.astype(np.float32)


def ring(num_points, seed=0, num_modes=8, radius=2.0, std=0.1):
    """An equal mixture of ``num_modes`` isotropic Gaussians (sd ``std``) evenly spaced on a circle."""
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * rng.integers(num_modes, size=num_points) / num_modes
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], 1)
    return (centres + std * rng.standard_normal((num_points, 2))).astype(np.float32)


def independent_baseline_log_p(name, split="test", alpha=1.0):
    """log p(x) [N] of the best fully factorised model fitted to the training split.

    Bernoulli data: per-pixel Bernoulli with Laplace-smoothed means (p = (k + alpha) / (n + 2 alpha)).
    Real data: per-dimension Gaussian with the training mean and standard deviation.
    A latent-variable model worth the name beats this on held-out data.
    """
    train, x = load_data(name, "train"), load_data(name, split).astype(np.float64)
    if dataset_name(name).endswith("-bernoulli"):
        p = (train.sum(0) + alpha) / (len(train) + 2 * alpha)
        return (x * np.log(p) + (1 - x) * np.log1p(-p)).sum(1)
    mean, std = train.mean(0), train.std(0)
    return (-0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(1)
