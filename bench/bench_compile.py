"""How long `netpath compile --no-check` takes for the largest example, next to the cost
of starting Python at all, measured in the same run on the same machine.

    python bench/bench_compile.py [--runs N] [CONFIG]

Prints figures and ratios; asserts nothing. The kernel check is left out on purpose: it
is the time of `unshare` + `nft`, not of NetPath.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def largest_example() -> Path:
    configs = [p for p in (ROOT / "examples").iterdir() if p.suffix in (".uci", ".toml", ".yaml")]
    return max(configs, key=lambda p: p.stat().st_size)


def time_subprocess(argv: list, runs: int) -> list:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=TIMEOUT)
        times.append(time.perf_counter() - start)
    return times


def time_in_process(config: Path, out: Path, runs: int) -> tuple:
    """(first call with imports, later calls). Each call writes into a fresh directory,
    so every run does the full job, including the atomic write."""
    from netpath.compiler import cli  # imported here: the first call pays for jinja2 & co

    times = []
    for i in range(runs + 1):
        target = out / f"run{i}"
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = cli.main(["compile", str(config), "-o", str(target), "--no-check"])
        times.append(time.perf_counter() - start)
        if status != 0:
            raise SystemExit(f"compile failed with status {status}")
    return times[0], times[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    config = args.config or largest_example()

    with tempfile.TemporaryDirectory(prefix="netpath-bench-") as tmp:
        out = Path(tmp)
        first, warm = time_in_process(config, out, args.runs)
        files = sum(1 for p in (out / "run0").rglob("*") if p.is_file())
        python = time_subprocess([sys.executable, "-c", "pass"], args.runs)
        python_s = time_subprocess([sys.executable, "-S", "-c", "pass"], args.runs)
        compile_cli = time_subprocess([sys.executable, "-m", "netpath.compiler.cli", "compile", str(config),
                                       "-o", str(out / "sub"), "--no-check"], args.runs)

    med = statistics.median
    print(f"config: {config.relative_to(ROOT) if config.is_relative_to(ROOT) else config} "
          f"({files} files in the bundle), {args.runs} runs each, median (min)")
    rows = [
        ("python -c pass", python),
        ("python -S -c pass", python_s),
        ("netpath compile --no-check (subprocess)", compile_cli),
        ("in-process compile, warm", warm),
    ]
    for label, times in rows:
        print(f"  {label:42s} {med(times) * 1000:8.1f} ms  ({min(times) * 1000:.1f} ms)")
    print(f"  {'in-process compile, first call (imports)':42s} {first * 1000:8.1f} ms")
    print("ratios (median):")
    print(f"  subprocess compile / python start-up   {med(compile_cli) / med(python):6.1f} x")
    print(f"  subprocess compile - python start-up   {(med(compile_cli) - med(python)) * 1000:6.1f} ms")
    print(f"  warm in-process / python start-up      {med(warm) / med(python):6.2f} x")
    print(f"  per bundle file, warm in-process       {med(warm) / files * 1000:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
