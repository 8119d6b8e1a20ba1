"""The local users file: scrypt hashes, mode 0600, atomic changes, a damaged file read without
a crash and named, and the users CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cnmc_core.auth.users import (
    add_user,
    hash_password,
    read_users,
    remove_user,
    set_password,
    set_role,
    users_path,
    verify_password,
)
from cnmc_core.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_hash_is_salted_scrypt_and_verifies():
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a.startswith("scrypt$16384$8$1$") and a != b  # a fresh salt each time
    assert "correct horse" not in a
    assert verify_password("correct horse", a)
    assert not verify_password("correct hors", a)
    assert not verify_password("correct horse", None)
    assert not verify_password("correct horse", "scrypt$1$1$1$AAAA$BBBB")  # damaged: no crash


@pytest.mark.parametrize("password, message", [
    ("short", "at least 8 characters; got 5"),
    ("", "at least 8 characters; got 0"),
])
def test_short_password_refused(password, message):
    with pytest.raises(ConfigError, match=message):
        hash_password(password)


def test_users_file_is_private_and_holds_no_password(tmp_path):
    old = os.umask(0o000)  # even with a permissive umask
    try:
        add_user("Alice", "trainer", "s3cret-pass", tmp_path)
    finally:
        os.umask(old)
    path = users_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert "s3cret-pass" not in text
    data = json.loads(text)
    assert data["users"]["alice"]["role"] == "trainer"  # names are lower-cased
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temp file


def test_add_set_role_password_remove(tmp_path):
    add_user("bob", "viewer", "password-1", tmp_path)
    with pytest.raises(ConfigError, match="exists already"):
        add_user("BOB", "viewer", "password-1", tmp_path)
    set_role("bob", "admin", tmp_path)
    set_password("bob", "password-2", tmp_path)
    entry = read_users(tmp_path).users["bob"]
    assert entry["role"] == "admin" and verify_password("password-2", entry["password"])
    remove_user("bob", tmp_path)
    assert read_users(tmp_path).users == {}
    with pytest.raises(ConfigError, match="No user 'bob'"):
        set_role("bob", "viewer", tmp_path)


@pytest.mark.parametrize("name, role, message", [
    ("../etc", "viewer", "user name must be"),
    ("a b", "viewer", "user name must be"),
    ("carol", "boss", "role must be one of viewer, trainer, admin; got 'boss'"),
])
def test_bad_input_refused_before_writing(tmp_path, name, role, message):
    with pytest.raises(ConfigError, match=message):
        add_user(name, role, "password-1", tmp_path)
    assert not users_path(tmp_path).exists()


@pytest.mark.parametrize("content, problem", [
    ("{not json", "is not valid JSON"),
    ('["alice"]', 'is not a user list'),
    ('{"users": 3}', 'is not a user list'),
])
def test_damaged_file_reads_as_no_users_and_says_why(tmp_path, content, problem):
    path = users_path(tmp_path)
    path.write_text(content)
    os.chmod(path, 0o600)
    users = read_users(tmp_path)
    assert users.users == {} and users.damaged
    assert problem in users.problems[0] and str(path) in users.problems[0]
    with pytest.raises(ConfigError, match="cannot be changed while it is damaged"):
        add_user("alice", "viewer", "password-1", tmp_path)
    assert path.read_text() == content  # left as it was


def test_bad_entry_left_out_and_named(tmp_path):
    add_user("alice", "trainer", "password-1", tmp_path)
    path = users_path(tmp_path)
    data = json.loads(path.read_text())
    data["users"]["mallory"] = {"role": "god", "password": None}
    data["users"]["eve"] = {"role": "viewer", "password": "plaintext"}
    path.write_text(json.dumps(data))
    users = read_users(tmp_path)
    assert set(users.users) == {"alice"} and not users.damaged
    assert any("'mallory' left out" in p and "'god'" in p for p in users.problems)
    assert any("'eve' left out" in p and "not a scrypt hash" in p for p in users.problems)
    with pytest.raises(ConfigError, match="damaged"):  # a change would drop mallory and eve
        remove_user("alice", tmp_path)


def test_open_mode_is_a_problem_and_a_write_fixes_it(tmp_path):
    add_user("alice", "trainer", "password-1", tmp_path)
    path = users_path(tmp_path)
    os.chmod(path, 0o644)
    users = read_users(tmp_path)
    assert "alice" in users.users
    assert any("mode 0644" in p and f"chmod 600 {path}" in p for p in users.problems)
    set_role("alice", "viewer", tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _cli(*args, stdin: str = "", artifacts: Path):
    return subprocess.run([sys.executable, "-m", "cnmc_core", "users", *args, "--artifacts",
                           str(artifacts)], input=stdin, capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_users_cli(tmp_path):
    out = _cli("add", "Dana", "--role", "trainer", "--password-stdin", stdin="pass-word-9\n",
               artifacts=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "added dana (trainer" in out.stdout
    assert verify_password("pass-word-9", read_users(tmp_path).users["dana"]["password"])
    out = _cli("add", "erin", "--role", "boss", "--password-stdin", stdin="pass-word-9\n",
               artifacts=tmp_path)
    assert out.returncode == 2 and "--role must be one of viewer, trainer, admin" in out.stderr
    out = _cli("add", "erin", "--role", "viewer", artifacts=tmp_path)  # no terminal, no stdin flag
    assert out.returncode == 2 and "give --password-stdin" in out.stderr
    assert _cli("set-role", "dana", "admin", artifacts=tmp_path).returncode == 0
    out = _cli("list", "--json", artifacts=tmp_path)
    listed = json.loads(out.stdout)
    assert [(u["name"], u["role"]) for u in listed["users"]] == [("dana", "admin")]
    out = _cli("remove", "nobody", artifacts=tmp_path)
    assert out.returncode == 2 and "No user 'nobody'" in out.stderr
    assert _cli("remove", "dana", artifacts=tmp_path).returncode == 0
    users_path(tmp_path).write_text("{oops")
    out = _cli("list", artifacts=tmp_path)
    assert out.returncode == 1 and "is not valid JSON" in out.stderr
