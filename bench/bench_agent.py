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
import statistics
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


def user_rules(n: int) -> str:
    """`n` rules before the catch-all, each its own /24 and port (so none merges with another)."""
    return "".join(f'[[rules]]\nname = "r{i}"\ndest_ip = ["10.{i // 250}.{i % 250}.0/24"]\nproto = "tcp"\n'
                   f'dest_port = "{1000 + i}"\npolicy = "p"\n' for i in range(n))


def bench_swaps(workdir: Path, rounds: int) -> None:
    """The same swaps with 1 rule and with 1,000 (999 the swap does not touch)."""
    print("decision-to-kernel (3 WANs, balanced policy, alternating alive-sets):")
    for extra in (0, 999):
        text = agent_config(wans=(1, 2, 3), mode="balanced", metrics={1: 1, 2: 1, 3: 1})
        head, catch_all = text.split("[[rules]]\n", 1)
        bundle = compile_bundle(workdir, head + user_rules(extra) + "[[rules]]\n" + catch_all, f"swaps{extra}")
        proc = subprocess.run(["unshare", "-n", sys.executable, "-c", SWAP_CHILD, str(bundle), str(rounds)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"swap bench failed: {proc.stderr}")
        for backend, figures in json.loads(proc.stdout).items():
            print(f"  {extra + 1:5d} rules, {backend:12s} n={figures['n']:5d}  p50 {figures['p50_ms']:.3f} ms  "
                  f"p99 {figures['p99_ms']:.3f} ms  max {figures['max_ms']:.3f} ms", flush=True)


# (interval = timeout = failure_interval = recovery_interval, down)
FAILOVER_SETTINGS = ((1.0, 3), (0.2, 2), (0.1, 2), (0.05, 3))


def fast_track(interval: float, down: int) -> dict:
    """Two targets, reliability 1 (one answering target is enough), every timing = interval."""
    return {"interval": interval, "timeout": interval, "failure_interval": interval,
            "recovery_interval": interval, "down": down, "up": 2, "reliability": 1}


def bound_of(interval: float, down: int) -> float:
    """interval + down x timeout + (down - 1) x failure_interval."""
    return interval + down * interval + (down - 1) * interval


def _went(agent, name: str, to: str, after: float, timeout: float) -> float:
    """The agent's time of `name`'s first change to `to` after `after` (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = [h["time"] for h in agent.history() if h["interface"] == name and h["to"] == to
                 and h["time"] > after]
        if times:
            return min(times)
        time.sleep(0.02)
    raise RuntimeError(f"{name} not {to} within {timeout} s; log:\n{agent.log()[-2000:]}")


def _figures(samples: list) -> str:
    return (f"min {min(samples):.3f} s, median {statistics.median(samples):.3f} s, "
            f"max {max(samples):.3f} s")


def failover_agent(lab, workdir: Path, interval: float, down: int, name: str) -> RunningAgent:
    targets = {k: [netlab.HTTP4, netlab.DNS4] for k in (1, 2)}
    bundle = compile_bundle(workdir, agent_config(track=fast_track(interval, down), targets=targets), name)
    agent = RunningAgent(lab, bundle, workdir, name=name).start()
    agent.wait_state("wan1", "online", timeout=20)
    agent.wait_state("wan2", "online", timeout=20)
    return agent


def bench_failover(workdir: Path, repeats: int) -> None:
    """Upstream blackhole beyond a live link (ISP 1 drops what it would forward): from the
    start of the command that loads the drop rule to the agent's state change (the swap follows within
    a millisecond, see above); and carrier loss (the ISP's end of the link goes down)."""
    print(f"failover, {repeats} runs each (blackhole upstream of wan1, 2 targets, reliability 1, "
          f"every timing = interval; bound = interval + down x timeout + (down-1) x failure_interval):")
    with netlab.Lab(wans=2) as lab:
        lab.start_servers()
        for interval, down in FAILOVER_SETTINGS:
            agent = failover_agent(lab, workdir, interval, down, f"failover-{interval:g}-{down}")
            samples, committed = [], []
            try:
                for attempt in range(repeats):
                    time.sleep(1 + interval * attempt / repeats)  # fall at different points of a round
                    failed_at = time.time()
                    lab.isp_blackhole(1)
                    loaded_at = time.time()  # the drop took effect between failed_at and now
                    went = _went(agent, "wan1", "offline", failed_at, 30)
                    samples.append(went - failed_at)
                    committed.append(went - loaded_at)
                    lab.isp_blackhole(1, on=False)
                    _went(agent, "wan1", "online", failed_at, 30)
                if interval == FAILOVER_SETTINGS[0][0]:
                    carrier = []
                    for attempt in range(repeats):
                        time.sleep(0.5)
                        lost_at = time.time()
                        lab.carrier(1, False)
                        carrier.append(_went(agent, "wan1", "offline", lost_at, 10) - lost_at)
                        lab.carrier(1, True)
                        _went(agent, "wan1", "online", lost_at, 30)
            finally:
                agent.stop()
            print(f"  interval/timeout {interval:g} s, down {down}: {_figures(samples)} "
                  f"(bound {bound_of(interval, down):.2f} s); from the end of the command: "
                  f"median {statistics.median(committed):.3f} s", flush=True)
        print(f"  carrier loss: {_figures(carrier)} (netlink, no probe needed)")


def bench_soak(workdir: Path, seconds: float) -> None:
    """False failovers of a healthy link carrying 1 % random loss (netem on ISP 1's side of
    wan1, both probes' replies and traffic), at the 0.1 s setting."""
    interval, down = 0.1, 2
    with netlab.Lab(wans=2) as lab:
        lab.start_servers()
        agent = failover_agent(lab, workdir, interval, down, "soak")
        try:
            lab.netem(1, loss_pct=1.0)
            started = time.time()
            time.sleep(seconds)
            wan1 = agent.interface("wan1")
            changes = [h for h in agent.history() if h["interface"] == "wan1" and h["time"] > started]
        finally:
            agent.stop()
    went_down = [h for h in changes if h["to"] == "offline"]
    print(f"soak: {seconds:g} s of wan1 with 1 % random loss, interval/timeout {interval:g} s, down {down}, "
          f"2 targets, reliability 1: {len(went_down)} false failovers, {len(changes)} state changes "
          f"({', '.join(h['from'] + '->' + h['to'] for h in changes[:10]) or 'none'}); "
          f"last window loss {wan1.get('loss_pct', '-')} %")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_mib(pid: int) -> tuple:
    """(RSS, PSS) in MiB from /proc/PID/smaps_rollup."""
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            found[key] = int(rest.split()[0]) / 1024
    return found["Rss"], found["Pss"]


BASELINE = "import asyncio; asyncio.run(asyncio.sleep(3600))"
EXTRA_UPLINKS = 12  # macvlan devices on the lab's WANs: 3 + 1 (IPv6) + 12 = 16 uplinks


def _interface(name: str, device: str, family: str, gateway: str, targets: list) -> str:
    return textwrap.dedent(f"""\
        [interfaces.{name}]
        ifname = "{device}"
        family = "{family}"
        gateway = "{gateway}"
        [interfaces.{name}.track]
        method = "ping"
        targets = {json.dumps(targets)}
        interval = 1
        timeout = 1
        """)


def footprint_config(lab, uplinks: int) -> str:
    """wan1..wan3 (IPv4) and wan1v6, plus macvlan uplinks mv4.. on the WANs' links (their own
    addresses and the same gateways) up to `uplinks`; 2 ping targets each, every 1 s."""
    sections = [_interface(f"wan{k}", f"wan{k}", "ipv4", netlab.isp_gateway4(k), [netlab.HTTP4, netlab.DNS4])
                for k in (1, 2, 3)]
    sections.append(_interface("wan1v6", "wan1", "ipv6", netlab.isp_gateway6(1), [netlab.HTTP6, netlab.DNS6]))
    extra = []
    for n in range(5, uplinks + 1):
        k = n % 3 + 1
        extra += [f"link add mv{n} link wan{k} type macvlan mode bridge", f"addr add 100.64.{k}.{n + 10}/24 dev mv{n}",
                  f"link set mv{n} up"]
        sections.append(_interface(f"mv{n}", f"mv{n}", "ipv4", netlab.isp_gateway4(k), [netlab.HTTP4, netlab.DNS4]))
    if extra:
        lab.run("router", ["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"])
        lab.run("router", ["ip", "-batch", "-"], input="\n".join(extra) + "\n")
    names = [f"wan{k}" for k in (1, 2, 3)] + ["wan1v6"] + [f"mv{n}" for n in range(5, uplinks + 1)]
    members, policies = [], []
    for i, name in enumerate(names):
        members.append(f'[members.m_{name}]\ninterface = "{name}"\nmetric = 1\n')
    for start in range(0, len(names), 4):  # at most 10 members per policy; 4 keeps compiles quick
        group = [f"m_{n}" for n in names[start:start + 4]]
        policies.append(f'[policies.p{start // 4}]\nmembers = {json.dumps(group)}\nmode = "balanced"\n')
    rule = '[[rules]]\nname = "everything"\ndest_ip = ["0.0.0.0/0"]\npolicy = "p0"\n'
    return '[global]\nnft_table = "netpath"\n' + "".join(sections + members + policies) + rule


def bench_footprint(workdir: Path, seconds: float) -> None:
    """Memory (RSS and PSS from smaps_rollup) and CPU of the agent against a bare
    `asyncio.run(asyncio.sleep(...))` by the same interpreter, started beside it, in the same run."""
    for uplinks in (4, 16):
        with netlab.Lab(wans=3) as lab:
            lab.start_servers()
            bundle = compile_bundle(workdir, footprint_config(lab, uplinks), f"footprint{uplinks}")
            baseline = lab.popen("router", [sys.executable, "-c", BASELINE])
            agent = RunningAgent(lab, bundle, workdir, name=f"footprint{uplinks}")
            agent.start()
            try:
                time.sleep(5)
                cpu0, t0 = _cpu_seconds(agent.pid), time.monotonic()
                samples = []
                for _ in range(max(1, int(seconds // 5))):
                    time.sleep(min(5.0, seconds))
                    samples.append((_memory_mib(agent.pid), _memory_mib(baseline.pid)))
                cpu = (_cpu_seconds(agent.pid) - cpu0) / (time.monotonic() - t0)
                states = [i["state"] for i in agent.request("interfaces")["interfaces"]]
            finally:
                agent.stop()
                baseline.kill()
                baseline.wait(5)
            (rss, pss), (base_rss, base_pss) = samples[-1]
            peak = max(a[0] - b[0] for a, b in samples)
            print(f"footprint, {len(states)} uplinks x 2 targets every 1 s for {seconds:g} s "
                  f"({states.count('online')} online):")
            print(f"  agent RSS {rss:.1f} MiB, PSS {pss:.1f} MiB; bare asyncio RSS {base_rss:.1f} MiB, "
                  f"PSS {base_pss:.1f} MiB; NetPath adds RSS {rss - base_rss:.1f} MiB (peak {peak:.1f}), "
                  f"PSS {pss - base_pss:.1f} MiB; CPU {100 * cpu:.2f} % of one core")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--swaps", type=int, default=1000)
    p.add_argument("--failovers", type=int, default=10, help="runs per failover setting")
    p.add_argument("--only", choices=("swaps", "failover", "footprint"), help="run one part only")
    p.add_argument("--soak", type=float, default=0, metavar="SECONDS",
                   help="only the false-failover soak (the issue asks for 600), nothing else")
    p.add_argument("--seconds", type=float, default=60)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="netpath-bench-") as tmp:
        workdir = Path(tmp)
        if args.soak:
            bench_soak(workdir, args.soak)
            return
        if args.only in (None, "swaps"):
            bench_swaps(workdir, args.swaps)
        if args.only in (None, "failover"):
            bench_failover(workdir, args.failovers)
        if args.only in (None, "footprint"):
            bench_footprint(workdir, args.seconds)


if __name__ == "__main__":
    main()
