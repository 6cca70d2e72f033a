"""Reading and writing sweep results: parquet tables whose metadata is JSON, written atomically.

A results table is the tidy frame of the sweep (``COLUMNS``). Its ``DataFrame.attrs`` (the run's
configuration, environment and compile times) travel in the parquet schema metadata under the key
``estimators`` as one JSON document, so any parquet reader can see them:

    pyarrow.parquet.read_schema(path).metadata[b"estimators"]  ->  JSON

Every write goes to a temporary file in the same folder first and is then renamed over the target
(``os.replace`` is atomic), so a killed run leaves either the old file or the new one, never half a
file. Nothing here imports TensorFlow: reports and comparisons load results instantly.

A run's folder holds ``results.parquet`` and, in ``cells/``, one file per finished
(model, method, M) cell: the record a rerun resumes from. The results table of a folder covers
every cell in ``cells/`` (``merge_folder_cells``): rerunning a subset of models, methods or M
into the same folder keeps the other finished cells in the table and the report. Cells that
cannot share one table (another seed, number of repeats or compilation mode; two versions of
one model) make it refuse with a ``ResultsError`` naming the files, never drop one silently.
"""

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from estimators.files import atomic_write
from estimators.record import PER_MODEL_AND_METHOD, CellRecord, RecordError, RunRecord

COLUMNS = (
    "model",
    "method",
    "num_samples",
    "repeat",
    "point",
    "estimate",
    "truth",
    "truth_se",
    "ess",
    "khat",
    "accept",
    "stages",
    "se",
    "seconds",
    "evaluations",
)
DTYPES = {
    "model": "str",
    "method": "str",
    "num_samples": "int64",
    "repeat": "int64",
    "point": "int64",
    "estimate": "float64",
    "truth": "float64",
    "truth_se": "float64",
    "ess": "float64",
    "khat": "float64",
    "accept": "float64",
    "stages": "float64",
    "se": "float64",
    "seconds": "float64",
    "evaluations": "float64",
}
# Per-point diagnostics a method may return (``se``: its own standard error of log p^); NaN
# where it has none.
DIAGNOSTICS = ("ess", "khat", "accept", "stages", "se")
# Diagnostics that older tables lack, and methods without them: NaN.
OPTIONAL = ("khat", "accept", "stages", "se", "evaluations")
METADATA_KEY = b"estimators"
RESULTS_FILE = "results.parquet"
CELLS_DIR = "cells"
# The settings every cell of one folder shares (a cell's own settings add model, method, M, chunk).
RUN_SETTINGS = ("seed", "repeats", "jit_compile", "results_version")


class ResultsError(Exception):
    """A results file is missing, unreadable, or belongs to a different configuration."""


def tidy(df):
    """``df`` restricted to ``COLUMNS`` in order, with the canonical dtypes (attrs kept)."""
    attrs = dict(df.attrs)
    absent = [c for c in OPTIONAL if c not in df.columns]
    if absent:
        df = df.assign(**{c: float("nan") for c in absent})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"results table lacks column(s) {', '.join(missing)}")
    out = df.loc[:, list(COLUMNS)].astype(DTYPES)
    out.attrs = attrs
    return out


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    atomic_write(path, lambda f: f.write(data))


def write_table(df, path, metadata=None):
    """Write ``df`` as parquet with ``metadata`` (JSON-serialisable; default ``df.attrs``)."""
    metadata = dict(df.attrs) if metadata is None else metadata
    table = pa.Table.from_pandas(df, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta.pop(b"PANDAS_ATTRS", None)  # the attrs live under our own key instead
    schema_meta[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=_json_default).encode()
    table = table.replace_schema_metadata(schema_meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_table(path):
    """Read a parquet written by ``write_table``: the frame, with its metadata as ``attrs``."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise ResultsError(
            f"{path} is unreadable (corrupt or not parquet: {err}); "
            "delete it to recompute, or point to another folder"
        ) from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ResultsError(
            f"{path} was not written by estimators (no '{METADATA_KEY.decode()}' metadata)"
        )
    df = table.to_pandas()
    df.attrs = json.loads(raw)
    return df


def read_metadata(path):
    """Only the metadata of a parquet written by ``write_table`` (reads the footer, not the data)."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    except (pa.ArrowException, OSError) as err:
        raise ResultsError(
            f"{path} is unreadable (corrupt or not parquet: {err}); "
            "delete it to recompute, or point to another folder"
        ) from None
    if raw is None:
        raise ResultsError(
            f"{path} was not written by estimators (no '{METADATA_KEY.decode()}' metadata)"
        )
    return json.loads(raw)


def results_path(location):
    """``location`` may be a results folder or the parquet file itself."""
    location = Path(location)
    return location / RESULTS_FILE if location.is_dir() else location


def load_results(location: str | Path) -> pd.DataFrame:
    """The tidy results table saved by a run: a folder (its results.parquet plus any finished cell
    in its cells/ that the file lacks, see ``merge_folder_cells``) or the parquet file itself."""
    location = Path(location)
    if location.is_dir() and not (location / RESULTS_FILE).exists():
        cells = list((location / CELLS_DIR).glob("*.parquet"))
        if cells:
            raise ResultsError(
                f"{location} has no {RESULTS_FILE}, only the {len(cells)} cell "
                "file(s) of an unfinished run: rerun the same `estimators run` "
                "command to finish it"
            )
    df = tidy(read_table(results_path(location)))
    run_record(df)  # an incomplete record is an error here, not a "?" in a report
    return merge_folder_cells(df, location) if location.is_dir() else df


def merge_folder_cells(df: pd.DataFrame, folder: str | Path) -> pd.DataFrame:
    """``df`` (a results table of ``folder``) plus every finished cell in ``folder/cells`` it lacks.

    A cell joins when it was computed with the table's run settings (``RUN_SETTINGS``) and, for a
    model the folder already holds, from the same model parameters and data (its fingerprint);
    any other cell raises ResultsError naming the file. The config in ``attrs`` is extended to
    the union (models, methods, M, points, cell fingerprints), the cells' compile records are
    added, and ``attrs["run"]["kept_cells"]`` counts the cells added here. Rows are ordered by
    model, method and M in the order the folder's runs listed them.
    """
    folder = Path(folder)
    config = df.attrs.get("config", {})
    have = config.get("cell_fingerprints", {})
    records = check_folder_cells(folder, config)
    extra = [path for path, record in records.items() if _cell_id(record) not in have]
    if not extra:
        return df
    frames = [read_table(path) for path in extra]
    merged = tidy(pd.concat([df, *(tidy(f) for f in frames)], ignore_index=True))
    previous = _previous_config(folder)
    order = {
        key: _ordered_union(previous.get(key, []), config.get(key, []), merged[column])
        for key, column in (("models", "model"), ("methods", "method"))
    }
    rank = {
        column: merged[column].map({v: i for i, v in enumerate(order[key])})
        for key, column in (("models", "model"), ("methods", "method"))
    }
    merged = (
        merged.assign(_model=rank["model"], _method=rank["method"])
        .sort_values(["_model", "_method", "num_samples", "repeat", "point"], kind="stable")
        .drop(columns=["_model", "_method"])
        .reset_index(drop=True)
    )
    merged.attrs = _merged_attrs(df.attrs, order, merged, frames)
    return merged


def check_folder_cells(
    folder: str | Path, settings: dict, model_fingerprints: dict | None = None
) -> dict:
    """{path: record} of the cells in ``folder/cells``, after checking that they can share one
    results table with a run of ``settings`` (``RUN_SETTINGS``) whose models have
    ``model_fingerprints`` ({name: fingerprint}); ResultsError naming the first that cannot."""
    records = {
        path: read_metadata(path) for path in sorted((Path(folder) / CELLS_DIR).glob("*.parquet"))
    }
    for path, record in records.items():
        _check_run_settings(path, record, settings)
    _check_one_version_per_model(records, model_fingerprints or {})
    return records


def _cell_id(record):
    return f"{record.get('model')}/{record.get('method')}/{record.get('num_samples')}"


def _check_run_settings(path, record, config):
    settings = record.get("settings", {})
    differ = [
        k
        for k in RUN_SETTINGS
        if k in config
        and settings.get(k) != config[k]
        and not (
            k == "jit_compile"
            and config[k] == PER_MODEL_AND_METHOD
            and isinstance(settings.get(k), bool)
        )
    ]
    if differ:
        detail = ", ".join(f"{k} = {settings.get(k)!r} (the run: {config[k]!r})" for k in differ)
        raise ResultsError(
            f"{path} was computed with other settings ({detail}): the results of "
            "a folder cover all its cells, so they must share them; use another "
            "output folder or delete that file"
        )


def _check_one_version_per_model(records, model_fingerprints):
    """Every cell of one model name was computed from the same model parameters and data."""
    first = {name: ("this run", fingerprint) for name, fingerprint in model_fingerprints.items()}
    for path, record in records.items():
        model, fingerprint = (
            record.get("model"),
            record.get("settings", {}).get("model_fingerprint"),
        )
        seen = first.setdefault(model, (path, fingerprint))
        if seen[1] != fingerprint:
            raise ResultsError(
                f"{path} holds model {model!r} computed from other parameters or "
                f"data than {seen[0]}: use another output folder or delete the "
                "cells of the old version"
            )


def _previous_config(folder):
    path = folder / RESULTS_FILE
    try:
        return read_metadata(path).get("config", {}) if path.exists() else {}
    except ResultsError:
        return {}


def _ordered_union(*sequences):
    return list(dict.fromkeys(v for sequence in sequences for v in sequence))


def _merged_attrs(attrs, order, merged, frames):
    record = RunRecord.from_json(attrs)
    models, methods = set(merged["model"]), set(merged["method"])
    points = merged.groupby("model", sort=False)["point"].nunique()
    kept = [cell_record(frame.attrs) for frame in frames]
    config = replace(
        record.config,
        models=[m for m in order["models"] if m in models],
        methods=[m for m in order["methods"] if m in methods],
        num_samples=sorted(int(m) for m in merged["num_samples"].unique()),
        num_points={m: int(points[m]) for m in order["models"] if m in models},
        cell_fingerprints={
            **record.config.cell_fingerprints,
            **{
                c.cell_id: frame.attrs.get("fingerprint")
                for c, frame in zip(kept, frames, strict=True)
            },
        },
    )
    return replace(
        record,
        config=config,
        cells=[*record.cells, *kept],
        run=replace(record.run, kept_cells=len(frames)),
    ).to_json()


def cell_record(metadata: dict) -> CellRecord:
    """The ``CellRecord`` in a cell file's metadata (which also holds its settings)."""
    names = CellRecord.__dataclass_fields__
    return CellRecord(**{k: v for k, v in metadata.items() if k in names})


def run_record(df: pd.DataFrame) -> RunRecord:
    """The typed run record of a results table (its ``attrs``); ResultsError if it lacks one."""
    try:
        return RunRecord.from_json(df.attrs)
    except (RecordError, TypeError) as err:
        raise ResultsError(
            f"the results' run record is incomplete ({err}): written by another version of "
            "estimators? rerun the sweep into a new folder"
        ) from None


def save_results(df: pd.DataFrame, location: str | Path) -> Path:
    """Save the tidy table and its attrs to ``location``/results.parquet; returns the path."""
    path = Path(location) / RESULTS_FILE
    RunRecord.from_json(df.attrs)  # a record that lacks a field fails here, not in a report
    write_table(tidy(df), path)
    return path


def _json_default(value):
    """numpy scalars and arrays inside metadata become plain JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
