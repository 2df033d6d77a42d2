"""Report blocks (heading, paragraph, table, bullets, image; `Quoted` for text a model or data set wrote)
and their two renderings, Markdown and one static HTML page; `taia.run.document` decides what they say."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


class Quoted(str):
    """Text a model or a data set wrote (an answer, a question): shown as written, never read as markup,
    so that neither report.md nor report.html passes its HTML or Markdown through."""


@dataclass
class Para:
    text: str  # inline markup: **bold**, `code`
    quoted: str = ""  # a `Quoted` text shown after `text`, as written


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    align: str = ""  # one of "l"/"r" per column; default: the first left, the rest (numbers) right

    def alignment(self) -> str:
        return self.align or "l" + "r" * (len(self.header) - 1)


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Image:
    alt: str
    src: str  # relative to the run dir


Block = Heading | Para | Table | Bullets | Image


def markdown(blocks: list[Block]) -> str:
    """The blocks as Markdown; images linked by their paths."""
    return "\n\n".join(_markdown(b) for b in blocks) + "\n"


def html(blocks: list[Block], run_dir: Path) -> str:
    """One self-contained static page: images (paths under `run_dir`) inlined as base64, inline CSS, no JS;
    the first heading is its title."""
    title = escape(next((b.text for b in blocks if isinstance(b, Heading)), "TAIA report"))
    body = "\n".join(_html(b, run_dir) for b in blocks)
    head = f'<meta charset="utf-8"><title>{title}</title><style>{_STYLE}</style>'
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>{head}</head>\n<body>\n{body}\n</body>\n</html>\n'


def _markdown(block: Block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Table):
        lines = [block.header, ["---:" if a == "r" else "---" for a in block.alignment()], *block.rows]
        return "\n".join("| " + " | ".join(map(_md_cell, cells)) + " |" for cells in lines)
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Image):
        return f"![{block.alt}]({block.src})"
    return block.text + _md_quoted(block.quoted)


def _md_cell(text: str) -> str:
    return _md_quoted(text) if isinstance(text, Quoted) else text


_MARKDOWN = re.compile(r"([\\`*_\[\]|])")


def _md_quoted(text: str) -> str:
    """Markdown's punctuation backslash-escaped, HTML's as entities: a model's `<script>` or `**` is shown,
    not rendered, by any Markdown viewer."""
    return escape(_MARKDOWN.sub(r"\\\1", text), quote=False)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem}"
    "td{text-align:right;font-variant-numeric:tabular-nums}.l{text-align:left}"
    "th{background:#f3f3f3}img{max-width:100%;display:block;margin:1rem 0}code{background:#f3f3f3}"
)


def _html(block: Block, run_dir: Path) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_inline(block.text)}</h{block.level}>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Image):
        data = base64.b64encode((run_dir / block.src).read_bytes()).decode("ascii")
        return f'<figure><img alt="{escape(block.alt)}" src="data:image/png;base64,{data}"></figure>'
    return f"<p>{_inline(block.text)}{escape(block.quoted, quote=False)}</p>"


def _html_table(table: Table) -> str:
    style = [' class="l"' if a == "l" else "" for a in table.alignment()]
    head = "".join(f"<th{a}>{_inline(c)}</th>" for a, c in zip(style, table.header, strict=True))
    cells = (zip(style, row, strict=True) for row in table.rows)
    body = "".join(
        "<tr>" + "".join(f"<td{a}>{_html_cell(c)}</td>" for a, c in row) + "</tr>" for row in cells
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_cell(text: str) -> str:
    return escape(text, quote=False) if isinstance(text, Quoted) else _inline(text)


def _inline(text: str) -> str:
    """The Markdown inline subset the blocks use (**bold**, `code`, \\|) as escaped HTML."""
    text = escape(text.replace("\\|", "|"), quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
