"""The fault list of the agent's self-repair, run once each (or --repeats times), with figures
(printed, nothing asserted). Needs root; builds its own namespace lab.

    .venv/bin/python bench/bench_faults.py [--repeats 3]

One agent on a two-WAN lab, one balanced policy (numgen inc: fresh connections alternate
strictly between wan1 and wan2), probes every second. For each fault:

* repaired: from the fault to the agent's repair (its `status` kernel.last_drift), or for the
  faults without a kernel repair (restart, device re-created), to the kernel holding the right
  variant as the agent reports it;
* balanced: from the fault to the first batch of 6 fresh connections from the LAN client that
  spread evenly over the live uplinks with none failing (a batch takes ~0.15 s: that is the
  resolution; the `none` row is this floor, measured interleaved with the faults);
* the agent's RSS and open fds before and after the whole series.

Faults of the reliability issue: kernel drift and crash restarts, and the guards around
them: netifd's `ifdown wan1_6` (must not touch IPv4), a second agent and `netpath apply
--remove` while one runs (refused, exit 2: *repaired* is the time to the refusal), a storm of
20 SIGHUPs (at most one more reload: *repaired* is the time until the reloads are over), 1,100
idle TCP connections from the LAN client against `--metrics-listen` with the agent limited to
1,024 open files (*repaired* is the end of the flood; the uplinks must not change state), and a
hook that prints forever (`exec yes`; *repaired* is the agent killing it at its 30 s limit; the
agent's peak RSS while it runs is printed).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from lab import netlab  # noqa: E402
from lab.agentlab import AGENT, NETPATH, RunningAgent, agent_config, compile_bundle, reset_lab, wait_balanced  # noqa: E402
from lab.test_ipc_lab import start_ready, stop  # noqa: E402

FLOOD = REPO / "tests" / "lab" / "test_agent_guard.py"  # its `flood` helper program
METRICS_PORT = 9101

BOTH, WAN2 = ("wan1", "wan2"), ("wan2",)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def footprint(agent: RunningAgent) -> str:
    return f"RSS {rss_mib(agent.pid):.1f} MiB, {agent.fd_count()} fds"


class Bench:
    def __init__(self, lab: netlab.Lab, workdir: Path):
        self.lab = lab
        self.workdir = workdir
        self.bundle = compile_bundle(workdir, agent_config(mode="balanced", metrics={1: 1, 2: 1}))
        self.agent: "RunningAgent | None" = None
        self.starts = 0
        self.storm_reloads: list = []
        self.hooks = workdir / "hooks"
        self.hooks.mkdir()
        self.flood_summaries: list = []
        self.hook_peaks: list = []

    def start(self) -> RunningAgent:
        self.starts += 1
        self.agent = RunningAgent(self.lab, self.bundle, self.workdir, hooks=self.hooks, name=f"agent{self.starts}",
                                  extra=("--metrics-listen", f"{netlab.ROUTER_LAN4}:{METRICS_PORT}")).start()
        self.lab.run("router", ["prlimit", f"--pid={self.agent.pid}", "--nofile=1024:1024"])
        return self.agent

    def router(self, *argv) -> None:
        self.lab.run("router", list(argv))

    def last_drift(self) -> "float | None":
        return self.agent.request("status")["kernel"]["last_drift"]

    def until(self, check, timeout: float = 10.0) -> float:
        """time.time() when `check()` first holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return time.time()
            time.sleep(0.02)
        raise RuntimeError(f"not within {timeout} s: {check.__name__}; log:\n{self.agent.log()}")

    def mask(self) -> str:
        return self.agent.request("policies")["policies"][0]["state"]

    # -- the faults: each returns (repaired at, time.monotonic() at the fault, live uplinks) ----

    def run_fault(self, fault) -> tuple:
        """(seconds to the repair, seconds to balanced traffic, footprint before, after)."""
        before = footprint(self.agent)
        at, since = time.time(), time.monotonic()
        repaired, live = fault()
        balanced = wait_balanced(self.lab, since, live=live)
        return repaired - at, balanced, before, footprint(self.agent)

    def none(self):
        return time.time(), BOTH

    def ip_rule_flush(self):
        before = self.last_drift()
        self.router("ip", "rule", "flush")
        self.until(lambda: self.last_drift() not in (None, before))
        for pref, table in ((32766, "main"), (32767, "default")):  # not NetPath's: the bench puts them back
            for family in ("-4", "-6"):
                self.lab.run("router", ["ip", family, "rule", "add", "pref", str(pref), "lookup", table], check=False)
        return self.last_drift(), BOTH

    def drift(self, *argv):
        def fault():
            before = self.last_drift()
            self.router(*argv)
            self.until(lambda: self.last_drift() not in (None, before))
            return self.last_drift(), BOTH
        fault.__name__ = " ".join(argv)
        return fault

    def recreate_wan1(self):
        self.lab.recreate_wan(1)
        # the link went down and up: wan1 is back once the agent says so and its table is full
        self.until(lambda: self.agent.state("wan1") == "online" and self.mask() == "11"
                   and "default via" in self.lab.run("router", ["ip", "route", "show", "table", "1001"]).stdout)
        return time.time(), BOTH

    def table_gone_with_carrier(self):
        before = self.last_drift()
        self.router("nft", "delete", "table", "inet", "netpath")
        self.lab.carrier(1, False)
        self.until(lambda: self.last_drift() not in (None, before) and self.mask() == "01")
        return self.last_drift(), WAN2

    def after_carrier_fault(self) -> None:
        self.lab.carrier(1, True)
        self.until(lambda: self.agent.state("wan1") == "online")
        wait_balanced(self.lab, time.monotonic())

    def kill9_carrier(self):
        self.agent.stop(signal.SIGKILL)
        self.lab.carrier(1, False)
        self.start()
        return self.until(lambda: self.mask() == "01"), WAN2

    def kill9_blackhole(self):
        self.agent.stop(signal.SIGKILL)
        self.lab.isp_blackhole(2)
        self.start()
        self.until(lambda: self.agent.state("wan2") == "offline", timeout=15)
        return time.time(), ("wan1",)

    def after_blackhole(self) -> None:
        self.lab.isp_blackhole(2, on=False)
        self.until(lambda: self.agent.state("wan2") == "online", timeout=15)
        wait_balanced(self.lab, time.monotonic())

    def ifdown_wan1_6(self):
        self.agent.request("ifevent", action="ifdown", interface="wan1_6")
        return time.time(), BOTH  # nothing to repair: IPv4 must simply stay balanced

    def second_agent(self):
        """Another netpath-agent on another socket: it must find the running one and exit 2."""
        done = self.lab.run("router", [AGENT, "--bundle", str(self.bundle), "--socket",
                                       str(self.workdir / "second.sock"), "--hooks", str(self.workdir / "none")],
                            check=False)
        if done.returncode != 2:
            raise RuntimeError(f"a second agent exited {done.returncode}: {done.stderr}")
        return time.time(), BOTH

    def apply_remove(self):
        """`netpath apply --remove` while the agent runs: refused (exit 2), nothing changes."""
        done = self.lab.run("router", [NETPATH, "apply", "--remove"], check=False)
        if done.returncode != 2:
            raise RuntimeError(f"apply --remove exited {done.returncode}: {done.stderr}")
        return time.time(), BOTH

    def sighup_storm(self):
        """20 SIGHUPs at once: at most two reloads, the traffic stays balanced."""
        reloads = self.agent.log().count("reloaded bundle")
        for _ in range(20):
            self.agent.send_signal(signal.SIGHUP)
        self.until(lambda: self.agent.log().count("reloaded bundle") > reloads)
        time.sleep(0.5)  # the one more reload the storm may bring
        settled = time.time()
        self.storm_reloads.append(self.agent.log().count("reloaded bundle") - reloads)
        return settled, BOTH

    def metrics_flood(self):
        """1,100 idle connections for 8 s against the metrics endpoint: no uplink changes state."""
        changes = len(self.agent.history())
        flood = start_ready(self.lab, "client", ["flood", netlab.ROUTER_LAN4, METRICS_PORT, 1100, 8],
                            self.workdir / "flood.out", script=FLOOD)
        try:
            flood.wait(30)
        finally:
            stop(flood)
        ended = time.time()
        self.flood_summaries.append((self.workdir / "flood.out").read_text().splitlines()[-1])
        if len(self.agent.history()) != changes:
            raise RuntimeError(f"the flood changed an uplink's state: {self.agent.history()[changes:]}")
        return ended, BOTH

    def endless_hook(self):
        """A hook that prints forever, run by wan1's carrier loss: killed at its time limit, and
        the agent's memory stays flat meanwhile."""
        hook = self.hooks / "50-endless"
        hook.write_text("#!/bin/sh\nexec yes\n")
        hook.chmod(0o755)
        kills = self.agent.log().count("killed after")
        self.lab.carrier(1, False)
        peak = rss_mib(self.agent.pid)
        deadline = time.monotonic() + 45
        while self.agent.log().count("killed after") == kills:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the endless hook was not killed; log:\n{self.agent.log()[-2000:]}")
            peak = max(peak, rss_mib(self.agent.pid))
            time.sleep(0.1)
        self.hook_peaks.append(peak)
        hook.unlink()
        return time.time(), WAN2

    def after_ifdown_wan1_6(self) -> None:
        self.agent.request("ifevent", action="ifup", interface="wan1_6")
        time.sleep(0.3)


def structure_listing_ms(lab: netlab.Lab, rounds: int = 200) -> str:
    """The comparison's cost: one structure listing of the table through libnftables."""
    script = ("import time, statistics; from netpath.agent.nft import Nft; n = Nft(); s = []\n"
              f"for _ in range({rounds}):\n"
              "    t = time.perf_counter(); n.list_json('table inet netpath', True); s.append(time.perf_counter() - t)\n"
              "print(n.backend, statistics.median(s) * 1000, sorted(s)[int(len(s) * 0.99)] * 1000)")
    out = lab.run("router", [sys.executable, "-c", script]).stdout.split()
    return f"{out[0]}: p50 {float(out[1]):.2f} ms, p99 {float(out[2]):.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_faults needs root (network namespaces)")
    with netlab.Lab(wans=2, ipv6=True) as lab, tempfile.TemporaryDirectory(prefix="netpath-faults-") as tmp:
        lab.start_servers()
        b = Bench(lab, Path(tmp))
        b.start()
        wait_balanced(lab, time.monotonic())
        faults = [
            ("none (the measurement floor)", b.none, None),
            ("nft flush ruleset", b.drift("nft", "flush", "ruleset"), None),
            ("nft delete table inet netpath", b.drift("nft", "delete", "table", "inet", "netpath"), None),
            ("nft flush chain (policy_p)", b.drift("nft", "flush", "chain", "inet", "netpath", "policy_p"), None),
            ("nft flush set bypass_v4", b.drift("nft", "flush", "set", "inet", "netpath", "bypass_v4"), None),
            ("ip rule flush protocol 93", b.drift("ip", "rule", "flush", "protocol", "93"), None),
            ("ip rule flush", b.ip_rule_flush, None),
            ("ip rule del (wan1's fwmark rule)", b.drift("ip", "rule", "del", "pref", "2001"), None),
            ("ip route flush table 1001", b.drift("ip", "route", "flush", "table", "1001"), None),
            ("ip route del default table 1002", b.drift("ip", "route", "del", "default", "table", "1002"), None),
            ("wan1 deleted and re-created (PPPoE)", b.recreate_wan1, None),
            ("table deleted + wan1 carrier lost", b.table_gone_with_carrier, b.after_carrier_fault),
            ("kill -9, carrier lost, restart", b.kill9_carrier, b.after_carrier_fault),
            ("kill -9, wan2 blackholed, restart", b.kill9_blackhole, b.after_blackhole),
            ("ifdown wan1_6 (IPv6 side event)", b.ifdown_wan1_6, b.after_ifdown_wan1_6),
            ("a second netpath-agent started", b.second_agent, None),
            ("netpath apply --remove (no --force)", b.apply_remove, None),
            ("20 SIGHUPs at once", b.sighup_storm, None),
            ("1,100 idle metrics connections", b.metrics_flood, None),
            ("a hook printing forever (yes)", b.endless_hook, b.after_carrier_fault),
        ]
        results = {name: ([], []) for name, _f, _a in faults}
        footprints = {}
        first = footprint(b.agent)
        for _ in range(args.repeats):
            for name, fault, after in faults:  # interleaved: the floor is measured between faults
                repaired, balanced, before, after_fault = b.run_fault(fault)
                results[name][0].append(repaired)
                results[name][1].append(balanced)
                footprints[name] = (before, after_fault)  # of the last run
                if after:
                    after()
                time.sleep(0.5)
        last = footprint(b.agent)
        floor = statistics.median(results[faults[0][0]][1])
        print(f"bench_faults: {args.repeats} run(s) of each fault, 2-WAN lab, probes every 1 s "
              f"({os.cpu_count()} cores, shared machine)")
        print(f"{'fault':38} {'repaired p50/max':>17} {'balanced p50/max':>17} {'x floor':>7}  "
              "agent before -> after the fault (last run)")
        for name, (repaired, balanced) in results.items():
            ratio = statistics.median(balanced) / floor if floor else float("nan")
            print(f"{name:38} {statistics.median(repaired):7.2f} /{max(repaired):5.2f} s "
                  f"{statistics.median(balanced):7.2f} /{max(balanced):5.2f} s {ratio:6.1f}x  "
                  f"{footprints[name][0]} -> {footprints[name][1]}")
        print(f"agent at the start: {first}; at the end: {last} (agent {b.starts}, after {b.starts - 1} restarts)")
        print(f"reloads per storm of 20 SIGHUPs: {b.storm_reloads}")
        print(f"metrics floods (connections made, closed by the agent, its answers): {b.flood_summaries}")
        print(f"agent's peak RSS while the endless hook ran: {', '.join(f'{p:.1f} MiB' for p in b.hook_peaks)}")
        print(f"structure listing (after each own write, and per comparison): {structure_listing_ms(lab)}")
        b.agent.stop()
        reset_lab(lab)


if __name__ == "__main__":
    main()
