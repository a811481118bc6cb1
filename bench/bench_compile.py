"""How fast NetPath compiles, next to baselines measured in the same run on the same machine.

    python bench/bench_compile.py [--rounds N] [--fleet 200] [--quick]

1. warm in-process build (load -> validate -> resolve -> render -> manifest) of
   examples/all_modes.uci, against `python -c pass` run by a plain venv of the same
   interpreter (no site-packages of NetPath's): interleaved, one of each per round.
2. warm builds of 1,000 and 5,000 generated user rules (bench/rulegen.py): ms and ms per
   rule, to show it is linear.
3. the kernel check: one `unshare` + `nft -f -` per bundle, and one for many bundles.
4. a fleet: 200 small router configs (the examples, copied) by one `netpath compile
   CONFIGDIR -o OUTDIR`, against 200 separate `netpath compile CONFIG -o DIR` processes;
   both with the kernel check, as a user runs them.

Prints figures and ratios (median, and min in parentheses); asserts nothing. The machine
is shared: compare the ratios, and re-run (e.g. under `nice`) before trusting absolutes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from rulegen import many_rules_config  # noqa: E402

TIMEOUT = 600
SMALL = ["seed.uci", "dual_wan_failover.uci", "three_wan_balanced.uci", "lte_backup.uci", "dual_stack.uci"]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _run(argv: list) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=TIMEOUT)


def plain_venv(directory: Path) -> Path:
    """A venv of this interpreter with nothing installed: Python's own start-up."""
    base = Path(getattr(sys, "_base_executable", sys.executable))
    _run([str(base), "-m", "venv", "--without-pip", str(directory)])
    return directory / "bin" / "python"


def fmt(times: list) -> str:
    return f"{statistics.median(times) * 1000:8.1f} ms ({min(times) * 1000:.1f})"


def bench_warm(rounds: int, python: Path, configs: dict) -> None:
    from netpath.compiler import pipeline

    for path in configs.values():  # first builds pay for imports and the template cache
        pipeline.build(str(path), map_devices=False)
    samples = {name: [] for name in configs}
    startup = []
    for _ in range(rounds):
        startup.append(_timed(lambda: _run([str(python), "-c", "pass"])))
        for name, path in configs.items():
            samples[name].append(_timed(lambda: pipeline.build(str(path), map_devices=False)))
    med = statistics.median
    print(f"warm in-process builds, {rounds} rounds interleaved with the baseline, median (min):")
    print(f"  {'python -c pass (plain venv, baseline)':44s} {fmt(startup)}")
    for name, times in samples.items():
        print(f"  {name:44s} {fmt(times)}   {med(times) / med(startup):5.2f} x baseline")
    for name in configs:
        if name.endswith("rules"):
            count = int(name.split()[0].replace(",", ""))
            print(f"  per rule, {name:34s} {med(samples[name]) / count * 1e6:8.1f} us")


def bench_check(rounds: int, fleet_files: list) -> None:
    from netpath.compiler import check, pipeline

    one = pipeline.build(str(ROOT / "examples" / "all_modes.uci"), map_devices=False)
    single = [_timed(lambda: check.check_files(one.files)) for _ in range(rounds)]
    many = [_timed(lambda: check.check_many(fleet_files)) for _ in range(max(3, rounds // 5))]
    print("kernel check (unshare + one nft -f - per namespace):")
    print(f"  {'all_modes.uci (' + str(len(one.files) - 1) + ' files)':44s} {fmt(single)}")
    print(f"  {str(len(fleet_files)) + ' small bundles in one namespace':44s} {fmt(many)}")


def bench_fleet(count: int, rounds: int, workdir: Path) -> None:
    configs = workdir / "fleet"
    configs.mkdir()
    for i in range(count):
        name = SMALL[i % len(SMALL)]
        shutil.copy(ROOT / "examples" / name, configs / f"router{i:03d}.uci")
    netpath = [sys.executable, "-m", "netpath.compiler.cli", "compile"]
    one_process, separate = [], []
    for r in range(rounds):
        out = workdir / f"one{r}"
        one_process.append(_timed(lambda: _run(netpath + [str(configs), "-o", str(out)])))
        out = workdir / f"sep{r}"

        def each():
            for path in sorted(configs.iterdir()):
                _run(netpath + [str(path), "-o", str(out / path.stem)])
        separate.append(_timed(each))
    med = statistics.median
    print(f"fleet: {count} small router configs with the kernel check, {rounds} rounds interleaved:")
    print(f"  {'one netpath compile CONFIGDIR -o OUTDIR':44s} {fmt(one_process)}")
    print(f"  {str(count) + ' netpath compile processes (baseline)':44s} {fmt(separate)}")
    print(f"  one process / separate processes            {med(one_process) / med(separate):6.3f} x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--fleet", type=int, default=200)
    parser.add_argument("--fleet-rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the fleet (slowest part)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netpath-bench-") as tmp:
        work = Path(tmp)
        python = plain_venv(work / "venv")
        configs = {"examples/all_modes.uci": ROOT / "examples" / "all_modes.uci"}
        for count in (1000, 5000):
            path = work / f"rules{count}.uci"
            path.write_text(many_rules_config(count))
            configs[f"{count:,} rules"] = path
        bench_warm(args.rounds, python, configs)

        from netpath.compiler import pipeline

        small = [pipeline.build(str(ROOT / "examples" / SMALL[i % len(SMALL)]), map_devices=False)
                 for i in range(args.fleet)]
        bench_check(args.rounds, [(b.files, b.model.table) for b in small])
        if not args.quick:
            bench_fleet(args.fleet, args.fleet_rounds, work)
    print("(2-core VM shared with other work: ratios are from the same run; absolutes vary with load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
