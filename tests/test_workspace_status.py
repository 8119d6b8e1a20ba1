"""cnmc_core.workspace.status.Heartbeat never stops beating on a bad write and ends a job in one
call (finish); cnmc_core.workspace.layout.make_unique_folder makes run and ensemble folders."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import pytest

from cnmc_core.exceptions import RunError
from cnmc_core.workspace import layout
from cnmc_core.workspace import status as R
from cnmc_core.workspace.status import Heartbeat, read_status, write_status

INTERVAL = 0.05


def _wait(predicate, timeout: float = 10.0, what: str = "") -> None:
    start = time.time()
    while time.time() - start < timeout:
        try:
            if predicate():
                return
        except (ValueError, OSError, TypeError):  # a status being replaced, or still damaged
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


@pytest.fixture
def job(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    beat = Heartbeat(folder, interval=INTERVAL)
    beat.update(state="running", kind="ensemble", step=1, message="starting")
    yield folder, beat
    beat.stop()


def _beats_after(folder: Path, since: float) -> bool:
    return _status(folder)["heartbeat"] > since


# --------------------------------------------------------------------------- the thread
def test_a_damaged_status_is_rewritten_from_the_jobs_fields(job):
    folder, beat = job
    (folder / "status.json").write_text("{not json")
    beat.start()
    t0 = time.time()
    _wait(lambda: _beats_after(folder, t0), what="a beat over the damaged status.json")
    status = _status(folder)
    assert (status["state"], status["kind"], status["step"]) == ("running", "ensemble", 1)
    assert "status.json was damaged and was rewritten" in status["heartbeat_error"]
    (folder / "status.json").write_text("[1, 2]")  # JSON, but not an object
    t1 = time.time()
    _wait(lambda: _beats_after(folder, t1), what="a beat over a status.json that is a list")
    assert _status(folder)["state"] == "running"


def test_update_rewrites_a_damaged_status_too(job):
    folder, beat = job
    (folder / "status.json").write_text("{not json")
    status = beat.update(message="still here")
    assert status["state"] == "running" and read_status(folder)["message"] == "still here"


def test_a_field_that_is_not_json_does_not_stop_the_beats(job):
    folder, beat = job
    beat.start()
    beat.note(odd=object(), generation=1)
    t0 = time.time()
    _wait(lambda: _beats_after(folder, t0), what="a beat with a field that is not JSON")
    status = _status(folder)
    assert status["odd"].startswith("<object object") and status["generation"] == 1
    assert "a status field is not JSON (TypeError" in status["heartbeat_error"]
    beat.note(generation=2)  # later progress is still written
    _wait(lambda: _status(folder)["generation"] == 2, what="the next progress note")
    with pytest.raises(TypeError):  # a state change with a bad field is the caller's bug
        beat.update(bad=object())


def test_write_errors_are_survived_and_the_first_is_recorded(job, monkeypatch):
    folder, beat = job
    original = R.atomic_write_json
    failures = {"left": 3, "seen": 0}

    def flaky(path, obj):
        if failures["left"]:
            failures["left"] -= 1
            failures["seen"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(path, obj)

    monkeypatch.setattr(R, "atomic_write_json", flaky)
    t0 = time.time()
    beat.start()
    _wait(lambda: failures["seen"] == 3 and _beats_after(folder, t0),
          what="beats after three failed writes")
    error = _status(folder)["heartbeat_error"]
    assert "could not write status.json: OSError: [Errno 28] No space left on device" in error
    beat.note(message="later")
    _wait(lambda: _status(folder)["message"] == "later", what="a later note")
    assert _status(folder)["heartbeat_error"] == error  # the first error is kept


# --------------------------------------------------------------------------- finish
def test_finish_completed(job):
    folder, beat = job
    beat.start()
    status = beat.finish()
    assert status["state"] == "completed" and status["message"] == "done"
    assert read_status(folder) == status and status["finished"] > 0
    assert not beat._thread.is_alive()


@pytest.mark.parametrize("exc, kwargs, state, error, message", [
    (RuntimeError("disk on fire"), {}, "failed", "RuntimeError: disk on fire", "failed"),
    (MemoryError(), {}, "failed", "MemoryError", "failed"),
    (RunError("bad folder; fix it"), {}, "failed", "bad folder; fix it", "failed"),
    (KeyboardInterrupt(), {}, "cancelled", "KeyboardInterrupt", "interrupted"),
    (LookupError(), {"cancelled": LookupError, "cancel_message": "cancelled by the user",
                     "cancel_error": False}, "cancelled", None, "cancelled by the user"),
])
def test_finish_records_failed_or_cancelled(job, exc, kwargs, state, error, message):
    folder, beat = job
    beat.update(error=None)
    beat.start()
    status = beat.finish(exc, **kwargs)
    assert not beat._thread.is_alive()
    on_disk = read_status(folder)
    assert status == on_disk
    assert (on_disk["state"], on_disk["error"], on_disk["message"]) == (state, error, message)
    assert on_disk["finished"] > 0


def test_finish_swallows_a_failed_write_and_reports_it(job, monkeypatch):
    folder, beat = job
    beat.start()

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(R, "atomic_write_json", full)
    seen = []
    assert beat.finish(RuntimeError("x"), on_write_error=seen.append) is None
    assert [type(e) for e in seen] == [OSError] and not beat._thread.is_alive()
    assert read_status(folder)["state"] == "running"  # readers see it go stale
    with pytest.raises(OSError):  # completing must not be silent
        beat.finish()


# --------------------------------------------------------------------------- folders
def test_make_unique_folder_draws_again_or_refuses_a_chosen_name(tmp_path):
    names = iter(["a", "a", "b"])
    base = tmp_path / "deep" / "ensembles"
    assert layout.make_unique_folder(base, lambda: next(names), "ensemble") == base / "a"
    assert layout.make_unique_folder(base, lambda: next(names), "ensemble") == base / "b"
    with pytest.raises(RunError, match=r"ensembles/a already exists; choose another ensemble id"):
        layout.make_unique_folder(base, "a", "ensemble")
    assert layout.make_unique_folder(base, "c", "ensemble") == base / "c"


def test_make_unique_folder_on_a_read_only_disk(tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(RunError, match=r"Cannot create an ensemble folder in .*: Permission "
                                       r"denied; make the artifacts folder writable"):
        layout.make_unique_folder(tmp_path / "ensembles", "x", "ensemble")


def test_write_status_still_refuses_a_damaged_status(tmp_path):
    (tmp_path / "status.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        write_status(tmp_path, state="cancelled")


# --------------------------------------------------------------------------- damaged status
@pytest.mark.parametrize("status, message", [
    ({"state": "running", "heartbeat": "x"}, "heartbeat must be a number or null; got 'x'"),
    ({"state": "running", "pid": "12"}, "pid must be a number or null; got '12'"),
    ({"state": "done"}, r"state must be one of \['queued', 'running', 'completed', 'failed', "
                        r"'cancelled'\]; got 'done'"),
    ({"heartbeat": 1.0}, "state must be one of .*; got None"),
    ([1, 2], "holds a JSON array, not a JSON object"),
])
def test_a_damaged_status_is_a_clear_error_not_a_crash(tmp_path, status, message):
    (tmp_path / "status.json").write_text(json.dumps(status))
    for read in (read_status, R.effective_status):
        with pytest.raises(RunError, match=rf"status.json.*{message}.*restore"):
            read(tmp_path)
    with pytest.raises(RunError, match="cannot be used: its status.json cannot be read"):
        R.check_completed(tmp_path, "used")


def test_a_status_that_is_not_utf8_names_the_file(tmp_path):
    (tmp_path / "status.json").write_bytes(b'{"state": "running", "message": "\xff"}')
    with pytest.raises(RunError, match=r"status.json is not UTF-8 text \(byte 0xff"):
        R.effective_status(tmp_path)
