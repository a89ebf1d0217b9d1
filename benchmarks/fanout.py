"""The nightly fan-out, predicted from the shard planner's costs: a night on N runners takes as long as its
slowest shard. For each shipped suite's cuda profile and N = 1, 2, 4: the largest shard's share of the suite's
total expected cost (pixels x batch x steps x decoder width), i.e. the night's time relative to one runner.

    python benchmarks/fanout.py
"""

from __future__ import annotations

from pathlib import Path

from benchbench.suite import build_suite, expected_cost, load_yaml, shard_cells

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    print("| suite (cuda profile) | cells | N = 1 | N = 2 | N = 4 |")
    print("|---|---|---|---|---|")
    for path in sorted((ROOT / "suites").glob("*.yaml")):
        doc = load_yaml(path)
        # the cuda profile, built on this CPU machine: the device only picks the profile
        doc = {**doc, "profiles": {"cpu": (doc.get("profiles") or {}).get("cuda") or {}}}
        suite = build_suite(doc, device="cpu")
        total = sum(expected_cost(c.params) for c in suite.cells)
        shares = []
        for n in (1, 2, 4):
            worst = max(sum(expected_cost(c.params) for c in shard_cells(suite.cells, f"{k}/{n}"))
                        for k in range(1, n + 1))
            shares.append(worst / total)
        print(f"| {suite.name} | {len(suite.cells)} | " + " | ".join(f"{s:.2f}" for s in shares) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
