"""NetPath's demo, run by scripts/demo.sh: compile a config, then load it on a router inside
a throw-away network-namespace lab (three ISPs and an internet), send real connections from
the LAN, and show how they spread, what `explain` says, and what happens when an uplink's
upstream dies. Nothing runs or is sent outside the lab's namespaces; all of it is removed
at the end."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from lab import netlab  # noqa: E402

BIN = Path(sys.executable).parent
NETPATH = str(BIN / "netpath")
AGENT = str(BIN / "netpath-agent")
UPLINK = {netlab.isp_public4(k): f"wan{k}" for k in (1, 2, 3)}


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def spread(lab, n=120) -> str:
    hist = lab.http_histogram(n, parallel=8)
    counts = {}
    for seen, count in netlab.seen_counts(hist).items():
        counts[UPLINK.get(seen, seen)] = count
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + (f", failed {hist['errors']}" if hist["errors"] else "")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="netpath-demo-"))
    bundle = work / "bundle"
    say("netpath compile scripts/demo-lab.uci")
    subprocess.run([NETPATH, "compile", str(ROOT / "scripts/demo-lab.uci"), "-o", str(bundle)], check=True)
    with netlab.Lab(wans=3) as lab:
        lab.start_servers()
        socket = work / "netpath.sock"
        agent = None
        if Path(AGENT).exists():
            say("netpath-agent runs inside the lab's router namespace")
            agent = lab.popen("router", [AGENT, "--bundle", str(bundle), "--socket", str(socket),
                                         "--hooks", str(work / "hooks")])
            for _ in range(100):
                if socket.exists():
                    break
                time.sleep(0.1)
            time.sleep(1.5)
        else:
            lab.run("router", [NETPATH, "apply", str(bundle)])
        say("120 new connections from the LAN (weights 3:2:1)")
        print(spread(lab))
        say("netpath explain: an HTTPS connection from the LAN client")
        subprocess.run([NETPATH, "explain", str(bundle), "--src", "192.168.10.2", "--dst", "203.0.113.10",
                        "--dport", "443", "--iif", "lan0"], check=True)
        if agent:
            say("netpath status")
            print(lab.run("router", [NETPATH, "status", "--socket", str(socket)], check=False).stdout)
        say("ISP 1 breaks beyond its gateway (the link stays up)")
        lab.isp_blackhole(1)
        started = time.monotonic()
        if agent:
            while time.monotonic() - started < 10:
                hist = lab.http_histogram(12, parallel=6, timeout=0.3)
                if hist["errors"] == 0 and "wan1" not in {UPLINK.get(a) for a in hist["order"]}:
                    break
            print(f"new connections avoid wan1 after {time.monotonic() - started:.2f} s")
        else:
            lab.run("router", [NETPATH, "apply", str(bundle), "--down", "wan1"])
        print(spread(lab))
        if agent:
            say("netpath interfaces")
            print(lab.run("router", [NETPATH, "interfaces", "--socket", str(socket)], check=False).stdout)
            agent.terminate()
            agent.wait(timeout=15)
    say("the lab is gone; nothing was left behind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
