"""What the interop verbs (``mlflow-export``, ``report``) work on: runs, ensembles and studies of
a workspace, resolved from ids or folders, and the facts every export names.

- :func:`resolve_items`: ids or folders to :class:`Item` (every one checked before anything is
  written: unknown, unfinished or damaged ones are refused with what to do);
- :func:`workspace_items`: every completed run and ensemble of a workspace, and its studies, with
  the folders left out and why;
- :func:`study_runs`: the runs a study's ``study.json`` lists;
- :func:`item_facts`: protocol (the leaky ones marked, :func:`protocol_text`), dataset fingerprint
  and kind (synthetic, real or unknown), study, fold, seed, preset, model and cnmc version.

A study is ``artifacts/studies/<id>/study.json`` with at least a ``runs`` list (run ids, run
folders, or objects with ``run_id`` or ``path``); its pooled metrics and paired comparisons, when
written, are in the folder's ``metrics.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from cnmc_core.contracts import CONFIG, METRICS, PROTOCOLS, protocol_label
from cnmc_core.data.provenance import recorded_kind
from cnmc_core.exceptions import RunError
from cnmc_core.workspace.fileio import check_name, read_json
from cnmc_core.workspace.paths import artifacts_root
from cnmc_core.workspace.status import check_completed

__all__ = [
    "STUDY_FILE",
    "STUDIES",
    "KINDS",
    "Item",
    "protocol_text",
    "is_leaky",
    "resolve_item",
    "resolve_items",
    "workspace_items",
    "study_runs",
    "item_facts",
    "read_object",
    "study_metrics",
    "item_names",
]

STUDY_FILE = "study.json"
#: The workspace's subfolder of studies (``artifacts/studies/<id>/``).
STUDIES = "studies"
KINDS = ("run", "ensemble", "study")
#: Study protocols that split by image (the study's analogue of ``paper``): leaky like it.
_LEAKY_STUDY_PROTOCOLS = {"image-kfold"}


@dataclass(frozen=True)
class Item:
    """A run, an ensemble or a study: its kind, id, folder and ``config.json`` (``study.json``
    for a study)."""

    kind: str
    id: str
    path: Path
    config: dict


def protocol_text(name: Any) -> str:
    """The protocol as it is shown beside a score: :func:`cnmc_core.contracts.protocol_label`,
    and a study's image-level k-fold marked leaky too (``image-kfold (leaky: split by image)``)."""
    text = protocol_label(name)
    if name in _LEAKY_STUDY_PROTOCOLS and "leaky" not in text:
        text = f"{name} (leaky: split by image)"
    return text


def is_leaky(name: Any) -> bool:
    """Whether a protocol lets one subject's cells be in train and test."""
    return (name in PROTOCOLS and PROTOCOLS[name].leaky) or name in _LEAKY_STUDY_PROTOCOLS


def read_object(path: Path, what: str) -> dict:
    """A JSON file that must hold an object; anything else is a :class:`RunError` naming it."""
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:  # CnmcError (not JSON) included
        raise RunError(f"{path} cannot be read ({exc}); the {what} folder is damaged.") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} holds {type(data).__name__}, not a JSON object; the {what} "
                       "folder is damaged.")
    return data


def _study_item(path: Path) -> Item:
    study = read_object(path / STUDY_FILE, "study")
    runs = study.get("runs")
    if not isinstance(runs, list) or not runs:
        raise RunError(f"The study {path.name} lists no runs ({path / STUDY_FILE} has no "
                       "non-empty 'runs' list): wait until its runs are created, or pick another "
                       "study.")
    return Item("study", str(study.get("study_id") or study.get("id") or path.name), path, study)


def _folder_item(path: Path, use: str) -> Item:
    if (path / STUDY_FILE).is_file():
        return _study_item(path)
    if not (path / CONFIG).is_file():
        raise RunError(f"{path} is not a run, ensemble or study folder (no {CONFIG} or "
                       f"{STUDY_FILE}); list them with `python -m cnmc_core runs`.")
    config = read_object(path / CONFIG, "run")
    check_completed(path, use)
    kind = "ensemble" if config.get("kind") == "ensemble" else "run"
    ident = config.get("ensemble_id") if kind == "ensemble" else config.get("run_id")
    return Item(kind, str(ident or path.name), path, config)


def resolve_item(ref: str | os.PathLike, artifacts: str | os.PathLike | None = None,
                 use: str = "exported") -> Item:
    """A run, ensemble or study given as a folder or as an id looked up under ``artifacts``
    (``runs/``, ``ensembles/``, ``studies/``; default ``$CNMC_ARTIFACTS`` or ``./artifacts``).

    Raises:
        RunError: an unsafe or unknown id, a folder that is none of the three, a run or ensemble
            that is not completed (``use`` says what it cannot be: ``exported``, ``reported``),
            a study without runs.
    """
    path = Path(ref)
    if path.is_dir():
        return _folder_item(path, use)
    name = check_name(str(ref), "run, ensemble or study id", RunError)
    root = artifacts_root(artifacts)
    for sub in ("runs", "ensembles", STUDIES):
        if (root / sub / name).is_dir():
            return _folder_item(root / sub / name, use)
    raise RunError(f"{str(ref)!r} is not a folder, and no run, ensemble or study of that id "
                   f"exists in {root} (runs/, ensembles/, {STUDIES}/); list them with "
                   "`python -m cnmc_core runs`, or pass --artifacts DIR.")


def resolve_items(refs: Iterable[str | os.PathLike], artifacts: str | os.PathLike | None = None,
                  use: str = "exported") -> list[Item]:
    """:func:`resolve_item` of every reference, all checked before any is used; a folder given
    twice is kept once, in the order given."""
    out: list[Item] = []
    seen: set[Path] = set()
    for ref in refs:
        item = resolve_item(ref, artifacts, use)
        key = item.path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(item)
    if not out:
        raise RunError("No run, ensemble or study given.")
    return out


def workspace_items(artifacts: str | os.PathLike | None = None) -> tuple[list[Item], list[tuple[str, str]]]:
    """Every completed run and ensemble of the workspace and every study with runs, oldest run
    first, and ``(folder name, why)`` of each folder left out (queued, running, failed,
    cancelled or damaged)."""
    root = artifacts_root(artifacts)
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    for sub in ("runs", "ensembles", STUDIES):
        base = root / sub
        if not base.is_dir():
            continue
        for path in sorted(base.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            try:
                items.append(_folder_item(path, "exported"))
            except RunError as exc:
                skipped.append((path.name, str(exc)))
    return items, skipped


def _study_ref(entry: Any, study: Path) -> str:
    if isinstance(entry, dict):
        entry = entry.get("path") or entry.get("run_id") or entry.get("id")
    if not isinstance(entry, str) or not entry:
        raise RunError(f"{study / STUDY_FILE}: each entry of 'runs' must be a run id, a run "
                       f"folder or an object with 'run_id' or 'path'; got {entry!r}.")
    return entry


def study_runs(study: Item, use: str = "exported") -> list[Item]:
    """The runs of a study, in the order of its ``study.json``, each resolved in the study's
    workspace (``<artifacts>/studies/<id>`` lives in ``<artifacts>``) and completed.

    Raises:
        RunError: a listed run that is missing or unfinished (the message names it).
    """
    root = study.path.parent.parent
    out = []
    for entry in study.config.get("runs") or []:
        ref = _study_ref(entry, study.path)
        try:
            item = resolve_item(ref, root, use)
        except RunError as exc:
            raise RunError(f"Study {study.id}: {exc}") from None
        if item.kind == "study":
            raise RunError(f"Study {study.id}: {ref!r} is a study; a study lists runs.")
        out.append(item)
    return out


#: Where each fact is read from a run's ``config.json``: the first key present wins.
_FACT_KEYS = {
    "study": ("study_id", "study"),
    "fold": ("fold",),
    "seed": ("seed",),
}


def item_facts(item: Item) -> dict[str, Any]:
    """What every export says about an item (values None where the folder does not record
    them): ``kind``, ``id``, ``protocol``, ``protocol_label``, ``leaky``,
    ``dataset_fingerprint``, ``data_kind``, ``study``, ``fold``, ``seed``, ``preset``, ``model``,
    ``cnmc_version`` (the version that made the folder)."""
    config = item.config
    protocol = config.get("protocol") if item.kind == "study" else config.get("split_protocol")
    facts: dict[str, Any] = {"kind": item.kind, "id": item.id, "protocol": protocol,
                             "protocol_label": protocol_text(protocol), "leaky": is_leaky(protocol),
                             "dataset_fingerprint": config.get("dataset_fingerprint"),
                             "data_kind": recorded_kind(config)}
    for fact, keys in _FACT_KEYS.items():
        facts[fact] = next((config[k] for k in keys if config.get(k) is not None), None)
    tag = config.get("study")
    if isinstance(tag, dict):  # a study's run: {"id", "preset", "fold", "seed"} (study.plan)
        facts["study"] = tag.get("id")
        facts["fold"] = tag.get("fold") if facts["fold"] is None else facts["fold"]
    if facts["fold"] is None and isinstance(config.get("kfold"), dict):
        facts["fold"] = config["kfold"].get("fold")
    if item.kind == "ensemble":
        facts["preset"] = f"ensemble ({config.get('method', '?')})"
    elif item.kind == "study":
        facts["preset"] = ", ".join(map(str, config.get("presets") or [])) or None
        facts["study"] = item.id
    else:
        facts["preset"] = config.get("name")
    facts["model"] = config.get("model")
    facts["cnmc_version"] = (config.get("versions") or {}).get("cnmc_core") \
        if isinstance(config.get("versions"), dict) else None
    return facts


def study_metrics(study: Item) -> dict:
    """The study's ``metrics.json`` (pooled scores, ``comparisons``), or ``{}`` when it has none
    yet."""
    path = study.path / METRICS
    return read_object(path, "study") if path.is_file() else {}


def item_names(items: Sequence[Item]) -> dict[str, Item]:
    """``{display name: item}``: the id without its creation time where that stays unique."""
    from cnmc_core.workspace.listing import display_name

    names = [display_name(i.id) for i in items]
    if len(set(names)) < len(names):
        names = [i.id for i in items]
    return dict(zip(names, items))

