"""The sweep: every (model, method, M) cell, repeated, timed and scored against the truth.

    sweep(models, methods, num_samples, repeats, data, seed=0, out=None) -> tidy DataFrame

One row per (model, method, M, repeat, point) with the columns of ``results.COLUMNS``.

Repeats. Each data point already gets its own independent samples inside ``estimate``, so running
``estimate`` once on x tiled b times ([b·N, D]) yields b independent repeats in one call: far
faster than b calls at small M, where fixed per-call overhead dominates. The R repeats of a cell
run as R/b such calls (b = ``repeats_per_call``: all R when rows × chunk fits ``ROW_CHUNK_BUDGET``).
Every cell draws from its own stateless seed, folded from the sweep's ``seed`` and the cell's
names (so a cell's numbers do not depend on which other cells run, or in what order); the calls of
a cell use seeds split from it (``tf.random.experimental.stateless_split``).

Timing. ``seconds`` of a repeat = wall time of the call that produced it / b: the amortised cost
of one repeat (N points × M samples). Each timed call materialises its result (``.numpy()``), so a
GPU's asynchronous work is finished inside the timed region. Compilation is excluded: before the
first call of each compiled shape (model, method, chunk size, rows) one warm-up call of a single
chunk runs untimed; its wall time is recorded as that cell's ``compile_seconds`` (0 for cells that
reuse a compiled function) in ``df.attrs["compile"]``.

Chunks. ``estimate`` draws samples in chunks; a chunk larger than M wastes work (the overhang is
masked), so each cell uses chunk = min(max(M, ``min_chunk``), ``max_chunk``): cells with
M >= max_chunk share one compiled function, smaller M each compile their own (~0.3 s each in
graph mode). ``min_chunk`` > 1 trades that for wasted samples at small M (smoke runs use it).

Nothing lost. With ``out=``, each finished cell is written at once to ``out/cells/`` (atomically)
and the truths to ``out/truths/``; a rerun with the same ``out`` loads those and computes only the
missing cells, so it ends with the same table as an uninterrupted run. A file written under a
different configuration (seed, repeats, data, model parameters, compilation mode, chunking)
raises ``ResultsError`` naming the difference; nothing is overwritten. The folder's results cover
all its cells: finished cells of earlier runs outside this run's selection (other models,
methods or M) stay in ``results.parquet`` (``results.merge_folder_cells``). A model that cannot
be fingerprinted (``estimators.fingerprint``) cannot be saved for resuming: ``out=`` refuses it.

On a cluster. With ``client=`` (a ``dask.distributed.Client``) every cell is a task on the
cluster's workers (``estimators.distributed``), which run the same ``_compute_cell`` as an
in-process sweep; this process still writes each finished cell and the truths as they arrive, so
the table, the files and resuming are the same as in-process.
"""

import hashlib
import json
import re
import socket
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from numpy.typing import ArrayLike

from estimators import methods as registry
from estimators.environment import environment_info
from estimators.estimator import compile_options, default_prior_proposal, estimate
from estimators.fingerprint import FingerprintError, model_fingerprint
from estimators.models.base import LatentVariableModel, as_seed
from estimators.progress import ProgressBar
from estimators.reference import reference_log_marginal
from estimators.results import (
    CELLS_DIR,
    PER_MODEL_AND_METHOD,
    RESULTS_FILE,
    ResultsError,
    cell_record,
    check_folder_cells,
    merge_folder_cells,
    read_metadata,
    read_table,
    save_results,
    tidy,
    write_table,
)

TRUTHS_DIR = "truths"
ROW_CHUNK_BUDGET = 2**20  # rows × chunk size of one call: bounds the memory of a chunk
RESULTS_VERSION = (
    2  # bump when the meaning of stored numbers changes (2: method specs, diagnostics)
)
PROGRESS_OVERHEAD = 64  # a cell's fixed cost for the progress bar, in samples per row
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
DIAGNOSTICS = ("ess", "khat", "accept", "stages")  # per-point columns; NaN where a method has none


def sweep(
    models: dict[str, LatentVariableModel],
    methods: Sequence[str],
    num_samples: Sequence[int] | dict,
    repeats: int,
    data: dict[str, ArrayLike],
    seed: int = 0,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    jit_compile: bool | str = "auto",
    min_chunk: int = 1,
    max_chunk: int = 256,
    metadata: dict | None = None,
    latents: dict | None = None,
    client=None,
) -> pd.DataFrame:
    """Run every (model, method, M) cell ``repeats`` times; return the tidy results table.

    models: {name: model}; data: {name: x [N, D]} (a key per model); methods: names or specs
    from ``estimators.methods`` (stored in canonical form); num_samples: the M values (K chains
    for AIS), or {method: [M, ...]}; seed: int. ``latents``: {name: z [N, d]}, exact posterior
    draws of the data (simulated with ``model.sample(..., return_latents=True)``) for ``bdmc``.
    A method that does not apply to a model (AIS on a GMM; bdmc without exact posterior draws),
    and M values below a method's minimum (psis: 21), are skipped and listed in
    ``df.attrs["skipped"]`` with the reason.
    ``jit_compile``: True (XLA), False (graph)
    or "auto" (XLA on GPU; on CPU the faster mode per (model, method), measured once and
    remembered: see ``_choose_compile_modes``). ``out``: folder for incremental, resumable results (see module
    docstring); the final table is also saved as ``out/results.parquet``. ``metadata``: extra
    JSON-able entries for ``df.attrs["config"]`` (e.g. the preset's name). ``client``: a
    ``dask.distributed.Client``: run each cell as a task on its cluster (models must pickle;
    "auto" then means XLA when every worker has a GPU, else the mode measured per (model,
    method) in this process); None: in this process.

    The returned frame's ``attrs`` hold "config", "environment", "compile" (one record per
    cell: compile_seconds, chunk_size, repeats_per_call, jit_compile, the host that timed it
    and, on a cluster, its worker and host_concurrency: the cells its host ran at once), "run"
    (wall time, cells computed, cells loaded from ``out``, and cells kept from earlier runs into
    ``out``, which the table then also holds), "skipped" and "cluster" (None in-process; else
    workers, threads and hosts, see ``distributed.describe_cluster``, and the workers'
    environments) and "compile_modes" (with "auto" on CPU: per (model, method) the mode, how it
    was chosen and, when measured, the seconds of a warm call in each mode).
    """
    specs, budgets, repeats = _check_arguments(models, methods, num_samples, repeats, data)
    cluster = None
    if client is not None:
        from estimators import distributed

        cluster = {
            **distributed.describe_cluster(client),
            "worker_environments": distributed.probe_workers(client),
        }
        if jit_compile == "auto":  # the workers' devices decide, not this machine's
            gpus = all(e["device"] == "GPU" for e in cluster["worker_environments"])
            jit_compile = True if gpus else PER_METHOD
    jit_compile = resolve_jit_compile(jit_compile)
    out = None if out is None else Path(out)
    truths_dir = None if out is None else out / TRUTHS_DIR
    latents = latents or {}
    states = {
        name: _ModelState(name, model, data[name], truths_dir, latents.get(name))
        for name, model in models.items()
    }
    cells, skipped = [], []
    for m in models:
        for spec in specs:
            try:
                registry.check_applicable(
                    spec, states[m].model, posterior_samples=states[m].latents
                )
            except ValueError as err:
                skipped.append({"model": m, "method": spec.canonical, "reason": str(err)})
                continue
            minimum = spec.method.min_samples
            too_small = [M for M in budgets[spec.canonical] if M < minimum]
            if too_small:
                skipped.append(
                    {
                        "model": m,
                        "method": spec.canonical,
                        "reason": f"{spec.name} needs num_samples >= {minimum}; skipped M = "
                        f"{', '.join(map(str, too_small))}",
                    }
                )
            cells += [
                _Cell(
                    states[m],
                    spec,
                    M,
                    repeats,
                    int(seed),
                    jit_compile,
                    int(min_chunk),
                    int(max_chunk),
                )
                for M in budgets[spec.canonical]
                if M >= minimum
            ]
    if not cells:
        raise ValueError(
            "no method applies to any model: "
            + "; ".join(f"{s['model']}/{s['method']}: {s['reason']}" for s in skipped)
        )
    methods = [spec.canonical for spec in specs]
    num_samples = sorted({M for values in budgets.values() for M in values})
    compile_modes = _choose_compile_modes(cells, out) if jit_compile == PER_METHOD else []
    if out is not None:
        _check_existing_results(out, cells, jit_compile)

    frames, compile_records, warmed, loaded = [], [], set(), 0
    started = time.perf_counter()
    with ProgressBar(sum(map(_work, cells)), "sweep", enabled=progress) as bar:
        on_cluster = {} if client is None else _run_on_cluster(client, cells, out, bar)
        for i, cell in enumerate(cells):
            if cell.cell_id in on_cluster:  # computed, saved and counted by _run_on_cluster
                frame, record = on_cluster[cell.cell_id]
                frames.append(frame)
                compile_records.append(record)
                continue
            bar.describe(f"[{i + 1}/{len(cells)}] {cell.cell_id}")
            frame, record = _load_cell(out, cell) if out is not None else (None, None)
            loaded += frame is not None
            if frame is None:
                frame, record = _compute_cell(cell, warmed)
                _save_cell(out, cell, frame, record)
            frames.append(frame)
            compile_records.append(record)
            bar.advance(_work(cell))

    df = tidy(pd.concat(frames, ignore_index=True))
    df.attrs = {
        "config": _run_config(
            cells,
            models,
            methods,
            num_samples,
            repeats,
            seed,
            jit_compile,
            min_chunk,
            max_chunk,
            metadata,
        ),
        "environment": environment_info(xla=jit_compile),
        "compile": [cell_record(r) for r in compile_records],
        "run": {
            "wall_seconds": time.perf_counter() - started,
            "loaded_cells": loaded,
            "computed_cells": len(cells) - loaded,
        },
        "skipped": skipped,
        "cluster": cluster,
        "compile_modes": compile_modes,
    }
    if out is not None:
        df = merge_folder_cells(df, out)  # the folder's cells from earlier runs stay in its results
        save_results(df, out)
    return df


# --------------------------------------------------------------------------- arguments & config


def _check_arguments(models, methods, num_samples, repeats, data):
    """Validated (method specs, {canonical method: sorted M list}, repeats); ValueError naming
    the problem."""
    if not models:
        raise ValueError("models is empty: pass {name: model}")
    for name in models:
        if not _NAME.match(str(name)):
            raise ValueError(f"model name {name!r} may use only letters, digits, '_', '.' and '-'")
        if name not in data:
            raise ValueError(f"data has no entry for model {name!r}")
    methods = list(methods)
    if not methods:
        raise ValueError("methods is empty")
    specs = [registry.parse(m) for m in methods]
    canonical = [spec.canonical for spec in specs]
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"methods has duplicates (after filling in default options): {canonical}")
    budgets = {}
    for _given, spec in zip(methods, specs, strict=False):
        values = num_samples
        if isinstance(num_samples, dict):
            given_key = {registry.canonical(k): k for k in num_samples}.get(spec.canonical)
            if given_key is None:
                raise ValueError(f"num_samples has no budget for method {spec.canonical}")
            values = num_samples[given_key]
        values = sorted({int(m) for m in values})
        if not values or values[0] < 1:
            raise ValueError(f"num_samples must be positive integers; got {values}")
        budgets[spec.canonical] = values
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 2:
        raise ValueError(f"repeats must be an integer >= 2 (variance needs two); got {repeats!r}")
    return specs, budgets, int(repeats)


PER_METHOD = PER_MODEL_AND_METHOD  # "auto" on CPU: see ``_choose_compile_modes``


def resolve_jit_compile(jit_compile):
    """True/False as given; "auto" -> XLA when a GPU is visible, else ``PER_METHOD``: on CPU the
    faster mode depends on the model and the method, so the sweep chooses it per (model, method)
    (``_choose_compile_modes``, ``estimators.compile_mode``). The mode of every cell is recorded
    in ``df.attrs["compile"]``, and how each was chosen in ``df.attrs["compile_modes"]``."""
    if jit_compile == "auto":
        return True if tf.config.list_physical_devices("GPU") else PER_METHOD
    if jit_compile == PER_METHOD:
        return PER_METHOD
    if not isinstance(jit_compile, bool):
        raise ValueError(f"jit_compile must be True, False or 'auto'; got {jit_compile!r}")
    return jit_compile


def _run_config(
    cells, models, methods, num_samples, repeats, seed, jit_compile, min_chunk, max_chunk, metadata
):
    config = {
        "models": list(models),
        "methods": list(methods),
        "num_samples": list(num_samples),
        "repeats": repeats,
        "seed": int(seed),
        "jit_compile": jit_compile,
        "min_chunk": min_chunk,
        "max_chunk": max_chunk,
        "num_points": {c.state.name: c.state.num_points for c in cells},
        "cell_fingerprints": {c.cell_id: c.fingerprint for c in cells},
        "results_version": RESULTS_VERSION,
    }
    config.update(metadata or {})
    return config


def _choose_compile_modes(cells, out):
    """Set each cell's ``jit_compile`` to XLA or graph mode, per (model, method), on CPU.

    In order: the registry's fixed mode (AIS, BDMC, SMC: XLA); the mode of the pair's cells
    already in ``out`` (a resumed folder keeps its numbers); the choice remembered for this model,
    data, method, shapes and machine; else ``compile_mode.measure`` at M = min(largest M,
    ``PROBE_SAMPLES``) with that cell's chunk and rows, remembered for next time. Returns one
    record per pair: model, method, jit_compile, source, and the timings when measured."""
    from estimators import compile_mode

    pairs = {}
    for cell in cells:
        pairs.setdefault((cell.state.name, cell.method), []).append(cell)
    path = compile_mode.choices_path()
    records = []
    for (model, method), pair in pairs.items():
        first = pair[0]
        record = {"model": model, "method": method}
        stored = _stored_mode(out, pair)
        if first.spec.method.cpu_jit_compile is not None:
            record.update(jit_compile=bool(first.spec.method.cpu_jit_compile), source="registry")
        elif stored is not None:
            record.update(jit_compile=stored, source="results folder")
        else:
            probe_m = min(max(c.num_samples for c in pair), compile_mode.PROBE_SAMPLES)
            probe = _Cell(
                first.state,
                first.spec,
                probe_m,
                first.repeats,
                first.seed,
                PER_METHOD,
                first.min_chunk,
                first.max_chunk,
            )
            key = json.dumps(
                [
                    first.state.fingerprint,
                    method,
                    probe_m,
                    probe.chunk_size,
                    probe.repeats_per_call,
                    compile_mode.machine(),
                ]
            )
            remembered = compile_mode.load_choices(path).get(key)
            if first.state.fingerprint is not None and remembered is not None:
                record.update(remembered, source="remembered")
            else:
                timings = compile_mode.measure(
                    lambda mode, probe=probe: _estimate_cell(probe, probe.num_samples, 0, mode)
                )
                record.update(probe_samples=probe_m, **timings, source="measured")
                if first.state.fingerprint is not None:  # else nothing identifies it next time
                    compile_mode.remember_choice(
                        path, key, {k: v for k, v in record.items() if k != "source"}
                    )
        for cell in pair:
            cell.jit_compile = record["jit_compile"]
        records.append(record)
    return records


def _stored_mode(out, cells):
    """The compile mode (a bool) of the first of ``cells`` already saved in ``out``, else None."""
    for cell in cells if out is not None else ():
        path = out / CELLS_DIR / cell.filename
        if path.exists():
            mode = read_metadata(path).get("settings", {}).get("jit_compile")
            if isinstance(mode, bool):
                return mode
    return None


def _check_existing_results(out, cells, jit_compile):
    """Before computing anything, refuse a folder whose results.parquet or cell files came from a
    different configuration (or are unreadable): nothing is ever silently overwritten."""
    path = out / RESULTS_FILE
    if path.exists():
        stored = read_metadata(path).get("config", {}).get("cell_fingerprints", {})
        clashes = [
            c.cell_id for c in cells if c.cell_id in stored and stored[c.cell_id] != c.fingerprint
        ]
        if clashes:
            raise ResultsError(
                f"{path} holds results of a different configuration (seed, repeats, data, model "
                f"parameters, compilation mode or chunking differ) for {len(clashes)} cell(s), "
                f"e.g. {clashes[0]}; use another output folder or delete {out}"
            )
    for cell in cells:
        cell_path = out / CELLS_DIR / cell.filename
        if cell_path.exists():
            _check_cell_record(cell_path, read_metadata(cell_path), cell)
    run_settings = {**cells[0].settings, "jit_compile": jit_compile}  # the run's, not a pair's
    check_folder_cells(out, run_settings, {c.state.name: c.state.fingerprint for c in cells})


def _check_cell_record(path, record, cell):
    if record.get("fingerprint") != cell.fingerprint:
        stored = record.get("settings", {})
        differ = sorted(k for k in cell.settings if stored.get(k) != cell.settings[k])
        raise ResultsError(
            f"{path} was computed with a different configuration "
            f"({', '.join(differ) or 'unknown'} differ); use another output "
            "folder or delete the file"
        )


# --------------------------------------------------------------------------- models and cells


class _ModelState:
    """A model with its data, fingerprint and (computed once, lazily) truths and proposals."""

    def __init__(self, name, model, x, truths_dir=None, latents=None):
        self.name, self.model, self.truths_dir = name, model, truths_dir
        self.x = model.check_data(x)
        self.num_points = int(self.x.shape[0])
        self.latents = None
        if latents is not None:
            self.latents = tf.convert_to_tensor(np.asarray(latents), model.dtype)
            if self.latents.shape.as_list() != [self.num_points, model.latent_dim]:
                raise ValueError(
                    f"latents of {name} must have shape [N, d] = "
                    f"{[self.num_points, model.latent_dim]}; got "
                    f"{self.latents.shape.as_list()}"
                )
        self.fingerprint = _fingerprint(name, model, self.x, resumable=truths_dir is not None)
        if self.latents is not None and self.fingerprint is not None:
            self.fingerprint = _sha256(
                (self.fingerprint + "latents").encode()
                + np.ascontiguousarray(self.latents.numpy()).tobytes()
            )
        self._truth = None
        self._prior_proposal = None
        self._tiled = {}

    def truth(self):
        """(log p(x) [N], standard error [N]) from ``reference_log_marginal``, cached on disk."""
        if self.stored_truth() is None:
            self.store_truth(reference_log_marginal(self.model, self.x))
        return self._truth

    def stored_truth(self):
        """The truth if known (in memory or in ``truths_dir``), else None; computes nothing."""
        path = None if self.truths_dir is None else self.truths_dir / f"{self.name}.parquet"
        if self._truth is None and path is not None and path.exists():
            stored = read_table(path)
            if stored.attrs.get("fingerprint") != self.fingerprint:
                raise ResultsError(
                    f"{path} holds the truth of a different model or data set; "
                    "use another output folder or delete it"
                )
            self._truth = (stored["truth"].to_numpy(), stored["truth_se"].to_numpy())
        return self._truth

    def store_truth(self, truth):
        """Keep (log p(x), standard error), computed here or on a worker; write it to disk."""
        self._truth = tuple(np.asarray(t, np.float64) for t in truth)
        if self.truths_dir is not None:
            write_table(
                pd.DataFrame({"truth": self._truth[0], "truth_se": self._truth[1]}),
                self.truths_dir / f"{self.name}.parquet",
                {"fingerprint": self.fingerprint, "model": self.name},
            )

    def prior_proposal(self, seed):
        """prior_is's fixed q(z): moment-matched to the aggregate posterior of the *untiled* data."""
        if self._prior_proposal is None:
            self._prior_proposal = default_prior_proposal(self.model, self.x, seed)
        return self._prior_proposal

    def tiled(self, copies):
        """(x, latents or None) repeated ``copies`` times along the rows: row r·N + n is point
        n of repeat r."""
        if copies not in self._tiled:
            self._tiled[copies] = (
                tf.tile(self.x, [copies, 1]),
                None if self.latents is None else tf.tile(self.latents, [copies, 1]),
            )
        return self._tiled[copies]


@dataclass
class _Cell:
    state: _ModelState
    spec: registry.MethodSpec
    num_samples: int
    repeats: int
    seed: int
    jit_compile: bool
    min_chunk: int
    max_chunk: int
    chunk_size: int = field(init=False)
    repeats_per_call: int = field(init=False)

    @property
    def method(self):
        return self.spec.canonical

    def __post_init__(self):
        self.chunk_size = min(max(self.num_samples, self.min_chunk), self.max_chunk)
        max_copies = max(1, ROW_CHUNK_BUDGET // (self.chunk_size * self.state.num_points))
        # The largest divisor of R that fits: every call has the same shape (one compilation).
        self.repeats_per_call = max(
            b for b in range(1, self.repeats + 1) if self.repeats % b == 0 and b <= max_copies
        )

    @property
    def cell_id(self):
        return f"{self.state.name}/{self.method}/{self.num_samples}"

    @property
    def filename(self):
        """A file name from the cell's names: a method with options gets a hash of its spec."""
        method = self.spec.name
        if self.spec.options:
            method += "-" + _sha256(self.method.encode())[:10]
        return f"{self.state.name}__{method}__M{self.num_samples}.parquet"

    @property
    def settings(self):
        """Everything that determines this cell's numbers (its stored fingerprint's inputs)."""
        return {
            "model": self.state.name,
            "model_fingerprint": self.state.fingerprint,
            "method": self.method,
            "num_samples": self.num_samples,
            "repeats": self.repeats,
            "seed": self.seed,
            "jit_compile": self.jit_compile,
            "chunk_size": self.chunk_size,
            "repeats_per_call": self.repeats_per_call,
            "results_version": RESULTS_VERSION,
        }

    @property
    def fingerprint(self):
        return _sha256(json.dumps(self.settings, sort_keys=True).encode())

    def stream_seeds(self):
        """One stateless seed per call: split from the cell seed folded from (seed, names)."""
        seed = as_seed(self.seed)
        for part in (self.state.name, self.method, str(self.num_samples)):
            seed = tf.random.experimental.stateless_fold_in(seed, zlib.crc32(part.encode()) >> 1)
        num_calls = self.repeats // self.repeats_per_call
        return tf.unstack(tf.random.experimental.stateless_split(seed, num_calls))


def _estimate_cell(cell, num_samples, seed, jit_compile):
    """One call as the cell makes it (its tiled rows, chunk, proposal and compile options):
    (log p^ [rows] as NumPy, {diagnostic: [rows]}), the work finished."""
    state = cell.state
    x, latents = state.tiled(cell.repeats_per_call)
    proposal = state.prior_proposal(cell.seed) if cell.spec.name == "prior_is" else None
    # The options that pick the compiled function besides the shapes (k-hat's running top grows
    # with M): the warm-up uses them too, so it compiles what the timed calls run.
    options = compile_options(cell.method, cell.num_samples, cell.chunk_size)
    log_p, diag = estimate(
        state.model,
        x,
        cell.method,
        num_samples,
        seed=seed,
        proposal=proposal,
        chunk_size=cell.chunk_size,
        jit_compile=jit_compile,
        return_diagnostics=True,
        posterior_samples=latents,
        **options,
    )
    nan = np.full(int(x.shape[0]), np.nan)  # materialised: the work is finished
    diagnostics = {k: np.asarray(diag[k], np.float64) if k in diag else nan for k in DIAGNOSTICS}
    # A method whose cost is random (smc: its number of stages) counts it per point.
    diagnostics["evaluations"] = (
        np.asarray(diag["evaluations"], np.float64)
        if "evaluations" in diag
        else np.full(nan.shape, float(cell.spec.evaluations(num_samples)))
    )
    return log_p.numpy(), diagnostics


def _compute_cell(cell, warmed):
    """Run a cell: warm up if its compiled shape is new, then time each call of b repeats."""
    state, b = cell.state, cell.repeats_per_call
    x, _ = state.tiled(b)
    truth, truth_se = state.truth()
    options = compile_options(cell.method, cell.num_samples, cell.chunk_size)
    mode = cell.jit_compile  # a bool: "auto" was resolved per (model, method) by the sweep
    compile_seconds = 0.0
    shape_key = (
        state.name,
        cell.method,
        cell.chunk_size,
        int(x.shape[0]),
        mode,
        tuple(sorted(options.items())),
    )
    if shape_key not in warmed:
        start = time.perf_counter()
        # One chunk (at least the method's minimum M): compiles the function this cell uses.
        _estimate_cell(cell, max(cell.chunk_size, cell.spec.method.min_samples), 0, mode)
        compile_seconds = time.perf_counter() - start
        warmed.add(shape_key)

    rows = []
    for call_index, seed in enumerate(cell.stream_seeds()):
        start = time.perf_counter()
        log_p, diagnostics = _estimate_cell(cell, cell.num_samples, seed, mode)
        seconds = (time.perf_counter() - start) / b
        n = state.num_points
        rows.append(
            pd.DataFrame(
                {
                    "model": state.name,
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
    record = {
        "model": state.name,
        "method": cell.method,
        "num_samples": cell.num_samples,
        "compile_seconds": compile_seconds,
        "chunk_size": cell.chunk_size,
        "repeats_per_call": b,
        "fingerprint": cell.fingerprint,
        "settings": cell.settings,
        "jit_compile": mode,
        "host": socket.gethostname(),
    }
    return tidy(pd.concat(rows, ignore_index=True)), record


def _save_cell(out, cell, frame, record):
    """Write a finished cell to ``out/cells`` (atomically); nothing without ``out``."""
    if out is not None:
        write_table(frame, out / CELLS_DIR / cell.filename, record)


def _run_on_cluster(client, cells, out, bar):
    """Compute the cells not yet in ``out`` on the cluster (``distributed.run_cells``); save each
    one and advance the bar as it arrives. Returns {cell_id: (frame, record)} of the cells
    computed."""
    from estimators.distributed import run_cells

    missing = [
        cell for cell in cells if out is None or not (out / CELLS_DIR / cell.filename).exists()
    ]
    finished = {}

    def on_cell(cell, frame, record):
        _save_cell(out, cell, frame, record)
        finished[cell.cell_id] = frame, record
        bar.describe(f"[{len(finished)}/{len(missing)} on the cluster] {cell.cell_id}")
        bar.advance(_work(cell))

    if missing:
        run_cells(client, missing, lambda state, truth: state.store_truth(truth), on_cell)
    return finished


def _load_cell(out, cell):
    """A finished cell from ``out/cells`` (frame, record), or (None, None) when it is missing."""
    path = out / CELLS_DIR / cell.filename
    if not path.exists():
        return None, None
    frame = read_table(path)
    _check_cell_record(path, frame.attrs, cell)
    return tidy(frame), frame.attrs


def _fingerprint(name, model, x, resumable):
    """sha256 of the model's fingerprint and the data x; None for a model that cannot be
    fingerprinted, which only a sweep without ``out`` accepts (nothing saved is reused)."""
    try:
        return _sha256(
            model_fingerprint(model).encode() + np.ascontiguousarray(x.numpy()).tobytes()
        )
    except FingerprintError as err:
        if resumable:
            raise FingerprintError(
                f"model {name!r} cannot be saved for resuming: {err}; or run the sweep without out="
            ) from None
        return None


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _work(cell):
    """A cell's expected cost for the progress bar: samples per row plus a fixed overhead."""
    return (cell.num_samples + PROGRESS_OVERHEAD) * cell.state.num_points * cell.repeats
