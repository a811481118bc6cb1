"""What the largest bundle the limits allow costs to compile, next to a small one.

    python bench/bench_limits.py [--rounds N]

The config at the limits (compiler/validate.py, docs/config.md "Limits"): 10 interfaces,
4 policies of 10 members each (4 x 2^10 = 4,096 state files, the budget) and 1,000 rules.
Each round runs, interleaved, `netpath compile` of examples/all_modes.uci (the baseline)
and of that config, both with the kernel check and both into fresh directories, plus the
refusal of the issue's 16 policies x 10 members (16,384 state files; refused before any
rendering). Prints medians (min in parentheses) and ratios; asserts nothing. The machine
may be shared: compare the ratios, re-run before trusting absolutes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETPATH = [sys.executable, "-m", "netpath.compiler.cli"]
TIMEOUT = 600


def tree_at_the_limits(policies: int = 4, members: int = 10, rules: int = 1000) -> dict:
    tree = {"globals": {}, "interfaces": {}, "members": {}, "policies": {}, "rules": []}
    for i in range(members):
        tree["interfaces"][f"wan{i}"] = {"ifname": f"eth{i}",
                                         "track": {"method": "ping", "targets": [f"192.0.2.{i + 1}"]}}
        tree["members"][f"m{i}"] = {"interface": f"wan{i}", "metric": 1 + i % 2, "weight": 1 + i}
    for j in range(policies):
        tree["policies"][f"p{j}"] = {"members": [f"m{i}" for i in range(members)]}
    for k in range(rules):
        tree["rules"].append({"name": f"r{k}", "policy": f"p{k % policies}", "proto": "tcp",
                              "family": "ipv4", "dest_port": str(1 + k),
                              "dest_ip": [f"10.{k // 256}.{k % 256}.0/24"]})
    return tree


def timed_compile(config: Path, out: Path, expect: int) -> float:
    start = time.perf_counter()
    proc = subprocess.run(NETPATH + ["compile", str(config), "-o", str(out)], capture_output=True,
                          text=True, timeout=TIMEOUT)
    elapsed = time.perf_counter() - start
    if proc.returncode != expect:
        raise SystemExit(f"{config}: exit {proc.returncode}, expected {expect}: {proc.stderr[-500:]}")
    return elapsed


def fmt(times: list) -> str:
    return f"{statistics.median(times):7.2f} s ({min(times):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from netpath.compiler import emit

    with tempfile.TemporaryDirectory(prefix="netpath-bench-limits-") as tmp:
        work = Path(tmp)
        limits = work / "limits.uci"
        limits.write_text(emit.render(tree_at_the_limits(), "uci"))
        over = work / "over.uci"
        over.write_text(emit.render(tree_at_the_limits(policies=16, rules=10), "uci"))
        baseline = ROOT / "examples" / "all_modes.uci"
        times: dict = {"baseline": [], "limits": [], "over": []}
        for r in range(args.rounds):
            times["baseline"].append(timed_compile(baseline, work / f"b{r}", 0))
            times["limits"].append(timed_compile(limits, work / f"l{r}", 0))
            times["over"].append(timed_compile(over, work / f"o{r}", 2))
        files = sum(1 for p in (work / "l0").rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in (work / "l0").rglob("*") if p.is_file())
    base = statistics.median(times["baseline"])
    print(f"netpath compile with the kernel check, {args.rounds} rounds interleaved (median, min):")
    print(f"  examples/all_modes.uci (baseline)        {fmt(times['baseline'])}")
    print(f"  at the limits: 4,096 states, 1,000 rules {fmt(times['limits'])}  "
          f"x{statistics.median(times['limits']) / base:.1f} the baseline; {files} files, "
          f"{size / 2 ** 20:.1f} MiB")
    print(f"  16 policies x 10 members (refused)       {fmt(times['over'])}  "
          f"x{statistics.median(times['over']) / base:.1f} the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
