"""cnmc_core.data.files: the tree walk lists every regular file and reports, with a reason, every
folder it cannot read and every entry that is not a regular file; nothing but a regular file is
ever opened."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
from conftest import CHECK_LOCKED, run_unprivileged

from cnmc_core.data.files import (
    NotRegularFile,
    file_kind,
    open_regular_file,
    read_regular_file,
    walk_tree,
)


def reasons(listing) -> dict[str, str]:
    return {Path(row["path"]).name: row["reason"] for row in listing.skipped}


def test_walk_lists_regular_files_and_reports_everything_else(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bmp").write_bytes(b"BM")
    (tmp_path / "b.txt").write_text("hi")
    os.mkfifo(tmp_path / "a" / "fifo.bmp")
    os.symlink(tmp_path / "nowhere.bmp", tmp_path / "a" / "broken.bmp")
    os.symlink(tmp_path / "b.txt", tmp_path / "a" / "link.txt")  # a link to a file is that file
    os.symlink(tmp_path, tmp_path / "a" / "loop")  # walked once, not forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "a" / "sock.png"))
    try:
        listing = walk_tree(tmp_path)
    finally:
        server.close()
    assert [p.relative_to(tmp_path).as_posix() for p, _ in listing.files] == ["b.txt", "a/link.txt", "a/x.bmp"]
    assert [st.st_size for _, st in listing.files] == [2, 2, 2]
    assert reasons(listing) == {
        "fifo.bmp": "not a regular file (a FIFO)",
        "sock.png": "not a regular file (a socket)",
        "broken.bmp": "cannot be read (No such file or directory)",
    }


def test_a_folder_that_cannot_be_read_is_reported(tmp_path):
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "a.bmp").write_bytes(b"BM")
    locked = tmp_path / "locked"
    (locked / "deeper").mkdir(parents=True)
    (locked / "deeper" / "b.bmp").write_bytes(b"BM")
    code = CHECK_LOCKED + """
import json
from cnmc_core.data.files import walk_tree
listing = walk_tree(sys.argv[2])
print(json.dumps({"files": [str(p) for p, _ in listing.files], "skipped": listing.skipped}))
"""
    locked.chmod(0)
    try:
        out = json.loads(run_unprivileged(code, str(locked), str(tmp_path)))
    finally:
        locked.chmod(0o755)
    assert out["files"] == [str(tmp_path / "open" / "a.bmp")]
    assert len(out["skipped"]) == 1 and out["skipped"][0]["path"] == str(locked)
    assert out["skipped"][0]["reason"].startswith("folder cannot be read (Permission denied)")
    # readable again: nothing reported, its file found
    assert walk_tree(tmp_path).skipped == [] and len(walk_tree(tmp_path).files) == 2


def test_a_root_that_cannot_be_read_is_reported(tmp_path):
    locked = tmp_path / "root"
    locked.mkdir()
    code = CHECK_LOCKED + """
import json
from cnmc_core.data.files import walk_tree
print(json.dumps(walk_tree(sys.argv[1]).skipped))
"""
    locked.chmod(0)
    try:
        skipped = json.loads(run_unprivileged(code, str(locked)))
    finally:
        locked.chmod(0o755)
    assert [row["path"] for row in skipped] == [str(locked)]


def test_open_regular_file_never_opens_a_fifo(tmp_path):
    fifo = tmp_path / "x.bmp"
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            read_regular_file(fifo)
        except NotRegularFile as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)  # daemon: a hang cannot block pytest's exit
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # let the stuck reader go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not reader.is_alive(), "read_regular_file blocked on a FIFO"
    assert outcome and outcome[0].strerror == "not a regular file (a FIFO)"
    assert outcome[0].filename == str(fifo)
    with pytest.raises(NotRegularFile, match="a folder"):
        open_regular_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_regular_file(tmp_path / "missing")
    (tmp_path / "f.bin").write_bytes(b"\x00\x01")
    assert read_regular_file(tmp_path / "f.bin") == b"\x00\x01"


def test_file_kind():
    import stat

    assert file_kind(stat.S_IFREG | 0o644) is None
    assert file_kind(stat.S_IFIFO) == "a FIFO" and file_kind(stat.S_IFCHR) == "a character device"
    assert file_kind(stat.S_IFBLK) == "a block device" and file_kind(stat.S_IFDIR) == "a folder"
