"""Bring your own network: any Keras model or TensorFlow callable as a decoder or an encoder.

A user's network maps one matrix to one matrix, [B, k] -> [B, m] (a Keras ``Sequential`` that
starts with ``Input((k,))`` accepts nothing else), but the suite calls decoders on z of shape
[S, N, d] (S samples for each of N points) and on quadrature grids. ``flat_call`` is the one place
that bridges the two: it flattens the leading dimensions to one, calls the network, and gives
every output its leading dimensions back. ``output_shapes`` makes one trial call on a single row
of zeros, which is how a model learns its data dimension from a decoder (and checks an encoder).

Encoders. ``AmortizedPosterior`` reads an encoder's output by a named convention
(``ENCODER_OUTPUTS``), for x [B, D]:

    "loc_scale"                  a pair (loc [B, d], scale [B, d]), scale > 0
    "loc_log_scale"              a pair (loc [B, d], log_scale [B, d]); scale = exp(log_scale)
    "concat_loc_log_scale"       one [B, 2d] tensor [loc, log_scale]; scale = exp(log_scale)
    "concat_loc_softplus_scale"  one [B, 2d] tensor [loc, raw]; scale = softplus(raw) + 1e-5
    "auto"                       a pair: "loc_scale"; one tensor: "concat_loc_softplus_scale"
                                 (the suite's own MLP encoders, trained that way)
"""

import tensorflow as tf

ENCODER_OUTPUTS = (
    "auto",
    "loc_scale",
    "loc_log_scale",
    "concat_loc_log_scale",
    "concat_loc_softplus_scale",
)
PAIRED = ("loc_scale", "loc_log_scale")
SOFTPLUS_FLOOR = 1e-5


class NetworkError(ValueError):
    """A network whose inputs or outputs do not have the shapes the suite needs."""


def flat_call(network, inputs, dtype=None):
    """``network`` applied to ``inputs`` [..., k] as one matrix [B, k], B the product of the
    leading dimensions; each output [B, ...] gets the leading dimensions back. Outputs are cast
    to ``dtype`` where one is given (a float32 Keras model then serves a float64 model)."""
    inputs = tf.convert_to_tensor(inputs)
    width = inputs.shape[-1]
    if width is None:
        raise NetworkError("the network's inputs need a known last dimension")
    leading_static = inputs.shape[:-1]
    leading = tf.shape(inputs)[:-1]
    outputs = network(tf.reshape(inputs, [-1, width]))

    def unflatten(output):
        output = tf.convert_to_tensor(output)
        output = output if dtype is None else tf.cast(output, dtype)
        shaped = tf.reshape(output, tf.concat([leading, tf.shape(output)[1:]], axis=0))
        shaped.set_shape(leading_static.concatenate(output.shape[1:]))
        return shaped

    if isinstance(outputs, (tuple, list)):
        return tuple(unflatten(o) for o in outputs)
    return unflatten(outputs)


def output_shapes(network, in_dim, dtype, what="network"):
    """The output shape(s) of ``network`` on one row of zeros [1, in_dim]: a list of shapes for
    a network that returns a pair, else one shape (tuples of ints). NetworkError, naming the
    network and the shapes, where the call fails."""
    zeros = tf.zeros([1, int(in_dim)], dtype)
    try:
        outputs = network(zeros)
    except Exception as err:  # a user's network can raise anything
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NetworkError(
            f"the {what} fails on an input of shape [1, {in_dim}]: {message}"
        ) from None
    if isinstance(outputs, dict):
        raise NetworkError(f"the {what} returns a dict; return a tensor or a pair of tensors")
    if isinstance(outputs, (tuple, list)):
        return [tuple(tf.convert_to_tensor(o).shape.as_list()) for o in outputs]
    return tuple(tf.convert_to_tensor(outputs).shape.as_list())


def decoder_data_dim(decoder, latent_dim, dtype, paired_ok=False, halve=False):
    """D of a decoder z [B, d] -> params [B, D] (or [B, 2D] with ``halve``, or a pair of [B, D]
    with ``paired_ok``), from one trial call; NetworkError naming the shape found otherwise."""
    shapes = output_shapes(decoder, latent_dim, dtype, "decoder")
    if isinstance(shapes, list):
        if not paired_ok or len(shapes) != 2 or shapes[0] != shapes[1] or len(shapes[0]) != 2:
            raise NetworkError(
                f"the decoder returns {len(shapes)} outputs of shapes {shapes}; this likelihood "
                "needs one tensor [B, D]"
                + (" or a pair (loc, scale) [B, D] each" if paired_ok else "")
            )
        return int(shapes[0][1])
    if len(shapes) != 2 or shapes[0] != 1:
        raise NetworkError(
            f"the decoder maps z of shape [1, {latent_dim}] to shape {list(shapes)}; it must "
            "return [B, D] (flatten images, e.g. end a Keras model with a Flatten layer)"
        )
    if halve:
        if shapes[1] % 2:
            raise NetworkError(
                f"a heteroscedastic decoder returns [B, 2D] (loc and raw scale); got width {shapes[1]}"
            )
        return int(shapes[1]) // 2
    return int(shapes[1])


def check_encoder(encoder, data_dim, latent_dim, dtype, convention):
    """The convention an encoder follows (``"auto"`` resolved), after one trial call on
    x = zeros [1, D]; NetworkError saying what was expected and what came back."""
    if convention not in ENCODER_OUTPUTS:
        raise NetworkError(
            f"unknown encoder_output {convention!r}; choose from {', '.join(ENCODER_OUTPUTS)}"
        )
    shapes = output_shapes(encoder, data_dim, dtype, "encoder")
    paired = isinstance(shapes, list)
    if convention == "auto":
        convention = "loc_scale" if paired else "concat_loc_softplus_scale"
    want = [1, latent_dim]
    if convention in PAIRED:
        if not paired or len(shapes) != 2 or any(list(s) != want for s in shapes):
            raise NetworkError(
                f"encoder_output={convention!r} expects a pair of [B, d] = {want} tensors from "
                f"x of shape [1, {data_dim}]; the encoder returned {_describe(shapes)}"
            )
    elif paired or list(shapes) != [1, 2 * latent_dim]:
        raise NetworkError(
            f"encoder_output={convention!r} expects one [B, 2d] = {[1, 2 * latent_dim]} tensor "
            f"from x of shape [1, {data_dim}]; the encoder returned {_describe(shapes)}"
            + (" (a pair: use loc_scale or loc_log_scale)" if paired else "")
        )
    return convention


def encoder_loc_scale(outputs, convention):
    """(loc, scale) from an encoder's outputs under a resolved or "auto" convention."""
    paired = isinstance(outputs, (tuple, list))
    if convention == "auto":
        convention = "loc_scale" if paired else "concat_loc_softplus_scale"
    if convention in PAIRED:
        if not paired:
            raise NetworkError(f"encoder_output={convention!r} expects a pair; got one tensor")
        loc, second = outputs
        return loc, (second if convention == "loc_scale" else tf.exp(second))
    if paired:
        raise NetworkError(f"encoder_output={convention!r} expects one tensor; got a pair")
    loc, raw = tf.split(outputs, 2, axis=-1)
    if convention == "concat_loc_log_scale":
        return loc, tf.exp(raw)
    return loc, tf.math.softplus(raw) + SOFTPLUS_FLOOR


def _describe(shapes):
    if isinstance(shapes, list):
        return f"a pair of shapes {[list(s) for s in shapes]}"
    return f"one tensor of shape {list(shapes)}"
