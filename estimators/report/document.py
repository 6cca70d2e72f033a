"""A report as data: a title and a list of sections, each a heading and a list of blocks.

    Document(title, [Section("Verdicts", [Items({model: text})]), Section(..., [Table(df)])])

Built once (``sections.build_document`` for a run, ``comparison.document`` for two runs), then
rendered by each backend (``markdown.render_markdown``, ``html.render_html``). A renderer only
lays blocks out; it adds no words or numbers of its own, so report.md and report.html say the
same thing. No plotting and no TensorFlow here.
"""

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True, eq=False)
class Paragraph:
    text: str


@dataclass(frozen=True, eq=False)
class Items:
    """Labelled lines, e.g. one verdict per model: {label: text}, the label in bold."""

    items: dict


@dataclass(frozen=True, eq=False)
class Bullets:
    lines: list


@dataclass(frozen=True, eq=False)
class Callout:
    """A short highlighted note: ``label``: ``text`` (e.g. Timing: ...)."""

    label: str
    text: str


@dataclass(frozen=True, eq=False)
class Table:
    frame: pd.DataFrame


@dataclass(frozen=True, eq=False)
class Figure:
    """A PNG in the report's folder, by file name, and its caption."""

    file: str
    caption: str


@dataclass(frozen=True, eq=False)
class Details:
    """Long text a reader opens on demand (the full environment as JSON)."""

    summary: str
    text: str


@dataclass(frozen=True, eq=False)
class Section:
    """A heading (None: no heading, e.g. the text under the title) and its blocks, in order."""

    heading: str | None
    blocks: list = field(default_factory=list)
    level: int = 2


@dataclass(frozen=True, eq=False)
class Document:
    title: str
    sections: list

    @property
    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]
