"""What every model shares: the four-method model interface and input checking.

A model is p(x) = \\int p(x | z) p(z) dz, exposed as
    prior            -> p(z)                       (tfd.Distribution)
    likelihood(z)    -> p(x | z), batched over z    (tfd.Distribution over x)
    log_marginal(x)  -> log p(x), [N]               (NotImplementedError where none exists)
    posterior(x)     -> p(z | x), batched over x    (NotImplementedError where none exists)
plus ``sample`` (ancestral draws of x), ``check_data`` (input validation) and
``constructor_arguments`` (the declared parameters that identify the model: see
``estimators.fingerprint``).
"""

import functools

import numpy as np
import tensorflow as tf

from estimators import sampling
from estimators.models.amortized_posterior import AmortizedPosterior


class LatentVariableModel(tf.Module):
    """Base class: subclasses set ``data_dim``, ``latent_dim``, ``dtype`` and the four methods."""

    # Library caches (``model_cache``) are not part of the model: tf.Module skips this attribute.
    _TF_MODULE_IGNORED_PROPERTIES = tf.Module._TF_MODULE_IGNORED_PROPERTIES | {"_cache"}

    data_dim: int
    latent_dim: int  # 0 for a discrete (component-index) latent
    dtype: tf.DType
    amortized_posterior = None  # set to an AmortizedPosterior where one was trained

    @property
    def prior(self):
        raise NotImplementedError

    def likelihood(self, z):
        raise NotImplementedError

    def log_marginal(self, x):
        raise NotImplementedError(f"{type(self).__name__} has no closed-form log p(x)")

    def posterior(self, x):
        raise NotImplementedError(f"{type(self).__name__} has no exact posterior p(z|x)")

    def constructor_arguments(self) -> dict:
        """The arguments that rebuild this model, ``type(m)(**m.constructor_arguments())``, with
        their current values (tensors and variables allowed). They identify the model: results
        saved for it are reused only while they are unchanged. Every subclass declares its own."""
        raise NotImplementedError(
            f"{type(self).__name__} does not declare its constructor arguments"
        )

    def __getstate__(self):
        """Pickling (e.g. to send a model to Dask workers) leaves out the library's caches
        (``model_cache``): compiled functions do not pickle, and the receiving process compiles
        its own."""
        state = dict(self.__dict__)
        state.pop("_cache", None)
        return state

    def attach_encoder(self, encoder, encoder_output="auto"):
        """Set ``amortized_posterior`` to q(z|x) = N(loc(x), diag scale(x)^2) from ``encoder``, any
        Keras model or TensorFlow callable x [B, D] -> outputs read by the convention
        ``encoder_output`` (see ``estimators.models.networks``); one trial call checks it and a
        ValueError says what was expected and what came back. Returns the posterior."""
        posterior = AmortizedPosterior(encoder, encoder_output)
        posterior.check(self.data_dim, self.latent_dim, self.dtype)
        self.amortized_posterior = posterior
        return posterior

    @property
    def has_exact_posterior(self):
        return type(self).posterior is not LatentVariableModel.posterior

    @property
    def has_gaussian_prior(self):
        """Whether p(z) is a multivariate normal N(m, L L^T) (what a unit-cube transform, as
        nested samplers want, can be written for)."""
        from tensorflow_probability import distributions as tfd

        return isinstance(self.prior, tfd.MultivariateNormalLinearOperator)

    def log_prob(self, x):
        """log p(x) [N] of checked data x [N, D], TFP-style (``log_marginal`` after ``check_data``);
        NotImplementedError where the model has no closed form."""
        return self.log_marginal(self.check_data(x))

    def sample(self, num_points, seed=0, return_latents=False):
        """Draw x ~ p(x) by ancestral sampling: z ~ p(z), x ~ p(x | z). Returns x [num_points, D],
        or (x, z) with ``return_latents=True``: each z is then an exact draw from p(z | x), which
        is what reverse AIS (``bdmc``) needs on models without an exact posterior."""
        seed = as_seed(seed)
        z_seed, x_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 2, alg=sampling.RNG_ALG)
        )
        z = sampling.sample(self.prior, [num_points], z_seed)
        x = sampling.sample(self.likelihood(z), [], x_seed)
        return (x, z) if return_latents else x

    def check_data(self, x):
        """Return x as a [N, D] tensor of the model's dtype, or raise ValueError naming the problem."""
        if (
            isinstance(x, tf.Tensor)
            and x.dtype == self.dtype
            and x.shape.rank == 2
            and x.shape[1] == self.data_dim
            and x.shape[0]
            and np.isfinite(x.numpy()).all()
        ):
            # Data already a tensor of the right shape and dtype: only the finiteness check, in
            # NumPy on the tensor's buffer (~10 us; two eager TensorFlow ops cost 10x that).
            return x
        try:
            arr = np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"x must be a numeric array of shape [N, {self.data_dim}]: {err}"
            ) from None
        if arr.ndim != 2:
            raise ValueError(
                f"x must have shape [N, D] = [N, {self.data_dim}]; got shape {arr.shape}"
            )
        if arr.shape[1] != self.data_dim:
            raise ValueError(
                f"x has D = {arr.shape[1]} columns but the model expects D = {self.data_dim}"
            )
        if arr.shape[0] == 0:
            raise ValueError("x is empty: it needs at least one data point (row)")
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise ValueError(f"x contains NaN or inf in {len(rows)} row(s), first at row {rows[0]}")
        x = tf.constant(arr, dtype=self.dtype)
        if not np.all(np.isfinite(x.numpy())):
            raise ValueError(
                f"x has values too large for {self.dtype.name} (max |x| = {np.abs(arr).max():.3g})"
            )
        return x


def model_cache(model, name):
    """A dict the library may fill for ``model`` (compiled functions, checked proposals, ...).

    It lives in the model's ``_cache`` attribute, which ``tf.Module`` ignores (not a parameter,
    not checkpointed, not in a fingerprint), and dies with the model. (A WeakKeyDictionary would
    leak here: the compiled functions it holds refer back to the model.)"""
    return model.__dict__.setdefault("_cache", {}).setdefault(name, {})


def as_seed(seed):
    """An int or a [2] array -> a [2] int64 stateless seed."""
    if isinstance(seed, (int, np.integer)):
        return int_seed(int(seed))
    seed = tf.convert_to_tensor(seed)
    if seed.shape != (2,):
        raise ValueError(
            f"seed must be an int or a shape-[2] integer array; got shape {seed.shape}"
        )
    return tf.cast(seed, tf.int64)


@functools.lru_cache(maxsize=4096)
def int_seed(seed):
    """The [2] seed tensor of an int seed, made once: tensors are immutable, and making one costs
    ~15 us, a visible share of a warm call at small M."""
    return tf.constant([0, seed], tf.int64)


@functools.lru_cache(maxsize=4096)
def int32_scalar(value):
    """A scalar int32 tensor (a sample count), made once per value (see ``int_seed``)."""
    return tf.constant(value, tf.int32)
