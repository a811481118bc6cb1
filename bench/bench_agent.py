"""Figures for netpath-agent (printed, nothing asserted). Needs root; builds its own namespaces.

    /work/venv/bin/python bench/bench_agent.py [--swaps 1000] [--seconds 60] [--failovers 3]

1. decision-to-kernel: a health change -> the policies' variants committed, through the same
   code the agent runs (masks_for, swap.transaction, swap.load), with libnftables in-process
   and with `nft -f -`; p50/p99 over alternating alive-sets, in a throw-away namespace.
2. failover end to end in the lab (upstream blackhole, interval 1, timeout 1,
   failure_interval 1, down 3): kernel state change and first connection via the other WAN,
   against the bound interval + down x timeout + (down - 1) x failure_interval.
3. footprint: RSS and CPU of an agent tracking 4 WANs x 2 targets every second (three IPv4
   uplinks and one IPv6 uplink of a 3-WAN lab).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from lab import netlab  # noqa: E402
from lab.agentlab import RunningAgent, agent_config, compile_bundle, uplink  # noqa: E402

SWAP_CHILD = textwrap.dedent("""
    import itertools, json, statistics, sys, time
    from netpath.agent import bundle as bundle_mod, swap
    from netpath.agent.apply import apply, masks_for
    from netpath.agent.nft import Nft
    import asyncio

    b = bundle_mod.read(sys.argv[1])
    rounds = int(sys.argv[2])
    names = [i.name for i in b.model.interfaces]
    alive_sets = [set(c) for n in range(len(names) + 1) for c in itertools.combinations(names, n)]
    out = {}
    for library in (True, False):
        nft = Nft(prefer_library=library)
        loaded = apply(b, alive=set(names), nft=nft).masks

        async def run():
            global loaded
            samples = []
            for i in range(rounds):
                decided = time.perf_counter()
                wanted = masks_for(b.model, alive_sets[i % len(alive_sets)])
                if wanted != loaded:
                    await swap.load(nft, swap.transaction(b, loaded, wanted))
                    samples.append(time.perf_counter() - decided)
                    loaded = wanted
            return samples

        samples = sorted(asyncio.run(run()))
        out[nft.backend] = {"n": len(samples), "p50_ms": 1000 * samples[len(samples) // 2],
                            "p99_ms": 1000 * samples[int(len(samples) * 0.99) - 1],
                            "max_ms": 1000 * samples[-1]}
    print(json.dumps(out))
""")


def bench_swaps(workdir: Path, rounds: int) -> None:
    bundle = compile_bundle(workdir, agent_config(wans=(1, 2, 3), mode="balanced", metrics={1: 1, 2: 1, 3: 1}),
                            "swaps")
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", SWAP_CHILD, str(bundle), str(rounds)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"swap bench failed: {proc.stderr}")
    print("decision-to-kernel (3 WANs, balanced policy, alternating alive-sets):")
    for backend, figures in json.loads(proc.stdout).items():
        print(f"  {backend:12s} n={figures['n']:5d}  p50 {figures['p50_ms']:.3f} ms  p99 {figures['p99_ms']:.3f} ms  "
              f"max {figures['max_ms']:.3f} ms")


def bench_failover(workdir: Path, repeats: int) -> None:
    bound = 1 + 3 * 1 + 2 * 1
    print(f"failover end to end (blackhole upstream of wan1; bound {bound} s + 0.5 s):")
    with netlab.Lab(wans=2) as lab:
        lab.start_servers()
        agent = RunningAgent(lab, compile_bundle(workdir, agent_config(), "failover"), workdir, name="failover")
        agent.start()
        try:
            for attempt in range(repeats):
                time.sleep(1.3 + 0.3 * attempt)  # fall at different points of the interval
                failed_at = time.time()
                lab.isp_blackhole(1)
                while uplink(lab, 0.3) != "wan2":
                    pass
                moved = time.time() - failed_at
                changed = max(h["time"] for h in agent.history() if h["interface"] == "wan1"
                              and h["to"] == "offline") - failed_at
                print(f"  run {attempt + 1}: kernel state changed {changed:.2f} s, new connections via wan2 "
                      f"by {moved:.2f} s after the failure")
                lab.isp_blackhole(1, on=False)
                agent.wait_state("wan1", "online", timeout=15)
        finally:
            agent.stop()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_footprint(workdir: Path, seconds: float) -> None:
    with netlab.Lab(wans=3) as lab:
        lab.start_servers()
        targets = {k: [netlab.HTTP4, netlab.isp_gateway4(k)] for k in (1, 2, 3)}
        text = agent_config(wans=(1, 2, 3), targets=targets, track={"interval": 1, "timeout": 1})
        text = text.replace("[members.m1]", textwrap.dedent(f"""\
            [interfaces.wan1v6]
            ifname = "wan1"
            family = "ipv6"
            gateway = "{netlab.isp_gateway6(1)}"
            [interfaces.wan1v6.track]
            method = "ping"
            targets = ["{netlab.HTTP6}", "{netlab.isp_gateway6(1)}"]
            interval = 1
            timeout = 1
            [members.m1v6]
            interface = "wan1v6"
            [members.m1]"""))
        agent = RunningAgent(lab, compile_bundle(workdir, text, "footprint"), workdir, name="footprint")
        agent.start()
        try:
            time.sleep(3)
            states = {i["name"]: i["state"] for i in agent.request("interfaces")["interfaces"]}
            cpu0, t0 = _cpu_seconds(agent.pid), time.monotonic()
            time.sleep(seconds)
            cpu = (_cpu_seconds(agent.pid) - cpu0) / (time.monotonic() - t0)
            rounds = sum(1 for _ in agent.request("interfaces")["interfaces"])
            print(f"footprint, {rounds} WANs x 2 targets every 1 s for {seconds:g} s ({states}):")
            print(f"  RSS {_rss_mib(agent.pid):.1f} MiB, CPU {100 * cpu:.2f} % of one core")
        finally:
            agent.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--swaps", type=int, default=1000)
    p.add_argument("--failovers", type=int, default=3)
    p.add_argument("--seconds", type=float, default=60)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="netpath-bench-") as tmp:
        workdir = Path(tmp)
        bench_swaps(workdir, args.swaps)
        bench_failover(workdir, args.failovers)
        bench_footprint(workdir, args.seconds)


if __name__ == "__main__":
    main()
