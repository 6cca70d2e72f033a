"""One fingerprint of a model: what decides whether saved numbers belong to it.

    model_fingerprint(model) -> 64 hex digits        (FingerprintError when it cannot tell)

A model is fingerprinted from its public state only, never from private attributes (so caches a
library keeps on a model do not count):

- its class;
- its declared constructor parameters, ``constructor_arguments()`` (every model of this package
  and ``MLP`` declare theirs; a Keras layer's ``get_config()`` counts too), hashed recursively:
  numbers, strings and dtypes by value; arrays, tensors and variables by dtype, shape and bytes;
  lists and dicts element by element; components (a decoder, an encoder) in the same way;
- the ``variables`` of every component met on the way that is a ``tf.Module`` (the learned
  weights; a model's own variables count through what it declares);
- its ``amortized_posterior``, when one is attached;
- for a bound method (``module.log_likelihood``, say, passed to a ``CallableModel``), its
  function's name and the object it is bound to, fingerprinted as a component.

A component that declares nothing and holds no variables (a plain Python function as decoder,
a ``tf.Module`` that keeps its weights as constants) cannot be fingerprinted: its numbers could
change unseen. ``FingerprintError`` names it; callers then refuse to resume saved results (the
sweep) or skip their cache (the reference). The cure: give it a ``constructor_arguments()``
method returning what rebuilds it, or keep its weights in ``tf.Variable``s. A model class must
declare its own arguments: its constants are invisible otherwise.
"""

import hashlib
import inspect

import numpy as np
import tensorflow as tf

from estimators.models.base import LatentVariableModel


class FingerprintError(ValueError):
    """A model (or one of its components) whose state cannot be seen, so cannot be fingerprinted."""


def model_fingerprint(model: LatentVariableModel) -> str:
    """SHA-256 (hex) of the model's class, declared parameters, variables and amortized posterior.

    Two models with equal fingerprints compute the same numbers for the same inputs and seeds
    (up to changes of the library's own code, which results files version separately).
    Raises FingerprintError naming the component whose state cannot be seen.
    """
    digest = hashlib.sha256()
    _update(digest, model, "model")
    _update(digest, getattr(model, "amortized_posterior", None), "model.amortized_posterior")
    return digest.hexdigest()


def declared_arguments(component):
    """The constructor parameters ``component`` declares (a dict), or None when it declares none."""
    for name in ("constructor_arguments", "get_config"):
        method = getattr(component, name, None)
        if callable(method):
            try:
                return method()
            except NotImplementedError:
                return None
    return None


def _update(digest, value, path):
    """Feed ``value`` (found at ``path``, for error messages) into ``digest``."""

    def feed(text):
        digest.update(text.encode())

    if value is None or isinstance(value, (bool, int, float, str)):
        feed(f"{type(value).__name__}:{value!r};")
    elif isinstance(value, tf.DType):
        feed(f"dtype:{value.name};")
    elif isinstance(value, (np.ndarray, np.generic, tf.Tensor, tf.Variable)):
        array = np.ascontiguousarray(value.numpy() if hasattr(value, "numpy") else value)
        feed(f"array:{array.dtype.str}:{array.shape};")
        digest.update(array.tobytes())
    elif isinstance(value, (list, tuple)):
        feed(f"sequence:{len(value)}[")
        for i, item in enumerate(value):
            _update(digest, item, f"{path}[{i}]")
        feed("]")
    elif isinstance(value, dict):
        feed(f"mapping:{len(value)}{{")
        for key in sorted(value, key=str):
            feed(f"{key!s}=")
            _update(digest, value[key], f"{path}.{key}")
        feed("}")
    elif inspect.ismethod(value):  # a bound method: its function's name and its owner's state
        feed(f"method:{value.__func__.__qualname__};")
        _update(digest, value.__self__, f"{path}.__self__")
    else:
        _update_component(digest, value, path)


def _update_component(digest, component, path):
    """A decoder, an encoder, a model: its class, declared arguments and variables."""
    arguments = declared_arguments(component)
    # A model's state is what it declares (its components bring their variables): walking the
    # model's own attributes would also meet the caches kept on it.
    is_module = isinstance(component, tf.Module) and not isinstance(component, LatentVariableModel)
    variables = list(component.variables) if is_module else []
    if arguments is None and (isinstance(component, LatentVariableModel) or not variables):
        problem = (
            "its class does not declare constructor_arguments()"
            if isinstance(component, LatentVariableModel)
            else "it declares no constructor_arguments() and holds no tf.Variable"
        )
        raise FingerprintError(
            f"{path} ({_describe(component)}) cannot be fingerprinted: {problem}, so a change to "
            "it could go unseen; give it a constructor_arguments() method returning what "
            "rebuilds it, or keep its weights in tf.Variables"
        )
    cls = type(component)
    digest.update(f"component:{cls.__module__}.{cls.__qualname__}(".encode())
    if arguments is not None:
        _update(digest, arguments, path)
    for i, variable in enumerate(variables):
        _update(digest, variable, f"{path}.variables[{i}]")
    digest.update(b")")


def _describe(component):
    """'function my_decoder', 'LinearDecoder', ...: what the user will recognise."""
    kind = type(component).__name__
    name = getattr(component, "__name__", None)
    return f"{kind} {name}" if name and name != kind else kind
