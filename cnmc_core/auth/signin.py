"""Signing in: which mode the dashboard runs in, password checks slowed down after failures,
and the log of failed attempts.

``$CNMC_AUTH`` chooses the mode (:func:`auth_mode`): unset or empty, nobody signs in (the
dashboard listens on localhost only, see ``.streamlit/config.toml``); ``local``, the users of
``<artifacts>/auth/users.json`` sign in with their password (:func:`authenticate`); ``oidc``,
Streamlit's ``st.login`` signs them in with the lab's identity provider and
:func:`oidc_actor` gives them the role the users file lists for their e-mail.

Failed sign-ins are counted per user name in ``<artifacts>/auth/signin.json`` (mode 0600,
changed under a lock, so the count holds across browser sessions, reruns and server restarts).
From the :data:`FREE_FAILURES`-th consecutive failure on, the name is locked for
:data:`LOCK_SECONDS` seconds, doubling with each further failure up to :data:`MAX_LOCK_SECONDS`;
while locked, an attempt is refused without looking at the password. A success clears the
count. Every failure and refusal is logged (logger ``cnmc_core.auth``, and a line in
``<artifacts>/auth/signin.log``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time

from cnmc_core.auth.roles import Actor
from cnmc_core.auth.users import check_user_name, read_users, verify_password, auth_dir
from cnmc_core.exceptions import AccessError, ConfigError
from cnmc_core.workspace.fileio import atomic_write_json

__all__ = ["AUTH_MODES", "FREE_FAILURES", "LOCK_SECONDS", "MAX_LOCK_SECONDS", "OIDC_TEMPLATE", "auth_mode",
           "authenticate", "lock_remaining", "clear_failures", "oidc_actor", "current_actor",
           "oidc_problems"]

#: The values of ``$CNMC_AUTH`` besides unset.
AUTH_MODES = ("local", "oidc")
#: Consecutive failures before a name is locked; the lock after the n-th failure lasts
#: LOCK_SECONDS * 2 ** (n - FREE_FAILURES) seconds, at most MAX_LOCK_SECONDS.
FREE_FAILURES = 5
LOCK_SECONDS = 30.0
MAX_LOCK_SECONDS = 900.0
FAILURES_FILE = "signin.json"
LOG_FILE = "signin.log"
log = logging.getLogger("cnmc_core.auth")


def auth_mode(value: str | None = None) -> str | None:
    """The sign-in mode: None (``$CNMC_AUTH`` unset or empty), ``"local"`` or ``"oidc"``.

    Raises:
        ConfigError: any other value (the message lists the allowed ones).
    """
    text = os.environ.get("CNMC_AUTH", "") if value is None else value
    text = text.strip().lower()
    if not text:
        return None
    if text not in AUTH_MODES:
        raise ConfigError(f"CNMC_AUTH must be unset (no sign-in, localhost only), 'local' (the "
                          f"users file) or 'oidc' (st.login with secrets.toml); got {text!r}. "
                          "Fix the environment variable and restart the dashboard.")
    return text


class _Failures:
    """``signin.json`` held under an exclusive lock: ``{name: {"count", "last", "until"}}``."""

    def __init__(self, root):
        self.folder = auth_dir(root)
        self.path = self.folder / FAILURES_FILE

    def __enter__(self) -> "_Failures":
        self._lock = open(self.folder / ".signin.lock", "a+")
        os.chmod(self._lock.name, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # missing, or damaged: counting starts again
            data = {}
        self.data = data if isinstance(data, dict) else {}
        return self

    def save(self) -> None:
        atomic_write_json(self.path, self.data, private=True)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


def _record(root, text: str) -> None:
    log.warning(text)
    try:
        path = auth_dir(root) / LOG_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {text}\n")
    except OSError as exc:  # the logger has it; a full disk must not open the door
        log.error("cannot append to the sign-in log: %s", exc)


def _lock_for(count: int) -> float:
    if count < FREE_FAILURES:
        return 0.0
    return min(LOCK_SECONDS * 2 ** (count - FREE_FAILURES), MAX_LOCK_SECONDS)


def lock_remaining(name: str, root=None, now: float | None = None) -> float:
    """Seconds until ``name`` may try again (0 when not locked)."""
    now = time.time() if now is None else now
    key = name.strip().lower() if isinstance(name, str) else ""
    with _Failures(root) as store:
        entry = store.data.get(key) or {}
    return max(0.0, float(entry.get("until") or 0) - now)


def clear_failures(name: str, root=None) -> None:
    """Forget the failures of ``name`` (``users unlock``, or a successful sign-in)."""
    key = name.strip().lower()
    with _Failures(root) as store:
        if store.data.pop(key, None) is not None:
            store.save()


def authenticate(name: str, password: str, root=None, *, client: str = "",
                 now: float | None = None) -> Actor:
    """Check a local sign-in; returns the signed-in :class:`Actor` (via ``dashboard``).

    Args:
        name, password: what the form received.
        root: the workspace (default ``$CNMC_ARTIFACTS`` or ``./artifacts``).
        client: where the attempt came from (an IP address), for the log.
        now: the time (tests).

    Raises:
        AccessError: a locked name (says how long to wait), a damaged users file, or a wrong
            name or password (one message for both, so a name cannot be probed).
    """
    now = time.time() if now is None else now
    key = name.strip().lower() if isinstance(name, str) else ""
    where = f" from {client}" if client else ""
    with _Failures(root) as store:
        data = store.data
        entry = data.get(key) or {"count": 0}
        wait = float(entry.get("until") or 0) - now
        if wait > 0:
            _record(root, f"sign-in refused for {key!r}{where}: locked for {wait:.0f} s more "
                          f"after {entry['count']} failures")
            raise AccessError(f"Too many failed sign-ins for {key or 'this name'}: try again in "
                              f"{wait:.0f} s.")
        users = read_users(root)
        if users.damaged:
            _record(root, "sign-in refused: " + " ".join(users.problems))
            raise AccessError("The users file is damaged, so nobody can sign in; the admin "
                              "should run `python -m cnmc_core users list` on the server.")
        try:
            key = check_user_name(key)
        except ConfigError:
            pass  # an impossible name fails like a wrong password
        user = users.users.get(key)
        ok = verify_password(password, (user or {}).get("password"))
        if ok:
            if data.pop(key, None) is not None:
                store.save()
            return Actor(name=key, role=user["role"], via="dashboard")
        count = int(entry.get("count") or 0) + 1
        lock = _lock_for(count)
        data[key] = {"count": count, "last": now, "until": now + lock if lock else None}
        store.save()
    _record(root, f"failed sign-in for {key!r}{where} ({count} in a row"
                  + (f"; locked for {lock:.0f} s)" if lock else ")"))
    more = f" Too many failures: wait {lock:.0f} s before the next try." if lock else ""
    raise AccessError("Wrong user name or password." + more)


def oidc_actor(email: str | None, root=None) -> Actor:
    """The actor of a user signed in through OIDC: their e-mail must be listed in the users file
    (``python -m cnmc_core users add EMAIL --role ROLE --oidc``), which gives the role.

    Raises:
        AccessError: no e-mail from the identity provider, or not listed.
    """
    if not email:
        raise AccessError("The identity provider gave no e-mail address; ask the admin to add "
                          "the 'email' scope to [auth] in .streamlit/secrets.toml.")
    users = read_users(root)
    key = str(email).strip().lower()
    user = users.users.get(key)
    if user is None:
        _record(root, f"OIDC sign-in of {key!r} refused: not in {users.path}")
        raise AccessError(f"{key} signed in but may not use this dashboard: ask an admin to run "
                          f"`python -m cnmc_core users add {key} --role viewer --oidc`.")
    return Actor(name=key, role=user["role"], via="dashboard")


def current_actor(actor: Actor, root=None) -> Actor | None:
    """``actor`` with the role the users file gives them now (a role changed or a user removed
    by an admin takes effect at the next rerun), or None when they are no longer listed."""
    user = read_users(root).users.get(actor.name)
    if user is None:
        return None
    return Actor(name=actor.name, role=user["role"], via=actor.via)


#: What ``[auth]`` of ``.streamlit/secrets.toml`` needs for ``st.login`` (one provider).
OIDC_TEMPLATE = """[auth]
redirect_uri = "https://cnmc.example.org/oauth2callback"
cookie_secret = "a long random text (python -c 'import secrets; print(secrets.token_hex(32))')"
client_id = "..."
client_secret = "..."
server_metadata_url = "https://accounts.example.org/.well-known/openid-configuration"
"""


def oidc_problems(auth: dict | None, authlib_installed: bool) -> list[str]:
    """What stops ``st.login`` from working: the ``[auth]`` section of ``secrets.toml`` (None
    when absent) and whether the Authlib package is installed. Empty when ready."""
    problems = []
    if not authlib_installed:
        problems.append("Streamlit's st.login needs the Authlib package: pip install 'Authlib>=1.3.2'.")
    if not auth:
        problems.append("No [auth] section in .streamlit/secrets.toml: add one (below) with your "
                        "identity provider's client id, secret and metadata URL.")
        return problems
    for key in ("redirect_uri", "cookie_secret"):
        if not auth.get(key):
            problems.append(f"[auth] in .streamlit/secrets.toml has no {key}.")
    providers = [v for v in auth.values() if isinstance(v, dict)]
    flat = all(auth.get(k) for k in ("client_id", "client_secret", "server_metadata_url"))
    if not flat and not any(all(p.get(k) for k in ("client_id", "client_secret",
                                                    "server_metadata_url")) for p in providers):
        problems.append("[auth] in .streamlit/secrets.toml names no provider: give client_id, "
                        "client_secret and server_metadata_url.")
    return problems
