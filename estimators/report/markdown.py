"""Markdown renderer of a ``Document``: GitHub-flavoured (report.md, pull-request comments)."""

import json

from estimators.report import document as doc
from estimators.tables import markdown_table


def render_markdown(document: doc.Document) -> str:
    parts = [f"# {document.title}", ""] if document.title else []
    for section in document.sections:
        parts += render_section(section)
    return "\n".join(parts).rstrip("\n") + "\n"


def render_section(section: doc.Section) -> list[str]:
    parts = [f"{'#' * section.level} {section.heading}", ""] if section.heading else []
    for block in section.blocks:
        parts += BLOCKS[type(block)](block) + [""]
    return parts


def _paragraph(block):
    return [block.text]


def _items(block):
    return [f"- **{label}**: {text}" for label, text in block.items.items()]


def _bullets(block):
    return [f"- {line}" for line in block.lines]


def _callout(block):
    return [f"> **{block.label}:** {block.text}"]


def _table(block):
    return [markdown_table(block.frame)]


def _figure(block):
    return [f"![{block.file}]({block.file})", "", f"*{block.caption}*"]


def _details(block):
    return [
        f"<details><summary>{block.summary}</summary>",
        "",
        "```json" if _is_json(block.text) else "```",
        block.text,
        "```",
        "",
        "</details>",
    ]


def _is_json(text):
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


BLOCKS = {
    doc.Paragraph: _paragraph,
    doc.Items: _items,
    doc.Bullets: _bullets,
    doc.Callout: _callout,
    doc.Table: _table,
    doc.Figure: _figure,
    doc.Details: _details,
}
