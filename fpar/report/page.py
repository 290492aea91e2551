"""HTML assembly of the report page: sections of notes, tables and figures.

The page is one self-contained file: styles inline, figures as PNG files beside it under
relative links, no scripts or external assets, so the folder can be copied or served
anywhere. Every text is escaped.
"""

from __future__ import annotations

import dataclasses
import html
import math
from pathlib import Path
from typing import Sequence

from shards.files import atomic_write_text

PAGE_NAME = "index.html"

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
p.note { background: #f6f6e8; border-left: 4px solid #cc9; padding: 4px 8px; }
pre { background: #f4f4f4; padding: 8px; overflow-x: auto; font-size: 0.8em; }
"""


@dataclasses.dataclass
class Figure:
    """A PNG beside the page.

    Attributes:
        file: Path relative to the page's folder.
        caption: Text under the image.
    """

    file: str
    caption: str


@dataclasses.dataclass
class Table:
    """A table; cells are text, or floats shown with two decimals.

    Attributes:
        header: Column titles.
        rows: Cells row by row.
        caption: Title above the table.
        attrs: Optional ``data-*`` attributes per cell (same shape as ``rows``, None for
            none), so that tools can read exact values back from the page.
    """

    header: list[str]
    rows: list[list[str | float | int]]
    caption: str = ""
    attrs: list[list[dict[str, str] | None]] | None = None


@dataclasses.dataclass
class Section:
    """A titled part of the page: notes first, then tables, figures and preformatted text."""

    title: str
    notes: list[str] = dataclasses.field(default_factory=list)
    tables: list[Table] = dataclasses.field(default_factory=list)
    figures: list[Figure] = dataclasses.field(default_factory=list)
    preformatted: str | None = None
    anchor: str | None = None


def format_cell(value: str | float | int) -> str:
    """Floats with two decimals ("n/a" when not finite); everything else as text."""
    if isinstance(value, float):
        return f"{value:.2f}" if math.isfinite(value) else "n/a"
    return str(value)


def _attrs(attrs: dict[str, str] | None) -> str:
    if not attrs:
        return ""
    return "".join(f' data-{html.escape(k)}="{html.escape(str(v))}"' for k, v in attrs.items())


def render_table(table: Table) -> str:
    """One ``<table>``; numeric cells are right-aligned."""
    out = ["<table>"]
    if table.caption:
        out.append(f"<caption>{html.escape(table.caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in table.header) + "</tr>")
    for r, row in enumerate(table.rows):
        cells = []
        for c, value in enumerate(row):
            attrs = table.attrs[r][c] if table.attrs else None
            cls = ' class="num"' if isinstance(value, (int, float)) else ""
            cells.append(f"<td{cls}{_attrs(attrs)}>{html.escape(format_cell(value))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _check_relative(file: str) -> str:
    path = Path(file)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"figure {file!r}: links must stay inside the report folder")
    return path.as_posix()


def render_section(section: Section) -> str:
    """One ``<section>``: heading, notes, tables, figures, preformatted text."""
    anchor = f' id="{html.escape(section.anchor)}"' if section.anchor else ""
    out = [f"<section{anchor}>", f"<h2>{html.escape(section.title)}</h2>"]
    out += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
    out += [render_table(t) for t in section.tables]
    for fig in section.figures:
        link = html.escape(_check_relative(fig.file))
        out.append(f'<figure><a href="{link}"><img src="{link}" alt="{html.escape(fig.caption)}">'
                   f"</a><figcaption>{html.escape(fig.caption)}</figcaption></figure>")
    if section.preformatted is not None:
        out.append(f"<pre>{html.escape(section.preformatted)}</pre>")
    out.append("</section>")
    return "\n".join(out)


def render_page(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole HTML document, with a table of contents of the sections."""
    toc = "".join(
        f'<li><a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a></li>'
        for s in sections if s.anchor)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if subtitle:
        parts.append(f"<p>{html.escape(subtitle)}</p>")
    if toc:
        parts.append(f"<nav><ul>{toc}</ul></nav>")
    parts += [render_section(s) for s in sections]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_page(out_dir: str | Path, title: str, sections: Sequence[Section],
               subtitle: str = "") -> Path:
    """Writes ``out_dir/index.html`` atomically and checks every figure it links exists.

    Raises:
        FileNotFoundError: If a section links a figure that is not in ``out_dir``.
    """
    out_dir = Path(out_dir)
    missing = [f.file for s in sections for f in s.figures if not (out_dir / f.file).is_file()]
    if missing:
        raise FileNotFoundError(f"{out_dir}: the page links missing figures: {missing[:5]}")
    path = out_dir / PAGE_NAME
    atomic_write_text(path, render_page(title, sections, subtitle))
    return path
