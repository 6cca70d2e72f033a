"""An amortized posterior (the encoder of a VAE).

    q_phi(z | x) = N(z; mu_phi(x), diag sigma_phi(x)^2)

``encoder`` maps x [N, D] to either a pair (loc, scale) or a single [N, 2d] tensor that is split
into loc and a softplus-transformed scale. Calling the object returns the distribution, so it can
be passed wherever a proposal ``x -> distribution`` is expected.
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class AmortizedPosterior(tf.Module):
    """q_phi(z | x) = N(mu_phi(x), diag sigma_phi(x)^2) from an encoder; calling it returns the
    TFP distribution (batch shape [N] for x [N, D]), so it serves as a posterior_is proposal."""

    def __init__(self, encoder, name=None):
        super().__init__(name=name)
        self.encoder = encoder

    def constructor_arguments(self):
        return {"encoder": self.encoder}

    def __call__(self, x):
        params = self.encoder(x)
        if isinstance(params, (tuple, list)):
            loc, scale = params
        else:
            loc, raw = tf.split(params, 2, axis=-1)
            scale = tf.math.softplus(raw) + 1e-5
        return tfd.MultivariateNormalDiag(loc, scale)
