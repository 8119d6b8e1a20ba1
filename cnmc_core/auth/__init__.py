"""Who may use the dashboard and do what: roles and the permission check (:mod:`.roles`), the
local user list with scrypt hashes (:mod:`.users`), signing in with rate limiting
(:mod:`.signin`). No Streamlit here: the dashboard's sign-in form lives in ``page_common.py``."""

from cnmc_core.auth.roles import (
    ACTIONS,
    ROLES,
    Actor,
    allowed,
    local_actor,
    owner_of,
    require,
)
from cnmc_core.auth.signin import AUTH_MODES, auth_mode, authenticate, oidc_actor
from cnmc_core.auth.users import add_user, read_users, remove_user, set_role

__all__ = ["ACTIONS", "ROLES", "Actor", "allowed", "local_actor", "owner_of", "require",
           "AUTH_MODES", "auth_mode", "authenticate", "oidc_actor", "add_user", "read_users",
           "remove_user", "set_role"]
