"""Small-packet forwarding through the lab's router (printed, nothing asserted). Needs root;
builds its own namespaces.

    .venv/bin/python bench/bench_dataplane.py [--repeats 7] [--seconds 2]

The LAN client sends UDP datagrams of 18 bytes (64-byte Ethernet frames) on 4 established
flows as fast as one Python process can; ISP 1 counts (and drops) them as they arrive from the
router, before its own conntrack. Every flow leaves by wan1 in all three setups, interleaved
in each repetition:

- plain: the router's main table only (default route via wan1), with conntrack on and a
  forward chain like fw4's (`ct state established,related accept`), which every setup keeps;
- minimal: a hand-written mark + ip rule setup (restore the mark from conntrack, mark new
  LAN flows, `ip rule fwmark ... lookup`), the least a mark-based multi-WAN can do;
- netpath: `netpath apply` of a two-WAN failover bundle (everything to wan1).

Prints, per setup, packets per second and packets per CPU-second of the sender (the
forwarding runs in its softirq context and is charged to it, so this is the cost per packet
and other jobs on a shared machine stay out of it), and the medians of the per-run ratios
netpath / plain and minimal / plain (target: netpath / plain at least 0.9).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from lab import netlab  # noqa: E402
from lab.agentlab import NETPATH, agent_config, compile_bundle  # noqa: E402

PORT = 9  # discard
FLOWS = 4
PAYLOAD = 18  # + 8 UDP + 20 IPv4 + 14 Ethernet + 4 FCS = 64

SENDER = textwrap.dedent(f"""
    import socket, sys, time
    socks = []
    for i in range({FLOWS}):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("{netlab.HTTP4}", {PORT}))
        socks.append(s.send)
    payload = bytes({PAYLOAD})
    for send in socks:
        send(payload)  # the flows exist (and are decided) before the clock starts
    time.sleep(0.2)
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()
    a, b, c, d = socks
    import os
    cpu = sum(os.times()[:2])
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        for _ in range(250):
            try:
                a(payload); b(payload); c(payload); d(payload)
            except OSError:
                pass
    print(sum(os.times()[:2]) - cpu)
""")

FW4_LIKE = """
table inet benchfw {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
    }
}
"""

COUNTER = f"""
table inet benchcount {{
    chain prerouting {{
        type filter hook prerouting priority raw - 10; policy accept;
        iifname "up0" udp dport {PORT} counter drop
    }}
}}
"""

MINIMAL_TABLE = """
table inet benchmini {
    chain prerouting {
        type filter hook prerouting priority mangle + 10; policy accept;
        ct mark & 0x3f00 != 0 meta mark set ct mark accept
        iifname "lan0" meta mark set 0x100 ct mark set 0x100
    }
}
"""
MINIMAL_TABLE_ID = 150


def counted(lab) -> int:
    listing = lab.run("isp1", ["nft", "list", "table", "inet", "benchcount"]).stdout
    return int(re.search(r"counter packets (\d+)", listing).group(1))


def setup(lab, kind: str, bundle: Path) -> None:
    if kind == "netpath":
        lab.run("router", [NETPATH, "apply", str(bundle)])
    elif kind == "minimal":
        lab.nft("router", MINIMAL_TABLE)
        lab.run("router", ["ip", "-batch", "-"], input=(
            f"rule add fwmark 0x100/0x3f00 lookup {MINIMAL_TABLE_ID} priority 2001\n"
            f"route add default via {netlab.isp_gateway4(1)} dev wan1 table {MINIMAL_TABLE_ID}\n"))


def teardown(lab, kind: str) -> None:
    if kind == "netpath":
        lab.run("router", [NETPATH, "apply", "--remove"])
    elif kind == "minimal":
        lab.run("router", ["nft", "delete", "table", "inet", "benchmini"])
        lab.run("router", ["ip", "-batch", "-"], input=(
            f"rule del fwmark 0x100/0x3f00 lookup {MINIMAL_TABLE_ID} priority 2001\n"
            f"route flush table {MINIMAL_TABLE_ID}\n"))
    lab.run("router", ["conntrack", "-F"], check=False)


def run_once(lab, seconds: float) -> tuple:
    """(packets per second, packets per CPU-second of the sender). The forwarding runs in the
    sender's softirq context and is charged to it (tick accounting), so the second figure is
    the cost per packet, and what other jobs on the machine take is not in it."""
    sender = lab.popen("client", [sys.executable, "-c", SENDER, str(seconds)], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, text=True)
    try:
        assert sender.stdout.readline().strip() == "ready"
        before = counted(lab)
        sender.stdin.write("go\n")
        sender.stdin.flush()
        cpu = float(sender.communicate(timeout=seconds + 30)[0].strip())
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait(5)
    packets = counted(lab) - before
    return packets / seconds, packets / cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    kinds = ("plain", "minimal", "netpath")
    rates: dict = {k: [] for k in kinds}
    costs: dict = {k: [] for k in kinds}
    ratios: dict = {(k, figure): [] for k in ("minimal", "netpath") for figure in ("wall", "cpu")}
    with tempfile.TemporaryDirectory(prefix="netpath-bench-") as tmp, netlab.Lab(wans=2) as lab:
        bundle = compile_bundle(Path(tmp), agent_config(), "dataplane")
        lab.nft("router", FW4_LIKE)
        lab.nft("isp1", COUNTER)
        for repeat in range(args.repeats):
            order = kinds if repeat % 2 == 0 else tuple(reversed(kinds))
            this = {}
            for kind in order:
                setup(lab, kind, bundle)
                try:
                    this[kind] = run_once(lab, args.seconds)
                finally:
                    teardown(lab, kind)
                rates[kind].append(this[kind][0])
                costs[kind].append(this[kind][1])
            for kind, figure in ratios:
                i = 0 if figure == "wall" else 1
                ratios[kind, figure].append(this[kind][i] / this["plain"][i])
            print(f"  run {repeat + 1}: " + ", ".join(f"{k} {this[k][0] / 1000:.0f} kpps ({this[k][1] / 1000:.0f} k per "
                                                     f"CPU-s)" for k in kinds), flush=True)
    print(f"small-packet forwarding (UDP, 64-byte frames, {FLOWS} established flows, {args.repeats} interleaved "
          f"runs of {args.seconds:g} s; medians):")
    for kind in kinds:
        print(f"  {kind:8s} {statistics.median(rates[kind]) / 1000:7.0f} kpps, "
              f"{statistics.median(costs[kind]) / 1000:7.0f} k packets per CPU-second of the sender")
    for (kind, figure), values in ratios.items():
        what = "packets per second" if figure == "wall" else "packets per CPU-second"
        print(f"  {kind} / plain, {what}: median {statistics.median(values):.2f} (min {min(values):.2f}, "
              f"max {max(values):.2f})")


if __name__ == "__main__":
    main()
