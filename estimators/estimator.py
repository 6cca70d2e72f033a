"""``estimate``: one call for every registered method (``estimators.methods``).

    estimate(model, x, method, num_samples, *, seed, **options) -> log p^(x) [N]

``method`` is a registry name or spec (``"ais:steps=1000"``); keyword options are the same as
spec options (``estimate(..., "ais", K, seed=0, steps=1000)`` is the same call). The inputs are
checked here, once, for every method; the method's own module (``Method.module``, under
``estimators.algorithms``) does the sampling in one compiled TensorFlow function.
"""

import importlib
import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from estimators import methods
from estimators.models.base import LatentVariableModel, as_seed

METHODS = tuple(methods.names())
DEFAULT_CHUNK_SIZE = 256


class _HideRetracingWarning(logging.Filter):
    """Each (model, method) gets its own tf.function built from the same Python closure, which
    TensorFlow's retracing heuristic mistakes for retracing. Real retraces are tested instead
    (tests/test_estimate.py counts traces), so the misleading warning is dropped."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_HideRetracingWarning())


@dataclass(frozen=True)
class Context:
    """What a method's ``run`` gets besides the model, data, M and seed."""

    proposal: object = None  # prior_is: a distribution; posterior methods: x -> q(z|x)
    chunk_size: int = DEFAULT_CHUNK_SIZE  # samples (or chains) per chunk of the streaming loop
    jit_compile: bool = True  # XLA (True) or TensorFlow graph mode (False)
    posterior_samples: object = None  # bdmc: z ~ p(z|x) exactly, [N, d]
    diagnostics: bool = False  # the caller wants the diagnostics (k-hat costs a running top)
    tail_capacity: int = None  # size of that running top (default: from M; see pareto)


def estimate(
    model: LatentVariableModel,
    x: ArrayLike | tf.Tensor,
    method: str,
    num_samples: int,
    *,
    seed: int | ArrayLike,
    proposal: object = None,
    chunk_size: int | None = None,
    jit_compile: bool = True,
    return_diagnostics: bool = False,
    posterior_samples: ArrayLike | tf.Tensor | None = None,
    tail_capacity: int | None = None,
    **options,
) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """log p^(x) (or the method's bound) for each row of x [N, D]; returns a Tensor [N].

    ``method``: a name or spec from ``estimators.methods`` (``estimators list`` shows them);
    ``**options`` set the method's options. ``num_samples``: M samples for importance sampling,
    K chains for AIS and BDMC, K particles for SMC. ``proposal``: a distribution over z for
    ``prior_is``; a callable x -> distribution over z for the methods that use q(z|x).
    ``posterior_samples``: exact draws z ~ p(z|x) [N, d] for ``bdmc`` on a model without an
    exact posterior. ``seed``: an int or a [2] stateless seed; same seed, same numbers. With
    ``return_diagnostics=True`` returns (estimate, {name: [N]}): the Kish ``ess`` for every
    method, the Pareto ``khat`` of the importance weights (NaN where M < 21; not for the ELBO),
    plus per-method diagnostics (``accept`` and ``step_size`` for AIS; ``accept``, ``stages``
    and ``evaluations`` for SMC). ``tail_capacity``: the size of the running top of log weights
    that k-hat needs (default: the next power of two >= its tail size + 1; see
    ``compile_options``). ``ValueError`` where M is below the method's minimum (psis: 21).
    """
    spec = methods.parse(method, **options)
    num_samples = _check_num_samples(num_samples)
    methods.check_num_samples(spec, num_samples)
    chunk_size = default_chunk_size(spec, num_samples) if chunk_size is None else int(chunk_size)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size}")
    if tail_capacity is not None and (
        isinstance(tail_capacity, bool)
        or tail_capacity <= 0
        or not isinstance(tail_capacity, (int, np.integer))
    ):
        raise ValueError(f"tail_capacity must be a positive integer; got {tail_capacity!r}")
    x = model.check_data(x)
    methods.check_applicable(spec, model, proposal=proposal, posterior_samples=posterior_samples)
    if posterior_samples is not None:
        posterior_samples = _check_posterior_samples(model, x, posterior_samples)
    context = Context(
        proposal,
        chunk_size,
        bool(jit_compile),
        posterior_samples,
        bool(return_diagnostics),
        None if tail_capacity is None else int(tail_capacity),
    )
    implementation = importlib.import_module(spec.method.module)
    result, diagnostics = implementation.run(spec, model, x, num_samples, as_seed(seed), context)
    return (result, diagnostics) if return_diagnostics else result


def default_chunk_size(spec, num_samples):
    """The method's default chunk, or the next power of two >= M when M is smaller.

    A chunk is computed whole even where M is smaller (its overhang is masked), so at M = 1 a
    256-sample chunk would cost 256 samples: a warm call at small M then cost 5x a bare compiled
    function. Powers of two keep it to at most log2(chunk) + 1 compiled functions below the
    default chunk; from there on one function serves every M. Pass ``chunk_size`` for one
    function at every M (the sweep does)."""
    return min(spec.method.default_chunk, 1 << (int(num_samples) - 1).bit_length())


def compile_options(method, num_samples, chunk_size=DEFAULT_CHUNK_SIZE):
    """Keyword arguments for ``estimate`` that, with x's shape and the chunk size, pick the
    compiled function a ``return_diagnostics=True`` call at M = ``num_samples`` runs (e.g. the
    capacity of k-hat's running top, which grows with M). A call at a smaller M with the same
    options runs the same function: the sweep's untimed warm-up uses this."""
    spec = methods.parse(method)
    hook = getattr(importlib.import_module(spec.method.module), "compile_options", None)
    return hook(spec, int(num_samples), int(chunk_size)) if hook else {}


def _check_num_samples(num_samples):
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        if isinstance(num_samples, float) and num_samples.is_integer():
            num_samples = int(num_samples)
        else:
            raise ValueError(f"num_samples must be a positive integer; got {num_samples!r}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be a positive integer; got {num_samples}")
    if num_samples > 2**31 - 1:
        raise ValueError(f"num_samples = {num_samples} exceeds 2^31 - 1")
    return int(num_samples)


def _check_posterior_samples(model, x, z):
    """z as an [N, d] tensor of the model's dtype, one exact posterior draw per row of x."""
    z = tf.convert_to_tensor(z, model.dtype)
    want = [int(x.shape[0]), model.latent_dim]
    if z.shape.as_list() != want:
        raise ValueError(
            f"posterior_samples must have shape [N, d] = {want}; got {z.shape.as_list()}"
        )
    if not np.all(np.isfinite(z.numpy())):
        raise ValueError("posterior_samples contains NaN or inf")
    return z
