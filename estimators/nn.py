"""A small multilayer perceptron as a ``tf.Module``: the decoders and encoders of the suite.

Kept framework-light on purpose: its weights are plain variables, saved and loaded as arrays
(``to_arrays`` / ``from_arrays``) so trained models are data files (npz), never pickles.
Inputs may carry any number of leading batch dimensions ([..., in_dim] -> [..., out_dim]);
they are flattened to one matrix so each layer is a single large matmul (fast on oneDNN/XLA).
"""

import numpy as np
import tensorflow as tf

ACTIVATIONS = {
    "tanh": tf.math.tanh,
    "relu": tf.nn.relu,
    "softplus": tf.math.softplus,
    "elu": tf.nn.elu,
    "linear": tf.identity,
}


class MLP(tf.Module):
    """f(z) = W_L a(... a(W_1 z + b_1) ...) + b_L, with activation ``a`` between layers."""

    def __init__(self, sizes, activation="tanh", seed=0, dtype=tf.float32, name=None):
        super().__init__(name=name)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}"
            )
        self.sizes = [int(s) for s in sizes]
        self.activation = activation
        self.dtype = tf.as_dtype(dtype)
        rng = np.random.default_rng(seed)
        self.weights, self.biases = [], []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            # Glorot-uniform initialisation.
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-limit, limit, size=(fan_in, fan_out))
            self.weights.append(tf.Variable(w, dtype=self.dtype))
            self.biases.append(tf.Variable(np.zeros(fan_out), dtype=self.dtype))

    def constructor_arguments(self):
        """Sizes, activation and dtype; the weights are its variables (see estimators.fingerprint)."""
        return {"sizes": self.sizes, "activation": self.activation, "dtype": self.dtype}

    @property
    def in_dim(self):
        return self.sizes[0]

    @property
    def out_dim(self):
        return self.sizes[-1]

    def __call__(self, inputs):
        inputs = tf.convert_to_tensor(inputs, self.dtype)
        batch_shape = tf.shape(inputs)[:-1]
        h = tf.reshape(inputs, [-1, self.in_dim])
        act = ACTIVATIONS[self.activation]
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = tf.matmul(h, w) + b
            if i < len(self.weights) - 1:
                h = act(h)
        return tf.reshape(h, tf.concat([batch_shape, [self.out_dim]], axis=0))

    def to_arrays(self, prefix=""):
        """Weights as a flat dict of numpy arrays (for ``np.savez``)."""
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{prefix}w{i}"] = w.numpy()
            out[f"{prefix}b{i}"] = b.numpy()
        return out

    @classmethod
    def from_arrays(cls, arrays, activation="tanh", prefix="", dtype=tf.float32):
        n = sum(1 for k in arrays if k.startswith(prefix + "w"))
        ws = [np.asarray(arrays[f"{prefix}w{i}"]) for i in range(n)]
        sizes = [ws[0].shape[0]] + [w.shape[1] for w in ws]
        mlp = cls(sizes, activation=activation, dtype=dtype)
        for i in range(n):
            mlp.weights[i].assign(ws[i].astype(mlp.dtype.as_numpy_dtype))
            mlp.biases[i].assign(
                np.asarray(arrays[f"{prefix}b{i}"]).astype(mlp.dtype.as_numpy_dtype)
            )
        return mlp
