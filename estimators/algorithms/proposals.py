"""Proposals: where importance samplers and the tempered paths draw their z from, checked once.

    resolve_proposal(model, x, method, proposal, kind) -> (q, posterior)
    checked_posterior(model, x, method, proposal)      -> the x -> q(z|x) callable, checked once
    default_posterior(model)                           -> p(z|x) where exact, else amortized
    default_prior_proposal(model, x)                   -> a fixed q(z) fitted to a data set

Used by every importance sampler (``importance``), by AIS/BDMC and SMC for their start
distribution (``tempered_path``). A callable is keyed by ``compiled.callable_key``.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from estimators import sampling
from estimators.algorithms.compiled import callable_key
from estimators.models.base import as_seed, model_cache

tfd = tfp.distributions

# Where a method's samples come from (``Variant.proposal``).
PRIOR = "prior"  # q = p(z): log w = log p(x | z)
FIXED = "fixed"  # a q(z) that ignores x, batch shape []: given, or fitted to the data set
POSTERIOR_PROPOSAL = "posterior"  # q(z | x), batch shape [N]: exact, amortized or given
PER_POINT = "per-point proposal"  # posterior_is/elbo given a distribution with batch shape [N]


def check_event(model, q, what):
    """ValueError unless q draws z of the model's latent event shape and dtype."""
    want = [] if model.latent_dim == 0 else [model.latent_dim]
    if q.event_shape.as_list() != want:
        raise ValueError(
            f"{what} has event shape {q.event_shape.as_list()} but the model's "
            f"latent z has event shape {want}"
        )
    if q.dtype != model.prior.dtype:
        raise ValueError(
            f"{what} samples dtype {q.dtype.name}; the model's latent is {model.prior.dtype.name}"
        )


def resolve_proposal(model, x, method, proposal, kind=POSTERIOR_PROPOSAL):
    """(q, posterior): the x-independent proposal passed to the compiled function as a tensor
    argument (``kind`` FIXED), or the x -> q(z|x) callable compiled into it (POSTERIOR)."""
    if kind == PRIOR:
        if proposal is not None:
            raise ValueError(
                f"{method} samples from the prior; pass proposal= to a method with a fixed "
                "proposal instead"
            )
        return None, None
    if kind == FIXED:
        if proposal is None:  # the default is built inside the compiled function (no eager cost)
            return None, None
        q = proposal
        if not isinstance(q, tfd.Distribution):
            raise ValueError(
                f"{method} needs a tfp Distribution over z as proposal; got {type(q).__name__}"
            )
        check_event(model, q, f"the {method} proposal")
        if q.batch_shape.rank != 0:
            raise ValueError(f"the {method} proposal must have batch shape []; got {q.batch_shape}")
        return q, None
    if isinstance(proposal, tfd.Distribution):  # q(z | x_n) fitted per point for exactly this x
        check_event(model, proposal, f"the {method} proposal")
        if proposal.batch_shape.as_list() != [int(x.shape[0])]:
            raise ValueError(
                f"a {method} proposal distribution must have batch shape [N] = "
                f"[{int(x.shape[0])}] (one q(z|x_n) per row of x); got "
                f"{proposal.batch_shape.as_list()}"
            )
        return proposal, PER_POINT
    return None, checked_posterior(model, x, method, proposal)


def checked_posterior(model, x, method, proposal):
    """The x -> q(z|x) callable for ``method`` (``proposal`` or the model's default), checked
    once per callable: building q(x[:1]) eagerly costs 3-40 ms, more than a compiled call."""
    posterior = proposal if proposal is not None else default_posterior(model)
    if not callable(posterior):
        raise ValueError(
            f"{method} needs a callable x -> distribution as proposal; got {type(posterior).__name__}"
        )
    checked = model_cache(model, "checked_posteriors")
    key = (method, callable_key(posterior))
    if key not in checked or checked[key] != posterior:
        q = posterior(tf.concat([x[:1], x[:1]], axis=0))  # two rows: a batch of [] would broadcast
        if not isinstance(q, tfd.Distribution):
            raise ValueError(
                f"the {method} proposal must return a tfp Distribution; got {type(q).__name__}"
            )
        check_event(model, q, f"the {method} proposal")
        if q.batch_shape.as_list() != [2]:
            raise ValueError(
                f"the {method} proposal must have batch shape [N] (one q(z|x) per row "
                f"of x); for 2 rows it has batch shape {q.batch_shape.as_list()}"
            )
        checked[key] = posterior
    return posterior


def default_posterior(model):
    """p(z | x) where exact, else the model's amortized posterior; ValueError if neither exists."""
    if model.has_exact_posterior:
        return model.posterior
    if model.amortized_posterior is not None:
        return model.amortized_posterior
    raise ValueError(
        f"{type(model).__name__} has no exact or amortized posterior: pass proposal= "
        "(a callable x -> distribution over z)"
    )


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
        tf.shape(means)[0], model.dtype
    )
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
