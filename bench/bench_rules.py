"""What user rules cost the data plane, measured in a 2-WAN lab of network namespaces (root).

    .venv/bin/python bench/bench_rules.py [--rules 1000] [--reps 5] [--seconds 5]

1. new TCP connections per second from the LAN client through the router to the
   internet's server (bench/connload.c, built here with gcc: 64 connections in flight, each
   completed and reset), with NetPath holding the default rule alone, and with `--rules`
   generated user rules before it (bench/rulegen.py: destination prefixes, ports,
   protocols, source interfaces and addresses, both families; none matches the benchmark's
   traffic, so every new flow passes all of them). Conntrack is flushed before each run.
2. forwarding throughput of established flows (iperf3, 4 streams, client -> internet) with
   NetPath (the many-rules bundle) and with the same router without NetPath.

The router always runs a one-line stateful firewall (`ct state established,related accept`
in a forward chain, as fw4 does on every OpenWrt router), so conntrack runs in both
variants and the figures are what NetPath adds to a router, not what conntrack costs.

The variants alternate within each repetition; prints each run, the medians and the ratios.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from lab import netlab  # noqa: E402
from rulegen import BENCH_PORT, default_only_config, many_rules_config  # noqa: E402

NETPATH = str(Path(sys.executable).parent / "netpath")
SERVER = netlab.HTTP4  # 203.0.113.10 in the internet namespace
IPERF_PORT = 5201
FIREWALL = """table inet bench_fw {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
	}
}
"""


def build_load_client(workdir: Path) -> Path:
    binary = workdir / "connload"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(REPO / "bench" / "connload.c")], check=True,
                   capture_output=True, timeout=120)
    return binary


def compile_bundle(workdir: Path, name: str, text: str) -> Path:
    config = workdir / f"{name}.uci"
    config.write_text(text)
    out = workdir / name
    subprocess.run([NETPATH, "compile", str(config), "-o", str(out)], check=True, capture_output=True,
                   timeout=600)
    return out


def use(lab, bundle: "Path | None") -> None:
    """NetPath with `bundle` on the router, or no NetPath at all (None)."""
    if bundle is None:
        lab.run("router", [NETPATH, "apply", "--remove"], timeout=120)
    else:
        lab.run("router", [NETPATH, "apply", str(bundle)], timeout=120)


def decided(lab) -> int:
    """New flows the default rule decided so far (its named counter)."""
    out = lab.run("router", ["nft", "-j", "list", "counter", "inet", "netpath", "rule_default_rule"]).stdout
    return next(o["counter"]["packets"] for o in json.loads(out)["nftables"] if "counter" in o)


def connection_rate(lab, client: Path, concurrency: int, seconds: float) -> tuple:
    """(connections per second, share of them that walked to the default rule)."""
    lab.run("router", ["conntrack", "-F"], check=False)
    before = decided(lab)
    out = lab.run("client", [client, "client", SERVER, BENCH_PORT, concurrency, seconds],
                  timeout=seconds + 60).stdout.split()
    done, elapsed, failed = int(out[0]), float(out[1]), int(out[2])
    if failed:
        print(f"    ({failed} connections failed)")
    return done / elapsed, (decided(lab) - before) / max(done, 1)


def throughput(lab, seconds: float) -> float:
    out = lab.run("client", ["iperf3", "-c", SERVER, "-p", IPERF_PORT, "-P", 4, "-t", seconds, "-J"],
                  timeout=seconds + 60).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def median_ratio(a: list, b: list) -> float:
    return statistics.median(a) / statistics.median(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="netpath-bench-rules-") as tmp, netlab.Lab(wans=2) as lab:
        work = Path(tmp)
        client = build_load_client(work)
        bundles = {"default rule alone": compile_bundle(work, "default", default_only_config()),
                   f"{args.rules} rules + default": compile_bundle(work, "many", many_rules_config(args.rules))}
        lab.nft("router", FIREWALL)
        lab.popen("net", [client, "server", SERVER, BENCH_PORT], stdout=subprocess.DEVNULL)
        lab.popen("net", ["iperf3", "-s", "-B", SERVER, "-p", IPERF_PORT], stdout=subprocess.DEVNULL)
        time.sleep(0.5)

        print(f"new connections per second, {args.concurrency} in flight, {args.seconds:g} s runs, "
              f"{args.reps} repetitions interleaved:")
        rates: dict = {name: [] for name in bundles}
        for rep in range(args.reps):
            order = list(bundles.items()) if rep % 2 == 0 else list(bundles.items())[::-1]
            for name, bundle in order:
                use(lab, bundle)
                rate, walked = connection_rate(lab, client, args.concurrency, args.seconds)
                rates[name].append(rate)
                print(f"  rep {rep + 1} {name:24s} {rate:10.0f} /s   ({walked:.0%} reached default_rule)")
        for name, values in rates.items():
            print(f"  median {name:22s} {statistics.median(values):10.0f} /s  (min {min(values):.0f}, "
                  f"max {max(values):.0f})")
        many, alone = list(rates.values())[1], list(rates.values())[0]
        print(f"  ratio {args.rules} rules / default alone: {median_ratio(many, alone):.3f} "
              f"(per-repetition: {', '.join(f'{m / a:.2f}' for m, a in zip(many, alone))})")

        print(f"forwarding throughput, iperf3 -P 4, {args.seconds:g} s runs, {args.reps} repetitions interleaved:")
        variants = {"with NetPath": bundles[f"{args.rules} rules + default"], "without NetPath": None}
        speeds: dict = {name: [] for name in variants}
        for rep in range(args.reps):
            order = list(variants.items()) if rep % 2 == 0 else list(variants.items())[::-1]
            for name, bundle in order:
                use(lab, bundle)
                speed = throughput(lab, args.seconds)
                speeds[name].append(speed)
                print(f"  rep {rep + 1} {name:24s} {speed / 1e9:8.2f} Gbit/s")
        with_np, without = speeds["with NetPath"], speeds["without NetPath"]
        print(f"  ratio with / without NetPath: {median_ratio(with_np, without):.3f} (median "
              f"{statistics.median(with_np) / 1e9:.2f} vs {statistics.median(without) / 1e9:.2f} Gbit/s)")
        use(lab, None)
    print("(2-core VM shared with other work: compare the ratios; variants alternate within each repetition)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
