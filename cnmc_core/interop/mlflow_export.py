"""Export runs, ensembles and studies to an MLflow tracking server
(``python -m cnmc_core mlflow-export``, the Compare page's *Export to MLflow*).

Each run or ensemble becomes one MLflow run (its payload: :mod:`cnmc_core.interop.
mlflow_payload`); a study becomes a parent run with its runs nested under it
(``mlflow.parentRunId``). Exporting again updates the same MLflow run: its id and the tracking
URI are recorded in the item's folder as ``mlflow.json`` (replaced atomically, written only once
that item's export has succeeded), and a run whose record was lost is found again by its
``cnmc.id`` tag. On an update, params already logged must keep their value (MLflow never changes
a param: a changed one is refused before anything is written), tags and files are replaced, and
only metric values not logged yet at their step are added, so no history doubles.

Everything is checked before anything is written: the items (completed), Chromium for the
figures, the tracking server (reachable), the experiment (not deleted). An unreachable URI or a
refused write is a :class:`~cnmc_core.exceptions.CnmcError` (the CLI prints ``error: ...`` and
exits 2) and leaves the item's folder as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence
from urllib.parse import urlparse

from cnmc_core.exceptions import CnmcError, ConfigError
from cnmc_core.interop.mlflow_payload import TAG_PREFIX, Payload, build_payload
from cnmc_core.interop.sources import Item, resolve_items, study_runs, workspace_items
from cnmc_core.workspace.fileio import atomic_write_json, read_json

__all__ = ["MLFLOW_RECORD", "DEFAULT_EXPERIMENT", "ExportResult", "check_tracking_uri",
           "export_to_mlflow", "read_record", "export_table"]

#: The file in a run, ensemble or study folder that records where it was exported.
MLFLOW_RECORD = "mlflow.json"
DEFAULT_EXPERIMENT = "cnmc"


@dataclass(frozen=True)
class ExportResult:
    """One exported item: what it is, the MLflow run it became, and whether that run was
    ``created`` or ``updated``."""

    kind: str
    id: str
    path: Path
    run_id: str
    experiment_id: str
    action: str
    url: str | None
    parent_run_id: str | None = None


def check_tracking_uri(uri: str, timeout: float = 10.0) -> str:
    """The tracking URI without a trailing slash, checked: a non-empty string, and for
    ``http(s)://`` a server that answers (any HTTP status counts: authentication is MLflow's
    business). File and database URIs are left to MLflow.

    Raises:
        ConfigError: an empty URI. CnmcError: nothing answers at the URI.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError("The '--tracking-uri' parameter must be a non-empty URI such as "
                          "http://127.0.0.1:5000 (an MLflow tracking server). Got "
                          f"{uri!r} instead.")
    uri = uri.strip().rstrip("/")
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise ConfigError(f"The '--tracking-uri' parameter must name a host. Got {uri!r} "
                              "instead.")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=timeout):
                pass
        except urllib.error.HTTPError:
            pass  # the server answered
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CnmcError(f"No MLflow tracking server answers at {uri} ({reason}): start one "
                            "(`mlflow server --host 127.0.0.1 --port 5000`) or correct "
                            "--tracking-uri. Nothing was exported.") from None
    return uri


def read_record(path: str | os.PathLike) -> list[dict]:
    """The exports recorded in a folder's ``mlflow.json`` (``[]`` when it has none or it is
    damaged: a damaged record is rewritten by the next successful export)."""
    file = Path(path) / MLFLOW_RECORD
    try:
        data = read_json(file) if file.is_file() else {}
    except (OSError, ValueError):
        return []
    exports = data.get("exports") if isinstance(data, dict) else None
    return [e for e in exports if isinstance(e, dict)] if isinstance(exports, list) else []


def _write_record(item: Item, uri: str, experiment: str, result: ExportResult) -> None:
    entries = [e for e in read_record(item.path)
               if (e.get("tracking_uri"), e.get("experiment")) != (uri, experiment)]
    entries.append({"tracking_uri": uri, "experiment": experiment,
                    "experiment_id": result.experiment_id, "run_id": result.run_id,
                    "parent_run_id": result.parent_run_id, "url": result.url,
                    "exported": time.time()})
    atomic_write_json(item.path / MLFLOW_RECORD, {"cnmc_id": item.id, "exports": entries})


@contextlib.contextmanager
def _refused(uri: str, what: str) -> Iterator[None]:
    """MLflow's and the network's errors as one :class:`CnmcError` that names the server."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except CnmcError:
        raise
    except MlflowException as exc:
        raise CnmcError(f"The MLflow tracking server at {uri} refused {what}: "
                        f"{str(exc.message).splitlines()[0]}") from None
    except OSError as exc:  # requests' ConnectionError and the like, a file store's disk
        raise CnmcError(f"Could not {what} at {uri}: {exc}") from None


def _experiment_id(client, uri: str, name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"The '--experiment' parameter must be a non-empty name. Got {name!r} "
                          "instead.")
    with _refused(uri, f"access to the experiment {name!r}"):
        found = client.get_experiment_by_name(name)
        if found is None:
            return client.create_experiment(name)
    if found.lifecycle_stage != "active":
        raise CnmcError(f"The MLflow experiment {name!r} at {uri} is deleted: restore it "
                        "(`mlflow experiments restore`) or choose another with --experiment. "
                        "Nothing was exported.")
    return found.experiment_id


def _existing_run(client, uri: str, experiment: str, experiment_id: str, item: Item):
    """The MLflow run this item was exported to before, or None: the recorded run id (if that
    run still exists and is active), else a run of the experiment tagged with the item's id."""
    from mlflow.exceptions import MlflowException

    for entry in read_record(item.path):
        if (entry.get("tracking_uri"), entry.get("experiment")) == (uri, experiment):
            try:
                run = client.get_run(str(entry.get("run_id")))
            except MlflowException:
                break  # deleted on the server: look it up by tag, else create a new one
            if run.info.lifecycle_stage == "active" and run.info.experiment_id == experiment_id:
                return run
    ident = item.id.replace("'", "")
    with _refused(uri, "a search of its runs"):
        runs = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_PREFIX}id` = "
                                  f"'{ident}' and tags.`{TAG_PREFIX}kind` = '{item.kind}'",
                                  max_results=1)
    return runs[0] if runs else None


def _changed_params(run, payload: Payload) -> list[str]:
    logged = run.data.params
    return sorted(k for k, v in payload.params.items() if k in logged and logged[k] != v)


def _new_metrics(client, run, payload: Payload) -> list[tuple[str, float, int, int]]:
    """The payload's metric values not yet logged at their step (every value on a new run)."""
    if run is None:
        return payload.metrics
    seen: dict[str, set] = {}
    for key in {m[0] for m in payload.metrics}:
        seen[key] = {(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)} \
            if key in run.data.metrics else set()
    return [m for m in payload.metrics if (m[2], m[1]) not in seen[m[0]]]


def _chunks(seq: list, size: int) -> Iterator[list]:
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


def _upload(client, run_id: str, payload: Payload, pngs: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="cnmc-mlflow-") as tmp:
        staged = {}
        for path, data in pngs.items():
            staged[path] = Path(tmp) / Path(path).name
            staged[path].write_bytes(data)
        for path, obj in payload.json_artifacts.items():
            staged[path] = Path(tmp) / Path(path).name
            staged[path].write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
        for path, file in {**payload.files, **staged}.items():
            client.log_artifact(run_id, str(file), str(Path(path).parent))


def _export_one(client, uri: str, experiment: str, experiment_id: str, item: Item,
                payload: Payload, pngs: dict[str, bytes],
                parent_run_id: str | None = None) -> ExportResult:
    """Create or update the MLflow run of one item, then record it in the item's folder."""
    from mlflow.entities import Metric, Param, RunTag

    if parent_run_id:
        payload.tags["mlflow.parentRunId"] = parent_run_id
    with _refused(uri, f"the export of {item.kind} {item.id}"):
        run = _existing_run(client, uri, experiment, experiment_id, item)
        if run is not None:
            changed = _changed_params(run, payload)
            if changed:
                raise CnmcError(
                    f"{item.kind} {item.id} was exported to MLflow run {run.info.run_id} with "
                    f"other values of the params {changed[:5]}{' ...' if len(changed) > 5 else ''}"
                    " (its config.json changed since); MLflow never changes a param: delete that "
                    "MLflow run or export to another --experiment. Nothing was exported.")
        metrics = _new_metrics(client, run, payload)
        start = int(float(item.config.get("created") or time.time()) * 1000)
        action = "updated" if run is not None else "created"
        if run is None:
            run = client.create_run(experiment_id, start_time=start, run_name=item.id,
                                    tags={TAG_PREFIX + "id": item.id, TAG_PREFIX + "kind": item.kind})
        run_id = run.info.run_id
        new_params = [Param(k, v) for k, v in payload.params.items() if k not in run.data.params]
        for chunk in _chunks(new_params, 100):
            client.log_batch(run_id, params=chunk)
        for chunk in _chunks([RunTag(k, v) for k, v in payload.tags.items()], 100):
            client.log_batch(run_id, tags=chunk)
        for chunk in _chunks([Metric(k, v, ts, step) for k, v, step, ts in metrics], 1000):
            client.log_batch(run_id, metrics=chunk)
        _upload(client, run_id, payload, pngs)
        client.set_terminated(run_id, "FINISHED", end_time=_end_time(item, start))
    url = f"{uri}/#/experiments/{experiment_id}/runs/{run_id}" \
        if urlparse(uri).scheme in ("http", "https") else None
    result = ExportResult(item.kind, item.id, item.path, run_id, experiment_id, action, url,
                          parent_run_id)
    _write_record(item, uri, experiment, result)
    return result


def _end_time(item: Item, start: int) -> int:
    from cnmc_core.contracts import STATUS

    try:
        finished = read_json(item.path / STATUS).get("finished")
        return int(float(finished) * 1000) if finished else start
    except (OSError, ValueError, AttributeError, TypeError):
        return start


def export_to_mlflow(refs: Sequence[str | os.PathLike] | None, tracking_uri: str, *,
                     experiment: str = DEFAULT_EXPERIMENT, include_model: bool = True,
                     include_figures: bool = True, artifacts: str | os.PathLike | None = None,
                     chromium: str | None = None,
                     progress: Callable[[str], None] | None = None,
                     actor=None) -> list[ExportResult]:
    """Export runs, ensembles and studies to MLflow (see the module docstring).

    Args:
        refs: ids or folders; None or empty: every completed run and ensemble of the workspace,
            and its studies (the folders left out are named through ``progress``).
        tracking_uri: the MLflow tracking URI (``http://host:port``, ``sqlite:///...``).
        experiment: the MLflow experiment (created when missing).
        include_model: upload ``model.keras`` (runs only).
        include_figures: render the confusion matrices and curves to PNG (needs Chromium).
        artifacts: the workspace where ids are looked up (default ``$CNMC_ARTIFACTS``).
        chromium: the browser for the PNGs (default :func:`cnmc_core.interop.browser.
            find_chromium`).
        progress: called with a line of text per item.
        actor: who exports (None: the local OS user); a viewer is refused (an export writes
            to the tracking URI, which may be a path on the server, and into the run folders).

    Returns:
        One :class:`ExportResult` per exported item, a study's runs after it.

    Raises:
        AccessError: the actor may not export (a viewer); nothing is written.
        CnmcError: an item that cannot be exported, no Chromium, an unreachable server or a
            refused write; folders of items not exported yet are left unchanged.
    """
    from cnmc_core.auth.roles import require

    require(actor, "configure")
    say = progress or (lambda text: None)
    if refs:
        items = resolve_items(refs, artifacts, "exported")
    else:
        items, skipped = workspace_items(artifacts)
        for name, why in skipped:
            say(f"skipped {name}: {why}")
        if not items:
            raise CnmcError("The workspace has no completed run, ensemble or study to export; "
                            "train one first (`python -m cnmc_core train ...`).")
    plan = _plan(items)
    if include_figures:
        from cnmc_core.interop.browser import find_chromium

        chromium = find_chromium(chromium)
    uri = check_tracking_uri(tracking_uri)
    from mlflow.tracking import MlflowClient

    # MLflow prints "View run ... at: URL" to stdout when a run ends; the line per item below
    # says the same, and a dashboard's stdout is its server log
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    with _refused(uri, "a connection"):
        client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, uri, experiment)
    payloads = [build_payload(item, include_model=include_model, include_figures=include_figures,
                              study=study) for item, _, study in plan]
    pngs = _render_all(payloads, chromium)  # before any write: a failure leaves all unchanged
    results: list[ExportResult] = []
    for (item, parent, _), payload, item_pngs in zip(plan, payloads, pngs):
        parent_id = results[parent].run_id if parent is not None else None
        result = _export_one(client, uri, experiment, experiment_id, item, payload, item_pngs,
                             parent_id)
        results.append(result)
        say(_line(result))
    return results


def _plan(items: list[Item]) -> list[tuple[Item, int | None, str | None]]:
    """``(item, index of its parent in the plan, study id)`` in export order: each study then
    its runs; a run that a study lists is exported once, under the study."""
    in_study = {run.path.resolve(): (study, run) for study in items if study.kind == "study"
                for run in study_runs(study)}
    plan: list[tuple[Item, int | None, str | None]] = []
    for item in items:
        if item.kind != "study" and item.path.resolve() in in_study:
            continue
        plan.append((item, None, None))
        if item.kind == "study":
            parent = len(plan) - 1
            plan += [(run, parent, item.id) for run in study_runs(item)]
    return plan


def _render_all(payloads: list[Payload], chromium: str | None) -> list[dict[str, bytes]]:
    """Every payload's figures as PNG, rendered with one browser start."""
    from cnmc_core.interop.browser import render_pngs

    figures = {f"{i}|{path}": fig for i, p in enumerate(payloads) for path, fig in p.figures.items()}
    rendered = render_pngs(figures, chromium=chromium)
    out: list[dict[str, bytes]] = [{} for _ in payloads]
    for key, data in rendered.items():
        index, path = key.split("|", 1)
        out[int(index)][path] = data
    return out


def _line(result: ExportResult) -> str:
    under = f" under {result.parent_run_id}" if result.parent_run_id else ""
    where = f": {result.url}" if result.url else ""
    return (f"{result.action} MLflow run {result.run_id}{under} for {result.kind} "
            f"{result.id}{where}")


def export_table(results: Sequence[ExportResult]):
    """The results as a frame for a page: ``kind``, ``id``, ``action``, ``mlflow run``,
    ``parent run``, ``url``."""
    import pandas as pd

    return pd.DataFrame([{"kind": r.kind, "id": r.id, "action": r.action, "mlflow run": r.run_id,
                          "parent run": r.parent_run_id or "", "url": r.url or ""}
                         for r in results],
                        columns=["kind", "id", "action", "mlflow run", "parent run", "url"])
