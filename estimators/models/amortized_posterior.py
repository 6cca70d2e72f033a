"""An amortized posterior (the encoder of a VAE).

    q_phi(z | x) = N(z; mu_phi(x), diag sigma_phi(x)^2)

``encoder`` is any Keras model or TensorFlow callable x [B, D] -> outputs (it is called on one
matrix: ``networks.flat_call``); ``encoder_output`` names how its outputs give (loc, scale):
"loc_scale", "loc_log_scale", "concat_loc_log_scale", "concat_loc_softplus_scale", or "auto" (a
pair is (loc, scale); one [B, 2d] tensor is loc and a softplus-transformed scale: the suite's
own MLP encoders). See ``estimators.models.networks``. Calling the object returns the
distribution, so it can be passed wherever a proposal ``x -> distribution`` is expected.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from estimators.models import networks

tfd = tfp.distributions


class AmortizedPosterior(tf.Module):
    """q_phi(z | x) = N(mu_phi(x), diag sigma_phi(x)^2) from an encoder; calling it returns the
    TFP distribution (batch shape [N] for x [N, D]), so it serves as a posterior_is proposal.

    ``encoder_output``: the convention of the encoder's outputs (module docstring). ``check``
    makes one trial call and raises a ValueError naming what was expected and what came back."""

    def __init__(self, encoder, encoder_output="auto", name=None):
        super().__init__(name=name)
        if encoder_output not in networks.ENCODER_OUTPUTS:
            raise ValueError(
                f"unknown encoder_output {encoder_output!r}; choose from "
                f"{', '.join(networks.ENCODER_OUTPUTS)}"
            )
        self.encoder = encoder
        self.encoder_output = encoder_output

    def constructor_arguments(self):
        arguments = {"encoder": self.encoder}
        if self.encoder_output != "auto":  # "auto" keeps the fingerprints of saved results
            arguments["encoder_output"] = self.encoder_output
        return arguments

    def check(self, data_dim, latent_dim, dtype=tf.float32):
        """The resolved convention, after one trial call on x = zeros [1, D] (ValueError if the
        outputs do not fit it, or the encoder fails)."""
        return networks.check_encoder(
            self.encoder, data_dim, latent_dim, dtype, self.encoder_output
        )

    def __call__(self, x):
        dtype = x.dtype if isinstance(x, (tf.Tensor, tf.Variable)) else None
        loc, scale = networks.encoder_loc_scale(
            networks.flat_call(self.encoder, x, dtype), self.encoder_output
        )
        return tfd.MultivariateNormalDiag(loc, scale)
