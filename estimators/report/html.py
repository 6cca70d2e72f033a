"""HTML renderer of a ``Document``: one self-contained page, its figures embedded as base64 PNGs
read from ``folder``."""

import base64
import html
from pathlib import Path

from estimators.report import document as doc
from estimators.tables import format_value

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1250px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:nth-child(-n+2) { text-align: left; }
img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; margin-bottom: 2em; }
.verdict { margin: 0.4em 0; } code { background: #f5f5f5; }
"""
esc = html.escape


def render_html(document: doc.Document, folder: str | Path | None = None) -> str:
    """The page; ``folder`` holds the figures' PNG files (needed only when there are figures)."""
    body = [f"<h1>{esc(document.title)}</h1>"] if document.title else []
    for section in document.sections:
        body += render_section(section, folder)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(document.title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def render_section(section: doc.Section, folder=None) -> list[str]:
    level = min(section.level, 6)
    body = [f"<h{level}>{esc(section.heading)}</h{level}>"] if section.heading else []
    for block in section.blocks:
        body.append(
            _figure(block, folder) if isinstance(block, doc.Figure) else BLOCKS[type(block)](block)
        )
    return body


def _paragraph(block):
    return f"<p>{esc(block.text)}</p>"


def _items(block):
    return "".join(
        f'<p class="verdict"><b>{esc(str(label))}</b>: {esc(text)}</p>'
        for label, text in block.items.items()
    )


def _bullets(block):
    return "<ul>" + "".join(f"<li>{esc(str(line))}</li>" for line in block.lines) + "</ul>"


def _callout(block):
    return f"<p><b>{esc(block.label)}:</b> {esc(block.text)}</p>"


def _table(block):
    frame = block.frame
    return frame.to_html(index=False, formatters={c: format_value for c in frame.columns}, border=0)


def _figure(block, folder):
    data = base64.b64encode((Path(folder) / block.file).read_bytes()).decode()
    return (
        f'<figure><img alt="{esc(block.file)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(block.caption)}</figcaption></figure>"
    )


def _details(block):
    return f"<details><summary>{esc(block.summary)}</summary><pre>{esc(block.text)}</pre></details>"


BLOCKS = {
    doc.Paragraph: _paragraph,
    doc.Items: _items,
    doc.Bullets: _bullets,
    doc.Callout: _callout,
    doc.Table: _table,
    doc.Details: _details,
}
