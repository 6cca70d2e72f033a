"""Reference values of log p(x) for scoring estimators: exact where possible, else high-budget IS.

    reference_log_marginal(model, x) -> (log_p [N], standard_error [N])    (float64 numpy)

Order of preference (``method="auto"``):
0. a target's referenced log Z and its SE (``models.target.Target.referenced_log_marginal``):
   exact, quadrature, or the suite's own stored long run (estimators.targets);
1. a closed form (GaussianMixture, LinearGaussian): standard error 0;
2. grid quadrature for an infinite mixture with latent_dim <= 2 (its error estimate as the SE;
   |log p(h) - log p(2h)|, ~1e-12 where the posterior is resolved);
3. importance sampling at ``num_samples`` (default 1e5) samples per point, drawn in chunks,
   from the exact posterior where there is one, else from a Gaussian proposal chosen per point
   by pilot runs: the encoder's q(z | x) widened, or Gaussians moment-matched to the pilots'
   weighted samples (adaptive IS). An ELBO-trained encoder is too narrow a proposal for a
   reference; see ``adapted_proposal``.

The standard error of the IS reference follows from the delta method. With w_i = p(x, z_i) / q(z_i | x)
and p^ = (1/M) sum_i w_i (unbiased for p(x)),
    Var(log p^) ~= Var(p^) / p(x)^2 = Var(w) / (M E[w]^2),
and plugging in sample moments, Var(w) / E[w]^2 ~= M sum w^2 / (sum w)^2 - 1 = M / ESS - 1, so
    SE(log p^) ~= sqrt(1 / ESS - 1 / M)          (ESS: Kish effective sample size).
The bias of log p^ is about -SE^2 / 2 (Jensen), negligible when SE is small. The delta method
trusts the sample variance of the weights, which is why the proposal matters: with the raw
encoder as proposal (heavy-tailed weights) the observed run-to-run variance on digits-gaussian-d8
was 2.3x the delta-method prediction and single points were off by 1 nat; with the adapted,
defensive proposals the prediction matches the observed variance (ratio 0.9 - 1.1 on the shipped
models) and the variance is ~3000x smaller. ``repeats`` > 1 also reports the run-to-run spread.

Results for infinite mixtures are cached on disk (``$ESTIMATORS_CACHE`` or
``~/.cache/estimators``, subfolder ``reference``), keyed by a SHA-256 of the model's fingerprint
(``estimators.fingerprint``), the data and the settings, and written atomically, so repeated
sweeps do not recompute them. A model that cannot be fingerprinted is not cached.
"""

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from numpy.typing import ArrayLike

from estimators import methods, quadrature, sampling
from estimators.estimator import estimate
from estimators.files import atomic_write
from estimators.fingerprint import FingerprintError, model_fingerprint
from estimators.models import InfiniteMixture, LatentVariableModel
from estimators.models.base import model_cache

tfd = tfp.distributions

REFERENCE_SAMPLES = 100_000
REFERENCE_SEED = 20240601
WIDTHS = (1.0, 1.5, 2.0, 3.0)  # encoder widths tried per point (see adapted_proposal)
ADAPT_WIDTHS = (1.0, 1.5)  # widths of the moment-matched proposals
ADAPT_ROUNDS = 2
PILOT_SAMPLES = 4096  # per pilot run; capped at num_samples / 8 for small budgets
DEFENSIVE_WEIGHT, DEFENSIVE_WIDTH = 0.25, 2.0  # every proposal: a mixture with a wider twin
CACHE_VERSION = 2
RELIABLE_ESS = 30  # a pooled ESS below this: the reference warns that the point is unreliable
METHODS = ("auto", "exact", "is")


def reference_log_marginal(
    model: LatentVariableModel,
    x: ArrayLike,
    *,
    num_samples: int = REFERENCE_SAMPLES,
    seed: int = REFERENCE_SEED,
    chunk_size: int = 1024,
    batch_size: int = 64,
    method: str = "auto",
    repeats: int = 1,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
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
    referenced = getattr(model, "referenced_log_marginal", None)  # a target's stored log Z
    if method == "auto" and referenced is not None:
        found = referenced(x)
        if found is not None:
            return found
    if method != "is" and not isinstance(model, InfiniteMixture):
        try:  # closed forms are instant: no cache
            return np.asarray(model.log_marginal(x), np.float64), np.zeros(int(x.shape[0]))
        except NotImplementedError:
            if method == "exact":
                raise
    exact = method != "is" and isinstance(model, InfiniteMixture) and model.latent_dim <= 2
    if method == "exact" and not exact:
        raise NotImplementedError(
            f"no closed form or quadrature for {type(model).__name__} "
            f"with latent_dim = {model.latent_dim}"
        )
    settings = (
        dict(kind="quadrature", version=2)
        if exact
        else dict(
            kind="is",
            num_samples=int(num_samples),
            seed=int(seed),
            chunk_size=int(chunk_size),
            batch_size=int(batch_size),
            repeats=int(repeats),
            widths=list(WIDTHS),
            adapt=[list(ADAPT_WIDTHS), ADAPT_ROUNDS],
            pilot_samples=_pilot_samples(num_samples),
            defensive=[DEFENSIVE_WEIGHT, DEFENSIVE_WIDTH],
        )
    )
    path = _cache_path(model, x, settings, cache_dir=cache_dir) if cache else None
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as saved:
                if "ess" in saved:  # caches written before the ESS was kept have none
                    _warn_if_degenerate(saved["ess"])
                return saved["log_p"], saved["se"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:  # a cache: recompute
            warnings.warn(f"ignoring unreadable reference cache {path}: {err}", stacklevel=2)
    if exact:  # the quadrature's own error estimate, |log p(h) - log p(2h)|, stands as its SE
        log_p, se = (np.asarray(t, np.float64) for t in quadrature.log_marginal_and_error(model, x))
    else:
        log_p, se, ess = _importance_reference(
            model, x, num_samples, seed, chunk_size, batch_size, repeats
        )
        _warn_if_degenerate(ess)
    if path is not None:
        extra = {} if exact else {"ess": ess}
        try:
            _atomic_save(path, log_p=log_p, se=se, settings=json.dumps(settings), **extra)
        except OSError as err:  # a read-only home must not stop a sweep
            warnings.warn(f"could not cache the reference in {path.parent}: {err}", stacklevel=2)
    return log_p, se


def _importance_reference(model, x, num_samples, seed, chunk_size, batch_size, repeats):
    """IS log p^ [N], its SE [N] and the pooled ESS [N], ``batch_size`` points at a time (see
    ``adapted_proposal``)."""
    log_p, se, pooled_ess = [], [], []
    for start in range(0, int(x.shape[0]), batch_size):
        xb = x[start : start + batch_size]
        if model.has_exact_posterior:  # the exact posterior: zero-variance IS
            loc = tril = None
        else:
            loc, tril = adapted_proposal(model, xb, seed, chunk_size, _pilot_samples(num_samples))
        runs, ess = [], []
        for r in range(repeats):
            lp, e = _is_run(model, xb, loc, tril, num_samples, [seed, r], chunk_size)
            runs.append(lp)
            ess.append(e)
        lp, s, e = _pool(np.stack(runs), np.stack(ess), num_samples)
        log_p.append(lp)
        se.append(s)
        pooled_ess.append(e)
    return np.concatenate(log_p), np.concatenate(se), np.concatenate(pooled_ess)


def _pilot_samples(num_samples):
    return int(min(PILOT_SAMPLES, max(256, num_samples // 8)))


def adapted_proposal(model, x, seed, chunk_size=1024, pilot_samples=PILOT_SAMPLES):
    """Per point, the Gaussian proposal N(loc, tril tril^T) with the smallest pilot variance.

    Candidates, each scored by a pilot run of ``pilot_samples`` by 1/ESS (the delta-method
    variance of log p^ up to the factor 1/M):
    1. the encoder's q(z | x) = N(mu, diag sigma^2) widened by c in ``WIDTHS`` (the prior
       N(0, I) when the model has no encoder). An ELBO-trained encoder minimises KL(q || p(z|x)),
       which is mode-seeking: q comes out narrower than the posterior, so its IS weights are
       heavy-tailed, log p^ is biased low and the delta-method SE is too small;
    2. for ``ADAPT_ROUNDS`` rounds, the Gaussian moment-matched to the best candidate's
       self-normalised pilot samples (mean and full covariance of z under w), widened by c in
       ``ADAPT_WIDTHS`` (adaptive importance sampling: it finds posteriors the encoder missed).
    The pilots use their own seeds; the final run draws fresh samples from the chosen proposal,
    so the choice does not bias it. Returns (loc [n, d], tril [n, d, d]) as float64 numpy.
    """
    d = model.latent_dim
    n = int(x.shape[0])
    if model.amortized_posterior is not None:
        q = model.amortized_posterior(x)
        loc0, sd0 = np.asarray(q.mean(), np.float64), np.asarray(q.stddev(), np.float64)
    else:
        loc0, sd0 = np.zeros((n, d)), np.ones((n, d))
    candidates = [(loc0, c * _diag(sd0)) for c in WIDTHS]
    best = _best_candidate(model, x, candidates, seed, chunk_size, pilot_samples, round_=0)
    for round_ in range(1, ADAPT_ROUNDS + 1):
        loc, tril, mean, cov, ess = best
        chol = np.linalg.cholesky(_shrunk_covariance(cov, tril @ np.swapaxes(tril, -1, -2), ess))
        candidates = [(loc, tril)] + [(mean, c * chol) for c in ADAPT_WIDTHS]
        best = _best_candidate(model, x, candidates, seed, chunk_size, pilot_samples, round_)
    return best[0], best[1]


def _shrunk_covariance(cov_w, cov_q, ess):
    """lam Cov_w + (1 - lam) Cov_q with lam = ESS / (ESS + 2 d): a weighted covariance from a few
    effective samples (it can be near-singular) leans on the proposal's own covariance."""
    d = cov_w.shape[-1]
    lam = (ess / (ess + 2.0 * d))[:, None, None]
    cov = lam * 0.5 * (cov_w + np.swapaxes(cov_w, -1, -2)) + (1 - lam) * cov_q
    return cov + 1e-10 * np.eye(d)


def _diag(sd):
    return sd[:, :, None] * np.eye(sd.shape[-1])


def _best_candidate(model, x, candidates, seed, chunk_size, pilot_samples, round_):
    """Per point, the candidate with the largest pilot ESS: (loc, tril, mean_w, cov_w, ess)."""
    scores, results = [], []
    for j, (loc, tril) in enumerate(candidates):
        _, ess, mean, cov = _is_pass(model)(
            x,
            tf.constant(loc, model.dtype),
            tf.constant(tril, model.dtype),
            tf.constant(pilot_samples, tf.int32),
            tf.constant([seed, 1000 + 100 * round_ + j], tf.int64),
            tf.constant(chunk_size, tf.int32),
        )
        ess = np.asarray(ess, np.float64)
        ess = np.where(np.isfinite(ess), ess, 0.0)
        scores.append(ess)
        results.append((loc, tril, np.asarray(mean, np.float64), np.asarray(cov, np.float64), ess))
    pick = np.argmax(np.stack(scores), axis=0)  # [n]
    return tuple(np.stack([results[j][k][i] for i, j in enumerate(pick)]) for k in range(5))


def _is_run(model, x, loc, tril, num_samples, seed, chunk_size):
    """One IS run: (log p^ [n], Kish ESS [n]); the exact posterior when loc is None."""
    if loc is None:
        lp, diag = estimate(
            model,
            x,
            methods.method_with(baseline_role="posterior"),
            num_samples,
            seed=seed,
            chunk_size=chunk_size,
            return_diagnostics=True,
        )
        return np.asarray(lp, np.float64), np.asarray(diag["ess"], np.float64)
    lp, ess, _, _ = _is_pass(model)(
        x,
        tf.constant(loc, model.dtype),
        tf.constant(tril, model.dtype),
        tf.constant(num_samples, tf.int32),
        tf.constant(seed, tf.int64),
        tf.constant(chunk_size, tf.int32),
    )
    return np.asarray(lp, np.float64), np.asarray(ess, np.float64)


def _pool(runs, ess, num_samples):
    """R runs [R, n] pooled in probability space: (log p^ [n], SE [n], pooled ESS [n]) with
    SE = max(delta method, run-to-run spread)."""
    repeats = runs.shape[0]
    pooled = np.logaddexp.reduce(runs, axis=0) - np.log(repeats)
    # Pooled ESS of R runs with equal M: (sum_r S_r)^2 / sum_r Q_r, S_r = M p^_r, Q_r = S_r^2/ESS_r.
    w = np.exp(runs - runs.max(0))
    pooled_ess = w.sum(0) ** 2 / np.sum(w**2 / np.maximum(ess, 1.0), axis=0)
    delta = np.sqrt(
        np.maximum(1.0 / np.maximum(pooled_ess, 1.0) - 1.0 / (repeats * num_samples), 0.0)
    )
    spread = runs.std(0, ddof=1) / np.sqrt(repeats) if repeats > 1 else 0.0
    return pooled, np.maximum(delta, spread), pooled_ess


def _warn_if_degenerate(ess):
    """Warn where a handful of weights carry the estimate: its delta-method SE (~ 1 / sqrt(ESS))
    then says ~1 nat while the estimate can be off by thousands (measured: a 784-d Gaussian
    decoder's simulated points, 8,000 nats below the BDMC sandwich)."""
    degenerate = np.asarray(ess) < RELIABLE_ESS
    if degenerate.any():
        warnings.warn(
            f"reference: importance sampling degenerated at {int(degenerate.sum())} of "
            f"{degenerate.size} points (pooled ESS < {RELIABLE_ESS}, smallest "
            f"{np.min(ess):.1f}): their log p(x) and SE are not to be trusted; the "
            "proposal missed the posterior. Check them with the sandwich (ais below, bdmc above "
            "on simulated points) or a long AIS run.",
            stacklevel=3,
        )


def _is_pass(model):
    """The model's compiled IS pass (cached on the model):

        (x [n, D], loc [n, d], tril [n, d, d], M, seed, chunk) ->
        (log p^ [n], ESS [n], E_w[z] [n, d], Cov_w[z] [n, d, d])

    with z drawn per point from the defensive mixture
        q(z) = (1 - a) N(z; loc, L L^T) + a N(z; loc, k^2 L L^T),   a = DEFENSIVE_WEIGHT, k = DEFENSIVE_WIDTH,
    log w = log p(z) + log p(x | z) - log q(z), and the self-normalised moments of z under w.
    The wide component bounds the weights where the posterior has heavier tails than N(loc, L L^T)
    (w <= p(x, z) / (a N(z; loc, k^2 L L^T))) at a cost of at most a factor (1 - a) in ESS. Chunks of ``chunk`` samples in a ``tf.while_loop``,
    sums kept relative to a running max of log w, so nothing overflows and memory is flat in M.
    Written apart from ``estimate`` on purpose: the reference does not share the code it scores.
    """
    cache = model_cache(model, "reference_is_pass")
    if "fn" in cache:
        return cache["fn"]

    def run(x, loc, tril, num_samples, seed, chunk):
        narrow = tfd.MultivariateNormalTriL(loc, tril)
        wide = tfd.MultivariateNormalTriL(loc, DEFENSIVE_WIDTH * tril)
        log_mix = np.log([1.0 - DEFENSIVE_WEIGHT, DEFENSIVE_WEIGHT])
        n, d = tf.shape(x)[0], model.latent_dim
        dtype = model.dtype

        def body(i, m, s1, s2, sz, szz):
            noise_seed, pick_seed = tf.unstack(
                tf.random.experimental.stateless_split(
                    tf.random.experimental.stateless_fold_in(seed, i), 2
                )
            )
            eps = sampling.standard_normal(tf.stack([chunk, n, d]), noise_seed, dtype)
            u = tf.random.stateless_uniform(
                tf.stack([chunk, n]), pick_seed, dtype=dtype, alg=sampling.RNG_ALG
            )
            factor = tf.where(u < DEFENSIVE_WEIGHT, tf.constant(DEFENSIVE_WIDTH, dtype), 1.0)
            z = loc + factor[..., None] * tf.linalg.matvec(tril, eps)  # [C, n, d]
            log_q = tf.reduce_logsumexp(
                tf.stack([log_mix[0] + narrow.log_prob(z), log_mix[1] + wide.log_prob(z)]), axis=0
            )
            lw = model.prior.log_prob(z) + model.likelihood(z).log_prob(x) - log_q
            valid = (i * chunk + tf.range(chunk)) < num_samples
            lw = tf.where(valid[:, None], lw, tf.constant(-np.inf, dtype))  # [C, n]
            m_new = tf.maximum(m, tf.reduce_max(lw, axis=0))
            shift = tf.where(tf.math.is_finite(m_new), m_new, tf.zeros_like(m_new))
            a = tf.exp(m - shift)  # rescales the old sums to the new max
            w = tf.exp(lw - shift)
            dz = z - loc  # moments about loc: no cancellation when the posterior is far from 0
            return (
                i + 1,
                m_new,
                s1 * a + tf.reduce_sum(w, 0),
                s2 * a * a + tf.reduce_sum(w * w, 0),
                sz * a[:, None] + tf.einsum("cn,cnd->nd", w, dz),
                szz * a[:, None, None] + tf.einsum("cn,cnd,cne->nde", w, dz, dz),
            )

        init = (
            tf.constant(0),
            tf.fill([n], tf.constant(-np.inf, dtype)),
            tf.zeros([n], dtype),
            tf.zeros([n], dtype),
            tf.zeros([n, d], dtype),
            tf.zeros([n, d, d], dtype),
        )
        num_chunks = (num_samples + chunk - 1) // chunk
        _, m, s1, s2, sz, szz = tf.while_loop(lambda i, *_: i < num_chunks, body, init)
        log_p = m + tf.math.log(s1) - tf.math.log(tf.cast(num_samples, dtype))
        shift = sz / s1[:, None]
        cov = szz / s1[:, None, None] - shift[:, :, None] * shift[:, None, :]
        return log_p, s1 * s1 / s2, loc + shift, cov

    # One trace for every number of points: a first call on a single row must not fix n = 1 in
    # the trace (the loop's sums would enter with shape [1] and leave with [None]).
    n_open, d = None, model.latent_dim
    signature = [
        tf.TensorSpec([n_open, model.data_dim], model.dtype),
        tf.TensorSpec([n_open, d], model.dtype),
        tf.TensorSpec([n_open, d, d], model.dtype),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([2], tf.int64),
        tf.TensorSpec([], tf.int32),
    ]
    cache["fn"] = tf.function(run, input_signature=signature, jit_compile=True)
    return cache["fn"]


# ----------------------------------------------------------------------------- the cache


def reference_cache_dir(directory=None):
    """Where references are cached: ``directory``, else $ESTIMATORS_CACHE, else ~/.cache/estimators."""
    root = directory or os.environ.get("ESTIMATORS_CACHE") or Path.home() / ".cache" / "estimators"
    return Path(root) / "reference"


def _cache_path(model, x, settings, cache_dir=None):
    """The cache file for (model, x, settings), or None for a model that cannot be fingerprinted
    (its weights cannot be seen, so a cached value could belong to another version of it)."""
    try:
        fingerprint = model_fingerprint(model)
    except FingerprintError:
        return None
    h = hashlib.sha256()
    h.update(json.dumps(dict(settings, version=CACHE_VERSION), sort_keys=True).encode())
    h.update(fingerprint.encode())
    arr = np.ascontiguousarray(np.asarray(x))
    h.update(str(arr.shape).encode() + arr.dtype.str.encode() + arr.tobytes())
    return reference_cache_dir(cache_dir) / f"{h.hexdigest()[:32]}.npz"


def _atomic_save(path, **arrays):
    """Write an npz atomically: readers never see half a file."""
    atomic_write(path, lambda f: np.savez(f, **arrays))
