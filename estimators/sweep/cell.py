"""Computing one cell: ``compute_cell(cell, model_input, truth) -> (frame, CellRecord)``.

The only way a cell is computed, in this process or on a Dask worker: it needs nothing but its
arguments. Every cell draws from its own stateless seed, folded from the sweep's seed and the
cell's names, so its numbers depend on neither the order of the cells nor which others run; its
calls use seeds split from that one.

Timing. ``seconds`` of a repeat = wall time of the call that produced it / b (the repeats in
that call). Each timed call materialises its result (``.numpy()``), so a GPU's asynchronous
work is finished inside the timed region. Compilation is excluded: before the first call of
each compiled shape one untimed warm-up call of a single chunk runs; its wall time is the cell's
``compile_seconds``. The shapes already warmed live on the model (``model_cache``), as the
compiled functions do.
"""

import socket
import time
import zlib

import numpy as np
import pandas as pd
import tensorflow as tf

from estimators.algorithms.proposals import default_prior_proposal
from estimators.estimator import compile_options, estimate
from estimators.models.base import as_seed, model_cache
from estimators.record import CellRecord
from estimators.reference import reference_log_marginal
from estimators.results import DIAGNOSTICS, tidy

_ARRIVED = {}  # ModelInput.key -> the first ModelInput of that key unpickled in this process


def resident(given):
    """The model input to compute with: in the process that planned the sweep, ``given``
    itself; in a worker, the first copy of that model to arrive, so the next cell of a model
    reuses its compiled functions instead of compiling them again."""
    if not given.arrived:
        return given
    return _ARRIVED.setdefault(given.key, given)


def worker_trace_counts():
    """{model name: {compiled function: times traced}} of the models this process received
    from elsewhere (on a cluster: ``client.run(worker_trace_counts)``): 1 everywhere means no
    recompilation across cells."""
    counts = {}
    for given in _ARRIVED.values():
        found = counts.setdefault(given.name, {})
        for cache_name, cache in getattr(given.model, "_cache", {}).items():
            for key, fn in _compiled_functions(cache):
                found[f"{cache_name}{key}"] = fn.experimental_get_tracing_count()
    return counts


def _compiled_functions(value, path=""):
    if hasattr(value, "experimental_get_tracing_count"):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _compiled_functions(item, f"{path}[{key!r}]")
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _compiled_functions(item, f"{path}[{index}]")


def compute_truth(given):
    """(log p(x) [N], its standard error [N]) of the model's data (``reference_log_marginal``)."""
    given = resident(given)
    truth, truth_se = reference_log_marginal(given.model, tf.constant(given.x))
    return np.asarray(truth, np.float64), np.asarray(truth_se, np.float64)


def compute_cell(cell, given, truth):
    """Run a cell: warm up if its compiled shape is new, then time each call of b repeats.
    ``truth``: (log p(x) [N], standard error [N]). Returns the tidy frame and its record."""
    given = resident(given)
    if given.fingerprint != cell.model_fingerprint:
        raise ValueError(
            f"cell {cell.cell_id}: the model differs on {socket.gethostname()} from the one "
            "it was planned for (another version of estimators or TensorFlow?)"
        )
    b, n = cell.repeats_per_call, given.num_points
    truth, truth_se = truth
    warmed = model_cache(given.model, "warmed_shapes")
    options = compile_options(cell.method, cell.num_samples, cell.chunk_size)
    shape = (cell.method, cell.chunk_size, b * n, cell.jit_compile, tuple(sorted(options.items())))
    compile_seconds = 0.0
    if shape not in warmed:
        start = time.perf_counter()
        # One chunk (at least the method's minimum M): compiles the function this cell uses;
        # the registry's warm_up overrides options the compiled function does not depend on.
        overrides = dict(cell.spec.method.warm_up)
        num_samples = overrides.pop(
            "num_samples", max(cell.chunk_size, cell.spec.method.min_samples)
        )
        estimate_cell(cell, given, num_samples, 0, **overrides)
        compile_seconds = time.perf_counter() - start
        warmed[shape] = True

    frames = []
    for call_index, seed in enumerate(stream_seeds(cell)):
        start = time.perf_counter()
        log_p, diagnostics = estimate_cell(cell, given, cell.num_samples, seed)
        seconds = (time.perf_counter() - start) / b
        frames.append(
            pd.DataFrame(
                {
                    "model": cell.model,
                    "method": cell.method,
                    "num_samples": cell.num_samples,
                    "repeat": np.repeat(np.arange(call_index * b, (call_index + 1) * b), n),
                    "point": np.tile(np.arange(n), b),
                    "estimate": log_p.astype(np.float64),
                    "truth": np.tile(truth, b),
                    "truth_se": np.tile(truth_se, b),
                    **diagnostics,
                    "seconds": seconds,
                }
            )
        )
    record = CellRecord(
        cell.model,
        cell.method,
        cell.num_samples,
        compile_seconds,
        cell.chunk_size,
        b,
        cell.jit_compile,
        host=socket.gethostname(),
    )
    return tidy(pd.concat(frames, ignore_index=True)), record


def estimate_cell(cell, given, num_samples, seed, jit_compile=None, **overrides):
    """One call as the cell makes it (its tiled rows, chunk, proposal and compile options):
    (log p^ [rows] as NumPy, {diagnostic: [rows]}), the work finished. ``jit_compile``
    overrides the cell's mode (the timed compile-mode choice probes both); ``overrides``, the
    spec's options (the warm-up's)."""
    spec = cell.spec
    x, latents = tiled(given, cell.repeats_per_call)
    proposal = prior_proposal(given, cell.seed) if spec.method.fixed_proposal else None
    # The options that pick the compiled function besides the shapes (k-hat's running top grows
    # with M): the warm-up uses them too, so it compiles what the timed calls run.
    options = compile_options(cell.method, cell.num_samples, cell.chunk_size)
    log_p, diag = estimate(
        given.model,
        x,
        cell.method,
        num_samples,
        seed=seed,
        proposal=proposal,
        chunk_size=cell.chunk_size,
        jit_compile=cell.jit_compile if jit_compile is None else jit_compile,
        return_diagnostics=True,
        posterior_samples=latents,
        **options,
        **overrides,
    )
    nan = np.full(int(x.shape[0]), np.nan)  # materialised: the work is finished
    diagnostics = {k: np.asarray(diag[k], np.float64) if k in diag else nan for k in DIAGNOSTICS}
    # A method whose cost is random (smc: its number of stages) counts it per point.
    diagnostics["evaluations"] = (
        np.asarray(diag["evaluations"], np.float64)
        if "evaluations" in diag
        else np.full(nan.shape, float(spec.evaluations(num_samples)))
    )
    return log_p.numpy(), diagnostics


def stream_seeds(cell):
    """One stateless seed per call: split from the cell seed folded from (seed, names)."""
    seed = as_seed(cell.seed)
    for part in (cell.model, cell.method, str(cell.num_samples)):
        seed = tf.random.experimental.stateless_fold_in(seed, zlib.crc32(part.encode()) >> 1)
    num_calls = cell.repeats // cell.repeats_per_call
    return tf.unstack(tf.random.experimental.stateless_split(seed, num_calls))


def tiled(given, copies):
    """(x, latents or None) as tensors repeated ``copies`` times along the rows: row r N + n is
    point n of repeat r."""
    key = ("tiled", copies)
    if key not in given._tensors:
        dtype = given.model.dtype
        given._tensors[key] = (
            tf.tile(tf.constant(given.x, dtype), [copies, 1]),
            None
            if given.latents is None
            else tf.tile(tf.constant(given.latents, dtype), [copies, 1]),
        )
    return given._tensors[key]


def prior_proposal(given, seed):
    """A fixed proposal's q(z), fitted once to the *untiled* data (``default_prior_proposal``)."""
    key = ("prior_proposal", seed)
    if key not in given._tensors:
        x = tf.constant(given.x, given.model.dtype)
        given._tensors[key] = default_prior_proposal(given.model, x, seed)
    return given._tensors[key]
