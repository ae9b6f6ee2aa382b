"""README.md's Performance section is what ``python -m bench --readme`` renders.

``tests/bench/data/results.json`` is the results file of a real ``python -m bench`` run
(one round of 1 s per side) that selected one row of every part of a run: a baseline row,
a comparison row, the workers row, the shared-cache row, a peer row, a search row, the
embeddings, export, at-rest and Redis extras (the command is in ``data/README.md``). Every
key of it must be rendered; the README is rewritten through the real command line, on a
copy, and must keep every byte outside the generated section.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from bench import sections, workers
from bench.run import markdown

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
RESULTS = DATA / "results.json"


def report() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RESULTS.read_text())
    return loaded


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_every_part_of_a_results_file_has_its_table() -> None:
    r = report()
    measured = [k for k in r if k not in sections.META and r[k]]
    # the fixture has every part a run writes today
    assert {
        "scenarios",
        "peers",
        "search",
        "embeddings",
        "export",
        "atrest",
        "redis_benchmark",
        "redis_memory",
    } <= set(measured)
    parts = list(sections.parts(r))
    assert all(section is not None for section, _, _ in parts), [h for s, h, _ in parts if not s]
    assert {section.key for section, _, _ in parts if section} == set(measured)
    headings = [heading for _, heading, _ in parts]
    assert headings == [
        "Against the bare baselines",
        "Comparisons: the same service, one thing changed",
        "Workers: `serve --workers 2` ÷ one worker",
        "Shared second-level cache",
        "Peers: memstore ÷ what users would pick instead",
        "Search scale",
        "Embeddings",
        "Export and import",
        "Compression and encryption at rest",
        "redis-benchmark on the same machine",
        "Redis memory per entity",
    ]
    text = markdown(r)
    for row in r["scenarios"]:
        assert f"{row['title']} |" in text, row["key"]
    # the workers row is in the workers table only, not among the comparisons
    workers_row = next(row for row in r["scenarios"] if workers.is_workers_row(row))
    assert text.count(workers_row["title"]) == 1
    for row in r["peers"]:
        assert f"| {row['title']} | {row['op']} | {row['concurrency']} |" in text


def test_a_key_without_a_renderer_is_shown_not_dropped() -> None:
    r = report() | {"nosuchbench": [{"x": 1}]}
    last = list(sections.parts(r))[-1]
    assert last[0] is None
    assert "nosuchbench" in markdown(r)


def test_a_module_with_only_markdown_is_rendered_by_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # the convention without SECTIONS: ``report["fakepart"]`` -> ``bench.fakepart.markdown``
    module = types.ModuleType("bench.fakepart")
    module.markdown = lambda rows: ["| part |", "|---|", *(f"| {r} |" for r in rows)]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.fakepart", module)
    ((section, heading, text),) = list(sections.parts({"fakepart": ["a", "b"]}))
    assert section is not None and heading == "fakepart"
    assert text == "| part |\n|---|\n| a |\n| b |"


def test_readme_rewrite_keeps_the_rest_and_is_idempotent(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", readme)
    original = readme.read_text()
    done = bench("--readme", str(RESULTS), "--readme-path", str(readme))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Performance section rewritten" in done.stderr
    after = readme.read_text()
    expected = sections.performance_section(report())
    assert sections.current_section(after) == expected
    # byte for byte outside the markers, the first lines included
    head, _, _ = original.partition(sections.BEGIN)
    _, _, tail = original.partition(sections.END)
    assert after.startswith(head + sections.BEGIN + "\n" + expected + "\n\n" + sections.END)
    assert after.endswith(sections.END + tail)
    # every table row renders inside a table (a blank line or a marker would cut it off)
    tables: set[int] = set()
    for token in MarkdownIt("commonmark").enable("table").parse(after):
        if token.type == "table_open" and token.map is not None:
            tables.update(range(*token.map))
    start = after.index(sections.BEGIN)
    first = after[:start].count("\n")
    rows = [i for i, line in enumerate(after.splitlines()) if i > first and line.startswith("|")]
    assert rows and set(rows) <= tables
    # the section is the one the report command prints
    printed = bench("--report", str(RESULTS))
    assert printed.stdout.rstrip("\n") == expected
    again = bench("--readme", str(RESULTS), "--readme-path", str(readme))
    assert again.returncode == 0 and "already up to date" in again.stderr
    assert readme.read_text() == after


def test_the_generated_section_sits_in_performance_and_holds_no_code_block() -> None:
    text = (REPO / "README.md").read_text()
    assert text.count(sections.BEGIN) == 1 and text.count(sections.END) == 1
    performance = text.split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    assert sections.BEGIN in performance and sections.END in performance
    generated = sections.current_section(text)
    assert generated.startswith("Latest run")
    assert "```" not in generated
    assert "```" not in sections.performance_section(report())


def test_readme_defaults_to_the_newest_whole_run(tmp_path: Path) -> None:
    whole = report() | {"settings": report()["settings"] | {"only": None}}
    partial = report()  # a run with --only, newer
    (tmp_path / "20261201T000000Z.json").write_text(json.dumps(whole))
    (tmp_path / "20261202T000000Z.json").write_text(json.dumps(partial))
    (tmp_path / "peers-20261203T000000Z.json").write_text("{}")  # another bench's file
    assert sections.latest_full_run(tmp_path).name == "20261201T000000Z.json"
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n\n{sections.BEGIN}\nold\n{sections.END}\n")
    done = bench("--readme", "--out", str(tmp_path), "--readme-path", str(readme))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "20261201T000000Z.json" in done.stderr
    assert sections.current_section(readme.read_text()) == sections.performance_section(whole)
    with pytest.raises(FileNotFoundError):
        sections.latest_full_run(tmp_path / "empty")


def test_markers_are_required() -> None:
    with pytest.raises(ValueError, match="expected one"):
        sections.replace_section("# x\n\n## Performance\n\ntables\n", "new")


def test_cpu_bound_of_the_workers_ratio() -> None:
    # one worker: 70 µs service, 10 wrk, 0 store; two: 80 µs each (contention)
    row = {
        "reference": {"cpu_us_per_req": 70.0, "loadgen_cpu_us_per_req": 10.0},
        "measured": {"cpu_us_per_req": 80.0, "loadgen_cpu_us_per_req": 10.0},
    }
    # one worker is bound by its one core (1/70); two by the machine's 2 cores (2/90)
    assert workers.cpu_bound(row, cores=2) == pytest.approx((2 / 90) / (1 / 70))
    # with 8 cores two workers are bound by their own two cores: 2/80 against 1/70
    assert workers.cpu_bound(row, cores=8) == pytest.approx((2 / 80) / (1 / 70))


def test_workers_row_quick(tmp_path: Path) -> None:
    """The workers row of ``make bench``, one round of 1 s per side (four, as a comparison
    row): 2 workers against 1 on a real Redis, with wrk's CPU per request; a partial run
    leaves the README alone."""
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{sections.BEGIN}\nold\n{sections.END}\n")
    done = bench(
        *("--only", "^redis/workers-get-hit$", "--seconds", "1", "--rounds", "1"),
        *("--warmup", "0", "--no-extras", "--out", str(tmp_path)),
        *("--update-readme", "--readme-path", str(readme)),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not rewritten: a partial run" in done.stderr
    assert readme.read_text().endswith("\nold\n" + sections.END + "\n")
    (file,) = tmp_path.glob("2*.json")
    (row,) = json.loads(file.read_text())["scenarios"]
    assert row["key"] == "workers-get-hit" and row["kind"] == "cost"
    assert (row["reference"]["target"], row["measured"]["target"]) == ("svc", "svc_w2")
    for side in (row["reference"], row["measured"]):
        assert side["errors"] == 0
        assert len(side["rounds"]) == 4
        assert side["cpu_us_per_req"] > 0 and side["loadgen_cpu_us_per_req"] > 0
        assert workers.busy_cores(side) > 0
    assert row["target_ratio"] == 1.7 and isinstance(row["meets_target"], bool)
    table = re.search(r"^\| workers 2 ÷ 1 \|.*?(?=\n\n|\Z)", done.stdout, re.M | re.S)
    assert table is not None, done.stdout
    assert "| redis: --workers 2 / 1 (GET, cache hit) |" in table.group(0)
