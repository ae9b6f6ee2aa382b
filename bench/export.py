# ruff: noqa: S603 - runs this module in a child process per phase, by design
"""Export and import of a whole namespace at scale: ``python -m bench.export``.

Per backend (embedded, Redis standalone), one namespace of ``--items`` records (60%
entities of ~150 B in 5 types, 25% messages in conversations of 50, 10% tool uses, 5%
feedback), seeded through the backend. Then, each in a fresh process of its own (so its
peak RSS is its own), through the in-process manager:

* ``idle``: imports memstore, connects the manager and reads nothing (the RSS floor);
* ``list`` (the reference): a plain listing of the same items through the same listings
  the export reads (pages of entities per type, each conversation's messages, tool uses,
  feedback), keeping nothing;
* ``export``: the namespace's dump written to a file;
* ``import``: that file imported into another namespace of the same store (verified
  first, then written under the import marker; includes the marker's wait of
  ``MARKER_REFRESH_SECONDS * 1.2``).

Reported per phase: seconds, records per second, the process's RSS when it started working
and its peak RSS (VmHWM of /proc/self/status, the kernel's high-water mark). Bounded
memory shows as a peak that stays near the idle process's whatever ``--items`` (the dump's
size is printed next to it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import Procs
from bench.sections import Section, value_only

NS = "bench-export"
RESTORED = "bench-restored"
PHASES = ("idle", "list", "export", "import")


def _status_kb(field: str) -> int:
    """A figure of /proc/self/status in kB: VmRSS (now), VmHWM (the peak so far)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _settings(spec: dict[str, Any]) -> Any:
    from memstore.core.settings import Settings

    return Settings(**spec)


async def seed(spec: dict[str, Any], items: int) -> dict[str, int]:
    from memstore.backends.factory import DistributedMemoryFactory
    from memstore.core.records import FeedbackRecord, ToolUsageRecord

    entities = items * 60 // 100
    conversations = max(1, items * 25 // 100 // 50)
    tools = items * 10 // 100
    feedback = items - entities - conversations * 51 - tools
    backend = DistributedMemoryFactory.create_memory_backend(_settings(spec))
    await backend.connect()
    sem = asyncio.Semaphore(64)
    now = time.time()

    async def bounded(coro: Any) -> None:
        async with sem:
            await coro

    try:
        await asyncio.gather(
            *(
                bounded(
                    backend.save_entity(
                        NS, f"type{i % 5}", f"e{i:07d}", {"n": i, "text": "x" * 120, "ok": True}
                    )
                )
                for i in range(entities)
            )
        )
        await asyncio.gather(
            *(
                bounded(
                    backend.append_messages(
                        NS, f"c{c:05d}", [{"role": "user", "content": f"m{j} " + "y" * 60}
                                          for j in range(50)]
                    )
                )
                for c in range(conversations)
            )
        )  # fmt: skip
        await asyncio.gather(
            *(
                bounded(
                    backend.record_tool_usage(
                        NS,
                        ToolUsageRecord(
                            f"u{i:07d}", f"tool{i % 5}", {"q": i}, {"ok": True}, 12.5, True,
                            now - 3600 + i * 0.01,
                        ),
                    )
                )
                for i in range(tools)
            )
        )  # fmt: skip
        await asyncio.gather(
            *(
                bounded(
                    backend.save_feedback(
                        NS, FeedbackRecord(f"f{i:07d}", "bot", "rating", {"rating": i % 5},
                                           now - i * 0.01)
                    )
                )
                for i in range(feedback)
            )
        )  # fmt: skip
    finally:
        await backend.close()
    return {
        "entity": entities,
        "conversation": conversations,
        "message": conversations * 50,
        "tool_usage": tools,
        "feedback": feedback,
    }


async def _phase(phase: str, spec: dict[str, Any], path: Path) -> dict[str, Any]:
    from memstore.memory.manager import DistributedMemoryManager

    async with DistributedMemoryManager(settings=_settings(spec), namespace=NS) as manager:
        await manager.ping()
        await manager.get_entity_types()  # connected, caches warm: the idle floor
        rss_start = _status_kb("VmRSS")
        began = time.perf_counter()
        records = 0
        if phase == "list":
            records = await _list(manager)
        elif phase == "export":
            with path.open("wb") as out:
                async for line in manager.export_namespace():
                    out.write(line)
                    records += 1
            records -= 2  # manifest and trailer
        elif phase == "import":

            async def chunks() -> Any:
                with path.open("rb") as f:
                    while chunk := f.read(256 * 1024):
                        yield chunk

            result = await manager.for_namespace(RESTORED).import_namespace(chunks())
            records = sum(result.counts.values())
        seconds = time.perf_counter() - began
    # The kernel raises VmHWM lazily (not on every page fault), so it can read below a
    # VmRSS read earlier: the peak is at least what was seen.
    peak = max(_status_kb("VmHWM"), rss_start)
    return {
        "phase": phase,
        "records": records,
        "seconds": seconds,
        "records_per_second": records / seconds if seconds and records else None,
        "rss_start_kb": rss_start,
        "peak_rss_kb": peak,
    }


async def _list(view: Any) -> int:
    n = 0
    for entity_type in await view.get_entity_types():
        cursor = None
        while True:
            page = await view.list_entities(entity_type, limit=500, cursor=cursor)
            n += len(page.items)
            if (cursor := page.next_cursor) is None:
                break
    cursor = None
    while True:
        convs = await view.list_conversations(limit=500, cursor=cursor)
        for info in convs.items:
            n += 1 + len(await view.load_messages(info.conversation_id))
        if (cursor := convs.next_cursor) is None:
            break
    for query in (view.query_tool_usage, view.query_learning_feedback):
        cursor = None
        while True:
            page = await query(limit=500, cursor=cursor)
            n += len(page.items)
            if (cursor := page.next_cursor) is None:
                break
    return n


def run_phase(phase: str, spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """One phase in a fresh process: its JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.export", "--phase", phase, "--spec", json.dumps(spec),
         "--file", str(path)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "MEMSTORE_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{phase}: {done.stderr.strip()[-2000:]}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def run_backend(procs: Procs, backend: str, items: int) -> dict[str, Any]:
    if backend == "redis":
        port = procs.redis("export-redis")
        spec: dict[str, Any] = {
            "memory_type": "redis",
            "redis_host": "127.0.0.1",
            "redis_port": port,
        }
    else:
        path = procs.workdir / "embedded" / "memstore.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = {"memory_type": "embedded", "data_path": str(path)}
    began = time.perf_counter()
    counts = asyncio.run(seed(spec, items))
    print(
        f"export/{backend}: seeded {counts} in {time.perf_counter() - began:.0f} s", file=sys.stderr
    )
    dump = procs.workdir / f"{backend}.jsonl"
    phases = {}
    for phase in PHASES:
        phases[phase] = run_phase(phase, spec, dump)
        print(f"export/{backend}/{phase}: {phases[phase]}", file=sys.stderr)
    return {
        "backend": backend,
        "items": sum(counts.values()),
        "counts": counts,
        "dump_bytes": dump.stat().st_size,
        "phases": phases,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        "Export / import of one namespace (in-process manager, each phase a fresh process):",
        "",
        "| backend | records | dump MB | phase | seconds | records/s | RSS at start MB "
        "| peak RSS MB |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        for phase in PHASES:
            p = r["phases"][phase]
            rate = f"{p['records_per_second']:,.0f}" if p["records_per_second"] else ""
            lines.append(
                f"| {r['backend']} | {r['items']:,} | {r['dump_bytes'] / 1e6:.1f} | {phase} "
                f"| {p['seconds']:.1f} | {rate} | {p['rss_start_kb'] / 1024:.0f} "
                f"| {p['peak_rss_kb'] / 1024:.0f} |"
            )
    return "\n".join(lines)


def bench(items: int, backends: list[str]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        procs = Procs(Path(tmp))
        try:
            return [run_backend(procs, b, items) for b in backends]
        finally:
            procs.stop_all()


#: ``report["export"]`` of ``python -m bench`` as Markdown (bench/sections.py).
SECTIONS = (Section("export", "Export and import", value_only(markdown), order=80),)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    p.add_argument("--items", type=int, default=int(os.environ.get("BENCH_EXPORT_ITEMS", "100000")))
    p.add_argument("--backends", default="embedded,redis")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase is not None:
        row = asyncio.run(_phase(args.phase, json.loads(args.spec), args.file))
        print(json.dumps(row))
        return 0
    rows = bench(args.items, args.backends.split(","))
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
