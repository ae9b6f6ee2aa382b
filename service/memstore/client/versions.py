"""``VersionTracker``: what a client has seen of each entity, for read-your-writes.

A service replica may answer an entity read from its local cache, which catches up with
another replica's write only when that replica's invalidation message arrives (Redis), or
when the cache TTL runs out (MongoDB has no message bus). The backends themselves are
linearizable per key, so a read that names the lowest version it may return
(``Memstore-Min-Version``) is never answered with an older state. This tracker holds that
floor per entity: the highest version the client wrote or read, one more than that after
the client deleted it, or "read the backend" (``NO_CACHE``) after it deleted an entity
whose version it never saw.

A floor never goes down: a client that deleted version 5 reads past the cache until the
entity is past version 5 again (version history numbers a re-created entity on from its
deleted version; data written before it may still restart at 1). The
floors are bounded (least recently used keys are forgotten first): a forgotten key is read
as any reader without a token reads it.

One tracker may be shared by several clients (e.g. one per replica URL), so what one of
them saw binds the reads of all; it is safe to use from several threads and event loops.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

#: Entity key: (namespace, entity type, entity id).
EntityKey = tuple[str, str, str]

#: The floor of an entity the client deleted without having seen a version of it: no
#: version bounds the deleted state, so the replica must skip its cache.
NO_CACHE: Final = 0


class VersionTracker:
    """Per entity, the lowest version a read may return (bounded, least recently used
    forgotten first)."""

    def __init__(self, max_keys: int = 10_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError("max_keys must be an integer >= 1")
        self.max_keys = max_keys
        # key -> (highest version seen, 0 for none; seen gone since that version)
        self._seen: OrderedDict[EntityKey, tuple[int, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def floor(self, key: EntityKey) -> int | None:
        """The lowest version a read of ``key`` may return; ``NO_CACHE``: the replica must
        read the backend; ``None``: nothing known (no condition)."""
        with self._lock:
            entry = self._seen.get(key)
            if entry is None:
                return None
            self._seen.move_to_end(key)
        version, gone = entry
        if not gone:
            return version
        return NO_CACHE if version == 0 else version + 1

    def saw(self, key: EntityKey, version: int) -> None:
        """A write or a read answered with ``version``."""
        with self._lock:
            seen, gone = self._seen.get(key, (0, False))
            if gone and seen == 0:
                # Deleted while unknown: no version number bounds that deleted state.
                self._touch(key, (seen, gone))
            else:
                self._touch(key, (version, False) if version > seen else (seen, gone))

    def deleted(self, key: EntityKey) -> None:
        """The client deleted the entity: the versions it knew are gone."""
        with self._lock:
            seen, _ = self._seen.get(key, (0, False))
            self._touch(key, (seen, True))

    def saw_absent(self, key: EntityKey) -> None:
        """A read or a delete answered that the entity does not exist: every version the
        client knew is gone. (Nothing is recorded for a key it knew nothing of.)"""
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and entry[0] > 0:
                self._touch(key, (entry[0], True))

    def _touch(self, key: EntityKey, entry: tuple[int, bool]) -> None:
        self._seen[key] = entry
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
