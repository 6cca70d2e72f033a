"""The sweep: every (model, method, M) cell, repeated, timed and scored against the truth.

    sweep(models, methods, num_samples, repeats, data, seed=0, out=None) -> tidy DataFrame

The data flow one way, a module each:

    plan.py       (models, data, methods, M, repeats, seed) -> frozen, fully decided Cells
    cell.py       compute_cell(cell, model input, truth) -> (frame, CellRecord): the only way a
                  cell is computed, in this process or on a Dask worker; compute_truth likewise
    executors.py  who runs the calls: InProcess here; distributed.DaskExecutor on a cluster,
                  handed a function and its arguments
    store.py      the run's folder: finished cells, truths, fingerprints (resuming)
    driver.py     sweep(): plan -> executor -> store -> the tidy table with its RunRecord

The package root exports lazily (PEP 562), so importing ``estimators.sweep.executors`` or
``estimators.sweep.store`` loads no TensorFlow.
"""

import importlib

_EXPORTS = {
    "sweep": "estimators.sweep.driver",
    "resolve_jit_compile": "estimators.sweep.driver",
    "PER_METHOD": "estimators.sweep.driver",
    "TIMED": "estimators.sweep.driver",
    "CELLS_DIR": "estimators.results",
    "TRUTHS_DIR": "estimators.sweep.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'estimators.sweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
