"""What the analysis pages do with finished runs and ensembles: their groups of alignable
members, the image files behind their predictions, and the runs an ensemble is made of.

The members themselves are listed by :func:`cnmc_core.workspace.views.list_members` (a view of
the one workspace listing: completed members with their ``group`` key, and the folders that
cannot be used with the reason). Here:

- :func:`group_label`, :func:`comparable_groups`, :func:`default_members`: choosing a group of
  members scored on the same images, and its default members;
- :func:`member_places` and :func:`member_paths` find an ensemble's members inside its own
  workspace only;
- :func:`data_source` finds the dataset a member's images come from (a run's ``config.json``
  ``data``; an ensemble's first member that has one) and :func:`image_paths` maps image ids to
  files through :func:`cnmc_core.data.manifest.resolve_manifest`;
- :func:`leaf_runs` expands an ensemble into the runs (with ``model.keras``) it is made of, with
  their effective weights, for explanations and scoring of new images; it refuses an ensemble
  that is not completed (a search still running, failed, cancelled or killed) and one without
  fitted weights (:func:`ensemble_weights`), never falling back to equal weights.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from cnmc_core.exceptions import CnmcError, RunError
from cnmc_core.workspace.fileio import check_name, read_json
from cnmc_core.workspace.status import check_completed

__all__ = [
    "MAX_NESTING",
    "MEMBER_FOLDERS",
    "check_nesting",
    "member_places",
    "member_paths",
    "data_source",
    "image_paths",
    "ensemble_weights",
    "leaf_runs",
    "group_label",
    "comparable_groups",
    "default_members",
]

MAX_NESTING = 8  # ensembles of ensembles: deeper nesting is refused (and catches cycles)


def check_nesting(path: str | os.PathLike, depth: int) -> None:
    """Refuse to go deeper than :data:`MAX_NESTING` ensembles inside ensembles (which also stops
    a cycle of ensembles that list each other). Every walk down an ensemble's members
    (:func:`data_source`, :func:`leaf_runs`, :func:`cnmc_core.predict.score_member`) calls it.

    Raises:
        RunError: ``depth`` is above :data:`MAX_NESTING`.
    """
    if depth > MAX_NESTING:
        raise RunError(f"{Path(path)}: ensembles nested deeper than {MAX_NESTING} levels "
                       "(a cycle?).")


def _config(path: Path) -> dict:
    try:
        config = read_json(path / "config.json")
    except (OSError, CnmcError) as exc:
        raise RunError(f"{path} has no readable config.json ({exc}).") from None
    if not isinstance(config, dict):
        raise RunError(f"{path / 'config.json'} must hold a JSON object.")
    return config


#: Where a member of each kind lives in the workspace.
MEMBER_FOLDERS = {"run": "runs", "ensemble": "ensembles"}


def member_places(path: str | os.PathLike, config: dict) -> list[list[tuple[str, str]]]:
    """Where each member of the ensemble at ``path`` may be in its workspace, in the order to
    look: ``[(subfolder, id), ...]`` per member (``runs`` / ``ensembles``), from its
    ``config.json`` (``config``).

    ``member_paths`` holds each member's place, ``runs/<id>`` or ``ensembles/<id>``
    (:func:`cnmc_core.ensemble.store.member_refs`): that place, nowhere else. An older ensemble
    stored absolute paths: those are never followed (in a copied workspace they lead to the
    original's runs); such a member is looked up by id (``runs/`` or ``ensembles/`` as its
    ``member_kinds`` says, then the other).

    Raises:
        RunError: a ``config.json`` whose members are not safe ids (damaged).
    """
    names = config.get("members") or []
    refs = config.get("member_paths") or []
    kinds = config.get("member_kinds") or []
    out = []
    for i, name in enumerate(names):
        ref = refs[i] if i < len(refs) and isinstance(refs[i], str) else ""
        parts = ref.split("/")
        if len(parts) == 2 and parts[0] in MEMBER_FOLDERS.values() and not ref.startswith("/"):
            where = [(parts[0], parts[1])]  # a workspace reference: that place, nowhere else
        else:  # an old absolute path (or none): by id, inside this workspace only
            first = MEMBER_FOLDERS.get(kinds[i] if i < len(kinds) else "run", "runs")
            where = [(sub, str(name)) for sub in dict.fromkeys([first, "runs", "ensembles"])]
        try:
            for _, mid in where:
                check_name(mid, "member id")
        except CnmcError:
            raise RunError(f"Ensemble {Path(path).name}: its config.json names member {name!r} "
                           f"at {ref!r}, which is not a run or ensemble id of its workspace; the "
                           "file is damaged: run the search again.") from None
        out.append(where)
    return out


def member_paths(path: Path, config: dict) -> list[Path]:
    """The member folders of the ensemble at ``path`` (its ``config.json`` is ``config``), found
    inside the ensemble's own workspace (``path.parent.parent``) only, at the places
    :func:`member_places` gives.

    Raises:
        RunError: a member that is not in the ensemble's workspace (deleted, or the ensemble was
            copied without it), or a ``config.json`` whose members are not safe ids.
    """
    path = Path(path)
    root = path.parent.parent
    out = []
    for name, where in zip(config.get("members") or [], member_places(path, config)):
        found = [root / sub / mid for sub, mid in where if (root / sub / mid).is_dir()]
        if not found:
            looked = ", ".join(str(root / sub / mid) for sub, mid in where)
            raise RunError(f"Ensemble {path.name}: member {name!r} not found in its workspace "
                           f"(looked in {looked}); was it deleted, or the workspace copied "
                           "without it?")
        out.append(found[0])
    return out


def data_source(member_path: str | os.PathLike, _depth: int = 0) -> str | None:
    """The dataset folder or manifest that a run (or an ensemble's first run) was scored on:
    the ``data`` of its ``config.json``; None when no member records one."""
    path = Path(member_path)
    check_nesting(path, _depth)
    config = _config(path)
    if config.get("kind") != "ensemble":
        return str(config["data"]) if config.get("data") else None
    for sub in member_paths(path, config):
        found = data_source(sub, _depth + 1)
        if found:
            return found
    return None


def image_paths(source: str | os.PathLike) -> dict[str, str]:
    """``{image_id: file path}`` of the dataset ``source`` (folder or manifest CSV).

    Scans a folder without decoding the images (fast); cache the result in the caller.

    Raises:
        DataError: the dataset no longer exists or cannot be scanned.
    """
    from cnmc_core.data.manifest import resolve_manifest

    manifest = resolve_manifest(source, verify=False)
    return dict(zip(manifest["image_id"].astype(str), manifest["path"].astype(str)))


def ensemble_weights(path: str | os.PathLike, config: dict | None = None) -> list[float]:
    """The fitted weights of a finished ensemble, one per member in ``members`` order, scaled to
    sum to 1 (from its ``config.json``, which gets them when the search completes).

    Raises:
        RunError: no ``weights`` (the search did not finish: its config is the one written at
            its start), a member without a weight, or weights that are not non-negative numbers
            with a positive sum. Never falls back to equal weights.
    """
    path = Path(path)
    config = _config(path) if config is None else config
    names = [str(n) for n in config.get("members") or []]
    weights = config.get("weights")
    if not isinstance(weights, dict) or not weights:
        raise RunError(f"Ensemble {path.name}: its config.json has no fitted weights (the search "
                       "did not finish). Run the search again, or pick a completed ensemble.")
    missing = [n for n in names if n not in weights]
    if missing:
        raise RunError(f"Ensemble {path.name}: its config.json gives no weight for member(s) "
                       f"{missing}; run the search again.")
    try:
        w = [float(weights[n]) for n in names]
    except (TypeError, ValueError):
        w = [math.nan]
    total = sum(w)
    if not all(math.isfinite(x) and x >= 0 for x in w) or not total > 0:
        raise RunError(f"Ensemble {path.name}: its config.json weights {weights} are not "
                       "non-negative numbers with a positive sum; run the search again.")
    return [x / total for x in w]


def leaf_runs(member_path: str | os.PathLike, use: str = "used",
              _depth: int = 0) -> list[tuple[Path, float]]:
    """The runs with a ``model.keras`` that a member is made of, with their effective weights.

    A run is ``[(run, 1.0)]``; an ensemble multiplies its weights (from its ``config.json``) down
    through nested ensembles and adds up runs that appear more than once. Weights sum to 1. For
    a stacking ensemble the weights are its display weights (its predictions come from a
    logistic regression; use :func:`cnmc_core.predict.score_member` to score with it).

    Every ensemble on the way must be completed (:func:`cnmc_core.workspace.status.check_completed`, with
    liveness: a running or killed search is refused) and have its fitted weights
    (:func:`ensemble_weights`). ``use`` names what the caller does with it in that message
    (``explained``, ``scored``...).

    Raises:
        RunError: an unfinished ensemble, one without weights, a run without ``model.keras``, a
            missing member, or nesting too deep.
    """
    path = Path(member_path)
    check_nesting(path, _depth)
    config = _config(path)
    if config.get("kind") != "ensemble":
        if not (path / "model.keras").is_file():
            raise RunError(f"Run {path.name} has no model.keras: it did not finish, or its model "
                           "was deleted. Pick a completed run.")
        return [(path, 1.0)]
    check_completed(path, use)
    names = [str(n) for n in config.get("members") or []]
    if not names:
        raise RunError(f"Ensemble {path.name} lists no members in its config.json.")
    w = ensemble_weights(path, config)
    merged: dict[Path, float] = {}
    for sub, weight in zip(member_paths(path, config), w):
        for run, inner in leaf_runs(sub, use, _depth + 1):
            merged[run] = merged.get(run, 0.0) + weight * inner
    return list(merged.items())


def group_label(members: pd.DataFrame, group: str, noun: str = "run(s)") -> str:
    """One line naming a group of :func:`~cnmc_core.workspace.views.list_members` (members scored on the same images):
    protocol, dataset fingerprint, val/test image counts and how many ``noun`` it holds."""
    rows = members[members["group"] == group]
    r = rows.iloc[0]
    return (f"{r['protocol']} protocol, dataset {r['dataset'][:8]}: {r['n_val']:,} val / "
            f"{r['n_test']:,} test images, {len(rows)} {noun}")


def comparable_groups(members: pd.DataFrame) -> list[str]:
    """The groups of :func:`~cnmc_core.workspace.views.list_members` that can be compared, largest first: those with at
    least two members, or every group when none has two."""
    counts = members["group"].value_counts()
    return [g for g in counts.index if counts[g] >= 2] or list(counts.index)


def default_members(in_group: pd.DataFrame, n: int) -> list[str]:
    """The first ``n`` runs of a group (ensembles only when the group has no run)."""
    runs = in_group[in_group["kind"] == "run"]["member_id"].tolist()[:n]
    return runs or in_group["member_id"].tolist()[:n]
