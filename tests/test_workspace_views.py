"""cnmc_core.workspace.views: the members view of the listing (groups, labels, skipped folders
with reasons), the counts, short labels."""

from __future__ import annotations

import json

from cnmc_core.workspace.listing import list_experiments, workspace_signature
from cnmc_core.workspace.views import MEMBER_COLUMNS, list_members, short_labels


def test_list_members_groups_alignable_runs_and_explains_the_rest(member_store):
    members, skipped = list_members(member_store["root"])
    assert list(members.columns) == MEMBER_COLUMNS
    assert set(members["member_id"]) == {member_store[k].name for k in "abc"}
    group = members.set_index("member_id")["group"]
    assert group[member_store["a"].name] == group[member_store["b"].name] != group[member_store["c"].name]
    assert members["test_weighted_f1"].tolist() == [0.9, 0.9, 0.9]
    assert members["label"].tolist() == ["demo-cccc", "demo-bbbb", "demo-aaaa"]
    assert members["n_val"].tolist() == [4, 4, 4] and members["has_model"].all()
    reasons = dict(zip(skipped["member_id"], skipped["state"]))
    assert reasons == {"20260101-000004-demo-dddd": "failed", "20260101-000005-damaged": "damaged"}
    assert "boom" in skipped["reason"].tolist()


def test_list_members_of_an_empty_workspace(tmp_path):
    members, skipped = list_members(tmp_path / "nothing")
    assert members.empty and skipped.empty and list(members.columns) == MEMBER_COLUMNS
    assert not (tmp_path / "nothing").exists()  # listing writes nothing


def test_list_members_is_a_view_of_the_listing(member_store):
    frame = list_experiments(member_store["root"])
    members, skipped = list_members(experiments=frame)
    assert members.equals(list_members(member_store["root"])[0])
    assert len(members) + len(skipped) == len(frame)


def test_workspace_signature_changes_when_a_run_finishes(member_store):
    before = workspace_signature(member_store["root"])
    assert workspace_signature(member_store["root"]) == before
    status = member_store["root"] / "runs" / "20260101-000004-demo-dddd" / "status.json"
    status.write_text(json.dumps({"state": "completed"}))
    assert workspace_signature(member_store["root"]) != before


def test_short_labels_stay_unique():
    ids = ["20260101-demo-aaaa", "20260102-demo-aaaa", "ens-ga-20260101-000000-abc123"]
    assert short_labels(ids, ["demo", "demo", ""], ["run", "run", "ensemble"]) == \
        ["20260101-demo-aaaa", "20260102-demo-aaaa", "ens-ga-abc123"]
