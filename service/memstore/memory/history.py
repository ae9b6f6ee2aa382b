"""Version history above the backends: reads "as of", diffs, snapshot markers.

The backends keep the history (``backends/base.py``, "Version history"); what is built on
it is here, once for every backend:

* the state of an entity at an instant (a tombstone, or a version expired by then, is
  "did not exist");
* the diff of two versions as an RFC 6902 JSON Patch (the ``jsonpatch`` library);
* snapshots: a named instant of a namespace, stored as an entity of the reserved namespace
  :data:`SNAPSHOTS_NAMESPACE` (type = the namespace, id = the snapshot's name), so no
  backend needs storage of its own for them. Reverting to one reads each key's state at
  the snapshot's instant from the history (``memory/manager.py``,
  ``revert_to_snapshot``).
"""

from __future__ import annotations

from typing import Any

import jsonpatch

from memstore.core.records import EntityRecord, EntityVersion, JSONObject, Snapshot

#: Where snapshot markers live: outside the namespace rule (no request addresses it) and,
#: like every ``_`` namespace, without a history of its own.
SNAPSHOTS_NAMESPACE = "_snapshots"


def live_at(row: EntityVersion | None, at: float) -> EntityVersion | None:
    """``row`` (a key's newest row saved at or before ``at``) when the entity existed at
    ``at``: not a tombstone, not expired by then."""
    if row is None or row.deleted or row.data is None:
        return None
    if row.expires_at is not None and row.expires_at <= at:
        return None
    return row


def json_patch(source: JSONObject, target: JSONObject) -> list[dict[str, Any]]:
    """The RFC 6902 operations that turn ``source`` into ``target``."""
    ops: list[dict[str, Any]] = jsonpatch.make_patch(source, target).patch
    return ops


def snapshot_data(created_at: float, change_position: int, actor: str | None) -> JSONObject:
    return {"created_at": created_at, "change_position": change_position, "actor": actor}


def snapshot_of(record: EntityRecord) -> Snapshot:
    data = record.data
    return Snapshot(
        name=record.id,
        created_at=float(data["created_at"]),
        change_position=int(data["change_position"]),
        actor=data.get("actor"),
    )
