"""The driver: plan -> executor -> store, and the tidy table with its run record.

    sweep(models, methods, num_samples, repeats, data, seed=0, out=None) -> tidy DataFrame

One row per (model, method, M, repeat, point) with the columns of ``results.COLUMNS``.
"""

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd
import tensorflow as tf
from numpy.typing import ArrayLike

from estimators import compile_mode
from estimators.environment import environment_info
from estimators.models.base import LatentVariableModel
from estimators.progress import ProgressBar
from estimators.record import PER_MODEL_AND_METHOD, RunConfig, RunRecord, RunStats
from estimators.results import merge_folder_cells, save_results, tidy
from estimators.sweep.cell import compute_cell, compute_truth, estimate_cell
from estimators.sweep.executors import InProcess
from estimators.sweep.plan import Cell, check_arguments, layout, model_input, plan
from estimators.sweep.store import Store

PER_METHOD = PER_MODEL_AND_METHOD  # "auto" on CPU: the mode chosen per (model, method)
TIMED = "timed"  # opt-in: the faster mode per (model, method), timed on this machine


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
    draws of the data (``model.sample(..., return_latents=True)``) for ``bdmc``. A method that
    does not apply to a model, and M values below a method's minimum (psis: 21), are skipped and
    listed in the run record with the reason.

    ``jit_compile``: True (XLA), False (graph mode), "auto" (XLA on GPU; on CPU a fixed rule per
    (model, method): ``compile_mode.rule``) or "timed" (on CPU the faster mode, timed once per
    machine and remembered). ``out``: a folder for incremental, resumable results
    (``sweep.store``); the final table is also saved as ``out/results.parquet``. ``metadata``:
    the preset's name ("preset"), whether it was shrunk ("quick") and any other JSON-able
    entries for the record's config. ``client``: a ``dask.distributed.Client``: each truth and
    cell is a task on its cluster (models must pickle); "auto" then means XLA when every worker
    has a GPU. None: in this process.

    The returned frame's ``attrs`` are its ``RunRecord`` (``results.run_record(df)``).
    """
    specs, budgets, repeats = check_arguments(models, methods, num_samples, repeats, data)
    executor = InProcess() if client is None else _dask_executor(client)
    cluster = executor.describe()
    gpus = (
        all(e["device"] == "GPU" for e in cluster["worker_environments"])
        if cluster
        else bool(tf.config.list_physical_devices("GPU"))
    )
    timed = jit_compile == TIMED
    jit_compile = resolve_jit_compile("auto" if timed else jit_compile, gpus=gpus)
    store = Store(out)
    inputs = {
        name: model_input(
            name, model, data[name], (latents or {}).get(name), resumable=out is not None
        )
        for name, model in models.items()
    }
    chooser = _ModeChooser(jit_compile, timed, store, inputs, repeats, seed, min_chunk, max_chunk)
    the_plan = plan(inputs, specs, budgets, repeats, seed, chooser, min_chunk, max_chunk)
    cells = the_plan.cells
    store.check(
        cells,
        {**cells[0].settings, "jit_compile": jit_compile},
        {name: given.fingerprint for name, given in inputs.items()},
    )

    started = time.perf_counter()
    results, loaded = {}, 0
    for cell in cells:
        found = store.load_cell(cell)
        if found is not None:
            results[cell.cell_id], loaded = found, loaded + 1
    missing = [cell for cell in cells if cell.cell_id not in results]
    total = sum(cell.work(inputs[cell.model].num_points) for cell in missing)
    with ProgressBar(total, "sweep", enabled=progress) as bar:
        truths = _truths(executor, store, inputs, {cell.model for cell in missing})

        def on_cell(cell_id, value, place):
            cell = by_id[cell_id]
            frame, record = value
            record = replace(record, **place)  # where it ran, on a cluster
            store.save_cell(cell, frame, record)
            results[cell_id] = frame, record
            bar.advance(cell.work(inputs[cell.model].num_points), cell_id)

        by_id = {cell.cell_id: cell for cell in missing}
        calls = [(c.cell_id, (c, inputs[c.model], truths[c.model])) for c in missing]
        executor.map(compute_cell, calls, on_cell)

    frames = [results[cell.cell_id][0] for cell in cells]
    df = tidy(pd.concat(frames, ignore_index=True))
    metadata = dict(metadata or {})
    config = RunConfig(
        models=list(models),
        methods=the_plan.methods,
        num_samples=the_plan.num_samples,
        repeats=repeats,
        seed=int(seed),
        jit_compile=jit_compile,
        min_chunk=int(min_chunk),
        max_chunk=int(max_chunk),
        num_points={name: given.num_points for name, given in inputs.items()},
        cell_fingerprints={cell.cell_id: cell.fingerprint for cell in cells},
        results_version=cells[0].results_version,
        preset=metadata.pop("preset", None),
        quick=bool(metadata.pop("quick", False)),
        extra=metadata,
    )
    df.attrs = RunRecord(
        config=config,
        environment=environment_info(xla=jit_compile),
        cells=[results[cell.cell_id][1] for cell in cells],
        run=RunStats(time.perf_counter() - started, len(missing), loaded),
        skipped=the_plan.skipped,
        cluster=cluster,
        compile_modes=chooser.records,
    ).to_json()
    if out is not None:
        df = merge_folder_cells(df, out)  # the folder's cells from earlier runs stay in its results
        save_results(df, out)
    return df


def resolve_jit_compile(jit_compile, gpus=None):
    """True/False as given; "auto" -> XLA on GPU, else ``PER_METHOD`` (the mode per (model,
    method), ``compile_mode.rule``)."""
    if gpus is None:
        gpus = bool(tf.config.list_physical_devices("GPU"))
    if jit_compile in ("auto", TIMED):
        return True if gpus else PER_METHOD
    if jit_compile == PER_METHOD:
        return PER_METHOD
    if not isinstance(jit_compile, bool):
        raise ValueError(f"jit_compile must be True, False, 'auto' or 'timed'; got {jit_compile!r}")
    return jit_compile


def _dask_executor(client):
    from estimators.distributed import DaskExecutor

    return DaskExecutor(client)


def _truths(executor, store, inputs, names):
    """{model: (log p(x), standard error)} for ``names``: stored, else computed and stored."""
    truths = {}
    for name in names:
        truths[name] = store.load_truth(inputs[name])

    def on_truth(name, truth, place):
        store.save_truth(inputs[name], truth)
        truths[name] = truth

    missing = [(name, (inputs[name],)) for name in sorted(names) if truths[name] is None]
    executor.map(compute_truth, missing, on_truth, priority=1)
    return truths


class _ModeChooser:
    """mode(model, spec, Ms) -> bool for ``plan``, recording how each pair's mode was chosen:
    pinned (True/False: nothing recorded), else the registry, the results folder (a resumed
    folder keeps its numbers), the rule, or (``timed``) a measurement."""

    def __init__(self, jit_compile, timed, store, inputs, repeats, seed, min_chunk, max_chunk):
        self.jit_compile, self.timed, self.store, self.inputs = jit_compile, timed, store, inputs
        self.repeats, self.seed, self.min_chunk, self.max_chunk = (
            repeats,
            seed,
            min_chunk,
            max_chunk,
        )
        self.records = []

    def __call__(self, name, spec, values):
        if self.jit_compile != PER_METHOD:
            return self.jit_compile
        given = self.inputs[name]
        mode, source = compile_mode.rule(spec, given.model)
        record = {"model": name, "method": spec.canonical}
        stored = self.store.stored_mode([self._cell(name, spec, M, True) for M in values])
        if source == "registry":
            record.update(jit_compile=mode, source=source)
        elif stored is not None:
            record.update(jit_compile=stored, source="results folder")
        elif self.timed:
            probe = self._cell(name, spec, min(max(values), compile_mode.PROBE_SAMPLES), True)
            key = [given.fingerprint, probe.method, probe.num_samples, probe.chunk_size]
            record.update(
                compile_mode.timed(
                    key + [probe.repeats_per_call],
                    lambda mode: estimate_cell(probe, given, probe.num_samples, 0, mode),
                    remember=given.fingerprint is not None,
                )
            )
        else:
            record.update(jit_compile=mode, source=source)
        self.records.append(record)
        return record["jit_compile"]

    def _cell(self, name, spec, num_samples, jit_compile):
        given = self.inputs[name]
        chunk, per_call = layout(
            num_samples, self.repeats, given.num_points, self.min_chunk, self.max_chunk
        )
        return Cell(
            name,
            spec.canonical,
            num_samples,
            self.repeats,
            int(self.seed),
            jit_compile,
            chunk,
            per_call,
            given.fingerprint,
        )
