"""A group of reads on a Redis Cluster with one master down, run by
``test_grouped_reads.py`` in a process of its own: redis-py drops the connections to a
node that went away without closing them, and in the test process their warnings would
fail a later test. Prints one JSON line: what each read returned, and the groups sent."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from memstore.core.errors import BackendUnavailableError
from memstore.core.settings import Settings
from tests.redis.conftest import slot_of, slot_owners
from tests.redis.test_grouped_reads import GroupRecordingConnection
from tests.servers.redis import LocalCluster, unique_prefix


def outcome(result: Any) -> str:
    if isinstance(result, BackendUnavailableError):
        return "unavailable"
    if isinstance(result, BaseException):
        return f"error: {type(result).__name__}: {result}"
    return bytes(result).decode()


async def main(workdir: Path) -> dict[str, Any]:
    cluster = LocalCluster(workdir, nodes=3, replicas=0)
    try:
        prefix = unique_prefix()
        owners = slot_owners(cluster)
        by_port: dict[int, list[str]] = {}
        for i in range(200):
            k = f"{prefix}n{i}"
            by_port.setdefault(owners[slot_of(k)], []).append(k)
        down, first_port, _ = sorted(by_port)
        # Seeded with the two that stay up: redis-py forgets a seed node whose connection
        # fails without closing the connection it discovered the slots with.
        settings = Settings(
            memory_type="redis",
            redis_cluster_nodes=",".join(n.address for n in cluster.nodes if n.port != down),
            redis_prefix=prefix,
            redis_retries=0,
        )
        # Written through the servers' own clients: no connection of ours reaches a node
        # before the reads, so the one to the killed node fails as it opens.
        for port, keys in by_port.items():
            for k in keys[:3]:
                cluster.by_port(port).client.set(k, k)
        connection = GroupRecordingConnection(settings)
        await connection.open()
        try:
            cluster.by_port(down).kill9()
            first = by_port[first_port][0]
            grouped = [k for port in sorted(by_port) for k in by_port[port][:3]]
            results = await asyncio.gather(
                connection.read("GET", first),  # alone
                *(connection.read("GET", k) for k in grouped),
                return_exceptions=True,
            )
        finally:
            await connection.close()
        return {
            "first": [first, outcome(results[0])],
            "grouped": [
                [k, k in by_port[down], outcome(r)]
                for k, r in zip(grouped, results[1:], strict=True)
            ],
            "groups": connection.groups,
        }
    finally:
        cluster.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
