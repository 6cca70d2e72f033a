"""How a run's seconds were measured and compiled, from its run record (``estimators.record``).

The record is read once, by ``run_record(df)``: ``RunRecord.from_json(df.attrs)``. A table with
no attrs at all (one built by hand, or a slice) has no record: None, and then its cells count as
timed one at a time on one machine and its compile seconds are NaN. Attrs that are there but lack
a field raise ``RecordError`` naming it.
"""

import pandas as pd

from estimators.record import RunRecord
from estimators.summary.cells import CELL

COMPILE_MODE_COLUMNS = [
    "model",
    "method",
    "jit_compile",
    "source",
    "probe_samples",
    "xla_seconds",
    "graph_seconds",
]


def run_record(df: pd.DataFrame) -> RunRecord | None:
    """The run record of a results table; None when the table carries no metadata at all."""
    return RunRecord.from_json(df.attrs) if df.attrs else None


def compile_seconds(record: RunRecord | None) -> pd.DataFrame:
    """One row per recorded cell: model, method, num_samples, compile_seconds."""
    rows = [
        (c.model, c.method, c.num_samples, c.compile_seconds)
        for c in (record.cells if record else [])
    ]
    return pd.DataFrame(rows, columns=CELL + ["compile_seconds"]).astype(
        {"num_samples": "int64", "compile_seconds": "float64"}
    )


def compile_modes(record: RunRecord | None) -> pd.DataFrame:
    """How each (model, method) got its compile mode on CPU, with the warm-call seconds in each
    mode where measured; empty when the run fixed one mode."""
    return pd.DataFrame(record.compile_modes if record else [], columns=COMPILE_MODE_COLUMNS)


def timing_conditions(record: RunRecord | None) -> dict:
    """{"concurrency": the most cells one host ran at once (1: one at a time, as in-process),
    "shared": cells timed while their host ran others, "cells": cells, "hosts": sorted host
    names}. Cells without a host or concurrency (in-process runs) count as one at a time."""
    cells = record.cells if record else []
    concurrency = [c.host_concurrency or 1 for c in cells]
    return {
        "concurrency": max(concurrency, default=1),
        "shared": sum(c > 1 for c in concurrency),
        "cells": len(cells),
        "hosts": sorted({c.host for c in cells if c.host}),
    }


def timing_note(record: RunRecord | None) -> str | None:
    """A sentence for the report when its seconds are not those of a sequential run on one
    machine (cells shared a host's cores, or several hosts timed them); else None."""
    conditions = timing_conditions(record)
    notes = []
    if conditions["concurrency"] > 1:
        notes.append(
            f"{conditions['shared']} of {conditions['cells']} cells were timed while "
            f"their host ran up to {conditions['concurrency']} cells at once (Dask "
            "workers sharing its cores and memory bandwidth): their seconds are not "
            "comparable with a sequential run"
        )
    hosts = conditions["hosts"]
    if len(hosts) > 1:
        shown = ", ".join(hosts[:4]) + (", ..." if len(hosts) > 4 else "")
        notes.append(
            f"cells were timed on {len(hosts)} hosts ({shown}): seconds of different "
            "cells compare only as far as the hosts are alike"
        )
    if not notes:
        return None
    text = "; ".join(notes)
    return text[0].upper() + text[1:] + "."


def timing_mismatch(old: RunRecord | None, new: RunRecord | None) -> str | None:
    """A warning when two runs' seconds were measured under different conditions (cells run
    one at a time vs concurrently on a host, or one host vs several); else None."""
    old, new = timing_conditions(old), timing_conditions(new)

    def describe(c):
        text = (
            "one cell at a time"
            if c["concurrency"] == 1
            else f"up to {c['concurrency']} cells at once per host"
        )
        return text + (f" on {len(c['hosts'])} hosts" if len(c["hosts"]) > 1 else "")

    if (old["concurrency"], len(old["hosts"]) > 1) == (new["concurrency"], len(new["hosts"]) > 1):
        return None
    return (
        f"seconds are not comparable: the old run timed {describe(old)}, the new run "
        f"{describe(new)}"
    )
