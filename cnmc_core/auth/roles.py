"""Who may do what: roles, the acting user (:class:`Actor`) and the one permission check.

Three roles, each with every right of the one before:

- ``viewer``: read every page, score images on Predict and Explain;
- ``trainer``: also launch runs and studies, save ensembles, choose the workspace's dataset
  and protocol, export to MLflow,
  cancel and delete *their own* runs and studies;
- ``admin``: also cancel and delete anyone's.

The library enforces these rules where the action happens (:func:`cnmc_core.training.launch.
start_runs`, :func:`cnmc_core.workspace.queue.cancel_run`, :func:`cnmc_core.workspace.layout.
delete_run`, :func:`cnmc_core.ensemble.store.save_ensemble`, :func:`cnmc_core.study.store.
create_study`...), each of which takes ``actor=``: a page that hides a button is a courtesy,
not the protection.

Every run, ensemble and study records who launched it as ``launched_by`` in its
``config.json`` (``study.json``): ``"<how>:<name>"``, ``dashboard:alice`` for a dashboard user,
``cli:bob`` for the CLI run by the OS user bob, ``local:bob`` for a script calling the library.
The owner of a folder is the name after the colon.

``actor=None`` is the local OS user (:func:`local_actor`), an ``admin``: whoever runs a process
as the workspace's owner can change its files anyway, so no check could stop them.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from cnmc_core.exceptions import AccessError, ConfigError

__all__ = ["ROLES", "ACTIONS", "OWN_ONLY", "Actor", "local_actor", "resolve_actor", "require",
           "allowed", "owner_of", "check_role"]

#: The roles, from the least to the most rights.
ROLES = ("viewer", "trainer", "admin")
#: Each action and the least role that may do it.
ACTIONS = {
    "view": "viewer",
    "score": "viewer",
    "launch": "trainer",
    "launch_study": "trainer",
    "save_ensemble": "trainer",
    "configure": "trainer",
    "cancel": "trainer",
    "delete": "trainer",
}
#: Actions a trainer may do only on what they launched (an admin on anything).
OWN_ONLY = ("cancel", "delete")
#: What each action is called in a refusal.
_WORDS = {
    "view": "view the dashboard", "score": "score images", "launch": "launch runs",
    "launch_study": "launch studies", "save_ensemble": "save ensembles",
    "configure": "change the workspace's settings or export to MLflow", "cancel": "cancel runs",
    "delete": "delete runs",
}
_VIAS = ("dashboard", "cli", "local")


def check_role(role: str, where: str = "role") -> str:
    """Return ``role`` if it is one of :data:`ROLES`, else raise a ConfigError naming them."""
    if role not in ROLES:
        raise ConfigError(f"The {where} must be one of {', '.join(ROLES)}; got {role!r}.")
    return role


@dataclass(frozen=True)
class Actor:
    """The user an action is done for.

    Attributes:
        name: the user name (a dashboard user, an OIDC e-mail, or the OS user).
        role: one of :data:`ROLES`.
        via: how they act: ``dashboard``, ``cli`` or ``local`` (a script using the library).
    """

    name: str
    role: str
    via: str = "dashboard"

    def __post_init__(self):
        check_role(self.role, "actor's role")
        if self.via not in _VIAS:
            raise ConfigError(f"An actor's via must be one of {', '.join(_VIAS)}; got {self.via!r}.")
        if not isinstance(self.name, str) or not self.name or ":" in self.name:
            raise ConfigError(f"An actor's name must be a non-empty text without ':'; got {self.name!r}.")

    @property
    def launched_by(self) -> str:
        """What a folder records as its launcher: ``"<via>:<name>"``."""
        return f"{self.via}:{self.name}"

    def rank(self) -> int:
        return ROLES.index(self.role)


def local_actor(via: str = "local") -> Actor:
    """The OS user running this process, as an ``admin`` (see the module's docstring)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        name = f"uid{os.getuid()}"
    return Actor(name=name.replace(":", "_") or "unknown", role="admin", via=via)


def resolve_actor(actor: Actor | None) -> Actor:
    """``actor``, or :func:`local_actor` for None; anything else is refused (a page that sends a
    role name or a dict does not get a role by it)."""
    if actor is None:
        return local_actor()
    if not isinstance(actor, Actor):
        raise AccessError(f"actor must be a cnmc_core.auth.Actor or None; got {type(actor).__name__}.")
    return actor


def allowed(actor: Actor | None, action: str, owner: str | None = None) -> bool:
    """Whether :func:`require` would let ``actor`` do ``action``."""
    try:
        require(actor, action, owner=owner)
    except AccessError:
        return False
    return True


def require(actor: Actor | None, action: str, *, owner: str | None = None,
            what: str | None = None) -> Actor:
    """Check that ``actor`` may do ``action``; returns the actor (None: the local OS user).

    Args:
        actor: the acting user.
        action: one of :data:`ACTIONS`.
        owner: for ``cancel`` and ``delete``, who launched the folder (:func:`owner_of`; None:
            nobody recorded, only an admin may).
        what: the folder acted on, for the message.

    Raises:
        AccessError: the role does not allow it, or the folder is someone else's.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")  # a programming error
    actor = resolve_actor(actor)
    need = ACTIONS[action]
    if actor.rank() < ROLES.index(need):
        raise AccessError(f"{actor.name} is a {actor.role} and may not {_WORDS[action]}: that "
                          f"needs the {need} role. An admin can give it with `python -m cnmc_core "
                          f"users set-role {actor.name} {need}`.")
    if action in OWN_ONLY and actor.role != "admin" and owner != actor.name:
        target = f" {what}" if what else ""
        who = f"{owner}'s" if owner else "not recorded as anyone's"
        raise AccessError(f"{actor.name} may not {action}{target}: it is {who}, and a {actor.role} "
                          f"may {action} only their own runs (an admin may {action} any).")
    return actor


def owner_of(folder: str | os.PathLike) -> str | None:
    """Who launched a run, ensemble or study folder: the name in its ``launched_by`` (from
    ``config.json``, or ``study.json``), or None when none is recorded or it cannot be read."""
    import json

    for name in ("config.json", "study.json"):
        path = Path(folder) / name
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        text = record.get("launched_by") if isinstance(record, dict) else None
        if isinstance(text, str) and ":" in text:
            return text.split(":", 1)[1] or None
    return None
