"""cnmc_core.interop.report and the ``report`` verb: one self-contained HTML file, opened in a
real Chromium without network (figures drawn, table, thumbnails), its PDF, a study's paired
tests, the notes where a section cannot be drawn, and the user's mistakes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from browser_util import SCREENSHOTS, chromium, require_browser

from cnmc_core.cli.main import main
from cnmc_core.interop.report import build_report, report_entries
from cnmc_core.interop.sources import resolve_items

#: A URL that leaves the file: a scheme with //, or a protocol-relative //host.
URL_RE = re.compile(r"""(?:[a-z][a-z0-9+.-]*:)?//[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+""", re.I)
#: Skips without Chromium (and Playwright), fails in CI.
needs_browser = require_browser()


@pytest.fixture(scope="module")
def ws(ws_copy, tmp_path_factory):
    """A private copy of the fixture workspace (three runs, a failed one, a mean ensemble) with a
    hand-written study of two of the runs and its paired comparison."""
    root = tmp_path_factory.mktemp("report") / "artifacts"
    shutil.copytree(ws_copy["root"], root, ignore=shutil.ignore_patterns("model.keras", "cache"))
    runs = sorted(p.name for p in (root / "runs").iterdir() if "fixture_" in p.name)
    ensemble = next((root / "ensembles").iterdir()).name
    study = root / "studies" / "study-a"
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({
        "study_id": "study-a", "protocol": "image-kfold", "presets": ["demo_a", "demo_b"],
        "folds": 2, "seeds": [0], "dataset_fingerprint": "1900896d5ad38e2e", "backend": "local",
        "runs": [runs[0], {"run_id": runs[1], "fold": 1}]}))
    (study / "metrics.json").write_text(json.dumps({"comparisons": [
        {"a": "demo_a", "b": "demo_b", "metric": "roc_auc",
         "folds": {"mean_diff": 0.0312, "t": 1.9, "p": 0.081, "df": 9},
         "pooled": {"estimate": 0.028, "low": -0.011, "high": 0.066, "p_a_not_better": 0.09}}]}))
    return {"root": root, "runs": runs, "ensemble": ensemble, "study": "study-a",
            "failed": ws_copy["failed"].name}


def _outside_plotlyjs(text: str) -> str:
    """The page without the inlined plotly.js (the library's own source, never fetched)."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    assert text.count(js) == 1, "plotly.js must be inlined exactly once"
    return text.replace(js, "")


def test_the_html_report_is_one_file_with_no_external_url(ws, tmp_path, capsys):
    out = tmp_path / "report.html"
    rc = main(["report", *ws["runs"], ws["ensemble"], "--artifacts", str(ws["root"]),
               "--out", str(out)])
    assert rc == 0 and capsys.readouterr().out.strip() == str(out)
    text = out.read_text(encoding="utf-8")
    own = _outside_plotlyjs(text)
    assert URL_RE.findall(own) == []
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:|#)""", own)  # only data: and anchors
    assert own.count("Plotly.newPlot") >= 3 + 8 + 4  # curves, confusion matrices, ROC/PR
    for section in ("Comparison", "Learning curves", "Confusion matrices", "ROC and precision-recall",
                    "Ensemble weights", "Images every model misses", "Configs"):
        assert f">{section}</h2>" in own
    assert own.count("<details>") == 4 and "ensemble:mean" in own
    assert "data:image/png;base64," in own


@needs_browser
def test_the_report_renders_offline_in_chromium(ws, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", *ws["runs"], ws["ensemble"], "--artifacts", str(ws["root"]),
                 "--out", str(out)]) == 0
    requests, errors = [], []
    with chromium() as browser:
        context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
        page = context.new_page()

        def route(r):  # record and refuse anything that would leave the file
            if r.request.url.startswith(("file:", "data:", "blob:", "about:")):
                r.continue_()
            else:
                requests.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri(), wait_until="load")
        graphs = page.locator(".plotly-graph-div").count()
        page.wait_for_function(
            "n => Array.from(document.querySelectorAll('.plotly-graph-div'))"
            ".filter(d => d.querySelector('.main-svg')).length === n", arg=graphs, timeout=60000)
        assert graphs >= 15
        page.wait_for_timeout(1500)  # the resize on load re-lays the responsive figures out
        rows = page.locator("table.comparison tbody tr")
        assert rows.count() == 4
        assert "ensemble" in rows.nth(3).inner_text()
        widths = page.evaluate("Array.from(document.querySelectorAll('img.thumb'))"
                               ".map(i => [i.complete, i.naturalWidth])")
        assert widths and all(done and w == 96 for done, w in widths)
        # figures fit their boxes: no plot wider than its container (a grid laid out late cuts them)
        overflow = page.evaluate("""Array.from(document.querySelectorAll('.plotly-graph-div'))
            .filter(d => d.querySelector('.main-svg').getBoundingClientRect().width
                         > d.parentElement.getBoundingClientRect().width + 2).length""")
        assert overflow == 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)
    assert requests == [] and errors == []


@needs_browser
def test_the_pdf_report_is_printed_by_chromium(ws, tmp_path):
    out = tmp_path / "report.pdf"
    assert main(["report", *ws["runs"], ws["ensemble"], "--artifacts", str(ws["root"]),
                 "--out", str(out)]) == 0  # the format follows the extension
    data = out.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", data))
    assert data.startswith(b"%PDF-") and pages >= 3 and len(data) > 100_000
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, SCREENSHOTS.parent / "report.pdf")  # to look at (pdftoppm)


def test_a_study_brings_its_runs_and_its_paired_tests(ws):
    text = build_report([ws["study"]], ws["root"])
    own = _outside_plotlyjs(text)
    assert "Studies: paired tests" in own and "Paired comparisons" in own
    assert "image-kfold (leaky: split by image)" in own
    assert "0.0312" in own and "p_a_not_better" in own  # the comparison as written
    entries, studies = report_entries(resolve_items([ws["study"], ws["runs"][0]], ws["root"]))
    assert len(entries) == 2 and [len(runs) for _, runs in studies] == [2]  # each run once


def test_a_study_without_comparisons_says_so(ws, tmp_path):
    root = tmp_path / "artifacts"
    shutil.copytree(ws["root"], root)
    (root / "studies" / "study-a" / "metrics.json").unlink()
    own = _outside_plotlyjs(build_report(["study-a"], root))
    assert "has no paired comparisons yet" in own


def test_shared_errors_are_left_out_with_a_note_when_runs_do_not_align(ws, tmp_path):
    root = tmp_path / "artifacts"
    shutil.copytree(ws["root"], root)
    run = root / "runs" / ws["runs"][1]
    frame = pd.read_csv(run / "predictions.csv")
    frame.iloc[1:].to_csv(run / "predictions.csv", index=False)  # one image fewer
    own = _outside_plotlyjs(build_report(ws["runs"], root))
    assert "Shared errors are left out: these runs do not align" in own
    assert "data:image/png" not in own


def test_thumbnails_are_left_out_with_a_note_when_the_images_are_gone(ws, tmp_path):
    root = tmp_path / "artifacts"
    shutil.copytree(ws["root"], root)
    for name in ws["runs"]:
        config = json.loads((root / "runs" / name / "config.json").read_text())
        config["data"] = str(tmp_path / "moved-away")
        (root / "runs" / name / "config.json").write_text(json.dumps(config))
    own = _outside_plotlyjs(build_report(ws["runs"], root))
    assert "No thumbnails: the dataset cannot be read" in own and "are missed by all 3" in own


@pytest.mark.parametrize("args, message", [
    (["no-such-run"], "no run, ensemble or study of that id"),
    (["FAILED"], "is failed"),
    (["RUN", "--format", "docx"], "invalid choice: 'docx'"),
    (["RUN", "--out", "/nonexistent-folder/r.html"], "must be a file in an existing folder"),
])
def test_mistakes_are_errors_and_write_nothing(ws, tmp_path, capsys, args, message):
    args = [{"FAILED": ws["failed"], "RUN": ws["runs"][0]}.get(a, a) for a in args]
    out = tmp_path / "r.html"
    if "--out" not in args:
        args += ["--out", str(out)]
    try:
        rc = main(["report", *args, "--artifacts", str(ws["root"])])
    except SystemExit as exc:  # argparse's choices
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and message in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    if "invalid choice" not in message:
        assert err.startswith("error: ")


def test_report_entries_name_each_run_once(ws):
    items = resolve_items([ws["runs"][0], str(Path(ws["root"]) / "runs" / ws["runs"][0])], ws["root"])
    entries, studies = report_entries(items)
    assert len(entries) == 1 and studies == []


@needs_browser
def test_the_compare_pages_download_button_gives_the_report(ws, tmp_path):
    from browser_util import open_page, screenshot, streamlit_server

    with streamlit_server(ws["root"]) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        open_page(page, url, "Compare", timeout=120)
        share = page.get_by_text("Share", exact=True)
        share.scroll_into_view_if_needed()
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name="Download report").click()
        saved = tmp_path / "downloaded.html"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "cnmc-report.html"
        screenshot(page, "compare-share")
    own = _outside_plotlyjs(saved.read_text(encoding="utf-8"))
    assert own.count("<tr>") >= 5 and "ensemble:mean" in own  # the 4 completed, selected by default
    assert all(f">{name[16:]}<" in own for name in ws["runs"])  # each run, named without its time
