"""A small document model (headings, text, lists, tables, images) rendered as Markdown or self-contained HTML.

Every piece of text is plain text: both renderers escape it, so sample sentences such as ``<b>`` stay literal.
Markdown links images by their path relative to the report; HTML embeds them as base64 data URIs.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]

    @classmethod
    def from_markdown(cls, lines: Sequence[str]) -> Table:
        """Parse a pipe table (header, separator, rows) as ``results_table`` writes it."""

        def cells(line: str) -> list[str]:
            return [cell.strip() for cell in line.strip().strip("|").split("|")]

        return cls(cells(lines[0]), [cells(line) for line in lines[2:]])


@dataclass(frozen=True)
class Image:
    path: Path  # absolute, or relative to the working directory
    caption: str


@dataclass(frozen=True)
class FileLink:
    path: Path
    text: str


Block = Heading | Text | Bullets | Table | Image | FileLink


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)


# -- Markdown ----------------------------------------------------------------------------------------


def _md(text: str) -> str:
    return html.escape(str(text), quote=False)


def _md_cell(text: str) -> str:
    return _md(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _relative_url(path: Path, base: Path) -> str:
    rel = Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()
    return quote(rel, safe="/+-_.~")


def to_markdown(document: Document, base: Path) -> str:
    """The document as GitHub-flavoured Markdown; image and file paths relative to ``base``."""
    out = [f"# {_md(document.title)}", ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            out += ["#" * min(block.level, 6) + " " + _md(block.text), ""]
        elif isinstance(block, Text):
            out += [_md(block.text), ""]
        elif isinstance(block, Bullets):
            out += [f"- {_md(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_md_cell(c) for c in block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Image):
            out += [f"![{_md_cell(block.caption)}]({_relative_url(block.path, base)})", ""]
            out += [f"*{_md(block.caption)}*", ""]
        elif isinstance(block, FileLink):
            out += [f"[{_md_cell(block.text)}]({_relative_url(block.path, base)})", ""]
    return "\n".join(out).rstrip() + "\n"


# -- HTML --------------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
td { max-width: 40em; overflow-wrap: anywhere; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
"""


def _h(text: str) -> str:
    return html.escape(str(text))


def _image_html(image: Image) -> str:
    data = base64.b64encode(Path(image.path).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_h(image.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_h(image.caption)}</figcaption></figure>"
    )


def to_html(document: Document, base: Path) -> str:
    """The document as one self-contained HTML page: inline CSS, images embedded as base64."""
    body = [f"<h1>{_h(document.title)}</h1>"]
    for block in document.blocks:
        if isinstance(block, Heading):
            level = min(block.level, 6)
            body.append(f"<h{level}>{_h(block.text)}</h{level}>")
        elif isinstance(block, Text):
            body.append(f"<p>{_h(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_h(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_h(c)}</th>" for c in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Image):
            body.append(_image_html(block))
        elif isinstance(block, FileLink):
            body.append(f'<p><a href="{_h(_relative_url(block.path, base))}">{_h(block.text)}</a></p>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_h(document.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
