"""What a webhook is, the checks on its settings, and where webhooks are kept.

A webhook belongs to one namespace and has a name unique there. It comes from one of two
places:

* the API (``PUT /v1/namespaces/{ns}/webhooks/{name}``): kept by :class:`WebhookStore` as
  entities of the reserved namespace :data:`WEBHOOKS_NAMESPACE`, so every backend and every
  replica sees the same webhooks without a backend method of their own. A namespace name
  starts with a letter or digit (``validation.NAMESPACE_RULE``), so no request, REST or
  MCP, can name ``_webhooks``: a user's entity API can never read a secret;
* the file named by ``MEMSTORE_WEBHOOKS_FILE`` (the operator builds it from the
  MemoryStore spec and its Secrets), read once at start: ``source`` ``"file"``; the API
  lists them and refuses to change them.

Beside each webhook's configuration the store keeps its delivery state (entity type
``state``, same id): the position of the last event delivered, and which replica holds the
claim to deliver (see ``deliverer.py``).

Secrets are ``SecretStr`` everywhere: a repr, a log line or an error never shows one.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets as secrets_module
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import SecretStr

from memstore.core.changes import CHANGE_KINDS
from memstore.core.errors import ConfigurationError, InvalidInputError
from memstore.core.records import ChangeEvent, EntityRecord
from memstore.core.validation import check_name
from memstore.memory.manager import DistributedMemoryManager

#: The reserved namespace holding webhooks and their delivery state: outside the
#: namespace rule (a name starts with a letter or digit), so no request can address it.
WEBHOOKS_NAMESPACE = "_webhooks"
CONFIG_TYPE = "webhook"
STATE_TYPE = "state"

#: Per namespace: each webhook is one delivery task on the replica holding its claim.
MAX_WEBHOOKS_PER_NAMESPACE = 32
MAX_URL_LENGTH = 2048
MAX_ENTITY_TYPES = 64
SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
# The Standard Webhooks spec: secrets of 24 to 64 random bytes.
SECRET_BYTES = (24, 64)

Source = Literal["api", "file"]

_PORT = "([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: What a webhook URL looks like (the OpenAPI document and the CRD state it): http(s), a
#: host (no user name or password: ``@`` is not allowed before the path), an optional port,
#: then a path and query of printable ASCII (RFC 3986: other characters percent-encoded).
#: No ``\s``: Python, ECMAScript and RE2 (the API server) disagree on what it holds.
URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~!$&'()*+,;=%-]+(:{_PORT})?"
    r"([/?#][!-~]*)?$"
)
_B64 = "[A-Za-z0-9+/]"
#: ``whsec_`` + the padded base64 of 24 to 64 bytes (8 to 21 groups of 3 bytes, and the
#: padded rest), exactly what :func:`check_secret` takes.
SECRET_PATTERN = (
    rf"^{SECRET_PREFIX}(({_B64}{{4}}){{8,20}}({_B64}{{2}}==|{_B64}{{3}}=)?"
    rf"|({_B64}{{4}}){{21}}({_B64}{{2}}==)?)$"
)
_URL_RE = re.compile(URL_PATTERN)
_SECRET_RE = re.compile(SECRET_PATTERN)


def check_url(url: object) -> str:
    """An absolute http(s) URL with a host and without credentials; 400 naming ``url``."""
    if not isinstance(url, str) or not url:
        raise InvalidInputError("url must be a non-empty string", field="url")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInputError(f"url is longer than {MAX_URL_LENGTH} characters", field="url")
    if _URL_RE.fullmatch(url) is None:
        raise InvalidInputError(
            "url must be http:// or https://, a host (no user name or password), an optional"
            " port up to 65535, then a path without spaces or control characters",
            field="url",
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port outside 0-65535
    except ValueError as exc:
        raise InvalidInputError(f"url is not a valid URL: {exc}", field="url") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInputError("url must start with http:// or https://", field="url")
    if not parts.hostname:
        raise InvalidInputError("url must name a host", field="url")
    if parts.username is not None or parts.password is not None:
        # A credential in the URL would be shown by every GET; the signature authenticates.
        raise InvalidInputError("url must not hold a user name or password", field="url")
    return url


def check_secret(secret: str) -> SecretStr:
    """A Standard Webhooks secret, ``whsec_`` + base64 of 24 to 64 bytes; 400 naming
    ``secret`` (the message never repeats it)."""
    problem = (
        f"secret must be {SECRET_PREFIX} followed by the base64 of {SECRET_BYTES[0]} to"
        f" {SECRET_BYTES[1]} random bytes (leave it out to have one generated)"
    )
    if _SECRET_RE.fullmatch(secret) is None:
        raise InvalidInputError(problem, field="secret")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(problem, field="secret") from None
    if not SECRET_BYTES[0] <= len(raw) <= SECRET_BYTES[1]:
        raise InvalidInputError(problem, field="secret")
    return SecretStr(secret)


def generate_secret() -> SecretStr:
    return SecretStr(SECRET_PREFIX + base64.b64encode(secrets_module.token_bytes(32)).decode())


def check_kinds(kinds: object) -> tuple[str, ...]:
    if kinds is None:
        return ()
    if not isinstance(kinds, list | tuple) or not all(isinstance(k, str) for k in kinds):
        raise InvalidInputError("kinds must be a list of change kinds", field="kinds")
    unknown = sorted(set(kinds) - set(CHANGE_KINDS))
    if unknown:
        raise InvalidInputError(
            f"kinds: unknown {', '.join(unknown)}; use {', '.join(CHANGE_KINDS)}", field="kinds"
        )
    return tuple(dict.fromkeys(kinds))


def check_entity_types(types: object) -> tuple[str, ...]:
    if types is None:
        return ()
    if not isinstance(types, list | tuple) or len(types) > MAX_ENTITY_TYPES:
        raise InvalidInputError(
            f"entity_types must be a list of at most {MAX_ENTITY_TYPES} entity types",
            field="entity_types",
        )
    for t in types:
        try:
            check_name("entity_type", t)
        except InvalidInputError as exc:
            raise InvalidInputError(f"entity_types: {exc.message}", field="entity_types") from None
    return tuple(dict.fromkeys(types))


@dataclass(frozen=True)
class Webhook:
    """One webhook. ``kinds`` / ``entity_types`` empty: no filter. With ``entity_types``
    only entity events of those types are delivered."""

    namespace: str
    name: str
    url: str
    secret: SecretStr = field(compare=True)
    kinds: tuple[str, ...] = ()
    entity_types: tuple[str, ...] = ()
    source: Source = "api"
    created_at: float | None = field(default=None, compare=False)
    updated_at: float | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Its id in the reserved namespace (``:`` never appears in a namespace name)."""
        return f"{self.namespace}:{self.name}"

    @property
    def label(self) -> str:
        """How metrics and logs name it."""
        return f"{self.namespace}/{self.name}"

    def matches(self, event: ChangeEvent) -> bool:
        if self.kinds and event.kind not in self.kinds:
            return False
        return not self.entity_types or event.entity_type in self.entity_types

    def public(self) -> dict[str, Any]:
        """The API's view: the secret redacted (it is shown once, when generated)."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "url": self.url,
            "secret": str(self.secret),  # SecretStr: "**********"
            "kinds": list(self.kinds),
            "entity_types": list(self.entity_types),
            "source": self.source,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def stored(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "url": self.url,
            "secret": self.secret.get_secret_value(),
            "kinds": list(self.kinds),
            "entity_types": list(self.entity_types),
        }

    @classmethod
    def from_record(cls, record: EntityRecord) -> Webhook:
        d = record.data
        return cls(
            namespace=d["namespace"],
            name=d["name"],
            url=d["url"],
            secret=SecretStr(d["secret"]),
            kinds=tuple(d.get("kinds") or ()),
            entity_types=tuple(d.get("entity_types") or ()),
            source="api",
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InvalidInputError(
            f"secret_file {path} cannot be read: {reason}", field="secret_file"
        ) from None


def parse_webhooks_file(raw: bytes, where: str, folder: Path | None = None) -> tuple[Webhook, ...]:
    """The webhooks of a ``MEMSTORE_WEBHOOKS_FILE``: ``{"webhooks": [{"name", "namespace",
    "url", "secret" | "secret_file", "kinds"?, "entity_types"?}]}``. ``secret_file`` (what
    the operator writes: the secret stays in its Secret, mounted as a file) is a path,
    relative to ``folder`` (the file's own). A problem is a ``ConfigurationError`` naming
    the entry and field, never a secret."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"webhooks file {where} is not valid JSON: {exc}") from None
    items = doc.get("webhooks") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ConfigurationError(f'webhooks file {where} must be {{"webhooks": [...]}}')
    hooks: list[Webhook] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(items):
        entry = f"webhooks file {where}: webhooks[{i}]"
        if not isinstance(item, dict):
            raise ConfigurationError(f"{entry} must be an object")
        unknown = sorted(
            set(item)
            - {"name", "namespace", "url", "secret", "secret_file", "kinds", "entity_types"}
        )
        if unknown:
            raise ConfigurationError(f"{entry}: unknown field {unknown[0]}")
        try:
            name = check_name("webhook_name", item.get("name"))
            namespace = check_name("namespace", item.get("namespace"))
            url = check_url(item.get("url"))
            secret, secret_file = item.get("secret"), item.get("secret_file")
            if (secret is None) == (secret_file is None):
                raise InvalidInputError("give one of secret and secret_file", field="secret")
            if secret_file is not None:
                if not isinstance(secret_file, str) or not secret_file:
                    raise InvalidInputError("secret_file must be a path", field="secret_file")
                secret = _read_secret((folder or Path()) / secret_file)
            if not isinstance(secret, str):
                raise InvalidInputError("secret must be a string", field="secret")
            hook = Webhook(
                namespace=namespace,
                name=name,
                url=url,
                secret=check_secret(secret),
                kinds=check_kinds(item.get("kinds")),
                entity_types=check_entity_types(item.get("entity_types")),
                source="file",
            )
        except InvalidInputError as exc:
            raise ConfigurationError(f"{entry}: {exc.message}") from None
        if (namespace, name) in seen:
            raise ConfigurationError(f"{entry}: {namespace}/{name} appears twice")
        seen.add((namespace, name))
        hooks.append(hook)
    return tuple(hooks)


def load_webhooks_file(path: Path | None) -> tuple[Webhook, ...]:
    if path is None:
        return ()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read webhooks file {path}: {exc.strerror}") from None
    return parse_webhooks_file(raw, str(path), path.parent)


async def last_position(view: DistributedMemoryManager) -> int:
    """The highest change-log position the namespace of ``view`` ever gave (0: none)."""
    page = await view.read_changes(after=0, limit=1)
    return page.last_position


class WebhookStore:
    """The webhooks of every namespace: the file's, and the API's in the reserved
    namespace. One per process, shared by the routes and the deliverer."""

    def __init__(
        self, manager: DistributedMemoryManager, file_webhooks: tuple[Webhook, ...] = ()
    ) -> None:
        self.manager = manager
        self.view = manager.for_checked_namespace(WEBHOOKS_NAMESPACE)
        self.file_webhooks = {(h.namespace, h.name): h for h in file_webhooks}

    def __repr__(self) -> str:
        return f"WebhookStore(file_webhooks={len(self.file_webhooks)})"

    async def _stored(self) -> list[Webhook]:
        hooks: list[Webhook] = []
        cursor: str | None = None
        while True:
            page = await self.view.list_entities(CONFIG_TYPE, cursor=cursor)
            hooks.extend(Webhook.from_record(r) for r in page.items)
            if page.next_cursor is None:
                return hooks
            cursor = page.next_cursor

    async def list_all(self) -> list[Webhook]:
        return [*self.file_webhooks.values(), *await self._stored()]

    async def list(self, namespace: str) -> list[Webhook]:
        hooks = [h for h in await self.list_all() if h.namespace == namespace]
        return sorted(hooks, key=lambda h: h.name)

    async def get(self, namespace: str, name: str) -> Webhook | None:
        if (hook := self.file_webhooks.get((namespace, name))) is not None:
            return hook
        record = await self.view.get_entity(CONFIG_TYPE, f"{namespace}:{name}")
        return None if record is None else Webhook.from_record(record)

    def _refuse_file_webhook(self, namespace: str, name: str) -> None:
        if (namespace, name) in self.file_webhooks:
            raise InvalidInputError(
                f"webhook {name} is configured by the service's webhooks file (the"
                " MemoryStore spec); change it there",
                field="webhook_name",
            )

    async def put(
        self,
        namespace: str,
        name: str,
        *,
        url: str,
        secret: SecretStr | None,
        kinds: object = None,
        entity_types: object = None,
    ) -> tuple[Webhook, bool, SecretStr | None]:
        """Create or replace; returns the webhook, whether it is new, and the secret when
        one was generated (shown once). Without ``secret`` a replaced webhook keeps its own."""
        self._refuse_file_webhook(namespace, name)
        url = check_url(url)
        checked_kinds = check_kinds(kinds)
        checked_types = check_entity_types(entity_types)
        if secret is not None:
            secret = check_secret(secret.get_secret_value())
        existing = await self.get(namespace, name)
        generated: SecretStr | None = None
        if existing is None:
            if len(await self.list(namespace)) >= MAX_WEBHOOKS_PER_NAMESPACE:
                raise InvalidInputError(
                    f"a namespace has at most {MAX_WEBHOOKS_PER_NAMESPACE} webhooks",
                    field="webhook_name",
                )
            if secret is None:
                secret = generated = generate_secret()
            # The delivery state first: a new webhook delivers the events written after
            # this point (a deliverer that saw the configuration first would start at its
            # own later point; this write then moves it back to here: at least once).
            position = await last_position(self.manager.for_checked_namespace(namespace))
            await self.view.save_entity(STATE_TYPE, f"{namespace}:{name}", new_state(position))
        elif secret is None:
            secret = existing.secret
        hook = Webhook(namespace, name, url, secret, checked_kinds, checked_types)
        record = await self.view.save_entity(CONFIG_TYPE, hook.key, hook.stored())
        return Webhook.from_record(record), existing is None, generated

    async def delete(self, namespace: str, name: str) -> bool:
        self._refuse_file_webhook(namespace, name)
        key = f"{namespace}:{name}"
        deleted = await self.view.delete_entity(CONFIG_TYPE, key)
        await self.view.delete_entity(STATE_TYPE, key)
        return deleted


def new_state(
    position: int, owner: str | None = None, lease_seconds: float = 0.0
) -> dict[str, Any]:
    """A webhook's delivery state: the last position delivered (or passed over), and the
    replica holding the claim until the wall-clock time ``until``."""
    return {
        "position": position,
        "owner": owner,
        "until": time.time() + lease_seconds if owner is not None else 0.0,
    }
