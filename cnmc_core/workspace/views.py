"""Views of the one workspace listing (:func:`cnmc_core.workspace.listing.list_experiments`):
the members the analysis pages work on and the folders they cannot use (with the reason), the
counts the Home page shows, and short labels for charts.
"""

from __future__ import annotations

import os

import pandas as pd

from cnmc_core.contracts import ACTIVE_STATES, DAMAGED
from cnmc_core.workspace.listing import list_experiments

__all__ = ["MEMBER_COLUMNS", "SKIPPED_COLUMNS", "list_members", "split_skipped", "training_line",
           "workspace_counts", "short_labels"]

MEMBER_COLUMNS = ["member_id", "kind", "label", "model", "protocol", "dataset", "group",
                  "n_val", "n_test", "val_weighted_f1", "test_weighted_f1", "has_model",
                  "created", "path"]
SKIPPED_COLUMNS = ["member_id", "kind", "state", "reason", "epoch", "epochs", "path"]


def list_members(root: str | os.PathLike | None = None,
                 experiments: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The completed runs and ensembles usable for analysis, and the folders that are not.

    A view of :func:`list_experiments` (pass its frame as ``experiments`` to reuse it).

    Returns:
        ``(members, skipped)``. ``members`` has :data:`MEMBER_COLUMNS`: ``member_id`` (the run or
        ensemble id, as :func:`~cnmc_core.ensemble.align_runs` names members), ``kind``, ``label``
        (short and unique, for charts), ``model``, ``protocol``, ``dataset`` (fingerprint),
        ``group`` (same group: same images, alignable), ``n_val``, ``n_test``, the weighted F1
        of each split (None if absent), ``has_model`` (a run with ``model.keras``, or an
        ensemble whose runs all have one), ``created`` (epoch seconds) and ``path``; newest
        first. ``skipped`` has :data:`SKIPPED_COLUMNS`, one row per run or ensemble that is not
        completed or cannot be read, with the reason.
    """
    frame = list_experiments(root) if experiments is None else experiments
    frame = frame[frame["kind"].isin(["run", "ensemble"])]
    done = frame[frame["state"] == "completed"]
    members = pd.DataFrame({
        "member_id": done["run_id"].astype(str), "kind": done["kind"], "label": "",
        "model": done["model"].fillna("").astype(str), "protocol": done["protocol"].astype(str),
        "dataset": done["dataset"].astype(str), "group": done["group"].astype(str),
        "n_val": done["n_val"].astype(int), "n_test": done["n_test"].astype(int),
        "val_weighted_f1": done["val_weighted_f1"], "test_weighted_f1": done["test_weighted_f1"],
        "has_model": done["has_model"].astype(bool),
        "created": pd.to_numeric(done["created_ts"]).fillna(0.0).astype(float),
        "path": done["path"],
    }, columns=MEMBER_COLUMNS)
    names = done["preset"].fillna("").astype(str)
    if len(members):
        order = members.assign(_name=names).sort_values(
            ["created", "member_id"], ascending=[False, False], kind="stable")
        members = order.drop(columns="_name").reset_index(drop=True)
        members["label"] = short_labels(members["member_id"].tolist(), order["_name"].tolist(),
                                        members["kind"].tolist())
    rest = frame[frame["state"] != "completed"]
    reasons = [e if isinstance(e, str) and e else (m if isinstance(m, str) and m else
                                                   f"the {k} is {s}")
               for e, m, k, s in zip(rest["error"], rest["message"], rest["kind"], rest["state"])]
    skipped = pd.DataFrame({"member_id": rest["run_id"].astype(str), "kind": rest["kind"],
                            "state": rest["state"].astype(str), "reason": reasons,
                            "epoch": rest["epoch"], "epochs": rest["epochs"],
                            "path": rest["path"]}, columns=SKIPPED_COLUMNS)
    return members, skipped.reset_index(drop=True)


def split_skipped(skipped: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The folders :func:`list_members` skipped, by why: ``training`` (queued, running or
    unresponsive: they become usable when done, oldest first), ``damaged`` (a file cannot be
    read; the reason names it) and ``ended`` (failed or cancelled)."""
    active = skipped["state"].isin(ACTIVE_STATES)
    damaged = skipped["state"] == DAMAGED
    return {"training": skipped[active].iloc[::-1].reset_index(drop=True),
            "damaged": skipped[damaged].reset_index(drop=True),
            "ended": skipped[~active & ~damaged].reset_index(drop=True)}


def _epoch_text(row) -> str:
    epoch, epochs = row.epoch, row.epochs
    if row.state == "queued":
        return "queued"
    if epochs == epochs and epochs and epoch == epoch and epoch:
        text = f"epoch {int(epoch)} of {int(epochs)}"
    else:
        text = "starting" if row.kind == "run" else "fitting"
    return text + (", unresponsive" if row.state == "unresponsive" else "")


def training_line(training: pd.DataFrame) -> str:
    """``2 runs still training (epoch 3 of 8, queued)``: what the ``training`` part of
    :func:`split_skipped` is doing; "" when empty. Ensemble searches are counted as searches."""
    if training.empty:
        return ""
    parts = []
    for kind, noun in (("run", "run"), ("ensemble", "ensemble search")):
        rows = training[training["kind"] == kind]
        if len(rows):
            what = [_epoch_text(r) for r in rows.itertuples()]
            shown = ", ".join(what[:6]) + (", ..." if len(what) > 6 else "")
            verb = "still training" if kind == "run" else "still running"
            parts.append(f"{len(rows)} {noun}{'s' if len(rows) != 1 else ''} {verb} ({shown})")
    return "; ".join(parts)


def workspace_counts(experiments: pd.DataFrame) -> dict[str, int]:
    """How many runs are completed, active (queued or running), failed, cancelled or damaged,
    and how many ensembles there are."""
    runs = experiments[experiments["kind"] == "run"]
    states = runs["state"].value_counts().to_dict()
    return {
        "runs": int(len(runs)),
        "completed": int(states.get("completed", 0)),
        "active": int(sum(states.get(s, 0) for s in ACTIVE_STATES)),
        "running": int(states.get("running", 0)),
        "queued": int(states.get("queued", 0)),
        "failed": int(states.get("failed", 0)),
        "cancelled": int(states.get("cancelled", 0)),
        "damaged": int(states.get(DAMAGED, 0)),
        "ensembles": int((experiments["kind"] == "ensemble").sum()),
    }


def short_labels(ids: list[str], names: list[str] | None = None,
                 kinds: list[str] | None = None) -> list[str]:
    """Short unique display names: a run's preset name plus the last 4 characters of its id
    (``fixture_scratch_dd256-f0e6``), an ensemble's method plus its id's hash (``ens-ga-abc123``);
    the full id wherever that would not be unique."""
    names = names or [""] * len(ids)
    kinds = kinds or ["run"] * len(ids)
    out = []
    for mid, name, kind in zip(ids, names, kinds):
        if kind == "ensemble":
            parts = mid.split("-")
            label = f"{parts[0]}-{parts[1]}-{parts[-1]}" if mid.startswith("ens-") and \
                len(parts) >= 4 else mid
        else:
            label = f"{name}-{mid[-4:]}" if name and len(mid) > 4 else mid
        out.append(label)
    counts: dict[str, int] = {}
    for label in out:
        counts[label] = counts.get(label, 0) + 1
    return [mid if counts[lab] > 1 else lab for lab, mid in zip(out, ids)]
