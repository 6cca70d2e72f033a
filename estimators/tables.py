"""DataFrames as text for people and tools: plain columns, markdown, CSV, JSON.

    render(df, "plain" | "markdown" | "csv" | "json") -> str

``plain`` is fixed-width text with every name and number in full at any width: what a CI log
or a pipe should get (rich's terminal tables truncate to the terminal's width, 80 columns
without one). ``markdown`` is a GitHub table (pull-request comments, report.md). Numbers are
shown to 4 significant digits in plain and markdown, in full in CSV and JSON.
"""

import json
import math

import numpy as np
import pandas as pd

FORMATS = ("plain", "markdown", "csv", "json")


def format_value(value) -> str:
    """A cell for people: floats to 4 significant digits, NaN as an em dash, the rest as text."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "—" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def plain_table(df: pd.DataFrame) -> str:
    """Fixed-width columns separated by two spaces; text left-aligned, numbers right-aligned."""
    columns = [str(c) for c in df.columns]
    cells = [[format_value(v) for v in row] for row in df.itertuples(index=False)]
    numeric = [
        pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        for c in df.columns
    ]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]

    def line(values):
        return "  ".join(
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += [
        "| " + " | ".join(format_value(v) for v in row) + " |" for row in df.itertuples(index=False)
    ]
    return "\n".join(lines)


def records(df: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts: numpy scalars as Python numbers, NaN and inf as None."""

    def plain(value):
        value = value.item() if isinstance(value, np.generic) else value
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return [{str(k): plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def render(df: pd.DataFrame, fmt: str) -> str:
    """``df`` as text in one of ``FORMATS``."""
    if fmt == "plain":
        return plain_table(df)
    if fmt == "markdown":
        return markdown_table(df)
    if fmt == "csv":
        return df.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return json.dumps(records(df), indent=2)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
