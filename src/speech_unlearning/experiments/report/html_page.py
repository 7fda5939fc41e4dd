"""report.html: one self-contained page (inline CSS, plots embedded as base64 PNG) with the same
tables, notes and failures as the Markdown report."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

from ..store import RunRecord
from .ensemble_tables import EnsembleTable, ensemble_markdown
from .layout import REFERENCE_ROWS, SCENARIO_TITLES, STEPS_TITLE, TABLE_COLUMNS, display_name
from .markdown import reading_notes, table_caption
from .rows import Table


def _markdown_to_html(lines: Sequence[str]) -> str:
    """The ensemble, ranking and tuning sections' Markdown (headings, paragraphs, pipe tables) as HTML."""
    parts, table = [], []

    def flush() -> None:
        if table:
            cells = [[c.strip() for c in line.strip("|").split("|")] for line in table if not line.startswith("|---")]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip('*'))}</td>" for c in row) + "</tr>"
                           for row in cells[1:])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            table.clear()

    for line in lines:
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line:
            parts.append(f'<p class="caption">{html.escape(line)}</p>')
    flush()
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1250px;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr.group td{background:#fafafa;font-weight:bold;text-align:left}
tr.reference td{color:#555;font-style:italic}
.caption{color:#555;font-size:.9em}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
li{margin:.2em 0}code{background:#f4f4f4;padding:0 .2em}
"""


def _html_table(table: Table) -> str:
    titles = ["Method", *(c.title for c in TABLE_COLUMNS), STEPS_TITLE, "runs"]
    head = "".join(f"<th>{html.escape(t)}</th>" for t in titles)
    body, current = [], None
    for row in table.rows:
        if row.scenario != current:
            current = row.scenario
            body.append(f'<tr class="group"><td colspan="{len(titles)}">{SCENARIO_TITLES[current]}</td></tr>')
        cells = "".join(f"<td>{html.escape(row.cells[c.key].format(c.digits))}</td>" for c in TABLE_COLUMNS)
        cells += f"<td>{html.escape(row.schedule or '—')}</td>"
        css = ' class="reference"' if row.method in REFERENCE_ROWS else ""
        body.append(f"<tr{css}><td>{html.escape(display_name(row.method, row.no_op))}</td>{cells}<td>{row.runs}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def format_html(tables: Sequence[Table], plots: Sequence[Path], failures: Sequence[RunRecord] = (),
                ensembles: Sequence[EnsembleTable] = (), sections: Sequence[str] = ()) -> str:
    """A single self-contained page: inline CSS, every plot embedded as a base64 PNG; `sections`
    are the Markdown lines of the ranking and tuning sections, as in report.md."""
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>Speech unlearning benchmark</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>Speech unlearning benchmark</h1>"]
    if not tables:
        parts.append("<p>No finished evaluation in this run folder yet.</p>")
    for table in tables:
        parts += [f"<h2>{html.escape(table.title)}</h2>", f'<p class="caption">{html.escape(table_caption(table))}</p>',
                  _html_table(table)]
    if ensembles:
        parts.append(_markdown_to_html(ensemble_markdown(ensembles)))
    if sections:
        parts.append(_markdown_to_html(sections))
    notes = reading_notes(tables, ensembles)
    parts += ["<h2>How to read the tables</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    if plots:
        parts.append("<h2>Plots</h2>")
        for plot in plots:
            data = base64.b64encode(plot.read_bytes()).decode("ascii")
            parts.append(f'<p><img alt="{html.escape(plot.stem)}" src="data:image/png;base64,{data}"></p>')
    if failures:
        parts.append(f"<h2>Failed runs ({len(failures)})</h2><ul>")
        for record in failures:
            first = (record.error or "").splitlines()[0] if record.error else ""
            parts.append(f"<li><code>{record.key[:12]}</code> {html.escape(record.label)}: {html.escape(first)}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
