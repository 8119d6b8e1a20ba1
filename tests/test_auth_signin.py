"""Signing in: the CNMC_AUTH modes, password checks, failures locked out (held across
sessions: the count lives in the workspace) and logged, OIDC users and configuration."""

from __future__ import annotations

import json
import stat

import pytest

from cnmc_core.auth.roles import Actor
from cnmc_core.auth.signin import (
    FREE_FAILURES,
    LOCK_SECONDS,
    MAX_LOCK_SECONDS,
    auth_mode,
    authenticate,
    clear_failures,
    current_actor,
    lock_remaining,
    oidc_actor,
    oidc_problems,
)
from cnmc_core.auth.users import add_user, set_role, remove_user, users_path
from cnmc_core.exceptions import AccessError, ConfigError


@pytest.mark.parametrize("value, mode", [("", None), ("local", "local"), (" OIDC ", "oidc")])
def test_auth_mode(value, mode):
    assert auth_mode(value) == mode


def test_unknown_auth_mode_says_what_to_set():
    with pytest.raises(ConfigError, match="CNMC_AUTH must be unset .* 'local' .* 'oidc'.*got 'ldap'"):
        auth_mode("ldap")


def test_sign_in(tmp_path):
    add_user("alice", "trainer", "right-password", tmp_path)
    assert authenticate("Alice ", "right-password", tmp_path) == Actor("alice", "trainer", "dashboard")
    with pytest.raises(AccessError, match="^Wrong user name or password.$"):
        authenticate("alice", "wrong-password", tmp_path)
    with pytest.raises(AccessError, match="^Wrong user name or password.$"):  # same message
        authenticate("nobody", "right-password", tmp_path)


def test_five_failures_lock_the_name_and_the_lock_grows(tmp_path):
    add_user("alice", "trainer", "right-password", tmp_path)
    t = 1000.0
    for k in range(1, FREE_FAILURES):
        with pytest.raises(AccessError, match="^Wrong user name or password.$"):
            authenticate("alice", f"guess-{k}", tmp_path, now=t)
        assert lock_remaining("alice", tmp_path, now=t) == 0
    with pytest.raises(AccessError, match=f"wait {LOCK_SECONDS:.0f} s"):
        authenticate("alice", "guess-5", tmp_path, now=t, client="10.0.0.9")
    # locked: even the right password is refused, without being checked
    with pytest.raises(AccessError, match="Too many failed sign-ins for alice: try again in 20 s"):
        authenticate("alice", "right-password", tmp_path, now=t + 10)
    # after the lock, one more failure doubles it
    with pytest.raises(AccessError, match=f"wait {2 * LOCK_SECONDS:.0f} s"):
        authenticate("alice", "guess-6", tmp_path, now=t + 31)
    assert lock_remaining("alice", tmp_path, now=t + 31) == pytest.approx(2 * LOCK_SECONDS)
    # the lock never exceeds the maximum
    for k in range(20):
        t2 = t + 10_000 * (k + 1)
        with pytest.raises(AccessError):
            authenticate("alice", "guess", tmp_path, now=t2)
    assert lock_remaining("alice", tmp_path, now=t2) == pytest.approx(MAX_LOCK_SECONDS)
    # another name is not affected
    add_user("bob", "viewer", "bobs-password", tmp_path)
    assert authenticate("bob", "bobs-password", tmp_path, now=t2).name == "bob"
    # the failures are in the workspace (shared by every session and server), private, and logged
    auth = users_path(tmp_path).parent
    assert json.loads((auth / "signin.json").read_text())["alice"]["count"] == FREE_FAILURES + 21
    assert stat.S_IMODE((auth / "signin.json").stat().st_mode) == 0o600
    log = (auth / "signin.log").read_text()
    assert "failed sign-in for 'alice' from 10.0.0.9 (5 in a row; locked for 30 s)" in log
    assert "sign-in refused for 'alice'" in log
    # success after the lock clears the count; unlock clears it too
    assert authenticate("alice", "right-password", tmp_path, now=t2 + MAX_LOCK_SECONDS + 1)
    assert "alice" not in json.loads((auth / "signin.json").read_text())
    for _ in range(FREE_FAILURES):
        with pytest.raises(AccessError):
            authenticate("alice", "guess", tmp_path)
    assert lock_remaining("alice", tmp_path) > 0
    clear_failures("alice", tmp_path)
    assert lock_remaining("alice", tmp_path) == 0


def test_damaged_users_file_lets_nobody_in(tmp_path):
    add_user("alice", "trainer", "right-password", tmp_path)
    users_path(tmp_path).write_text("{damaged")
    with pytest.raises(AccessError, match="users file is damaged"):
        authenticate("alice", "right-password", tmp_path)
    assert "is not valid JSON" in (users_path(tmp_path).parent / "signin.log").read_text()


def test_current_actor_follows_the_users_file(tmp_path):
    add_user("alice", "trainer", "right-password", tmp_path)
    actor = authenticate("alice", "right-password", tmp_path)
    set_role("alice", "viewer", tmp_path)
    assert current_actor(actor, tmp_path).role == "viewer"
    remove_user("alice", tmp_path)
    assert current_actor(actor, tmp_path) is None


def test_oidc_users_must_be_listed(tmp_path):
    add_user("carol@lab.org", "viewer", None, tmp_path)
    assert oidc_actor("Carol@Lab.org", tmp_path) == Actor("carol@lab.org", "viewer", "dashboard")
    with pytest.raises(AccessError, match="users add dave@lab.org --role viewer --oidc"):
        oidc_actor("dave@lab.org", tmp_path)
    with pytest.raises(AccessError, match="gave no e-mail"):
        oidc_actor(None, tmp_path)
    # an OIDC-only user cannot sign in with a password
    with pytest.raises(AccessError, match="Wrong user name or password"):
        authenticate("carol@lab.org", "", tmp_path)


def test_oidc_problems():
    good = {"redirect_uri": "https://x/oauth2callback", "cookie_secret": "s", "client_id": "i",
            "client_secret": "c", "server_metadata_url": "https://idp/.well-known/openid-configuration"}
    assert oidc_problems(good, True) == []
    assert oidc_problems({"redirect_uri": "r", "cookie_secret": "s", "lab": {
        k: good[k] for k in ("client_id", "client_secret", "server_metadata_url")}}, True) == []
    problems = oidc_problems(None, False)
    assert any("Authlib" in p for p in problems) and any("No [auth] section" in p for p in problems)
    assert any("no cookie_secret" in p for p in oidc_problems({"redirect_uri": "r"}, True))
    assert any("names no provider" in p for p in oidc_problems(
        {"redirect_uri": "r", "cookie_secret": "s"}, True))
