"""A report to share: one self-contained HTML file comparing runs, ensembles and studies
(``python -m cnmc_core report``, the Compare page's *Download report*), or its PDF.

The HTML works offline: plotly.js (the copy that ships with plotly.py) is inlined once in the
head, figures are plotly divs, thumbnails ``data:`` PNGs, styles inline; the page's own markup
links to nothing outside the file. Sections: the comparison table with CIs and protocols,
learning curves, confusion matrices, ROC/PR, each study's paired tests, ensemble weights, images
every model misses (thumbnails), and each config (collapsible).

The PDF is Chromium's own print of that HTML (:func:`cnmc_core.interop.browser.print_pdf`): it
prints the whole report, tables, thumbnails and configs included, as one document, where
plotly's static export (kaleido) makes one file per figure. For print the configs are expanded
and the figures get a fixed width that fits an A4 page.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Sequence

from cnmc_core.exceptions import ConfigError
from cnmc_core.interop import report_sections as sections
from cnmc_core.interop.sources import Item, item_names, resolve_items, study_runs
from cnmc_core.validation import check_choice
from cnmc_core.workspace.fileio import atomic_write, atomic_write_text

__all__ = ["FORMATS", "report_entries", "build_report", "write_report"]

FORMATS = ("html", "pdf")
#: The width figures get when the report is printed (an A4 page less its margins, in CSS px).
_PRINT_WIDTH = 680

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1400px; padding: 0 16px; color: #1f2430; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #e3e6ee; padding-bottom: 4px;
     margin-top: 36px; } h4 { margin: 18px 0 6px; }
.meta, .note { color: #5b6275; font-size: 0.92em; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 8px 12px; }
table.table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
table.table th, table.table td { border: 1px solid #dfe3ea; padding: 4px 8px; text-align: left;
                                 vertical-align: top; }
table.table thead th { background: #f3f5f9; }
table.wide { display: block; overflow-x: auto; max-width: 100%; }
/* auto-fill, not auto-fit: a figure is drawn as soon as it is parsed, and its column must
   already have its final width then */
.grid2 { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; }
.grid4 { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 8px; }
.figure { min-width: 0; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
figure.thumb { margin: 0; width: 120px; font-size: 0.75em; text-align: center;
               overflow-wrap: anywhere; }
img.thumb { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid #ccd; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 0.8em; }
nav a { margin-right: 14px; }
@media print {
  body { max-width: none; margin: 0; } nav { display: none; }
  .modebar-container { display: none !important; }
  .grid2, .grid4 { display: block; } .keep, .figure, figure.thumb { break-inside: avoid; }
  h2, h4 { break-after: avoid; }
  /* nothing wider than the page: Chromium would shrink every page to fit the widest */
  table.table { font-size: 8pt; width: 100%; } table.table th, table.table td { padding: 2px 4px; }
  table.wide { display: table; table-layout: fixed; } td, th { overflow-wrap: anywhere; } pre { white-space: pre-wrap; overflow-wrap: anywhere; }
}
"""


#: Once the page is laid out, responsive plotly figures take the final width of their box.
_RESIZE_JS = "window.addEventListener('load', () => window.dispatchEvent(new Event('resize')));"


def report_entries(items: Sequence[Item]) -> tuple[dict[str, Item], list[tuple[Item, list[str]]]]:
    """What a report compares: ``({name: run or ensemble}, [(study, names of its runs)])``; a
    study's runs join the comparison (each once, however many studies list it)."""
    flat: list[Item] = []
    studies: list[tuple[Item, list[Item]]] = []
    for item in items:
        if item.kind == "study":
            runs = study_runs(item, "reported")
            studies.append((item, runs))
            flat += runs
        else:
            flat.append(item)
    unique: dict[Path, Item] = {}
    for item in flat:
        unique.setdefault(item.path.resolve(), item)
    named = item_names(list(unique.values()))
    name_of = {item.path.resolve(): name for name, item in named.items()}
    return named, [(s, [name_of[r.path.resolve()] for r in runs]) for s, runs in studies]


def build_report(refs: Sequence[str | os.PathLike], artifacts: str | os.PathLike | None = None,
                 *, title: str | None = None, for_print: bool = False) -> str:
    """The report as one HTML page (see the module docstring).

    Args:
        refs: run, ensemble or study ids or folders (completed).
        artifacts: the workspace where ids are looked up.
        title: the page's title (default: "cnmc report: N runs and ensembles").
        for_print: expand the configs and give the figures a width that fits an A4 page.

    Raises:
        RunError: an unknown or unfinished item, a study whose runs are missing.
    """
    from plotly.offline import get_plotlyjs

    import cnmc_core
    from cnmc_core.analysis.run_charts import run_color

    entries, studies = report_entries(resolve_items(refs, artifacts, "reported"))
    colors = {name: run_color(item.id) for name, item in entries.items()}
    width = _PRINT_WIDTH if for_print else None
    title = title or f"cnmc report: {len(entries)} run(s) and ensemble(s)"
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts: list[tuple[str, str, str]] = [
        ("comparison", "Comparison", sections.comparison_section(entries)),
        ("curves", "Learning curves", sections.curves_section(entries, colors, width)),
        ("confusion", "Confusion matrices", sections.confusion_section(entries, width)),
        ("roc", "ROC and precision-recall", sections.roc_pr_section(entries, colors, width)),
    ]
    if studies:
        parts.append(("studies", "Studies: paired tests", "\n".join(
            sections.study_section(study, runs) for study, runs in studies)))
    if any(i.kind == "ensemble" for i in entries.values()):
        parts.append(("weights", "Ensemble weights", sections.weights_section(entries)))
    parts += [("errors", "Images every model misses", sections.errors_section(entries, width)),
              ("configs", "Configs", sections.configs_section(entries, open_all=for_print))]
    esc = sections.esc
    nav = " ".join(f'<a href="#{anchor}">{esc(label)}</a>' for anchor, label, _ in parts)
    body = "\n".join(f'<section id="{anchor}"><h2>{esc(label)}</h2>\n{content}\n</section>'
                     for anchor, label, content in parts)
    listed = ", ".join(f"{esc(n)} ({esc(i.kind)})" for n, i in entries.items())
    studied = "".join(f"; study {esc(s.id)}" for s, _ in studies)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style>\n"
        "<!-- plotly.js, MIT licence, inlined so that the report works offline -->\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head><body>\n'
        f"<h1>{esc(title)}</h1>\n"
        f'<p class="meta">Generated {esc(when)} by cnmc {esc(cnmc_core.__version__)}: {listed}'
        f"{studied}. Every score names its split protocol; CIs are 95% subject-bootstrap.</p>\n"
        f"<nav>{nav}</nav>\n{body}\n<script>{_RESIZE_JS}</script>\n</body></html>\n")


def write_report(refs: Sequence[str | os.PathLike], out: str | os.PathLike, *, fmt: str = "html",
                 artifacts: str | os.PathLike | None = None, title: str | None = None,
                 chromium: str | None = None) -> Path:
    """Write the report to ``out`` (replaced atomically) as HTML or, with ``fmt="pdf"``, as the
    PDF Chromium prints of it; returns ``out``.

    Raises:
        ConfigError: an unknown format, or an ``out`` whose folder does not exist.
        RunError: see :func:`build_report`. CnmcError: Chromium could not print the PDF.
    """
    check_choice(fmt, "--format", FORMATS, fix="Use --format html or --format pdf.")
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise ConfigError(f"The '--out' parameter must be a file in an existing folder. Got "
                          f"{str(out)!r} instead. Create the folder first, or name a file.")
    page = build_report(refs, artifacts, title=title, for_print=fmt == "pdf")
    if fmt == "html":
        return atomic_write_text(out, page)
    from cnmc_core.interop.browser import print_pdf

    data = print_pdf(page, chromium=chromium)
    return atomic_write(out, lambda fh: fh.write(data), "wb")
