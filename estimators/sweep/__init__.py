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
"""

from estimators.results import CELLS_DIR
from estimators.sweep.driver import PER_METHOD, TIMED, resolve_jit_compile, sweep
from estimators.sweep.store import TRUTHS_DIR

__all__ = ["CELLS_DIR", "PER_METHOD", "TIMED", "TRUTHS_DIR", "resolve_jit_compile", "sweep"]
