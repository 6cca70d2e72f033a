"""The store: a run's folder, for resuming. It knows cells and truths, not how they are computed.

    out/cells/<model>__<method>__M<M>.parquet   one finished cell, written as soon as it is done
    out/truths/<model>.parquet                  the reference log p(x) of a model's data
    out/results.parquet                         the whole table with its run record

Every write is atomic (``files.atomic_write``). A cell file's metadata holds its record and its
settings' fingerprint: a rerun loads the cells whose fingerprint matches and computes only the
missing ones, so it ends with the table of a run never interrupted. A file written under other
settings raises ``ResultsError`` naming what differs; nothing is overwritten silently.
A store without a folder (``Store(None)``) keeps nothing and finds nothing.
"""

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from estimators.results import (
    CELLS_DIR,
    RESULTS_FILE,
    ResultsError,
    cell_record,
    check_folder_cells,
    read_metadata,
    read_table,
    tidy,
    write_table,
)

TRUTHS_DIR = "truths"


class Store:
    def __init__(self, out):
        self.out = None if out is None else Path(out)

    def cell_path(self, cell):
        return self.out / CELLS_DIR / cell.filename

    def has_cell(self, cell):
        return self.out is not None and self.cell_path(cell).exists()

    def load_cell(self, cell):
        """(frame, CellRecord) of a finished cell, or None when it is not stored."""
        if not self.has_cell(cell):
            return None
        path = self.cell_path(cell)
        frame = read_table(path)
        check_cell(path, frame.attrs, cell)
        return tidy(frame), cell_record(frame.attrs)

    def save_cell(self, cell, frame, record):
        if self.out is not None:
            metadata = {
                **asdict(record),
                "fingerprint": cell.fingerprint,
                "settings": cell.settings,
            }
            write_table(frame, self.cell_path(cell), metadata)

    def stored_mode(self, cells):
        """The compile mode (a bool) of the first of ``cells`` already stored, else None: a
        resumed folder keeps the mode its numbers were made with."""
        for cell in cells:
            if self.has_cell(cell):
                mode = read_metadata(self.cell_path(cell)).get("settings", {}).get("jit_compile")
                if isinstance(mode, bool):
                    return mode
        return None

    def truth_path(self, name):
        return self.out / TRUTHS_DIR / f"{name}.parquet"

    def load_truth(self, given):
        """(log p(x) [N], standard error [N]) of a model input, or None when not stored."""
        if self.out is None or not self.truth_path(given.name).exists():
            return None
        path = self.truth_path(given.name)
        stored = read_table(path)
        if stored.attrs.get("fingerprint") != given.fingerprint:
            raise ResultsError(
                f"{path} holds the truth of a different model or data set; "
                "use another output folder or delete it"
            )
        return stored["truth"].to_numpy(), stored["truth_se"].to_numpy()

    def save_truth(self, given, truth):
        if self.out is not None:
            write_table(
                pd.DataFrame({"truth": np.asarray(truth[0]), "truth_se": np.asarray(truth[1])}),
                self.truth_path(given.name),
                {"fingerprint": given.fingerprint, "model": given.name},
            )

    def check(self, cells, run_settings, model_fingerprints):
        """Before computing anything, refuse a folder whose results or cell files came from a
        different configuration (or are unreadable)."""
        if self.out is None:
            return
        path = self.out / RESULTS_FILE
        if path.exists():
            stored = read_metadata(path).get("config", {}).get("cell_fingerprints", {})
            clashes = [
                c.cell_id for c in cells if stored.get(c.cell_id, c.fingerprint) != c.fingerprint
            ]
            if clashes:
                raise ResultsError(
                    f"{path} holds results of a different configuration (seed, repeats, data, "
                    "model parameters, compilation mode or chunking differ) for "
                    f"{len(clashes)} cell(s), e.g. {clashes[0]}; use another output folder or "
                    f"delete {self.out}"
                )
        for cell in cells:
            if self.has_cell(cell):
                check_cell(self.cell_path(cell), read_metadata(self.cell_path(cell)), cell)
        check_folder_cells(self.out, run_settings, model_fingerprints)


def check_cell(path, metadata, cell):
    if metadata.get("fingerprint") != cell.fingerprint:
        stored = metadata.get("settings", {})
        differ = sorted(k for k, v in cell.settings.items() if stored.get(k) != v)
        raise ResultsError(
            f"{path} was computed with a different configuration "
            f"({', '.join(differ) or 'unknown'} differ); use another output "
            "folder or delete the file"
        )
