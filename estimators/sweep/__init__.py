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

from estimators.lazy import lazy_exports

_EXPORTS = {
    "sweep": "estimators.sweep.driver",
    "resolve_jit_compile": "estimators.sweep.driver",
    "PER_METHOD": "estimators.sweep.driver",
    "TIMED": "estimators.sweep.driver",
    "CELLS_DIR": "estimators.results",
    "TRUTHS_DIR": "estimators.sweep.store",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
