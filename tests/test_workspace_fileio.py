"""cnmc_core.workspace.fileio: atomic writes leave the old file or the new one, never a temporary
file, and give the new file the mode ``open()`` would give it; read_json checks encoding and
type and names the file."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from cnmc_core.exceptions import CnmcError, RunError
from cnmc_core.workspace.fileio import (
    atomic_write,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    json_kind,
    read_json,
)


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o027, 0o640)])
def test_atomic_files_get_the_mode_open_gives(tmp_path, umask, mask, expected):
    umask(mask)
    with open(tmp_path / "plain.txt", "w") as fh:  # the reference: a file written the usual way
        fh.write("x")
    atomic_write_text(tmp_path / "status.json", "{}")
    atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    atomic_write_csv(tmp_path / "predictions.csv", pd.DataFrame({"a": [1]}))
    atomic_write(tmp_path / "blob.bin", lambda fh: fh.write(b"\x00"), mode="wb")
    assert mode_of(tmp_path / "plain.txt") == expected
    for name in ("status.json", "metrics.json", "predictions.csv", "blob.bin"):
        assert mode_of(tmp_path / name) == expected, name


def test_replacing_a_private_file_gives_it_the_umask_mode(tmp_path, umask):
    # files written before this fix are 0600 (mkstemp's mode); the next write repairs them
    umask(0o022)
    target = tmp_path / "status.json"
    target.write_text("{}")
    target.chmod(0o600)
    atomic_write_json(target, {"state": "running"})
    assert mode_of(target) == 0o644 and read_json(target) == {"state": "running"}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"v": 1})

    def boom(fh):
        fh.write("half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        atomic_write(target, boom)
    assert read_json(target) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


# --------------------------------------------------------------------------- read_json
@pytest.mark.parametrize("content, expect, message", [
    (b'{"a": 1}', dict, None),
    (b"[1, 2]", list, None),
    (b"[1, 2]", dict, r"holds a JSON array, not a JSON object; delete or restore the file"),
    (b'"text"', dict, r"holds a string, not a JSON object"),
    (b"null", dict, r"holds null, not a JSON object"),
    (b"3.5", list, r"holds a number, not a JSON array"),
    (b'{"a": "\xff"}', None, r"is not UTF-8 text \(byte 0xff at offset 7\); delete or restore"),
    (b"{not json", None, r"is not valid JSON \(.*\); delete or restore the file"),
])
def test_read_json_checks_encoding_syntax_and_type(tmp_path, content, expect, message):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    if message is None:
        assert isinstance(read_json(path, expect=expect), expect)
        return
    with pytest.raises(CnmcError, match=rf"^{path}.*{message}"):
        read_json(path, expect=expect)
    with pytest.raises(RunError):
        read_json(path, expect=expect, error=RunError)


def test_a_missing_file_stays_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "none.json")


def test_json_kind_names_values():
    assert [json_kind(v) for v in ({}, [], "", True, 1, 1.5, None)] == [
        "a JSON object", "a JSON array", "a string", "true or false", "a number", "a number", "null"]
