"""The infinite mixture: the decoder of a VAE.

    p(z) = N(0, I_d)
    p(x | z) = N(x; g(z), diag Sigma(z))      likelihood="gaussian"
             = Bernoulli(x; sigmoid(g(z)))    likelihood="bernoulli"   (binary x)
             = prod_i p(x_i | x_<i, z)         likelihood="autoregressive_bernoulli" (binary x)
                                               or "autoregressive_gaussian"
    p(x) = \\int p(x | z) p(z) dz

The mixture is a meta-model: its component need not factorise over pixels. With an autoregressive
likelihood the ``decoder`` is a ``ConditionalMADE`` (x, z) -> per-pixel parameters (see
``estimators.models.autoregressive``): log p(x | z) is one network pass, a draw of x is D passes.
The Gaussian conditionals' scale is ``min_scale + softplus(raw)``.

The Gaussian scale Sigma comes in three kinds, chosen by ``scale``:
    a float            fixed sigma for every dimension
    an array [D] / tf.Variable   a per-dimension sigma (learned when a Variable of log sigma: see
                       ``log_scale``); pass ``log_scale=`` for the trainable form
    None               heteroscedastic Sigma_theta(z): the decoder returns a pair (loc, scale),
                       or one [..., 2D] tensor split into loc and softplus(raw) scale

There is no closed form; for latent_dim <= 2 ``log_marginal`` integrates on an adaptive grid
(see ``estimators.quadrature``), accurate to well below 1e-4 nats for smooth decoders.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from estimators import quadrature
from estimators.models import networks
from estimators.models.autoregressive import AUTOREGRESSIVE_KINDS, AutoregressiveLikelihood
from estimators.models.base import LatentVariableModel

tfd = tfp.distributions

LIKELIHOODS = ("gaussian", "bernoulli", *AUTOREGRESSIVE_KINDS)
BINARY_LIKELIHOODS = ("bernoulli", "autoregressive_bernoulli")


class InfiniteMixture(LatentVariableModel):
    """A VAE's generative model: z ~ N(0, I_d), x | z ~ Gaussian or Bernoulli around decoder(z).

    decoder: any Keras model or TensorFlow callable z [B, d] -> [B, D] (e.g. ``estimators.MLP``,
    or a ``tf_keras.Sequential`` that starts with ``Input((d,))``): it is called on one matrix,
    the leading dimensions of z flattened (``networks.flat_call``), and ``data_dim`` is read from
    its ``out_dim`` or one trial call. Gaussian noise by ``scale`` (fixed), ``log_scale`` (a
    learned per-dimension variable) or, with scale=None, from the decoder itself (see the module
    docstring). ``encoder`` (optional, any network x [B, D] -> outputs read by the convention
    ``encoder_output``: see ``networks``) becomes ``amortized_posterior``, checked by one trial
    call. No closed-form p(x): quadrature for d <= 2.
    """

    def __init__(
        self,
        decoder,
        latent_dim,
        likelihood="gaussian",
        *,
        data_dim=None,
        scale=1.0,
        log_scale=None,
        min_scale=0.01,
        encoder=None,
        encoder_output="auto",
        dtype=tf.float32,
        name=None,
    ):
        super().__init__(name=name)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose from {LIKELIHOODS}")
        self.decoder = decoder
        self.latent_dim = int(latent_dim)
        self.likelihood_kind = likelihood
        self.dtype = tf.as_dtype(dtype)
        if likelihood in AUTOREGRESSIVE_KINDS:
            if log_scale is not None:
                raise ValueError(
                    f"{likelihood} takes its scales from the network; pass "
                    "min_scale= for their floor, not log_scale="
                )
            self._init_autoregressive(decoder, data_dim, min_scale)
            if encoder is not None:
                self.attach_encoder(encoder, encoder_output)
            return
        self.heteroscedastic = likelihood == "gaussian" and scale is None and log_scale is None
        if data_dim is None:  # an MLP decoder says its width; heteroscedastic ones emit 2 D
            if hasattr(decoder, "out_dim"):
                data_dim = decoder.out_dim // (2 if self.heteroscedastic else 1)
            else:  # any other network: one trial call on z = zeros [1, d]
                data_dim = networks.decoder_data_dim(
                    decoder,
                    self.latent_dim,
                    self.dtype,
                    paired_ok=self.heteroscedastic,
                    halve=self.heteroscedastic,
                )
        if scale is not None and log_scale is None and np.any(np.asarray(scale, np.float64) <= 0):
            raise ValueError(f"scale must be positive; got {scale!r}")
        self.data_dim = int(data_dim)
        self.log_scale = log_scale  # a tf.Variable [D] when the per-dimension sigma is learned
        self.scale = (
            None
            if (scale is None or log_scale is not None)
            else tf.constant(
                np.broadcast_to(np.asarray(scale, np.float64), [self.data_dim]), self.dtype
            )
        )
        if encoder is not None:
            self.attach_encoder(encoder, encoder_output)

    def _init_autoregressive(self, network, data_dim, min_scale):
        """The decoder is a conditional autoregressive network: (x, z) -> params [..., P, D]."""
        want = AUTOREGRESSIVE_KINDS[self.likelihood_kind]
        if getattr(network, "num_params", want) != want:
            raise ValueError(
                f"{self.likelihood_kind} needs a network with num_params = {want}; "
                f"got {network.num_params}"
            )
        if getattr(network, "latent_dim", self.latent_dim) != self.latent_dim:
            raise ValueError(
                f"the network takes z of dimension {network.latent_dim}, "
                f"not latent_dim = {self.latent_dim}"
            )
        if data_dim is None:
            if not hasattr(network, "data_dim"):
                raise ValueError("pass data_dim= (the network has no data_dim attribute)")
            data_dim = network.data_dim
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive; got {min_scale!r}")
        self.data_dim = int(data_dim)
        self.heteroscedastic = False
        self.log_scale = self.scale = None
        self.min_scale = float(min_scale)

    @property
    def autoregressive(self):
        return self.likelihood_kind in AUTOREGRESSIVE_KINDS

    def constructor_arguments(self):
        return {
            "decoder": self.decoder,
            "latent_dim": self.latent_dim,
            "likelihood": self.likelihood_kind,
            "data_dim": self.data_dim,
            "scale": self.scale,
            "log_scale": self.log_scale,
            "dtype": self.dtype,
            "min_scale": getattr(self, "min_scale", 0.01),
        }

    @property
    def prior(self):
        zeros = tf.zeros([self.latent_dim], self.dtype)
        return tfd.MultivariateNormalDiag(zeros, tf.ones_like(zeros))

    def likelihood(self, z):
        if self.autoregressive:
            return AutoregressiveLikelihood(self.decoder, z, self.likelihood_kind, self.min_scale)
        params = networks.flat_call(self.decoder, z, self.dtype)  # z [..., d]: any leading dims
        if self.likelihood_kind == "bernoulli":
            return tfd.Independent(tfd.Bernoulli(logits=params, dtype=self.dtype), 1)
        if self.heteroscedastic:
            if isinstance(params, (tuple, list)):
                loc, scale = params
            else:  # one [..., 2D] output: loc and a softplus-positive scale
                loc, raw = tf.split(params, 2, axis=-1)
                scale = tf.math.softplus(raw) + 1e-4
        else:
            loc = params
            scale = tf.exp(self.log_scale) if self.log_scale is not None else self.scale
        return tfd.Independent(tfd.Normal(loc, scale), 1)

    def check_data(self, x):
        """As the base class, and binary (0 / 1) x for a Bernoulli likelihood."""
        x = super().check_data(x)
        if self.likelihood_kind in BINARY_LIKELIHOODS:
            values = x.numpy()
            bad = (values != 0) & (values != 1)
            if bad.any():
                row, col = (int(i[0]) for i in np.nonzero(bad))
                raise ValueError(
                    f"the {self.likelihood_kind} likelihood needs binary x (0 or 1); "
                    f"x[{row}, {col}] = {values[row, col]:.6g} "
                    f"({int(bad.any(axis=1).sum())} row(s) have other values)"
                )
        return x

    def log_marginal(self, x):
        if self.latent_dim > 2:
            raise NotImplementedError(
                f"no closed form or quadrature for latent_dim = {self.latent_dim} > 2; "
                "use estimators.reference_log_marginal for a high-budget estimate"
            )
        return quadrature.log_marginal(self, tf.convert_to_tensor(x, self.dtype))
