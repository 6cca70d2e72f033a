"""Compile and cache: one ``tf.function`` per (model, what it computes), kept on the model.

    fn = cached_function(model, "importance", key, make, owner=posterior, jit_compile=True)

``make()`` returns the Python function to compile; it runs only on a cache miss. The cache lives
on the model (``models.base.model_cache``): it dies with the model and is never pickled. A
callable compiled into the function (``owner``: a posterior q(z|x)) is part of the key, by
``callable_key``, and kept beside the function, so a new object that reuses a dead one's id does
not pick up a function compiled for the other.
"""

import tensorflow as tf

from estimators.models.base import model_cache


def callable_key(f):
    """A stable key for a callable: ``model.posterior`` is a new bound-method object on every
    access, so key bound methods by (instance id, function), anything else by id."""
    if f is None:
        return None
    if hasattr(f, "__self__") and hasattr(f, "__func__"):
        return (id(f.__self__), f.__func__)
    return id(f)


def cached_function(model, cache_name, key, make, owner=None, **options):
    """The cached ``tf.function(make(), **options)`` for ``key`` (and ``owner``) on ``model``."""
    cache = model_cache(model, cache_name)
    key = (key, callable_key(owner))
    if key in cache and cache[key][0] == owner:  # a reused id of a dead object does not count
        return cache[key][1]
    fn = tf.function(make(), **options)
    cache[key] = (owner, fn)
    return fn
