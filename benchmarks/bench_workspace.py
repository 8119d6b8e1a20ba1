"""Benchmark: listing the workspace and each page's first render, with 4, 200 and 2,000 runs.

Trains four real tiny runs once (the ``demo_scratch`` preset's scratch CNN heads at 64 px, one
epoch, on a tiny synthetic dataset) and a mean ensemble of them, then builds one workspace per
size from copies of those folders under fresh ids (config rewritten, summary written as the end
of a run writes it, ``model.keras`` hard-linked to save disk). For each workspace it times:

- ``listing_rebuild_s``: :func:`list_experiments` when no folder has its ``summary.json`` yet
  (a workspace from before summaries; every summary is built from the folder and written);
- ``listing_first_s``: the first listing with every ``summary.json`` written but no summary
  index yet (it reads each, and writes the index); ``listing_cold_s``: a fresh process's first
  listing (the index on disk, nothing in memory); ``signature_cold_s`` likewise;
- ``listing_warm_s``: the next listing (summaries known in memory); ``signature_s`` and
  ``members_s`` (:func:`workspace_signature`, :func:`list_members` over the listing);
- ``pages``: each page's first render with Streamlit's ``AppTest`` (``$CNMC_ARTIFACTS`` at the
  workspace, Home is ``app.py``), with Streamlit's caches cleared and the in-memory summaries
  forgotten and the model cache emptied before each, so it pays the listing (and loads its
  models) as a new session of a fresh server would; ``pages_net_of_harness`` subtracts
  ``apptest_harness_s``, what AppTest takes for a one-line page just before.
  Every page is rendered once on the 4-run workspace first, so one-off imports (TensorFlow,
  plotly) and the Data page's stored scan are not counted; AppTest's scan of the installed
  packages for components, which a server does once at start-up, is done once.

Prints one JSON object: the figures per size and their ratios to the 4-run case, the goals
(every page <= 1 s at 2,000 runs and <= 0.3 s at 4), the load average and the machine.

Usage: ``python benchmarks/bench_workspace.py [--sizes 4,200,2000] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnmc_core.data.synth import generate_dataset  # noqa: E402
from cnmc_core.ensemble.search import run_search  # noqa: E402
from cnmc_core.training.config import resolve_config  # noqa: E402
from cnmc_core.training.loop import train_run  # noqa: E402
from cnmc_core.workspace.layout import create_run  # noqa: E402
from cnmc_core.workspace.listing import (  # noqa: E402
    forget_summaries,
    list_experiments,
    workspace_signature,
)
from cnmc_core.workspace.summary import write_summary  # noqa: E402
from cnmc_core.workspace.views import list_members  # noqa: E402

PAGES = {"Home": "app.py", "Data": "pages/1_Data.py", "Train": "pages/2_Train.py",
         "Compare": "pages/3_Compare.py", "Errors": "pages/4_Errors.py",
         "Ensemble": "pages/5_Ensemble.py", "Explain": "pages/6_Explain.py",
         "Predict": "pages/7_Predict.py"}
MODELS = ("scratch_dd256", "scratch_d128", "scratch_d256", "scratch_2x256")
GOALS = {"page_first_render_s_at_4": 0.3, "page_first_render_s_at_2000": 1.0}


def train_sources(base: Path) -> tuple[Path, list[Path], Path]:
    """The tiny dataset, four completed runs and a mean ensemble of them, in ``base``."""
    data = base / "data"
    generate_dataset(data, subjects_all=6, subjects_hem=6, cells_per_subject=6, size=64,
                     seed=0, n_jobs=1)
    art = base / "artifacts"
    runs = []
    for model in MODELS:
        config = resolve_config("demo_scratch", data=str(data), epochs=1, image_size=64, seed=0,
                                sets=[f"model={model}", "batch_size=16"])
        config["name"] = f"bench_{model}"
        run = create_run(config, art)
        train_run(run, log=None, artifacts=art, wait_in_queue=False)
        runs.append(run)
    ensemble, _ = run_search(runs, method="mean", methods=("mean",), n_boot=20,
                             out_dir=art / "ensembles", runs_root=art)
    return data, runs, ensemble


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.basename(src) == "model.keras":
        os.link(src, dst)  # the same bytes for every copy: disk stays small
    else:
        shutil.copy2(src, dst)


def build_workspace(root: Path, data: Path, runs: list[Path], ensemble: Path, n: int,
                    summaries: bool = True) -> None:
    """``root`` with ``n`` runs (copies of ``runs`` under fresh ids, creation times spread over
    the past) and one copy of ``ensemble`` over the first four."""
    (root / "runs").mkdir(parents=True)
    (root / "workspace.json").write_text(json.dumps({"dataset": str(data)}))
    now = time.time()
    firsts = []
    for k in range(n):
        source = runs[k % len(runs)]
        created = now - (n - k) * 60.0
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(created))
        run_id = f"{stamp}-bench-{k:05d}"
        target = root / "runs" / run_id
        shutil.copytree(source, target, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns("summary.json"))
        config = json.loads((target / "config.json").read_text())
        config.update(run_id=run_id, created=created)
        (target / "config.json").write_text(json.dumps(config, indent=2))
        if summaries:
            write_summary(target, "run")
        if k < len(runs):
            firsts.append(target)
    target = root / "ensembles" / ensemble.name
    shutil.copytree(ensemble, target, ignore=shutil.ignore_patterns("summary.json"))
    config = json.loads((target / "config.json").read_text())
    config.update(members=[p.name for p in firsts], member_paths=[str(p) for p in firsts],
                  weights={p.name: 0.25 for p in firsts}, created=now)
    (target / "config.json").write_text(json.dumps(config, indent=2))
    if summaries:
        write_summary(target, "ensemble")


def _timed(fn, repeats: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def scan_components_once() -> None:
    """A Streamlit server scans the installed packages for components once, at start-up;
    AppTest does it at every run (about 2 s on this machine, for any page). Keep the first
    scan's result so the figures are the page's own render."""
    import functools

    import streamlit.components.v2.manifest_scanner as scanner

    scanner.scan_component_manifests = functools.lru_cache(maxsize=1)(
        scanner.scan_component_manifests)


def harness_s() -> float:
    """Seconds AppTest takes for a page that writes one line: the harness's own share of every
    figure below."""
    from streamlit.testing.v1 import AppTest

    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        AppTest.from_string("import streamlit as st\nst.write('x')").run()
        best = min(best, time.perf_counter() - t0)
    return round(best, 3)


def render(page: str) -> tuple[float, list[str]]:
    """Seconds of one first render of ``page`` in a new AppTest session, and its exceptions."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from cnmc_core.models.io import clear_model_cache

    st.cache_data.clear()
    clear_model_cache()  # the same start for every size: no page finds its models loaded
    forget_summaries()
    t0 = time.perf_counter()
    at = AppTest.from_file(str(REPO / page), default_timeout=300).run()
    seconds = time.perf_counter() - t0
    return seconds, [str(e.value)[:200] for e in at.exception]


def explain_click() -> float:
    """Seconds of Explain's heatmaps once asked (*Explain this image*: its default models load
    and Grad-CAM runs), on top of its first render; models and caches cleared before."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from cnmc_core.models.io import clear_model_cache

    st.cache_data.clear()
    clear_model_cache()
    forget_summaries()
    at = AppTest.from_file(str(REPO / PAGES["Explain"]), default_timeout=300).run()
    t0 = time.perf_counter()
    at.button(key="explain_go").click().run()
    seconds = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"Explain after the click: {at.exception[0].value}")
    return seconds


def measure(root: Path, repeats: int) -> dict:
    os.environ["CNMC_ARTIFACTS"] = str(root)
    forget_summaries()
    first, _ = _timed(lambda: list_experiments(root))  # reads each summary.json, writes the index
    forget_summaries()
    cold_signature, _ = _timed(lambda: workspace_signature(root))
    forget_summaries()
    cold, frame = _timed(lambda: list_experiments(root))
    warm, _ = _timed(lambda: list_experiments(root), repeats)
    signature, _ = _timed(lambda: workspace_signature(root), repeats)
    members, _ = _timed(lambda: list_members(experiments=frame), repeats)
    harness = harness_s()
    pages, errors = {}, {}
    for name, page in PAGES.items():
        pages[name], exc = min((render(page) for _ in range(repeats)), key=lambda r: r[0])
        if exc:
            errors[name] = exc
    return {"folders": int(len(frame)), "listing_first_s": round(first, 4),
            "listing_cold_s": round(cold, 4), "listing_warm_s": round(warm, 4),
            "signature_cold_s": round(cold_signature, 4), "signature_s": round(signature, 4),
            "members_s": round(members, 4), "apptest_harness_s": harness,
            "pages": {k: round(v, 3) for k, v in pages.items()},
            "pages_net_of_harness": {k: round(max(v - harness, 0.0), 3) for k, v in pages.items()},
            "explain_after_click_s": round(min(explain_click() for _ in range(repeats)), 3),
            "page_errors": errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4,200,2000", help="numbers of runs, the first the baseline")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many page renders")
    ap.add_argument("--keep", help="build the workspaces in this folder and keep them")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-workspace-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        scan_components_once()
        t0 = time.perf_counter()
        data, runs, ensemble = train_sources(base / "sources")
        train_s = time.perf_counter() - t0
        results = {}
        warmed = False
        for n in sizes:
            bare = base / f"bare-{n}"
            build_workspace(bare, data, runs, ensemble, n, summaries=False)
            forget_summaries()
            rebuild, _ = _timed(lambda: list_experiments(bare))
            shutil.rmtree(bare)
            root = base / f"ws-{n}"
            t1 = time.perf_counter()
            build_workspace(root, data, runs, ensemble, n)
            build_s = time.perf_counter() - t1
            if not warmed:  # one-off imports and the Data page's stored scan
                os.environ["CNMC_ARTIFACTS"] = str(root)
                for page in PAGES.values():
                    render(page)
                warmed = True
            results[n] = {"build_s": round(build_s, 1), "listing_rebuild_s": round(rebuild, 3),
                          **measure(root, args.repeats)}
        first = results[sizes[0]]

        def ratio(a, b):
            return round(a / b, 1) if b else None

        ratios = {n: {"listing_cold": ratio(r["listing_cold_s"], first["listing_cold_s"]),
                      "listing_warm": ratio(r["listing_warm_s"], first["listing_warm_s"]),
                      "signature": ratio(r["signature_s"], first["signature_s"]),
                      "pages": {k: ratio(v, first["pages"][k]) for k, v in r["pages"].items()}}
                  for n, r in results.items() if n != sizes[0]}
        slowest = {n: max(r["pages"].values()) for n, r in results.items()}
        slowest_net = {n: max(r["pages_net_of_harness"].values()) for n, r in results.items()}
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
        print(json.dumps({
            "commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                                          f"Python {platform.python_version()}",
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "train_sources_s": round(train_s, 1), "results": results,
            "ratios_to_first": ratios, "slowest_page_s": slowest,
            "slowest_page_net_of_harness_s": slowest_net, "goals": GOALS,
            "goals_met_net_of_harness": {
                "at_4": slowest_net.get(4, 0) <= GOALS["page_first_render_s_at_4"],
                "at_2000": slowest_net.get(2000, 0) <= GOALS["page_first_render_s_at_2000"]},
        }, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
