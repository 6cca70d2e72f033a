"""A model from plain TensorFlow callables: for a p(x | z) that is no TFP distribution.

    model = CallableModel(
        log_likelihood,                  # (x [B, D], z [B, d]) -> log p(x_b | z_b)   [B]
        latent_dim=d,                    # or read from sample_prior
        sample_prior=None,               # (n, seed) -> z [n, d]    (default: N(0, I_d))
        log_prior=None,                  # z [B, d] -> log p(z_b)    [B]
        sample_likelihood=None,          # (z [B, d], seed) -> x [B, D]: model.sample, simulation
        encoder=None,                    # x [B, D] -> q(z|x) outputs (see networks.ENCODER_OUTPUTS)
        log_marginal=None,               # x [N, D] -> exact log p(x) [N], where one is known
    )

Every callable sees matrices: row b of x goes with row b of z. The model broadcasts and
flattens the suite's shapes around them (the estimators call log p(x | z) on z [S, N, d] against
x [N, D]), and the two adapters below make the callables look like the TFP distributions the
algorithms use (``prior.log_prob``, ``likelihood(z).log_prob(x)``, sampling through
``estimators.sampling``). ``n`` is a scalar int32 tensor and ``seed`` a [2] int64 stateless seed
(draw with ``tf.random.stateless_*``: same seed, same numbers). The callables must be TensorFlow
code (they are traced into compiled functions) and differentiable in z for the HMC-based
methods (AIS, BDMC, SMC). Outputs are cast to the model's dtype.

Which methods run: naive MC, IS with a given proposal, AIS and SMC from the prior need only the
prior and log p(x | z); posterior IS, the ELBO and AIS from q(z|x) need ``encoder``; BDMC needs
exact posterior draws, which ``model.sample(n, seed, return_latents=True)`` gives when
``sample_likelihood`` is there. A model whose callables hold no ``tf.Variable`` cannot be
fingerprinted (``estimators.fingerprint``): it runs, but saved results are not reused for it.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from estimators.models.base import LatentVariableModel, int_seed

tfd = tfp.distributions


class CallableModel(LatentVariableModel):
    """p(x) = \\int p(x | z) p(z) dz from TensorFlow callables (see the module docstring):
    ``log_likelihood(x, z)`` always, the prior as ``sample_prior(n, seed)`` and ``log_prior(z)``
    (default N(0, I)), ``sample_likelihood(z, seed)`` to simulate data, ``encoder`` for an
    amortized q(z|x), ``log_marginal(x)`` where p(x) is known exactly."""

    def __init__(
        self,
        log_likelihood,
        *,
        latent_dim=None,
        data_dim=None,
        sample_prior=None,
        log_prior=None,
        sample_likelihood=None,
        encoder=None,
        encoder_output="auto",
        log_marginal=None,
        dtype=tf.float32,
        name=None,
    ):
        super().__init__(name=name)
        self.dtype = tf.as_dtype(dtype)
        if not callable(log_likelihood):
            raise ValueError("log_likelihood must be a callable (x [B, D], z [B, d]) -> [B]")
        if (sample_prior is None) != (log_prior is None):
            raise ValueError(
                "give both sample_prior and log_prior (a prior you can draw from and evaluate), "
                "or neither for the standard normal N(0, I)"
            )
        self.log_likelihood_fn = log_likelihood
        self.sample_prior_fn = sample_prior
        self.log_prior_fn = log_prior
        self.sample_likelihood_fn = sample_likelihood
        self.log_marginal_fn = log_marginal
        self.latent_dim = self._infer_latent_dim(latent_dim)
        self.data_dim = self._infer_data_dim(data_dim)
        if encoder is not None:
            self.attach_encoder(encoder, encoder_output)

    def _infer_latent_dim(self, latent_dim):
        if latent_dim is None and self.sample_prior_fn is None:
            raise ValueError("pass latent_dim= (or a sample_prior to read it from)")
        if self.sample_prior_fn is None:
            return _positive(latent_dim, "latent_dim")
        z = _trial(self.sample_prior_fn, "sample_prior(1, seed)", tf.constant(1), int_seed(0))
        if z.shape.rank != 2 or z.shape[0] != 1:
            raise ValueError(
                f"sample_prior(n, seed) must return z of shape [n, d]; for n = 1 it returned "
                f"shape {z.shape.as_list()}"
            )
        found = int(z.shape[1])
        if latent_dim is not None and int(latent_dim) != found:
            raise ValueError(
                f"latent_dim = {latent_dim} but sample_prior draws z of dimension {found}"
            )
        log_p = _trial(self.log_prior_fn, "log_prior(z)", tf.cast(z, self.dtype))
        if log_p.shape.as_list() != [1]:
            raise ValueError(
                f"log_prior(z) must return [B] for z [B, d]; for B = 1 it returned shape "
                f"{log_p.shape.as_list()}"
            )
        return found

    def _infer_data_dim(self, data_dim):
        if self.sample_likelihood_fn is None:
            if data_dim is None:
                raise ValueError("pass data_dim= (or a sample_likelihood to read it from)")
            return _positive(data_dim, "data_dim")
        z = tf.zeros([1, self.latent_dim], self.dtype)
        x = _trial(self.sample_likelihood_fn, "sample_likelihood(z, seed)", z, int_seed(0))
        if x.shape.rank != 2 or x.shape[0] != 1:
            raise ValueError(
                f"sample_likelihood(z, seed) must return x of shape [B, D]; for z of shape "
                f"[1, {self.latent_dim}] it returned shape {x.shape.as_list()}"
            )
        found = int(x.shape[1])
        if data_dim is not None and int(data_dim) != found:
            raise ValueError(
                f"data_dim = {data_dim} but sample_likelihood draws x of dimension {found}"
            )
        log_p = _trial(self.log_likelihood_fn, "log_likelihood(x, z)", tf.cast(x, self.dtype), z)
        if log_p.shape.as_list() != [1]:
            raise ValueError(
                f"log_likelihood(x, z) must return [B] for x [B, D] and z [B, d]; for B = 1 it "
                f"returned shape {log_p.shape.as_list()}"
            )
        return found

    def constructor_arguments(self):
        return {
            "log_likelihood": self.log_likelihood_fn,
            "latent_dim": self.latent_dim,
            "data_dim": self.data_dim,
            "sample_prior": self.sample_prior_fn,
            "log_prior": self.log_prior_fn,
            "sample_likelihood": self.sample_likelihood_fn,
            "log_marginal": self.log_marginal_fn,
            "dtype": self.dtype,
        }

    @property
    def prior(self):
        if self.sample_prior_fn is None:
            zeros = tf.zeros([self.latent_dim], self.dtype)
            return tfd.MultivariateNormalDiag(zeros, tf.ones_like(zeros))
        return CallablePrior(self.sample_prior_fn, self.log_prior_fn, self.latent_dim, self.dtype)

    def likelihood(self, z):
        return CallableLikelihood(
            self.log_likelihood_fn, self.sample_likelihood_fn, z, self.data_dim, self.dtype
        )

    def log_marginal(self, x):
        if self.log_marginal_fn is None:
            raise NotImplementedError("this CallableModel has no log_marginal callable")
        log_p = tf.cast(self.log_marginal_fn(tf.convert_to_tensor(x, self.dtype)), self.dtype)
        return tf.reshape(log_p, [-1])


class CallablePrior(tfd.Distribution):
    """p(z) from ``sample_prior(n, seed) -> [n, d]`` and ``log_prior(z [B, d]) -> [B]``: batch
    shape [], event shape [d]; ``log_prob`` takes z [..., d]; ``philox_sample`` (what
    ``estimators.sampling.sample`` calls) draws prod(sample_shape) rows in one call."""

    def __init__(self, sample_prior, log_prior, latent_dim, dtype, name="CallablePrior"):
        parameters = dict(locals())
        self._sample_prior, self._log_prior = sample_prior, log_prior
        self._latent_dim = int(latent_dim)
        super().__init__(
            dtype=dtype,
            reparameterization_type=tfd.NOT_REPARAMETERIZED,
            validate_args=False,
            allow_nan_stats=True,
            parameters=parameters,
            name=name,
        )

    def _batch_shape(self):
        return tf.TensorShape([])

    def _batch_shape_tensor(self):
        return tf.constant([], tf.int32)

    def _event_shape(self):
        return tf.TensorShape([self._latent_dim])

    def _event_shape_tensor(self):
        return tf.constant([self._latent_dim], tf.int32)

    def _log_prob(self, z):
        z = tf.convert_to_tensor(z, self.dtype)
        flat = tf.reshape(z, [-1, self._latent_dim])
        log_p = tf.cast(self._log_prior(flat), self.dtype)
        out = tf.reshape(log_p, tf.shape(z)[:-1])
        out.set_shape(z.shape[:-1])
        return out

    def philox_sample(self, sample_shape, seed):
        shape = tf.reshape(tf.convert_to_tensor(sample_shape, tf.int32), [-1])
        z = tf.cast(self._sample_prior(tf.reduce_prod(shape), seed), self.dtype)
        return tf.reshape(z, tf.concat([shape, [self._latent_dim]], axis=0))

    def _sample_n(self, n, seed=None):
        seed = tf.cast(tfp.random.sanitize_seed(seed), tf.int64)
        return self.philox_sample([n], seed)


class CallableLikelihood(tfd.Distribution):
    """p(x | z) from ``log_likelihood(x [B, D], z [B, d]) -> [B]``, batched over z [..., d]:
    ``log_prob(x)`` broadcasts x [..., D] against z's batch shape and calls the callable once on
    the flattened rows; ``philox_sample`` calls ``sample_likelihood(z [B, d], seed) -> [B, D]``."""

    def __init__(
        self, log_likelihood, sample_likelihood, z, data_dim, dtype, name="CallableLikelihood"
    ):
        parameters = dict(locals())
        self._log_likelihood, self._sample_likelihood = log_likelihood, sample_likelihood
        self._z = tf.convert_to_tensor(z, dtype)
        self._data_dim = int(data_dim)
        super().__init__(
            dtype=dtype,
            reparameterization_type=tfd.NOT_REPARAMETERIZED,
            validate_args=False,
            allow_nan_stats=True,
            parameters=parameters,
            name=name,
        )

    def _batch_shape(self):
        return self._z.shape[:-1]

    def _batch_shape_tensor(self):
        return tf.shape(self._z)[:-1]

    def _event_shape(self):
        return tf.TensorShape([self._data_dim])

    def _event_shape_tensor(self):
        return tf.constant([self._data_dim], tf.int32)

    def _log_prob(self, x):
        x = tf.convert_to_tensor(x, self.dtype)
        z = self._z
        batch = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(z)[:-1])
        static = tf.broadcast_static_shape(x.shape[:-1], z.shape[:-1])
        xs = tf.reshape(
            tf.broadcast_to(x, tf.concat([batch, [self._data_dim]], 0)), [-1, self._data_dim]
        )
        zs = tf.reshape(
            tf.broadcast_to(z, tf.concat([batch, tf.shape(z)[-1:]], 0)), [-1, z.shape[-1]]
        )
        log_p = tf.cast(self._log_likelihood(xs, zs), self.dtype)
        out = tf.reshape(log_p, batch)
        out.set_shape(static)
        return out

    def philox_sample(self, sample_shape, seed):
        if self._sample_likelihood is None:
            raise NotImplementedError(
                "this CallableModel cannot simulate x: pass sample_likelihood=(z, seed) -> x "
                "(simulated data certify an estimator: estimators evaluate, bdmc)"
            )
        shape = tf.reshape(tf.convert_to_tensor(sample_shape, tf.int32), [-1])
        z = self._z
        full = tf.concat([shape, tf.shape(z)], 0)
        flat = tf.reshape(tf.broadcast_to(z, full), [-1, z.shape[-1]])
        x = tf.cast(self._sample_likelihood(flat, seed), self.dtype)
        return tf.reshape(x, tf.concat([full[:-1], [self._data_dim]], 0))

    def _sample_n(self, n, seed=None):
        seed = tf.cast(tfp.random.sanitize_seed(seed), tf.int64)
        return self.philox_sample([n], seed)


def _trial(function, what, *args):
    """One eager call of a user's callable, its output as a tensor; ValueError naming it."""
    try:
        return tf.convert_to_tensor(function(*args))
    except Exception as err:  # a user's callable can raise anything
        text = str(err).strip()
        message = text.splitlines()[0] if text else type(err).__name__
        raise ValueError(f"{what} fails on a trial call: {message}") from None


def _positive(value, what):
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{what} must be a positive integer; got {value!r}")
    return int(value)
