"""The one estimator routine: importance weights under a proposal, reduced in chunks.

    z_1..z_M ~ q(z | x)
    log w_i  = log p(z_i) + log p(x | z_i) - log q(z_i | x)
    log p^(x) = logsumexp_i log w_i - log M        (naive_mc, prior_is, posterior_is)
    ELBO^(x)  = mean_i log w_i                     (elbo)
    ESS(x)    = (sum_i w_i)^2 / sum_i w_i^2        (Kish), from the same running sums

The methods differ only in the proposal q:
    naive_mc       q = p(z) (then log w = log p(x | z))
    prior_is       a fixed q(z) that ignores x: by default moment-matched to the aggregate posterior
    posterior_is   q = p(z | x) where exact, else the model's amortized q_phi(z | x)
    elbo           the same proposal as posterior_is

Samples are drawn in chunks of ``chunk_size`` inside one ``tf.while_loop`` whose trip count is a
tensor, with a running (max, sum-exp) logsumexp: memory is flat in M and one compiled function
serves every M (the number of samples is a tensor argument, never a Python constant).
"""
import logging

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import sampling
from estimators.models.base import as_seed

tfd = tfp.distributions

METHODS = ("naive_mc", "prior_is", "posterior_is", "elbo")
DEFAULT_CHUNK_SIZE = 256


class _HideRetracingWarning(logging.Filter):
    """Each (model, method) gets its own tf.function built from the same Python closure, which
    TensorFlow's retracing heuristic mistakes for retracing. Real retraces are tested instead
    (tests/test_estimate.py counts traces), so the misleading warning is dropped."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_HideRetracingWarning())


def estimate(model, x, method, num_samples, *, seed, proposal=None, chunk_size=None,
             jit_compile=True, return_diagnostics=False):
    """log p^(x) (or the ELBO) for each row of x [N, D]; returns a Tensor [N].

    ``proposal``: a distribution over z for ``prior_is``; a callable x -> distribution over z for
    ``posterior_is`` and ``elbo``. ``seed``: an int or a [2] stateless seed; same seed, same numbers.
    With ``return_diagnostics=True`` returns (estimate, {"ess": Kish ESS [N]}).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    num_samples = _check_num_samples(num_samples)
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else int(chunk_size)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size}")
    x = model.check_data(x)
    q, posterior = _resolve_proposal(model, x, method, proposal, seed)
    fn = compiled_estimator(model, method, posterior, chunk_size, jit_compile)
    log_p, ess = fn(x, tf.constant(num_samples, tf.int32), as_seed(seed), q)
    return (log_p, {"ess": ess}) if return_diagnostics else log_p


def _check_num_samples(num_samples):
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        if isinstance(num_samples, float) and num_samples.is_integer():
            num_samples = int(num_samples)
        else:
            raise ValueError(f"num_samples must be a positive integer; got {num_samples!r}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be a positive integer; got {num_samples}")
    if num_samples > 2**31 - 1:
        raise ValueError(f"num_samples = {num_samples} exceeds 2^31 - 1")
    return int(num_samples)


def _check_event(model, q, what):
    want = [] if model.latent_dim == 0 else [model.latent_dim]
    if q.event_shape.as_list() != want:
        raise ValueError(f"{what} has event shape {q.event_shape.as_list()} but the model's "
                         f"latent z has event shape {want}")
    if q.dtype != model.prior.dtype:
        raise ValueError(f"{what} samples dtype {q.dtype.name}; the model's latent is "
                         f"{model.prior.dtype.name}")


def _resolve_proposal(model, x, method, proposal, seed):
    """(q, posterior): the x-independent proposal passed to the compiled function as a tensor
    argument (prior_is), or the x -> q(z|x) callable compiled into it (posterior_is, elbo)."""
    if method == "naive_mc":
        if proposal is not None:
            raise ValueError("naive_mc samples from the prior; pass proposal= to prior_is instead")
        return None, None
    if method == "prior_is":
        if proposal is None:  # the default is built inside the compiled function (no eager cost)
            return None, None
        q = proposal
        if not isinstance(q, tfd.Distribution):
            raise ValueError(f"prior_is needs a tfp Distribution over z as proposal; got {type(q).__name__}")
        _check_event(model, q, "the prior_is proposal")
        if q.batch_shape.rank != 0:
            raise ValueError(f"the prior_is proposal must have batch shape []; got {q.batch_shape}")
        return q, None
    # posterior_is / elbo: an x -> distribution callable, checked on the first data point.
    posterior = proposal if proposal is not None else default_posterior(model)
    if not callable(posterior):
        raise ValueError(f"{method} needs a callable x -> distribution as proposal; got {type(posterior).__name__}")
    # Building q(x[:1]) eagerly costs 3-40 ms, more than a compiled call at small M: check once
    # per posterior, when its compiled function is first built (see compiled_estimator).
    checked = model.__dict__.setdefault("_cache_checked_posteriors", {})
    key = (method, _callable_key(posterior))
    if key not in checked or checked[key] != posterior:
        q = posterior(tf.concat([x[:1], x[:1]], axis=0))  # two rows: a batch of [] would broadcast
        if not isinstance(q, tfd.Distribution):
            raise ValueError(f"the {method} proposal must return a tfp Distribution; got {type(q).__name__}")
        _check_event(model, q, f"the {method} proposal")
        if q.batch_shape.as_list() != [2]:
            raise ValueError(f"the {method} proposal must have batch shape [N] (one q(z|x) per row "
                             f"of x); for 2 rows it has batch shape {q.batch_shape.as_list()}")
        checked[key] = posterior
    return None, posterior


def default_posterior(model):
    """p(z | x) where exact, else the model's amortized posterior; ValueError if neither exists."""
    if model.has_exact_posterior:
        return model.posterior
    if model.amortized_posterior is not None:
        return model.amortized_posterior
    raise ValueError(f"{type(model).__name__} has no exact or amortized posterior: pass proposal= "
                     "(a callable x -> distribution over z)")


def default_prior_proposal(model, x, seed=0, pilot_samples=4096):
    """A fixed proposal moment-matched to the aggregate posterior (1/N) sum_n p(z | x_n).

    Discrete latent (GMM): Categorical(0.9 * mean responsibilities + 0.1 * prior), the defensive
    mixture keeping every component reachable. Continuous latent: N(m, C) with
    m = mean_n E[z | x_n] and C = mean_n Cov[z | x_n] + Cov_n(E[z | x_n]), the posterior moments
    taken from the exact or amortized posterior, else from self-normalised prior samples.
    """
    if model.latent_dim == 0:
        probs = tf.reduce_mean(model.posterior(x).probs_parameter(), axis=0)
        probs = 0.9 * probs + 0.1 * model.prior.probs_parameter()
        return tfd.Categorical(probs=probs, dtype=model.prior.dtype)
    try:
        post = default_posterior(model)(x)
        means, covs = post.mean(), post.covariance()
    except ValueError:
        means, covs = _snis_moments(model, x, seed, pilot_samples)
    m = tf.reduce_mean(means, axis=0)
    centred = means - m
    cov = tf.reduce_mean(covs, axis=0) + tf.matmul(centred, centred, transpose_a=True) / tf.cast(
        tf.shape(means)[0], model.dtype)
    cov += 1e-6 * tf.eye(model.latent_dim, dtype=model.dtype)
    return tfd.MultivariateNormalTriL(m, tf.linalg.cholesky(cov))


def _snis_moments(model, x, seed, num_samples):
    """Posterior mean/cov per x by self-normalised importance sampling from the prior."""
    z = sampling.sample(model.prior, [num_samples, 1], as_seed(seed) + 7919)  # [S, 1, d]
    log_w = model.likelihood(z).log_prob(x)  # [S, N]
    w = tf.nn.softmax(log_w, axis=0)[..., None]
    mean = tf.reduce_sum(w * z, axis=0)  # [N, d]
    c = z - mean
    cov = tf.einsum("snd,sne->nde", w * c, c)
    return mean, cov


def compiled_estimator(model, method, posterior, chunk_size, jit_compile=True):
    """The cached compiled function for (model, method, posterior, chunk_size, jit_compile).

    Signature: fn(x [N, D], num_samples int32 [], seed int64 [2], proposal or None)  (prior_is
    with proposal None builds the default, moment-matched to x, inside the compiled function)
    -> (estimate [N], ess [N]). ``proposal`` is a TFP distribution, i.e. a CompositeTensor: a new
    proposal with the same structure reuses the trace. ``posterior`` (posterior_is, elbo; None
    means the model's default) is compiled in, so a different callable gets its own function.
    Exposed so tests can count traces.
    """
    posterior_fn = None
    if method in ("posterior_is", "elbo"):
        posterior_fn = posterior if posterior is not None else default_posterior(model)
    # The cache lives on the model (bypassing tf.Module's attribute tracking), so it dies with it.
    cache = model.__dict__.setdefault("_cache_compiled_estimators", {})
    key = (method, _callable_key(posterior_fn), chunk_size, jit_compile)
    if key in cache and cache[key][0] == posterior_fn:  # a reused id of a dead object does not count
        return cache[key][1]

    def log_weights(x, q, seed, size):
        """[size, N] log weights of ``size`` fresh samples."""
        if method == "naive_mc":
            z = sampling.sample(model.prior, [size, tf.shape(x)[0]], seed)
            return model.likelihood(z).log_prob(x)
        if method == "prior_is":
            z, log_q = sampling.sample_and_log_prob(q, [size, tf.shape(x)[0]], seed)
        else:  # q(z | x) has batch shape [N]
            z, log_q = sampling.sample_and_log_prob(q, [size], seed)
        return model.prior.log_prob(z) + model.likelihood(z).log_prob(x) - log_q

    def run(x, num_samples, seed, q):
        dtype = model.dtype
        n = tf.shape(x)[0]
        if posterior_fn is not None:
            q = posterior_fn(x)  # built once, outside the loop: the encoder runs once per call
        elif method == "prior_is" and q is None:
            q = default_prior_proposal(model, x, seed)
        num_chunks = num_samples // chunk_size + tf.cast(num_samples % chunk_size > 0, tf.int32)
        neg_inf = tf.fill([n], tf.constant(-np.inf, dtype))
        zeros = tf.zeros([n], dtype)

        def body(i, m1, s1, m2, s2, total):
            chunk_seed = tf.random.experimental.stateless_fold_in(seed, i, alg=sampling.RNG_ALG)
            lw = log_weights(x, q, chunk_seed, chunk_size)
            # The last chunk may overhang M: its extra samples get weight 0 (log w = -inf).
            index = tf.cast(i, tf.int64) * chunk_size + tf.range(chunk_size, dtype=tf.int64)
            valid = index < tf.cast(num_samples, tf.int64)  # int64: M near 2^31 must not wrap
            lw = tf.where(valid[:, None], lw, -np.inf)
            m1, s1 = _running_logsumexp(m1, s1, lw)
            m2, s2 = _running_logsumexp(m2, s2, 2.0 * lw)
            total += tf.reduce_sum(tf.where(valid[:, None], lw, 0.0), axis=0)
            return i + 1, m1, s1, m2, s2, total

        _, m1, s1, m2, s2, total = tf.while_loop(
            lambda i, *_: i < num_chunks, body,
            (tf.constant(0, tf.int32), neg_inf, zeros, neg_inf, zeros, zeros))
        log_sum_w = _finish_logsumexp(m1, s1)
        log_ess = 2.0 * log_sum_w - _finish_logsumexp(m2, s2)
        ess = tf.where(tf.math.is_finite(log_ess), tf.exp(log_ess), tf.zeros_like(log_ess))
        m = tf.cast(num_samples, dtype)
        if method == "elbo":
            return total / m, ess
        return log_sum_w - tf.math.log(m), ess

    fn = tf.function(run, jit_compile=jit_compile, reduce_retracing=True)
    cache[key] = (posterior_fn, fn)
    return fn


def _callable_key(f):
    """A stable key for a callable: ``model.posterior`` is a new bound-method object on every
    access, so key bound methods by (instance id, function), anything else by id."""
    if f is None:
        return None
    if hasattr(f, "__self__") and hasattr(f, "__func__"):
        return (id(f.__self__), f.__func__)
    return id(f)



def _running_logsumexp(m, s, lw):
    """Fold a chunk lw [C, N] into the running (max m [N], sum s [N] of exp(lw - m))."""
    m_new = tf.maximum(m, tf.reduce_max(lw, axis=0))
    shift = tf.where(tf.math.is_finite(m_new), m_new, tf.zeros_like(m_new))
    s_new = s * tf.exp(m - shift) + tf.reduce_sum(tf.exp(lw - shift), axis=0)
    return m_new, s_new


def _finish_logsumexp(m, s):
    shift = tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))
    return shift + tf.math.log(s)
