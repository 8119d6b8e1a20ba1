"""The local user list: ``<artifacts>/auth/users.json``, mode 0600, salted scrypt hashes.

::

    {"version": 1, "users": {"alice": {"role": "trainer", "password": "scrypt$16384$8$1$<salt>$<hash>",
                                        "created": 1764630000.0}}}

A password is stored as ``hashlib.scrypt`` of it with a random 16-byte salt (N = 2**14, r = 8,
p = 1, 32 bytes; about 50 ms a check): the file never holds a password. A user with
``"password": null`` can sign in only through OIDC (their name is their e-mail). The file is
replaced atomically, created with mode 0600 (owner only) inside a 0700 folder, and every change
is checked before it is written.

:func:`read_users` survives a damaged file: a file that is not JSON, or not a user list, reads
as no users with one problem naming the file; a bad entry is left out with a problem naming it;
a file others can read is a problem too (with the ``chmod`` that fixes it). The dashboard lets
nobody in on a damaged file, and ``users list`` prints the problems.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnmc_core.auth.roles import ROLES, check_role
from cnmc_core.exceptions import ConfigError
from cnmc_core.workspace.fileio import atomic_write_json
from cnmc_core.workspace.paths import artifacts_dir

__all__ = ["USERS_FILE", "MIN_PASSWORD", "UserList", "auth_dir", "users_path", "check_user_name",
           "hash_password", "verify_password", "read_users", "add_user", "remove_user",
           "set_role", "set_password"]

USERS_FILE = "users.json"
MIN_PASSWORD = 8
#: scrypt's cost: N, r, p (16 MiB of memory a hash, under hashlib's 32 MiB default).
SCRYPT = (2**14, 8, 1)
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,127}$")
_FIX = ("restore it from a backup, or delete it and add the users again with `python -m cnmc_core "
        "users add NAME --role ROLE`")


def auth_dir(root: str | os.PathLike | None = None) -> Path:
    """``<artifacts>/auth``, created with mode 0700 (owner only) if missing."""
    path = artifacts_dir(root) / "auth"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def users_path(root: str | os.PathLike | None = None) -> Path:
    """The users file of the workspace ``root`` (default ``$CNMC_ARTIFACTS`` or ``./artifacts``)."""
    return auth_dir(root) / USERS_FILE


def check_user_name(name: str) -> str:
    """The user name, lower-cased, if it is 1-128 letters, digits, ``. _ @ + -`` starting with a
    letter or digit (an e-mail is one); else a ConfigError saying so."""
    text = name.strip().lower() if isinstance(name, str) else name
    if not isinstance(text, str) or not _NAME_RE.match(text):
        raise ConfigError(f"The user name must be 1-128 letters, digits, '.', '_', '@', '+' or '-', "
                          f"starting with a letter or digit; got {name!r}.")
    return text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$<salt>$<hash>`` of ``password`` with a fresh random salt.

    Raises:
        ConfigError: a password shorter than :data:`MIN_PASSWORD` characters.
    """
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ConfigError(f"The password must have at least {MIN_PASSWORD} characters; got "
                          f"{len(password) if isinstance(password, str) else 0}.")
    n, r, p = SCRYPT
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches the stored hash (constant-time comparison). A missing or
    malformed hash matches nothing, after the same work as a real check (so the time taken
    does not tell whether a user exists)."""
    n, r, p = SCRYPT
    salt, want = b"\0" * 16, None
    try:
        kind, n_s, r_s, p_s, salt_s, want_s = str(stored).split("$")
        if kind == "scrypt":
            n, r, p = int(n_s), int(r_s), int(p_s)
            salt, want = base64.b64decode(salt_s), base64.b64decode(want_s)
    except (ValueError, TypeError):
        pass
    try:
        got = hashlib.scrypt(str(password).encode("utf-8"), salt=salt, n=n, r=r, p=p,
                             dklen=len(want) if want else 32)
    except (ValueError, MemoryError):  # parameters out of range: a damaged entry
        return False
    return want is not None and hmac.compare_digest(got, want)


@dataclass
class UserList:
    """The users of a workspace and what was wrong with its file.

    Attributes:
        path: the users file.
        users: ``{name: {"role", "password", "created"}}`` of the valid entries.
        problems: one sentence per problem found (empty when the file is sound or absent).
        exists: whether the file exists.
        blocking: the problems that forbid changing the file (a change would drop what could
            not be read); a mode that is too open is not one (a write sets 0600).
    """

    path: Path
    users: dict[str, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    exists: bool = False
    blocking: list[str] = field(default_factory=list)

    def _block(self, problem: str) -> None:
        self.problems.append(problem)
        self.blocking.append(problem)

    @property
    def damaged(self) -> bool:
        """The file could not be read as a user list at all (no user can sign in)."""
        return self.exists and not self.users and bool(self.problems)


def read_users(root: str | os.PathLike | None = None) -> UserList:
    """The workspace's users; never raises on a damaged file (see the module's docstring)."""
    import json

    path = users_path(root)
    out = UserList(path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    except (OSError, UnicodeDecodeError) as exc:
        out.exists = True
        out._block(f"{path} cannot be read ({exc}); {_FIX}.")
        return out
    out.exists = True
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        out.problems.append(f"{path} has mode {mode:04o}: others can read the password hashes; "
                            f"run `chmod 600 {path}`.")
    try:
        data = json.loads(text)
    except ValueError as exc:
        out._block(f"{path} is not valid JSON ({exc}); {_FIX}.")
        return out
    entries = data.get("users") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        out._block(f"{path} is not a user list (no \"users\" object); {_FIX}.")
        return out
    for name, entry in entries.items():
        problem = _entry_problem(name, entry)
        if problem:
            out._block(f"{path}: user {name!r} left out: {problem}; fix it by hand in the "
                       "file, or delete the entry and add the user again with `users add`.")
        else:
            out.users[name] = dict(entry)
    return out


def _entry_problem(name, entry) -> str | None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return "the name is not a valid user name"
    if not isinstance(entry, dict):
        return "the entry is not an object"
    if entry.get("role") not in ROLES:
        return f"the role {entry.get('role')!r} is not one of {', '.join(ROLES)}"
    pw = entry.get("password")
    if pw is not None and (not isinstance(pw, str) or not pw.startswith("scrypt$")
                           or pw.count("$") != 5):
        return "the password is not a scrypt hash"
    return None


def _writable(root) -> UserList:
    """The user list to change: refused on a damaged file, so that a change never drops the
    users it could not read."""
    current = read_users(root)
    if current.blocking:
        raise ConfigError("The users file cannot be changed while it is damaged: "
                          + " ".join(current.blocking))
    return current


def _write(current: UserList) -> None:
    atomic_write_json(current.path, {"version": 1, "users": current.users}, private=True)


def add_user(name: str, role: str, password: str | None, root: str | os.PathLike | None = None) -> dict:
    """Add a user; ``password`` None makes an OIDC-only user (its name is the e-mail the identity
    provider gives). Returns the new entry (without the hash).

    Raises:
        ConfigError: a bad name, role or password, a user that exists, or a damaged file
            (nothing is written).
    """
    name = check_user_name(name)
    check_role(role)
    hashed = hash_password(password) if password is not None else None
    current = _writable(root)
    if name in current.users:
        raise ConfigError(f"The user {name!r} exists already in {current.path}; change their role "
                          f"with `users set-role {name} ROLE` or their password with `users "
                          f"password {name}`.")
    current.users[name] = {"role": role, "password": hashed, "created": time.time()}
    _write(current)
    return {"name": name, "role": role, "oidc_only": hashed is None}


def _existing(name: str, root) -> tuple[str, UserList]:
    name = check_user_name(name)
    current = _writable(root)
    if name not in current.users:
        known = ", ".join(sorted(current.users)) or "none"
        raise ConfigError(f"No user {name!r} in {current.path} (users: {known}); add one with "
                          "`python -m cnmc_core users add NAME --role ROLE`.")
    return name, current


def remove_user(name: str, root: str | os.PathLike | None = None) -> None:
    """Remove a user. Raises ConfigError: no such user, or a damaged file."""
    name, current = _existing(name, root)
    del current.users[name]
    _write(current)


def set_role(name: str, role: str, root: str | os.PathLike | None = None) -> None:
    """Change a user's role. Raises ConfigError: a bad role, no such user, a damaged file."""
    check_role(role)
    name, current = _existing(name, root)
    current.users[name]["role"] = role
    _write(current)


def set_password(name: str, password: str, root: str | os.PathLike | None = None) -> None:
    """Replace a user's password. Raises ConfigError: too short, no such user, a damaged file."""
    hashed = hash_password(password)
    name, current = _existing(name, root)
    current.users[name]["password"] = hashed
    _write(current)
