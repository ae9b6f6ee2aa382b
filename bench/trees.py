"""Two checkouts' services side by side in one run: what a change costs.

``python -m bench.trees --tree ../old --only '^mongodb/(put|append)$'`` runs the selected
service scenarios of ``make bench`` with the reference side being the service of the
other checkout (``--tree``: its ``service/`` directory goes first on ``PYTHONPATH``, so it
runs with this checkout's environment, which must hold its dependencies) and the
measured side this checkout's, on the same backend server and the same seeded data,
alternating for four times ``--rounds`` rounds as the cost rows do. The ratio is this
tree's throughput / the other's; the CPU ratio is the other's CPU per request / this
tree's (below 1: this tree costs more).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import run as bench
from bench.run import Group, Run, Scenario, Side

OTHER = "svc_tree"


class TreesRun(Run):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.tree = Path(args.tree).resolve()

    def variant_env(self, key: str) -> dict[str, str]:
        if key == OTHER:
            return {"PYTHONPATH": str(self.tree / "service")}
        return super().variant_env(key)


def side_by_side(group: Group) -> Group:
    """The group's scenarios whose measured side is the plain service, with the other
    tree's service as the reference."""
    scenarios = [
        Scenario(
            sc.key,
            f"{sc.title}: this tree / --tree",
            Side(OTHER, sc.meas.load),
            sc.meas,
            None,
            kind="cost",
        )
        for sc in group.scenarios
        if sc.meas.target == "svc" and sc.ref.target == "base"
    ]
    group.scenarios = scenarios
    return group


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.trees", description=__doc__)
    p.add_argument("--tree", required=True, help="the other checkout (the reference side)")
    p.add_argument("--only", help="regex on group/scenario keys, e.g. '^mongodb/put$'")
    p.add_argument("--seconds", type=int, default=1)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args(argv)
    args.half_max = False
    run = TreesRun(args)
    try:
        for group in bench.groups():
            run.run_group(side_by_side(group))
    finally:
        run.procs.stop_all()
    report = {"scenarios": run.results, "skipped": run.skipped, "failed": run.failed}
    print(json.dumps(report, indent=2))
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
