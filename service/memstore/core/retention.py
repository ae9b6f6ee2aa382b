"""Retention: what a namespace keeps, declared as a policy, and what a prune removed.

A :class:`RetentionPolicy` names, per kind of memory, how long it is kept; every field is
optional (``None``: kept forever). :class:`RetentionConfig` is what an operator declares:
a default policy for every namespace plus per-namespace overrides, field by field (an
override's ``null`` switches a default off for that namespace).

The rules, the same on every backend (``DistributedMemoryBackend.prune``), all judged at
one instant ``now`` (strictly older than the bound is removed):

* entity ``max_age``: ``updated_at < now - entity_max_age_seconds`` (the last save);
* entity ``idle``: ``max(updated_at, accessed_at) < now - entity_idle_seconds``, where
  ``accessed_at`` is the last read the service recorded (refreshed on read at most once per
  tenth of the idle time, see :data:`TOUCH_FRACTION`); records written before reads were
  recorded have none and count from their last save;
* pinned entities are never removed by either rule (a TTL still expires them);
* conversation ``idle``: ``updated_at < now - conversation_idle_seconds`` (its last
  append, replace or pop) removes the whole conversation;
* conversation ``max_messages``: a conversation with more keeps its newest
  ``conversation_max_messages`` messages (their ``seq`` are unchanged);
* tool uses and feedback: ``timestamp < now - <kind>_max_age_seconds``;
* versions (the history rows of ``backends/base.py``, "Version history": old entity
  versions and tombstones, conversation revisions): the rows of one entity key (or of one
  conversation) ranked newest first, rank 0 the newest (entities: version descending, a
  tombstone before the live row of the same version; revisions: revision descending); a
  row goes when its rank is ``>= versions_keep`` (reason ``max_versions``, judged first)
  or its time (``saved_at``; a revision's ``replaced_at``) is ``< now -
  versions_max_age_seconds`` (``max_age``). Never removed: rank 0 of an entity key with
  no entity row stored (a deleted key's tombstone, or the version a purge of an expired
  entity moved: it holds the numbering, so no version is ever reused) and rank 0 of a
  conversation's revisions (it holds the revision numbering). The current version of an
  entity is not a history row, so never a version to prune; pinning protects the entity,
  not its history.

Each kind is taken in a fixed order (entities by (type, id), conversations by id, tool
uses and feedback by (timestamp, id), versions by (type, id, version, deleted) and then
revisions by (conversation id, revision)), the first ``limit`` of each, so a dry run and an
enforcement at the same ``now`` and ``limit`` name the same items.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from memstore.core.validation import NAMESPACE_RE

#: A read refreshes an entity's idle clock at most once per this fraction of its idle
#: time: an entity is never removed sooner than ``(1 - TOUCH_FRACTION) * idle`` after its
#: last read, and the reads of one entity cost at most one backend write per fraction.
TOUCH_FRACTION: Final = 0.1

#: The largest bound a policy takes (100 years, in seconds).
_MAX_SECONDS = 100 * 365 * 86400.0

Seconds = Annotated[float, Field(gt=0, le=_MAX_SECONDS, allow_inf_nan=False)]

KINDS: Final = ("entities", "conversations", "tool_usage", "feedback", "versions")
REASONS: Final = ("max_age", "idle", "max_messages", "max_versions")

Reason = Literal["max_age", "idle", "max_messages", "max_versions"]


class RetentionPolicy(BaseModel):
    """How long each kind of memory is kept in a namespace (``None``: forever)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entity_max_age_seconds: Seconds | None = Field(
        None, description="Remove entities not saved for this long (pinned ones excepted)."
    )
    entity_idle_seconds: Seconds | None = Field(
        None,
        description="Remove entities neither saved nor read for this long (pinned ones "
        "excepted); a read refreshes the clock to within a tenth of it.",
    )
    conversation_max_messages: int | None = Field(
        None, ge=1, le=10**9, description="Keep only the newest N messages of a conversation."
    )
    conversation_idle_seconds: Seconds | None = Field(
        None, description="Remove conversations not written for this long."
    )
    tool_usage_max_age_seconds: Seconds | None = Field(
        None, description="Remove tool uses older than this."
    )
    feedback_max_age_seconds: Seconds | None = Field(
        None, description="Remove feedback records older than this."
    )
    versions_keep: int | None = Field(
        None,
        ge=0,
        le=10**6,
        description="Old versions kept per entity and revisions per conversation "
        "(version history; the current version is not counted).",
    )
    versions_max_age_seconds: Seconds | None = Field(
        None,
        description="Remove old entity versions and conversation revisions older than this "
        "(version history).",
    )

    @property
    def empty(self) -> bool:
        """Nothing is ever removed under this policy."""
        return all(getattr(self, name) is None for name in type(self).model_fields)

    def cutoffs(self, now: float) -> Cutoffs:
        """The policy's bounds as instants before ``now`` (``None``: no bound)."""

        def before(seconds: float | None) -> float | None:
            return None if seconds is None else now - seconds

        return Cutoffs(
            entity_saved_before=before(self.entity_max_age_seconds),
            entity_idle_before=before(self.entity_idle_seconds),
            conversation_max_messages=self.conversation_max_messages,
            conversation_idle_before=before(self.conversation_idle_seconds),
            tool_usage_before=before(self.tool_usage_max_age_seconds),
            feedback_before=before(self.feedback_max_age_seconds),
            versions_keep=self.versions_keep,
            versions_saved_before=before(self.versions_max_age_seconds),
        )


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """A policy at one instant, as the backends apply it: an item is removed when its time
    is strictly before the bound (``None``: the rule is off)."""

    entity_saved_before: float | None = None
    entity_idle_before: float | None = None
    conversation_max_messages: int | None = None
    conversation_idle_before: float | None = None
    tool_usage_before: float | None = None
    feedback_before: float | None = None
    #: History rows kept per entity key / revisions per conversation (rank ``>=`` goes).
    versions_keep: int | None = None
    #: History rows saved (revisions replaced) strictly before this go.
    versions_saved_before: float | None = None

    @property
    def versions_on(self) -> bool:
        """Whether a rule of the ``versions`` kind applies."""
        return self.versions_keep is not None or self.versions_saved_before is not None

    def only(self, kinds: Collection[str]) -> Cutoffs:
        """These cutoffs with the rules of the kinds not named switched off."""
        c = self
        if "entities" not in kinds:
            c = replace(c, entity_saved_before=None, entity_idle_before=None)
        if "conversations" not in kinds:
            c = replace(c, conversation_idle_before=None, conversation_max_messages=None)
        if "tool_usage" not in kinds:
            c = replace(c, tool_usage_before=None)
        if "feedback" not in kinds:
            c = replace(c, feedback_before=None)
        if "versions" not in kinds:
            c = replace(c, versions_keep=None, versions_saved_before=None)
        return c

    def version_reason(self, rank: int, saved_at: float, holds_numbering: bool) -> Reason | None:
        """Why a history row goes (``max_versions`` first), or ``None`` when it stays.
        ``rank``: its place among its key's history rows, newest first (0 = newest);
        ``holds_numbering``: it is rank 0 of a key whose numbering only it keeps (see the
        module docstring)."""
        if rank == 0 and holds_numbering:
            return None
        if self.versions_keep is not None and rank >= self.versions_keep:
            return "max_versions"
        if self.versions_saved_before is not None and saved_at < self.versions_saved_before:
            return "max_age"
        return None

    def entity_reason(
        self, updated_at: float, accessed_at: float | None, pinned: bool
    ) -> Reason | None:
        """Why an entity goes (``max_age`` first), or ``None`` when it stays."""
        if pinned:
            return None
        if self.entity_saved_before is not None and updated_at < self.entity_saved_before:
            return "max_age"
        last = updated_at if accessed_at is None else max(updated_at, accessed_at)
        if self.entity_idle_before is not None and last < self.entity_idle_before:
            return "idle"
        return None


class RetentionConfig(BaseModel):
    """A default policy and per-namespace overrides (``MEMSTORE_RETENTION`` or the file
    ``MEMSTORE_RETENTION_FILE``, JSON or YAML)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: RetentionPolicy = Field(default_factory=RetentionPolicy)
    #: Overrides: the fields a namespace's policy sets (``null`` included) replace the
    #: default's; the fields it leaves out keep the default's.
    namespaces: dict[str, RetentionPolicy] = Field(default_factory=dict)

    @field_validator("namespaces")
    @classmethod
    def _check_namespaces(cls, value: dict[str, RetentionPolicy]) -> dict[str, RetentionPolicy]:
        for name in value:
            if not NAMESPACE_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid namespace name")
        return value

    @property
    def empty(self) -> bool:
        return self.default.empty and not self.namespaces

    def policy_for(self, namespace: str) -> RetentionPolicy:
        """The default with the namespace's override applied field by field."""
        override = self.namespaces.get(namespace)
        if override is None:
            return self.default
        return self.default.model_copy(
            update=override.model_dump(include=override.model_fields_set)
        )


# -- what a prune removed (or would remove) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class PrunedEntity:
    type: str
    id: str
    reason: Reason
    version: int


@dataclass(frozen=True, slots=True)
class PrunedConversation:
    """A whole conversation (``reason`` ``idle``, ``through_seq`` its last ``seq``) or its
    oldest messages (``max_messages``: those with ``seq <= through_seq``)."""

    id: str
    reason: Reason
    through_seq: int
    messages: int


@dataclass(frozen=True, slots=True)
class PrunedRecord:
    """A tool use or a feedback record (by its id and timestamp)."""

    id: str
    timestamp: float
    reason: Reason = "max_age"


@dataclass(frozen=True, slots=True)
class PrunedVersion:
    """A history row: an old entity version or tombstone (``type``, ``id``, ``version``,
    ``deleted``), or a conversation revision (``type`` ``None``, ``id`` the conversation,
    ``version`` the revision number)."""

    type: str | None
    id: str
    version: int
    reason: Reason
    deleted: bool = False


@dataclass(slots=True)
class PruneReport:
    """What one prune removed, or, for a dry run, would remove, per kind: the first
    ``limit`` items of each in its order, and whether more remain beyond them."""

    now: float
    dry_run: bool
    limit: int
    entities: list[PrunedEntity] = field(default_factory=list)
    conversations: list[PrunedConversation] = field(default_factory=list)
    tool_usage: list[PrunedRecord] = field(default_factory=list)
    feedback: list[PrunedRecord] = field(default_factory=list)
    versions: list[PrunedVersion] = field(default_factory=list)
    more: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(KINDS, False))

    @property
    def items(self) -> int:
        """Items listed: entities, conversations, tool uses, feedback records, versions."""
        return (
            len(self.entities)
            + len(self.conversations)
            + len(self.tool_usage)
            + len(self.feedback)
            + len(self.versions)
        )

    @property
    def complete(self) -> bool:
        """Nothing more to remove at ``now`` beyond what is listed."""
        return not any(self.more.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "dry_run": self.dry_run,
            "limit": self.limit,
            "complete": self.complete,
            "more": dict(self.more),
            "counts": {
                "entities": len(self.entities),
                "conversations": sum(c.reason == "idle" for c in self.conversations),
                "trimmed_conversations": sum(
                    c.reason == "max_messages" for c in self.conversations
                ),
                "messages": sum(c.messages for c in self.conversations),
                "tool_usage": len(self.tool_usage),
                "feedback": len(self.feedback),
                "versions": len(self.versions),
            },
            "entities": [
                {"type": e.type, "id": e.id, "reason": e.reason, "version": e.version}
                for e in self.entities
            ],
            "conversations": [
                {
                    "id": c.id,
                    "reason": c.reason,
                    "through_seq": c.through_seq,
                    "messages": c.messages,
                }
                for c in self.conversations
            ],
            "tool_usage": [
                {"id": r.id, "timestamp": r.timestamp, "reason": r.reason} for r in self.tool_usage
            ],
            "feedback": [
                {"id": r.id, "timestamp": r.timestamp, "reason": r.reason} for r in self.feedback
            ],
            "versions": [
                {
                    "type": v.type,
                    "id": v.id,
                    "version": v.version,
                    "deleted": v.deleted,
                    "reason": v.reason,
                }
                for v in self.versions
            ],
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> PruneReport:
        return cls(
            now=float(body["now"]),
            dry_run=bool(body["dry_run"]),
            limit=int(body["limit"]),
            entities=[PrunedEntity(**e) for e in body["entities"]],
            conversations=[PrunedConversation(**c) for c in body["conversations"]],
            tool_usage=[PrunedRecord(**r) for r in body["tool_usage"]],
            feedback=[PrunedRecord(**r) for r in body["feedback"]],
            versions=[PrunedVersion(**v) for v in body.get("versions", [])],
            more={k: bool(v) for k, v in body["more"].items()},
        )


def check_prune_limit(limit: Any, maximum: int) -> int:
    """``limit`` per kind of a prune (1..maximum)."""
    from memstore.core.errors import InvalidInputError

    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidInputError(f"limit must be an integer from 1 to {maximum}", field="limit")
    return limit


def check_prune_at(at: Any) -> float:
    """The instant of a dry run (POSIX seconds)."""
    from memstore.core.errors import InvalidInputError

    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise InvalidInputError("at must be POSIX seconds", field="at")
    if not 0 <= at < 1e11:
        raise InvalidInputError("at must be POSIX seconds", field="at")
    return float(at)
