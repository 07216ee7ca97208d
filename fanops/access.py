"""Who may open which screen (spec/cli.md "Providers and access"): pure rules, no I/O, no clock.

- Sign-in is on once ``FANOPS_PASSWORD_OPERATOR`` or ``FANOPS_PASSWORD_ADMIN`` is set (or
  ``password_operator`` / ``password_admin`` in ``.streamlit/secrets.toml``, section ``[fanops]``).
  A password gives a role; a role gives a set of screens (``allowed``).
- Passwords are compared in constant time (``hmac.compare_digest``), every role's, whichever matches.
- After ``FREE_FAILURES`` failed attempts from one client, the next attempt waits ``lockout_s``:
  30 s, doubling with each further failure, at most 15 min.  The failure record is the caller's
  to keep (the app keeps it in Redis, so a reload does not reset it).
- ``FANOPS_HOST_TOKEN`` opens the host screen alone (``host_token_ok``).
- With ``st.login`` (OIDC) the role comes from an allow-list of e-mail addresses
  (``FANOPS_OIDC_ADMINS``, ``FANOPS_OIDC_OPERATORS``: ``role_for_email``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

OPERATOR, ADMIN = "operator", "admin"
ROLES: tuple[str, ...] = (OPERATOR, ADMIN)
HOST = "host"
# every screen's url path; "fans" is listed before it exists, so that it is an operator's screen on arrival
SCREENS: tuple[str, ...] = ("live", HOST, "queue", "fans", "settings", "review", "orders")
_OPERATOR_SCREENS = frozenset({"live", HOST, "queue", "fans", "review", "orders"})
_BY_ROLE: dict[str, frozenset[str]] = {OPERATOR: _OPERATOR_SCREENS, ADMIN: frozenset(SCREENS)}

FREE_FAILURES = 5  # failed attempts from one client before any wait
FIRST_LOCKOUT_S = 30
MAX_LOCKOUT_S = 15 * 60
FAILURE_MEMORY_S = 24 * 3600  # a client's failures are forgotten this long after the last one
NAME_CHARS = 64

# the settings' names, as Config fields and as keys of the secrets' [fanops] section
SECRET_NAMES: tuple[str, ...] = ("password_operator", "password_admin", "host_token", "oidc_admins", "oidc_operators")


@dataclass(frozen=True)
class AccessSettings:
    password_operator: str = ""
    password_admin: str = ""
    host_token: str = ""
    oidc_admins: frozenset[str] = frozenset()
    oidc_operators: frozenset[str] = frozenset()

    def __repr__(self) -> str:  # never print a secret by accident
        return (f"AccessSettings(sign_in={self.sign_in}, host_token={'set' if self.host_token else 'unset'}, "
                f"oidc_admins={len(self.oidc_admins)}, oidc_operators={len(self.oidc_operators)})")

    @property
    def sign_in(self) -> bool:
        """True when a password is set: every screen asks for it first."""
        return bool(self.password_operator or self.password_admin)

    @property
    def allow_list(self) -> bool:
        return bool(self.oidc_admins or self.oidc_operators)


def emails(text: str) -> frozenset[str]:
    """An allow-list from its setting: addresses separated by commas or spaces, compared lower-case."""
    return frozenset(p.strip().lower() for p in text.replace(",", " ").split() if p.strip())


def settings_from(values: Mapping[str, object], secrets: Mapping[str, object] | None = None) -> AccessSettings:
    """The access settings: each from ``values`` (the process settings, from the environment) when
    set there, else from ``secrets`` (the ``[fanops]`` section of ``.streamlit/secrets.toml``)."""
    got: dict[str, str] = {}
    for name in SECRET_NAMES:
        v = values.get(name) or (secrets or {}).get(name) or ""
        got[name] = str(v).strip()
    return AccessSettings(got["password_operator"], got["password_admin"], got["host_token"],
                          emails(got["oidc_admins"]), emails(got["oidc_operators"]))


def _same(given: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass"))


def check_password(given: str, s: AccessSettings) -> str | None:
    """The role ``given`` opens (admin before operator if both passwords were the same), or None.
    Every set password is compared, in constant time, whatever matched before."""
    admin = bool(s.password_admin) and _same(given, s.password_admin)
    operator = bool(s.password_operator) and _same(given, s.password_operator)
    if not given:
        return None
    return ADMIN if admin else OPERATOR if operator else None


def host_token_ok(given: str | None, s: AccessSettings) -> bool:
    """True when ``given`` is the host token (never when no token is set)."""
    return bool(s.host_token) and bool(given) and _same(str(given), s.host_token)


def allowed(role: str | None, screen: str) -> bool:
    """May ``role`` open ``screen``?  ``None`` is "no sign-in set up": every screen."""
    if role is None:
        return True
    return screen in _BY_ROLE.get(role, frozenset())


def lockout_s(failures: int) -> int:
    """How long a client waits before its next attempt, after ``failures`` failed ones in a row."""
    if failures < FREE_FAILURES:
        return 0
    return int(min(MAX_LOCKOUT_S, FIRST_LOCKOUT_S * 2 ** min(failures - FREE_FAILURES, 20)))


def wait_s(failures: int, last_failure_ms: int, now_ms: int) -> float:
    """Seconds left before this client may try again (0: it may try now)."""
    return max(0.0, (last_failure_ms + lockout_s(failures) * 1000 - now_ms) / 1000)


def role_for_email(email: str | None, s: AccessSettings) -> str | None:
    """The role of an identity provider's user from the allow-lists (admins first), or None."""
    e = (email or "").strip().lower()
    if not e:
        return None
    return ADMIN if e in s.oidc_admins else OPERATOR if e in s.oidc_operators else None


def clean_name(name: str) -> str:
    """An operator's name as given at sign-in: trimmed, control characters dropped, at most NAME_CHARS."""
    kept = "".join(c if c.isprintable() else " " if c.isspace() else "" for c in name)
    return " ".join(kept.split())[:NAME_CHARS]


def token_hash(token: str) -> str:
    """What the server keeps of a session token (a leak of Redis does not give sessions away)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
