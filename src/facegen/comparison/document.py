"""A report page as a list of blocks, rendered to Markdown and to self-contained HTML.

The page is built once (``comparison.page``); these two renderers are the only places
that know either syntax, so the Markdown and the HTML cannot drift apart. Inline text uses two
Markdown forms, ``**bold**`` and ```code```, which the HTML renderer translates.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    anchor: str = ""  # HTML id (the navigation links to it)


@dataclass(frozen=True)
class Para:
    text: str
    css: str = ""  # HTML class, e.g. "question"


@dataclass(frozen=True)
class Item:
    text: str
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bullets:
    items: tuple[Item, ...]
    css: str = ""


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False
    css: str = "num"   # num | ref (a reference column) | "" (a label)
    title: str = ""    # HTML tooltip


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


@dataclass(frozen=True)
class Nav:
    """Links to the page's anchors (HTML only: Markdown viewers build their own outline)."""

    links: tuple[tuple[str, str], ...]  # (anchor, text)


Block = Union[Heading, Para, Bullets, Table, Figure, Nav]


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


def bullets(lines: list[str], css: str = "") -> Bullets:
    return Bullets(tuple(Item(line) for line in lines), css)


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------
def _md_cell(cell: Cell) -> str:
    return f"**{cell.text}** ★" if cell.best else cell.text


def to_markdown(doc: Document, root: Path) -> str:
    """The page as Markdown; figures linked relative to ``root`` (the folder the file is written to)."""
    out = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + f" {block.text}", ""]
        elif isinstance(block, Para):
            out += [f"*{block.text}*" if block.css == "question" else block.text, ""]
        elif isinstance(block, Bullets):
            for item in block.items:
                out += [f"- {item.text}", *(f"  - {child}" for child in item.children)]
            out.append("")
        elif isinstance(block, Table):
            out += ["| " + " | ".join(block.header) + " |", "|---|" + "---:|" * (len(block.header) - 1)]
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{block.caption}]({block.path.relative_to(root).as_posix()})", ""]
    return "\n".join(out).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------------------------
# HTML (self-contained: every image embedded as base64, so the page opens from disk)
# ----------------------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.25rem .6rem}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.best{background:#dff5df;font-weight:bold}
td.ref{color:#666;font-style:italic;text-align:right}th{background:#f3f3f3}
figure{display:inline-block;margin:.5rem;vertical-align:top}
figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}figcaption{font-size:.8rem;color:#555}
p.question{font-style:italic;color:#444}nav a{margin-right:1rem}ul.answer li{margin:.3rem 0}
"""


def inline(text: str) -> str:
    """Escape, then the two Markdown inline forms the report uses: **bold** and `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _html_cell(cell: Cell) -> str:
    css = " ".join(c for c in (cell.css, "best" if cell.best else "") if c)
    attrs = _cls(css) + (f" title='{html.escape(cell.title)}'" if cell.title else "")
    return f"<td{attrs}>{html.escape(cell.text)}{' ★' if cell.best else ''}</td>"


def _cls(css: str) -> str:
    return f" class='{css}'" if css else ""


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        anchor = f" id='{html.escape(block.anchor)}'" if block.anchor else ""
        return f"<h{block.level}{anchor}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        return f"<p{_cls(block.css)}>{inline(block.text)}</p>"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{inline(i.text)}"
                        + ("<ul>" + "".join(f"<li>{inline(c)}</li>" for c in i.children) + "</ul>" if i.children else "")
                        + "</li>" for i in block.items)
        return f"<ul{_cls(block.css)}>{items}</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
        return f"<table><tr>{head}</tr>{body}</table>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        alt = html.escape(block.caption)
        return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'
    return "<nav>" + "".join(f"<a href='#{html.escape(a)}'>{html.escape(t)}</a>" for a, t in block.links) + "</nav>"


def to_html(doc: Document) -> str:
    """The page as one self-contained HTML file."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(doc.title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(doc.title)}</h1>"]
    parts += [_html_block(b) for b in doc.blocks]
    parts.append("</body></html>")
    return "\n".join(parts)
