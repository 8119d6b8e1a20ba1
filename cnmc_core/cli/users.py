"""CLI verbs for the dashboard's local users: ``users add|list|remove|set-role|password|unlock``.

::

    python -m cnmc_core users add alice --role trainer        # asks for the password twice
    echo "$PW" | python -m cnmc_core users add bob --role viewer --password-stdin
    python -m cnmc_core users add carol@lab.org --role viewer --oidc   # signs in with st.login
    python -m cnmc_core users list
    python -m cnmc_core users set-role bob trainer
    python -m cnmc_core users password alice
    python -m cnmc_core users unlock alice                    # forget failed sign-ins
    python -m cnmc_core users remove bob

The users live in ``<artifacts>/auth/users.json`` (mode 0600; see :mod:`cnmc_core.auth.users`).
Whoever can write the workspace can change them: these verbs need no sign-in.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from cnmc_core.cli.options import add_artifacts_option

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``users`` verb and its actions."""
    p = sub.add_parser("users", help="the dashboard's local users (CNMC_AUTH=local or oidc)",
                       description="Add, list, change and remove the users who may sign in to "
                       "the dashboard, with their role: viewer (read, score), trainer (also "
                       "launch, cancel and delete their own runs, save ensembles), admin (also "
                       "cancel and delete anyone's).")
    actions = p.add_subparsers(dest="users_action", metavar="<action>", required=True)

    a = actions.add_parser("add", help="add a user (asks for the password)")
    a.add_argument("name", help="user name (an e-mail for --oidc)")
    a.add_argument("--role", required=True, help="viewer, trainer or admin")
    a.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin instead of asking")
    a.add_argument("--oidc", action="store_true",
                   help="no password: the user signs in through OIDC (CNMC_AUTH=oidc) with this "
                        "e-mail")
    add_artifacts_option(a)
    a.set_defaults(func=_add)

    a = actions.add_parser("list", help="list the users, their roles, and any problem of the file")
    a.add_argument("--json", action="store_true")
    add_artifacts_option(a)
    a.set_defaults(func=_list)

    a = actions.add_parser("remove", help="remove a user")
    a.add_argument("name")
    add_artifacts_option(a)
    a.set_defaults(func=_remove)

    a = actions.add_parser("set-role", help="change a user's role")
    a.add_argument("name")
    a.add_argument("role", help="viewer, trainer or admin")
    add_artifacts_option(a)
    a.set_defaults(func=_set_role)

    a = actions.add_parser("password", help="set a new password for a user")
    a.add_argument("name")
    a.add_argument("--password-stdin", action="store_true")
    add_artifacts_option(a)
    a.set_defaults(func=_password)

    a = actions.add_parser("unlock", help="forget a user's failed sign-ins (ends a lockout)")
    a.add_argument("name")
    add_artifacts_option(a)
    a.set_defaults(func=_unlock)


def _read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or asked twice on the terminal."""
    from cnmc_core.exceptions import ConfigError

    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise ConfigError("--password-stdin: stdin is empty; pipe the password in, e.g. "
                              "`printf '%s\\n' \"$PW\" | python -m cnmc_core users add ...`.")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ConfigError("No terminal to ask the password on: give --password-stdin and pipe "
                          "the password in.")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise ConfigError("The two passwords differ; nothing was changed. Run the command again.")
    return first


def _add(args) -> int:
    from cnmc_core.auth.roles import check_role
    from cnmc_core.auth.users import add_user, check_user_name
    from cnmc_core.exceptions import ConfigError

    name = check_user_name(args.name)
    check_role(args.role, "--role")
    if args.oidc and args.password_stdin:
        raise ConfigError("--oidc users have no password: leave out --password-stdin.")
    password = None if args.oidc else _read_password(args.password_stdin)
    entry = add_user(name, args.role, password, args.artifacts)
    how = "signs in through OIDC" if entry["oidc_only"] else "signs in with a password"
    print(f"added {entry['name']} ({entry['role']}; {how})")
    return 0


def _list(args) -> int:
    from cnmc_core.auth.signin import lock_remaining
    from cnmc_core.auth.users import read_users

    users = read_users(args.artifacts)
    rows = [{"name": name, "role": u["role"], "password": u.get("password") is not None,
             "locked_s": round(lock_remaining(name, args.artifacts))}
            for name, u in sorted(users.users.items())]
    if args.json:
        print(json.dumps({"file": str(users.path), "users": rows, "problems": users.problems},
                         indent=2))
    else:
        print(f"users file: {users.path}" + ("" if users.exists else " (none yet)"))
        for row in rows:
            lock = f"  locked {row['locked_s']} s" if row["locked_s"] else ""
            print(f"{row['name']:<32} {row['role']:<8} "
                  f"{'password' if row['password'] else 'oidc'}{lock}")
        for problem in users.problems:
            print(f"problem: {problem}", file=sys.stderr)
    return 1 if users.blocking else 0


def _remove(args) -> int:
    from cnmc_core.auth.users import remove_user

    remove_user(args.name, args.artifacts)
    print(f"removed {args.name.strip().lower()}")
    return 0


def _set_role(args) -> int:
    from cnmc_core.auth.users import set_role

    set_role(args.name, args.role, args.artifacts)
    print(f"{args.name.strip().lower()} is now {args.role}")
    return 0


def _password(args) -> int:
    from cnmc_core.auth.users import check_user_name, read_users, set_password
    from cnmc_core.exceptions import ConfigError

    name = check_user_name(args.name)
    if name not in read_users(args.artifacts).users:  # before asking for a password
        raise ConfigError(f"No user {name!r}; add one with `python -m cnmc_core users add`.")
    set_password(name, _read_password(args.password_stdin), args.artifacts)
    print(f"new password set for {name}")
    return 0


def _unlock(args) -> int:
    from cnmc_core.auth.signin import clear_failures
    from cnmc_core.auth.users import check_user_name

    name = check_user_name(args.name)
    clear_failures(name, args.artifacts)
    print(f"failed sign-ins of {name} forgotten")
    return 0
