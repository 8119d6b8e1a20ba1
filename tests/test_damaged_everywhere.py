"""Every damage of run_fixtures.DAMAGES at once, in copies of a completed run beside good runs:
every page renders without an exception and shows the damaged runs with their reason where it
lists runs, and every CLI verb that reads runs exits 0 or 2 with ``error:`` naming the run
(issue 12 item 21). A verb may use a run whose damage is in a file it does not read (an ensemble
of a run whose ``metrics.json`` is damaged uses its intact predictions).

One workspace for all (a copy of the session workspace: nothing is trained here); the verbs run
in this process, where an exception that is not the project's own error would propagate."""

from __future__ import annotations

import glob
import json
import shutil
import traceback
from pathlib import Path

import pytest
from run_fixtures import DAMAGES
from streamlit.testing.v1 import AppTest

from cnmc_core.cli.main import main
from cnmc_core.workspace.listing import forget_summaries

REPO = Path(__file__).resolve().parents[1]
PAGES = ["app.py", *sorted(p.name for p in (REPO / "pages").glob("*.py"))]
#: the pages that list runs with their state, and so must name each damaged run and its reason
LISTING_PAGES = ("4_Errors.py", "5_Ensemble.py")


@pytest.fixture(scope="module")
def damaged_ws(workspace, tmp_path_factory):
    """``(artifacts, {damage name: run folder})``: the session workspace's runs plus one copy of
    its first completed run per damage."""
    root = tmp_path_factory.mktemp("damaged") / "artifacts"
    shutil.copytree(workspace["artifacts"], root)
    source = sorted(p for p in (root / "runs").iterdir() if "fixture_" in p.name)[0]
    damaged = {}
    for k, (name, damage, _) in enumerate(DAMAGES):
        target = root / "runs" / f"20260101-00000{k}-{name}"
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("summary.json"))
        config = json.loads((target / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**config, "run_id": target.name}))
        damage(target)
        damaged[name] = target
    forget_summaries()
    return root, damaged


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_every_damage(damaged_ws, monkeypatch, page):
    root, damaged = damaged_ws
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    path = REPO / page if page == "app.py" else REPO / "pages" / page
    at = AppTest.from_file(str(path), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    if page in LISTING_PAGES:
        frames = [d.value for d in at.dataframe if "reason" in d.value.columns]
        assert frames, "no table of the folders that cannot be used"
        shown = {r.member_id: r.reason for frame in frames for r in frame.itertuples()}
        for name, _, words in DAMAGES:
            reason = shown.get(damaged[name].name)
            assert reason and all(w in reason for w in words), (name, reason)


def _image(root: Path) -> str:
    return sorted(glob.glob(str(root.parent / "data" / "**" / "*.bmp"), recursive=True))[0]


VERBS = {
    "runs": lambda root, run, data: ["runs", "--artifacts", str(root)],
    "runs-json": lambda root, run, data: ["runs", "--json", "--artifacts", str(root)],
    "ensemble": lambda root, run, data: ["ensemble", str(run), str(_good(root)), "--method", "mean",
                                         "--n-boot", "10", "--artifacts", str(root)],
    "errors": lambda root, run, data: ["errors", str(run), str(_good(root)), "--artifacts", str(root)],
    "explain": lambda root, run, data: ["explain", str(run), _image(data), "--out",
                                        str(root.parent / "x.png"), "--artifacts", str(root)],
    "evaluate": lambda root, run, data: ["evaluate", str(run), "--data", str(data),
                                         "--artifacts", str(root)],
    "cancel": lambda root, run, data: ["cancel", str(run), "--artifacts", str(root)],
}


def _good(root: Path) -> Path:
    return sorted(p for p in (root / "runs").iterdir() if "fixture_" in p.name)[1]


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_that_reads_runs_survives_every_damage(damaged_ws, workspace, capsys, verb):
    root, damaged = damaged_ws
    data = workspace["data"]
    targets = [None] if verb.startswith("runs") else list(damaged.values())
    for run in targets:
        argv = VERBS[verb](root, run, data)
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
        except Exception:  # noqa: BLE001 - what the user would see as a traceback
            pytest.fail(f"{argv} raised:\n{traceback.format_exc()}")
        out, err = capsys.readouterr()
        assert rc in (0, 2), (argv, rc, out, err)
        if rc == 2:
            assert err.startswith("error: ") and "Traceback" not in out + err, (argv, err)
        if rc == 2 and run is not None:
            assert run.name in err, (argv, err)  # the error names the damaged run
        if verb == "cancel":
            assert rc == 2, (argv, out)  # nothing to cancel: damaged, or completed
