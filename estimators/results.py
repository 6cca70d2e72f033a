"""Reading and writing sweep results: parquet tables whose metadata is JSON, written atomically.

A results table is the tidy frame of DESIGN §4 (``COLUMNS``). Its ``DataFrame.attrs`` (the run's
configuration, environment and compile times) travel in the parquet schema metadata under the key
``estimators`` as one JSON document, so any parquet reader can see them:

    pyarrow.parquet.read_schema(path).metadata[b"estimators"]  ->  JSON

Every write goes to a temporary file in the same folder first and is then renamed over the target
(``os.replace`` is atomic), so a killed run leaves either the old file or the new one, never half a
file. Nothing here imports TensorFlow: reports and comparisons load results instantly.
"""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from estimators.files import atomic_write

COLUMNS = ("model", "method", "num_samples", "repeat", "point",
           "estimate", "truth", "truth_se", "ess", "khat", "accept", "stages", "seconds",
           "evaluations")
DTYPES = {"model": "str", "method": "str", "num_samples": "int64", "repeat": "int64",
          "point": "int64", "estimate": "float64", "truth": "float64", "truth_se": "float64",
          "ess": "float64", "khat": "float64", "accept": "float64", "stages": "float64",
          "seconds": "float64", "evaluations": "float64"}
# Diagnostics that older tables lack, and methods without them: NaN.
OPTIONAL = ("khat", "accept", "stages", "evaluations")
METADATA_KEY = b"estimators"
RESULTS_FILE = "results.parquet"


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
        raise ResultsError(f"{path} is unreadable (corrupt or not parquet: {err}); "
                           "delete it to recompute, or point to another folder") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ResultsError(f"{path} was not written by estimators (no '{METADATA_KEY.decode()}' "
                           "metadata)")
    df = table.to_pandas()
    df.attrs = json.loads(raw)
    return df


def read_metadata(path):
    """Only the metadata of a parquet written by ``write_table`` (reads the footer, not the data)."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    except (pa.ArrowException, OSError) as err:
        raise ResultsError(f"{path} is unreadable (corrupt or not parquet: {err}); "
                           "delete it to recompute, or point to another folder") from None
    if raw is None:
        raise ResultsError(f"{path} was not written by estimators (no '{METADATA_KEY.decode()}' "
                           "metadata)")
    return json.loads(raw)


def results_path(location):
    """``location`` may be a results folder or the parquet file itself."""
    location = Path(location)
    return location / RESULTS_FILE if location.is_dir() else location


def load_results(location):
    """The tidy results table saved by a run (a folder holding results.parquet, or the file)."""
    return tidy(read_table(results_path(location)))


def save_results(df, location):
    """Save the tidy table and its attrs to ``location``/results.parquet; returns the path."""
    path = Path(location) / RESULTS_FILE
    write_table(tidy(df), path)
    return path


def _json_default(value):
    """numpy scalars and arrays inside metadata become plain JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
