"""cnmc_core.workspace.fileio: atomic writes leave the old file or the new one, never a temporary
file, and give the new file the mode ``open()`` would give it."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from cnmc_core.workspace.fileio import (
    atomic_write,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
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
