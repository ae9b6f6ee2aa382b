"""Bearer-token authentication and tenancy (namespaces and roles). No aiohttp here.

Tokens come from a JSON file (``MEMSTORE_AUTH_TOKENS_FILE``, mounted from a Secret)::

    {"tokens": [{"name": "admin", "sha256": "<hex sha256 of the token>",
                 "namespaces": ["*"], "roles": ["read", "write", "admin"]}]}

Invariants:

* Only hashes are stored. A presented token is hashed once and compared with *every*
  configured hash with ``hmac.compare_digest`` (no early exit), so neither timing nor the
  order of the file says which token is close.
* Roles are explicit, none implies another: ``read`` for GET on a namespace, ``write`` for
  anything that changes a namespace, ``admin`` for the process-wide operations (cache
  clear, metrics JSON, cross-namespace summary) and a namespace's audit trail.
* Which role a route needs is its row's ``role`` in the route table
  (``memstore.server.routes.ROUTES``); a route without a row needs ``admin`` (fail closed).
* The file is re-read when it changes (a rotated Secret), checked at most every
  :data:`RELOAD_CHECK_SECONDS`; a broken new file keeps the last good one and logs why.
* Nothing here logs or formats a token or a hash.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import orjson

from memstore.core.errors import AuthenticationError, ConfigurationError, PermissionDeniedError
from memstore.core.settings import SecuritySettings

log = logging.getLogger(__name__)

Role = Literal["read", "write", "admin"]
ROLES: frozenset[str] = frozenset(get_args(Role))
RELOAD_CHECK_SECONDS = 5.0
WILDCARD = "*"

_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+) *$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def hash_token(token: str) -> str:
    """The hex SHA-256 the tokens file stores for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name, its namespaces (``None`` = all) and roles."""

    name: str
    namespaces: frozenset[str] | None
    roles: frozenset[str]

    def allows_namespace(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def rate_key(self) -> str:
        return f"token:{self.name}"


#: The caller when auth is disabled (developer default): everything is allowed.
ANONYMOUS = Principal("anonymous", None, ROLES)


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    digest: bytes

    def __repr__(self) -> str:  # never show the hash
        return f"_Entry({self.principal.name!r})"


def parse_tokens(raw: bytes) -> list[_Entry]:
    """Parse and validate a tokens file. Errors name the entry, never its hash."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"auth tokens file is not valid JSON: {exc}") from None
    tokens = doc.get("tokens") if isinstance(doc, dict) else None
    if not isinstance(tokens, list):
        raise ConfigurationError('auth tokens file must be {"tokens": [...]}')
    entries: list[_Entry] = []
    names: set[str] = set()
    for i, item in enumerate(tokens):
        where = f"tokens[{i}]"
        if not isinstance(item, dict):
            raise ConfigurationError(f"{where} must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{where}.name must be a non-empty string")
        where = f"token {name!r}"
        if name in names:
            raise ConfigurationError(f"{where} appears twice")
        names.add(name)
        digest = item.get("sha256")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ConfigurationError(f"{where}: sha256 must be 64 hex digits")
        namespaces = item.get("namespaces")
        if (
            not isinstance(namespaces, list)
            or not namespaces
            or not all(isinstance(n, str) and n for n in namespaces)
        ):
            raise ConfigurationError(f"{where}: namespaces must be a non-empty list of names")
        roles = item.get("roles")
        if not isinstance(roles, list) or not roles or not set(roles) <= ROLES:
            raise ConfigurationError(
                f"{where}: roles must be a non-empty subset of {sorted(ROLES)}"
            )
        scope = None if WILDCARD in namespaces else frozenset(namespaces)
        entries.append(
            _Entry(Principal(name, scope, frozenset(roles)), bytes.fromhex(digest.lower()))
        )
    return entries


class TokenStore:
    """The configured tokens, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: list[_Entry] = []
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._load(initial=True)

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r}, tokens={len(self._entries)})"

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self, *, initial: bool = False) -> None:
        try:
            stamp = self._file_stamp()
            entries = parse_tokens(self.path.read_bytes())
        except (OSError, ConfigurationError) as exc:
            message = exc.strerror if isinstance(exc, OSError) else str(exc)
            if initial:
                raise ConfigurationError(
                    f"cannot load auth tokens from {self.path}: {message}"
                ) from None
            log.warning(
                "auth tokens file changed but is unusable; keeping the previous tokens",
                extra={"path": str(self.path), "problem": message},
            )
            return
        self._entries = entries
        self._stamp = stamp
        names = [e.principal.name for e in entries]
        log.info("auth tokens %s", "loaded" if initial else "reloaded", extra={"tokens": names})

    def maybe_reload(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._checked < RELOAD_CHECK_SECONDS:
            return
        with self._lock:
            self._checked = now
            try:
                stamp = self._file_stamp()
            except OSError:
                return  # a Secret update swaps a symlink; a missing moment is not a change
            if stamp != self._stamp:
                self._load()

    @property
    def names(self) -> list[str]:
        return [e.principal.name for e in self._entries]

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: Principal | None = None
        for entry in self._entries:
            # No early exit: the time taken does not depend on which entry matches.
            if hmac.compare_digest(digest, entry.digest):
                found = entry.principal
        return found


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    match = _BEARER.fullmatch(authorization)
    return match.group(1) if match else None


class Authenticator:
    """Authenticates requests and checks their role and namespace."""

    def __init__(self, store: TokenStore | None) -> None:
        # None: auth disabled, every caller is ANONYMOUS.
        self.store = store

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def authenticate(self, authorization: str | None) -> Principal:
        if self.store is None:
            return ANONYMOUS
        self.store.maybe_reload()
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationError("a bearer token is required (Authorization: Bearer ...)")
        principal = self.store.authenticate(token)
        if principal is None:
            raise AuthenticationError("the bearer token is not valid", invalid_token=True)
        return principal

    @staticmethod
    def authorize(principal: Principal, role: str, namespace: str | None) -> None:
        if not principal.has_role(role):
            raise PermissionDeniedError(f"this token lacks the {role} role", role=role)
        if namespace is not None and not principal.allows_namespace(namespace):
            # The same answer whatever the namespace holds: no oracle for its data.
            raise PermissionDeniedError("this token is not allowed in this namespace")


def build_authenticator(settings: SecuritySettings) -> Authenticator:
    """From settings: a token store when auth is on (the file must load), else none."""
    if not settings.auth_enabled:
        return Authenticator(None)
    if settings.auth_tokens_file is None:
        raise ConfigurationError(
            "MEMSTORE_AUTH_ENABLED is true but MEMSTORE_AUTH_TOKENS_FILE is not set"
        )
    return Authenticator(TokenStore(settings.auth_tokens_file))
