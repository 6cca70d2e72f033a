"""``write_report``: the report folder a person reads, from a results table."""

from pathlib import Path

import pandas as pd

from estimators.files import atomic_write
from estimators.report.figures import draw_figures
from estimators.report.html import render_html
from estimators.report.markdown import render_markdown
from estimators.report.sections import build_document
from estimators.summary import Summary, summarize

SUMMARY_FILE = "summary.csv"


def write_report(
    df: pd.DataFrame, folder: str | Path, summary: Summary | None = None
) -> dict[str, Path]:
    """Write summary.csv, the figures, report.md and report.html into ``folder``; return
    {file name: path}. ``summary``: ``summarize(df)`` when the caller has it already."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(df) if summary is None else summary
    _write(folder / SUMMARY_FILE, summary.cells.to_csv(index=False))
    figures = draw_figures(summary, df, folder)
    document = build_document(summary, figures)
    _write(folder / "report.md", render_markdown(document))
    _write(folder / "report.html", render_html(document, folder))
    names = [SUMMARY_FILE, *figures, "report.md", "report.html"]
    return {name: folder / name for name in names}


def _write(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))
