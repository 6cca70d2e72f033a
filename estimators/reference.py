"""Reference values of log p(x) for scoring estimators: exact where possible, else high-budget IS.

    reference_log_marginal(model, x) -> (log_p [N], standard_error [N])    (float64 numpy)

Order of preference (``method="auto"``):
1. a closed form (GaussianMixture, LinearGaussian): standard error 0;
2. grid quadrature for an infinite mixture with latent_dim <= 2 (``model.log_marginal``,
   accurate to ~1e-4 nats): standard error 0;
3. posterior importance sampling with the exact or amortized posterior q(z | x) at
   ``num_samples`` (default 1e5) samples per point, drawn in chunks.

The standard error of the IS reference follows from the delta method. With w_i = p(x, z_i) / q(z_i | x)
and p^ = (1/M) sum_i w_i (unbiased for p(x)),
    Var(log p^) ~= Var(p^) / p(x)^2 = Var(w) / (M E[w]^2),
and plugging in sample moments, Var(w) / E[w]^2 ~= M sum w^2 / (sum w)^2 - 1 = M / ESS - 1, so
    SE(log p^) ~= sqrt(1 / ESS - 1 / M)          (ESS: Kish effective sample size).
The bias of log p^ is about -SE^2 / 2 (Jensen), negligible when SE is small. The delta method
trusts the sample variance of the weights: a proposal much narrower than the posterior (heavy
tails) can hide its error; ``repeats`` > 1 also reports the spread across independent runs.

Results for infinite mixtures are cached on disk (``$ESTIMATORS_CACHE`` or
``~/.cache/estimators``, subfolder ``reference``), keyed by a SHA-256 of the model's weights, the
data and the settings, and written atomically, so repeated sweeps do not recompute them.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from estimators.estimator import estimate
from estimators.models import InfiniteMixture

REFERENCE_SAMPLES = 100_000
REFERENCE_SEED = 20240601
CACHE_VERSION = 1
METHODS = ("auto", "exact", "is")


def reference_log_marginal(model, x, *, num_samples=REFERENCE_SAMPLES, seed=REFERENCE_SEED,
                           chunk_size=1024, batch_size=64, method="auto", repeats=1, cache=True,
                           cache_dir=None):
    """(log p [N], standard error [N]) for each row of x [N, D]; see the module docstring.

    method: "auto" (exact, else quadrature, else IS), "exact" (closed form or quadrature only;
    NotImplementedError if none) or "is" (importance sampling even where exact values exist).
    IS runs ``batch_size`` points per call, ``repeats`` independent runs of ``num_samples`` each,
    averaged in probability space (log of the mean of the p^); its SE is the delta-method SE of the
    pooled R * M weights, or the SE from the run-to-run spread where that is larger.
    ``cache=False`` skips the on-disk cache.
    """
    if method not in METHODS:
        raise ValueError(f"unknown reference method {method!r}; choose from {METHODS}")
    x = model.check_data(x)
    if method != "is" and not isinstance(model, InfiniteMixture):
        try:  # closed forms are instant: no cache
            return np.asarray(model.log_marginal(x), np.float64), np.zeros(int(x.shape[0]))
        except NotImplementedError:
            if method == "exact":
                raise
    exact = method != "is" and isinstance(model, InfiniteMixture) and model.latent_dim <= 2
    if method == "exact" and not exact:
        raise NotImplementedError(f"no closed form or quadrature for {type(model).__name__} "
                                  f"with latent_dim = {model.latent_dim}")
    settings = dict(kind="quadrature") if exact else dict(
        kind="is", num_samples=int(num_samples), seed=int(seed), chunk_size=int(chunk_size),
        batch_size=int(batch_size), repeats=int(repeats))
    path = _cache_path(model, x, settings, include_encoder=not exact, cache_dir=cache_dir) \
        if cache else None
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as saved:
            return saved["log_p"], saved["se"]
    if exact:
        log_p = np.asarray(model.log_marginal(x), np.float64)
        se = np.zeros_like(log_p)
    else:
        log_p, se = _importance_reference(model, x, num_samples, seed, chunk_size, batch_size,
                                          repeats)
    if path is not None:
        _atomic_save(path, log_p=log_p, se=se, settings=json.dumps(settings))
    return log_p, se


def _importance_reference(model, x, num_samples, seed, chunk_size, batch_size, repeats):
    """Posterior-IS log p^ [N] and its SE [N], ``batch_size`` points at a time."""
    log_p, se = [], []
    for start in range(0, int(x.shape[0]), batch_size):
        xb = x[start:start + batch_size]
        runs, ess = [], []
        for r in range(repeats):
            lp, diag = estimate(model, xb, "posterior_is", num_samples, seed=[seed, r],
                                chunk_size=chunk_size, return_diagnostics=True)
            runs.append(np.asarray(lp, np.float64))
            ess.append(np.asarray(diag["ess"], np.float64))
        runs, ess = np.stack(runs), np.stack(ess)  # [R, n]
        pooled = np.logaddexp.reduce(runs, axis=0) - np.log(repeats)
        # Pooled ESS of R runs with equal M: (sum_r S_r)^2 / sum_r Q_r, S_r = M p^_r, Q_r = S_r^2/ESS_r.
        w = np.exp(runs - runs.max(0))
        pooled_ess = w.sum(0) ** 2 / np.sum(w ** 2 / np.maximum(ess, 1.0), axis=0)
        total = repeats * num_samples
        delta = np.sqrt(np.maximum(1.0 / np.maximum(pooled_ess, 1.0) - 1.0 / total, 0.0))
        spread = runs.std(0, ddof=1) / np.sqrt(repeats) if repeats > 1 else 0.0
        log_p.append(pooled)
        se.append(np.maximum(delta, spread))
    return np.concatenate(log_p), np.concatenate(se)


# ----------------------------------------------------------------------------- the cache

def reference_cache_dir(directory=None):
    """Where references are cached: ``directory``, else $ESTIMATORS_CACHE, else ~/.cache/estimators."""
    root = directory or os.environ.get("ESTIMATORS_CACHE") or Path.home() / ".cache" / "estimators"
    return Path(root) / "reference"


def model_fingerprint(model, include_encoder=True):
    """SHA-256 of an infinite mixture's structure and weights, or None when the weights cannot be
    seen (a decoder or encoder that is a plain function, not a tf.Module / Keras layer)."""
    h = hashlib.sha256()
    h.update(json.dumps([type(model).__name__, model.latent_dim, model.data_dim,
                         model.likelihood_kind, model.dtype.name, model.heteroscedastic]).encode())
    parts = [model.decoder]
    if include_encoder:
        if model.amortized_posterior is None:
            return None
        parts.append(model.amortized_posterior)
    for part in parts:
        variables = getattr(part, "variables", None)
        if not variables:
            return None
        for v in variables:
            h.update(np.ascontiguousarray(np.asarray(v)).tobytes())
    for tensor in (model.log_scale, model.scale):
        if tensor is not None:
            h.update(np.ascontiguousarray(np.asarray(tensor)).tobytes())
    return h.hexdigest()


def _cache_path(model, x, settings, include_encoder, cache_dir=None):
    fingerprint = model_fingerprint(model, include_encoder)
    if fingerprint is None:
        return None
    h = hashlib.sha256()
    h.update(json.dumps(dict(settings, version=CACHE_VERSION), sort_keys=True).encode())
    h.update(fingerprint.encode())
    arr = np.ascontiguousarray(np.asarray(x))
    h.update(str(arr.shape).encode() + arr.dtype.str.encode() + arr.tobytes())
    return reference_cache_dir(cache_dir) / f"{h.hexdigest()[:32]}.npz"


def _atomic_save(path, **arrays):
    """Write an npz next to ``path`` and rename it into place: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
