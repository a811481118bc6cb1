"""A throw-away multi-WAN network built from network namespaces, for tests that need a kernel.

    with Lab(wans=2) as lab:           # or the `lab` / `lab_module` pytest fixtures
        lab.start_servers()
        lab.fetch()                     # -> "172.16.1.1": the request left through wan1
        lab.isp_blackhole(1)            # ISP 1 drops everything toward the internet

Topology and address plan (a contract: tests are written against these literals):

    client <p>-c                router <p>-r                ISP k <p>-i<k>             internet <p>-net
    eth0 192.168.10.2/24  ----  lan0 192.168.10.1/24
         2001:db8:10::2/64           2001:db8:10::1/64
                                wan<k> 100.64.<k>.2/24  --  up0 100.64.<k>.1/24
                                   2001:db8:100:<k>::2/64      2001:db8:100:<k>::1/64
                                                            out0 172.16.<k>.1/24  --  isp<k> 172.16.<k>.2/24
                                                                 2001:db8:200:<k>::1/64   2001:db8:200:<k>::2/64
                                                                                     srv0 203.0.113.10, .53 /32
                                                                                          2001:db8:ffff::10, ::53 /128

- The router's main table has one default route per WAN (metric 10 * k, both families), as
  OpenWrt's netifd leaves it; it forwards, rp_filter 0, accept_ra 0. It does not NAT.
- Each ISP routes the LAN back to the router, masquerades whatever leaves out0 (nft tables
  `ip lab` / `ip6 lab`), so the internet's servers see 172.16.<k>.1 / 2001:db8:200:<k>::1 and
  their answer names the uplink. Like a real ISP (BCP 38) it forwards only packets from its
  customer's prefixes (its own 100.64.<k>.0/24 and the LAN), so a probe sourced from wan1's
  address but sent out of wan2 fails instead of looking healthy.
- ISPs and the internet set arp_ignore=1: otherwise Linux answers ARP for any of its addresses
  on any link and a mis-routed probe can look successful.
- Every namespace: lo up, IPv6 DAD off (addresses usable at once), keep_addr_on_down=1.
- srv0 is a dummy device, or a veth pair inside the internet namespace on kernels built
  without CONFIG_DUMMY.

Names: namespaces are `<p>-r`, `<p>-c`, `<p>-i1`..`<p>-i3`, `<p>-net` with a prefix `<p>`
unique per Lab (`np` + 4 hex digits unless given). Links are created directly inside their
namespaces, so nothing ever appears in the root namespace, and nothing is started there.
`destroy()` kills the lab's processes by pid and deletes its namespaces by name; it is
idempotent and safe on a partly built lab. An atexit hook destroys labs still alive at exit.

Methods that take a namespace accept its name or its role ("router", "client", "isp1", "net").
"""

from __future__ import annotations

import atexit
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
SERVERS_SCRIPT = LAB_DIR / "servers.py"
CLIENT_SCRIPT = LAB_DIR / "client.py"
IMPAIR_SCRIPT = LAB_DIR / "impair.py"

LAN4_NET = "192.168.10.0/24"
LAN6_NET = "2001:db8:10::/64"
ROUTER_LAN4 = "192.168.10.1"
ROUTER_LAN6 = "2001:db8:10::1"
CLIENT_LAN4 = "192.168.10.2"
CLIENT_LAN6 = "2001:db8:10::2"
HTTP4 = "203.0.113.10"
HTTP6 = "2001:db8:ffff::10"
DNS4 = "203.0.113.53"
DNS6 = "2001:db8:ffff::53"
HTTP4_URL = f"http://{HTTP4}/"
HTTP6_URL = f"http://[{HTTP6}]/"
HTTP_PORT = 80
DNS_PORT = 53
UDP_PEER_PORT = 7
MAX_CLIENT_SOURCES = 64

PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{1,10}$")  # "<p>-net" must fit IFNAMSIZ-style 15 chars
READY_TIMEOUT_S = 10.0
STOP_GRACE_S = 2.0
DELAY_DEVICE = "dly0"
DELAY_TABLE = 100

_prefix_counter = itertools.count()
_labs_with_namespaces: set = set()  # strong references: a lab dropped without destroy() is still cleaned at exit


def stop_process(process: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; nothing for a process that has ended."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


class LabError(RuntimeError):
    """A lab step failed; the message names the namespace, the command and its output."""


def router_wan4(k: int) -> str:
    return f"100.64.{k}.2"


def router_wan6(k: int) -> str:
    return f"2001:db8:100:{k}::2"


def isp_gateway4(k: int) -> str:
    return f"100.64.{k}.1"


def isp_gateway6(k: int) -> str:
    return f"2001:db8:100:{k}::1"


def isp_public4(k: int) -> str:
    """The address the internet sees for traffic carried by ISP k (after its masquerade)."""
    return f"172.16.{k}.1"


def isp_public6(k: int) -> str:
    return f"2001:db8:200:{k}::1"


def client_source(index: int, family: int = 4) -> str:
    """Extra client address number `index` (0..63): 192.168.10.100.. or 2001:db8:10::100.."""
    if not 0 <= index < MAX_CLIENT_SOURCES:
        raise ValueError(f"client source index must be 0..{MAX_CLIENT_SOURCES - 1}, got {index}")
    return f"192.168.10.{100 + index}" if family == 4 else f"2001:db8:10::{100 + index}"


def seen_counts(histogram: dict) -> dict:
    """Only the answer counts of a client.py histogram, without its reserved keys."""
    return {key: value for key, value in histogram.items()
            if key not in ("errors", "error_kinds", "order", "by_source")}


def existing_namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True)
    return {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}


def _fresh_prefix() -> str:
    taken = {name.split("-")[0] for name in existing_namespaces()}
    for _ in range(1000):
        candidate = f"np{(os.getpid() * 0x9E37 + next(_prefix_counter) * 0x79B1) & 0xFFFF:04x}"
        if candidate not in taken:
            return candidate
    raise LabError("no free namespace prefix np0000..npffff; remove leftover labs with `ip netns del`")


class Lab:
    def __init__(self, wans: int = 2, ipv6: bool = True, prefix: str | None = None):
        if wans not in (2, 3):
            raise ValueError(f"wans must be 2 or 3, got {wans!r}")
        if prefix is not None and not PREFIX_PATTERN.match(prefix):
            raise ValueError(f"prefix must match {PREFIX_PATTERN.pattern} (so '<prefix>-net' fits 15 chars), "
                             f"got {prefix!r}")
        self.wans = wans
        self.ipv6 = ipv6
        self.prefix = prefix or _fresh_prefix()
        p = self.prefix
        self.ns = {"router": f"{p}-r", "client": f"{p}-c", "net": f"{p}-net"}
        self.ns.update({f"isp{k}": f"{p}-i{k}" for k in self.wan_numbers})
        self.router = self.ns["router"]
        self.client = self.ns["client"]
        self.net = self.ns["net"]
        self.wan_devices = {f"wan{k}": f"wan{k}" for k in self.wan_numbers}
        self.build_seconds: float | None = None
        self._created: list[str] = []
        self._processes: list[subprocess.Popen] = []
        self._servers: subprocess.Popen | None = None
        self._listeners: dict[int, subprocess.Popen] = {}
        self._impairment: dict[int, subprocess.Popen | str] = {}
        self._netem_available: bool | None = None
        self._workdir: str | None = None
        self._srv0_peer: str | None = None

    # -- naming -------------------------------------------------------------------------------

    @property
    def wan_numbers(self) -> range:
        return range(1, self.wans + 1)

    def isp(self, k: int) -> str:
        if k not in self.wan_numbers:
            raise ValueError(f"this lab has ISPs 1..{self.wans}, got {k!r}")
        return self.ns[f"isp{k}"]

    def _resolve(self, ns: str) -> str:
        return self.ns.get(ns, ns)

    def uplink_of(self, seen_address: str | None) -> str | None:
        """"172.16.2.1" or "2001:db8:200:2::1" -> "wan2"; None for anything else."""
        try:
            seen = ipaddress.ip_address(seen_address)
        except (TypeError, ValueError):
            return None
        for k in self.wan_numbers:
            if seen in (ipaddress.ip_address(isp_public4(k)), ipaddress.ip_address(isp_public6(k))):
                return f"wan{k}"
        return None

    # -- running things inside namespaces -----------------------------------------------------

    def run(self, ns: str, argv: list, check: bool = True, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess:
        """`ip netns exec <ns> argv...` with captured text output."""
        name = self._resolve(ns)
        command = ["ip", "netns", "exec", name, *map(str, argv)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=input)
        except subprocess.TimeoutExpired as error:
            raise LabError(f"in {name}: {' '.join(map(str, argv))} did not finish within {timeout}s") from error
        if check and result.returncode != 0:
            raise LabError(f"in {name}: {' '.join(map(str, argv))} exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()}")
        return result

    def popen(self, ns: str, argv: list, **kw) -> subprocess.Popen:
        """Start a process inside ns; destroy() stops it by pid."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        process = subprocess.Popen(["ip", "netns", "exec", self._resolve(ns), *map(str, argv)], **kw)
        self._processes.append(process)
        return process

    def python(self, ns: str, script_or_module_args: list, **kw) -> subprocess.CompletedProcess:
        """Run this interpreter (the project's venv python) inside ns, e.g. [script, "--flag"] or ["-m", mod]."""
        return self.run(ns, [sys.executable, *script_or_module_args], **kw)

    def nft(self, ns: str, text: str) -> None:
        self.run(ns, ["nft", "-f", "-"], input=text)

    def _ip_batch(self, ns: str | None, lines: list[str], family: str | None = None) -> None:
        """One `ip -batch` for many lines; `family` ("-6") applies to all of them, as lines take no options."""
        command = ["ip", *([family] if family else []), *([] if ns is None else ["-n", self._resolve(ns)]),
                   "-batch", "-"]
        result = subprocess.run(command, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            where = "root namespace (link creation)" if ns is None else self._resolve(ns)
            raise LabError(f"in {where}: ip -batch failed: {result.stderr.strip()}")

    def _sysctl(self, ns: str, settings: dict) -> None:
        self.run(ns, ["sysctl", "-q", "-w", *(f"{key}={value}" for key, value in settings.items())])

    def _start_until_ready(self, ns: str, argv: list, name: str) -> subprocess.Popen:
        """Start a lab script that prints READY once it serves; fail with its stderr if it does not."""
        log = Path(self._workdir) / f"{name}.log"
        with open(log, "w") as out, open(log.with_suffix(".err"), "w") as err:
            process = self.popen(ns, [sys.executable, *argv], stdout=out, stderr=err)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if "READY" in log.read_text():
                return process
            if process.poll() is not None:
                break
            time.sleep(0.01)
        self._stop(process)
        raise LabError(f"{name} in {self._resolve(ns)} did not become ready: "
                       f"{log.with_suffix('.err').read_text().strip() or 'no output'}")

    def _stop(self, process: subprocess.Popen) -> None:
        stop_process(process)

    # -- build and destroy --------------------------------------------------------------------

    def build(self) -> "Lab":
        if self._created:
            return self
        started = time.monotonic()
        try:
            self._workdir = tempfile.mkdtemp(prefix=f"netpath-lab-{self.prefix}-")
            self._create_namespaces()
            self._create_links()
            self._set_sysctls()
            self._configure_router()
            self._configure_client()
            for k in self.wan_numbers:
                self._configure_isp(k)
            self._configure_internet()
        except BaseException:
            self.destroy()
            raise
        self.build_seconds = time.monotonic() - started
        return self

    def _create_namespaces(self) -> None:
        taken = existing_namespaces()
        clashes = sorted(set(self.ns.values()) & taken)
        if clashes:
            raise LabError(f"namespaces {', '.join(clashes)} already exist: another lab uses prefix "
                           f"{self.prefix!r}, or a leftover needs `ip netns del`")
        for name in self.ns.values():
            result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
            if result.returncode != 0:
                raise LabError(f"ip netns add {name} failed: {result.stderr.strip()}")
            self._created.append(name)
            _labs_with_namespaces.add(self)

    def _create_links(self) -> None:
        # Each end is created directly in its namespace, so no name ever exists in the root one.
        lines = [f"link add name lan0 netns {self.router} type veth peer name eth0 netns {self.client}"]
        for k in self.wan_numbers:
            lines.append(f"link add name wan{k} netns {self.router} type veth peer name up0 netns {self.isp(k)}")
            lines.append(f"link add name out0 netns {self.isp(k)} type veth peer name isp{k} netns {self.net}")
        self._ip_batch(None, lines)
        dummy = subprocess.run(["ip", "-n", self.net, "link", "add", "srv0", "type", "dummy"],
                               capture_output=True, text=True, timeout=10)
        if dummy.returncode != 0:  # kernel without CONFIG_DUMMY: an up veth pair holds addresses as well
            self._srv0_peer = "srv0peer"
            self._ip_batch(self.net, [f"link add name srv0 type veth peer name {self._srv0_peer}"])

    def _devices(self, role: str) -> list[str]:
        if role == "router":
            return ["lan0", *self.wan_devices]
        if role == "client":
            return ["eth0"]
        if role.startswith("isp"):
            return ["up0", "out0"]
        return [f"isp{k}" for k in self.wan_numbers] + ["srv0"] + ([self._srv0_peer] if self._srv0_peer else [])

    def _set_sysctls(self) -> None:
        disable_ipv6 = 0 if self.ipv6 else 1
        for role, name in self.ns.items():
            settings = {}
            for scope in ["all", "default", *self._devices(role)]:
                settings[f"net.ipv4.conf.{scope}.rp_filter"] = 0
                settings[f"net.ipv6.conf.{scope}.disable_ipv6"] = disable_ipv6
                settings[f"net.ipv6.conf.{scope}.accept_dad"] = 0
                settings[f"net.ipv6.conf.{scope}.accept_ra"] = 0
                settings[f"net.ipv6.conf.{scope}.keep_addr_on_down"] = 1
                if role.startswith("isp") or role == "net":
                    settings[f"net.ipv4.conf.{scope}.arp_ignore"] = 1
            if role == "router" or role.startswith("isp"):
                settings["net.ipv4.ip_forward"] = 1
                settings["net.ipv6.conf.all.forwarding"] = 1
            self._sysctl(name, settings)

    def _configure_router(self) -> None:
        lines = ["link set lo up", "link set lan0 up", f"addr add {ROUTER_LAN4}/24 dev lan0"]
        if self.ipv6:
            lines.append(f"addr add {ROUTER_LAN6}/64 dev lan0 nodad")
        for k in self.wan_numbers:
            lines += [f"link set wan{k} up", f"addr add {router_wan4(k)}/24 dev wan{k}",
                      f"route add default via {isp_gateway4(k)} dev wan{k} metric {10 * k}"]
            if self.ipv6:
                lines += [f"addr add {router_wan6(k)}/64 dev wan{k} nodad",
                          f"route add ::/0 via {isp_gateway6(k)} dev wan{k} metric {10 * k}"]
        self._ip_batch(self.router, lines)

    def _configure_client(self) -> None:
        lines = ["link set lo up", "link set eth0 up", f"addr add {CLIENT_LAN4}/24 dev eth0",
                 f"route add default via {ROUTER_LAN4}"]
        if self.ipv6:
            lines += [f"addr add {CLIENT_LAN6}/64 dev eth0 nodad", f"route add ::/0 via {ROUTER_LAN6}"]
        self._ip_batch(self.client, lines)

    def _isp_lan_routes(self, k: int) -> list[str]:
        lines = [f"route replace {LAN4_NET} via {router_wan4(k)} dev up0"]
        if self.ipv6:
            lines.append(f"route replace {LAN6_NET} via {router_wan6(k)} dev up0")
        return lines

    def _configure_isp(self, k: int) -> None:
        lines = ["link set lo up", "link set up0 up", "link set out0 up",
                 f"addr add {isp_gateway4(k)}/24 dev up0", f"addr add {isp_public4(k)}/24 dev out0",
                 f"route add default via 172.16.{k}.2 dev out0"]
        if self.ipv6:
            lines += [f"addr add {isp_gateway6(k)}/64 dev up0 nodad",
                      f"addr add {isp_public6(k)}/64 dev out0 nodad",
                      f"route add ::/0 via 2001:db8:200:{k}::2 dev out0"]
        self._ip_batch(self.isp(k), lines + self._isp_lan_routes(k))
        customer_sources = {"ip": f"100.64.{k}.0/24, {LAN4_NET}", "ip6": f"2001:db8:100:{k}::/64, {LAN6_NET}"}
        families = ["ip", "ip6"] if self.ipv6 else ["ip"]
        self.nft(self.isp(k), "".join(f"""
table {family} lab {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "out0" masquerade comment "the internet sees which ISP carried a flow"
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "up0" {family} saddr != {{ {customer_sources[family]} }} counter drop comment "BCP 38"
    }}
}}
""" for family in families))

    def _configure_internet(self) -> None:
        lines = ["link set lo up", "link set srv0 up"]
        if self._srv0_peer:
            lines.append(f"link set {self._srv0_peer} up")
        lines += [f"addr add {HTTP4}/32 dev srv0", f"addr add {DNS4}/32 dev srv0"]
        if self.ipv6:
            lines += [f"addr add {HTTP6}/128 dev srv0 nodad", f"addr add {DNS6}/128 dev srv0 nodad"]
        for k in self.wan_numbers:
            lines += [f"link set isp{k} up", f"addr add 172.16.{k}.2/24 dev isp{k}"]
            if self.ipv6:
                lines.append(f"addr add 2001:db8:200:{k}::2/64 dev isp{k} nodad")
        self._ip_batch(self.net, lines)

    def destroy(self) -> None:
        """Stop the lab's processes by pid and delete its namespaces by name. Idempotent."""
        for process in reversed(self._processes):
            try:
                self._stop(process)
            except (OSError, subprocess.TimeoutExpired):
                pass  # already gone or unkillable; the namespace pids below are the second net
        self._processes.clear()
        self._servers = None
        self._listeners.clear()
        self._impairment.clear()
        problems = []
        for name in reversed(self._created):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10)
            for pid in pids.stdout.split():  # processes a test started inside this namespace by other means
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            deleted = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True, timeout=10)
            if deleted.returncode != 0 and name in existing_namespaces():
                problems.append(f"{name}: {deleted.stderr.strip()}")
        self._created.clear()
        _labs_with_namespaces.discard(self)
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if problems:
            raise LabError("could not delete namespaces: " + "; ".join(problems))

    def __enter__(self) -> "Lab":
        return self.build()

    def __exit__(self, *exc_info) -> None:
        self.destroy()

    # -- servers and traffic ------------------------------------------------------------------

    def start_servers(self) -> None:
        """HTTP :80, DNS :53 and a UDP peer-echo :7 in the internet namespace; waits until they answer."""
        if self._servers is not None and self._servers.poll() is None:
            return
        argv = [SERVERS_SCRIPT, "--http", f"{HTTP4}:{HTTP_PORT}", "--dns", f"{DNS4}:{DNS_PORT}",
                "--udp", f"{HTTP4}:{UDP_PEER_PORT}"]
        if self.ipv6:
            argv += ["--http", f"[{HTTP6}]:{HTTP_PORT}", "--dns", f"[{DNS6}]:{DNS_PORT}",
                     "--udp", f"[{HTTP6}]:{UDP_PEER_PORT}"]
        self._servers = self._start_until_ready(self.net, argv, "servers")

    def client_listen_tcp(self, port: int) -> None:
        """An HTTP server on the client, any address, port `port`: `GET /` answers the peer it sees."""
        if port in self._listeners and self._listeners[port].poll() is None:
            return
        endpoint = f"[::]:{port}" if self.ipv6 else f"0.0.0.0:{port}"
        self._listeners[port] = self._start_until_ready(
            self.client, [SERVERS_SCRIPT, "--http", endpoint, "--dual-stack"], f"listen-{port}")

    def run_client(self, args: list, ns: str | None = None, timeout: float = 60) -> dict:
        """client.py with `args` inside ns (default: the LAN client); returns its JSON histogram."""
        result = self.python(ns or self.client, [CLIENT_SCRIPT, *args, "--json"], timeout=timeout)
        return json.loads(result.stdout)

    def http_histogram(self, count: int, url: str | None = None, sources: list | None = None, family: int = 4,
                       timeout: float = 2.0, round_robin: bool = True, parallel: int = 1) -> dict:
        """`count` fresh connections from the client; url None means the lab's HTTP server for `family`."""
        url = url or (HTTP6_URL if family == 6 else HTTP4_URL)
        args = ["--url", url, "--count", count, "--timeout", timeout, "--parallel", parallel]
        if sources:
            args += ["--source", *sources]
            if round_robin:
                args.append("--sources-round-robin")
        return self.run_client(args, timeout=30 + count * timeout / parallel)

    def fetch(self, url: str = HTTP4_URL, ns: str | None = None, source: str | None = None,
              timeout: float = 2.0) -> str | None:
        """One request; the body (the address the server saw) or None if it failed."""
        args = ["--url", url, "--count", 1, "--timeout", timeout]
        if source:
            args += ["--source", source]
        return self.run_client(args, ns=ns, timeout=30 + timeout)["order"][0]

    def ping_rtt_ms(self, destination: str, ns: str | None = None, count: int = 3) -> float | None:
        """Average round-trip time of `count` pings, or None when none came back."""
        result = self.run(ns or self.client, ["ping", "-n", "-q", "-c", count, "-i", "0.2", "-W", "2", destination],
                          check=False, timeout=10 + 2.2 * count)
        match = re.search(r"= [\d.]+/([\d.]+)/", result.stdout)
        return float(match.group(1)) if match else None

    def add_client_sources(self, n: int = 64, family: int = 4) -> list[str]:
        """Add the extra client addresses 192.168.10.100.. (or 2001:db8:10::100..); returns them."""
        sources = [client_source(i, family) for i in range(n)]
        length = 24 if family == 4 else 64
        extra = " nodad" if family == 6 else ""
        self._ip_batch(self.client, [f"addr replace {source}/{length} dev eth0{extra}" for source in sources])
        return sources

    # -- failure injection --------------------------------------------------------------------

    def isp_blackhole(self, k: int, on: bool = True) -> None:
        """ISP k drops everything it would forward to the internet; its link and gateway stay up."""
        remove = "table inet lab_blackhole {}\ndelete table inet lab_blackhole\n"
        drop = """
table inet lab_blackhole {
    chain forward {
        type filter hook forward priority filter - 10; policy accept;
        oifname "out0" counter drop comment "lab: upstream broken beyond the gateway"
    }
}
"""
        self.nft(self.isp(k), remove + (drop if on else ""))

    def carrier(self, k: int, up: bool) -> None:
        """Take ISP k's end of wan<k> down or up: the router sees carrier loss, its wan<k> stays admin-up."""
        self._ip_batch(self.isp(k), [f"link set up0 {'up' if up else 'down'}"])
        if up:  # the kernel flushed the routes through up0 when it went down
            self._ip_batch(self.isp(k), self._isp_lan_routes(k))

    def recreate_wan(self, k: int) -> None:
        """Delete wan<k> and create it again at once with the same name, addresses and routes,
        as a PPPoE reconnect does (a new device, a new ifindex; the kernel dropped every route
        through the old one). Both ends are new, so the ISP side is configured again too."""
        self._ip_batch(self.router, [f"link del wan{k}"])
        self._ip_batch(None, [f"link add name wan{k} netns {self.router} type veth peer name up0 netns {self.isp(k)}"])
        router = [f"link set wan{k} up", f"addr add {router_wan4(k)}/24 dev wan{k}",
                  f"route add default via {isp_gateway4(k)} dev wan{k} metric {10 * k}"]
        isp = ["link set up0 up", f"addr add {isp_gateway4(k)}/24 dev up0"]
        if self.ipv6:
            router += [f"addr add {router_wan6(k)}/64 dev wan{k} nodad",
                       f"route add ::/0 via {isp_gateway6(k)} dev wan{k} metric {10 * k}"]
            isp.append(f"addr add {isp_gateway6(k)}/64 dev up0 nodad")
        self._ip_batch(self.router, router)
        self._ip_batch(self.isp(k), isp + self._isp_lan_routes(k))

    def netem(self, k: int, delay_ms: float = 0, loss_pct: float = 0.0) -> None:
        """Delay and loss on ISP k's up0 egress (toward the router); 0/0 removes them.

        Uses tc netem when the kernel has it, otherwise impair.py behind policy routing in the
        ISP namespace, with the same effect on traffic toward the router.
        """
        isp = self.isp(k)
        self._clear_impairment(k)
        if not delay_ms and not loss_pct:
            return
        if self._netem_available is not False:
            result = subprocess.run(["tc", "-n", isp, "qdisc", "replace", "dev", "up0", "root", "netem",
                                     "delay", f"{delay_ms}ms", "loss", f"{loss_pct}%"],
                                    capture_output=True, text=True, timeout=10)
            self._netem_available = result.returncode == 0
            if result.returncode == 0:
                self._impairment[k] = "netem"
                return
            if "unknown" not in result.stderr.lower():
                raise LabError(f"in {isp}: tc netem failed: {result.stderr.strip()}")
        relay = self._start_until_ready(
            isp, [IMPAIR_SCRIPT, "--device", DELAY_DEVICE, "--delay-ms", delay_ms, "--loss-pct", loss_pct],
            f"impair-{k}")
        self._impairment[k] = relay
        self._sysctl(isp, {f"net.ipv4.conf.{DELAY_DEVICE}.rp_filter": 0,
                           f"net.ipv4.conf.{DELAY_DEVICE}.accept_local": 1,  # the ISP's own replies re-enter
                           f"net.ipv6.conf.{DELAY_DEVICE}.forwarding": 1})
        # Everything bound for the router's side goes through the relay; what comes back out of
        # it follows the main table out of up0.
        rules = [f"rule add pref {DELAY_TABLE} iif {DELAY_DEVICE} lookup main",
                 f"rule add pref {DELAY_TABLE + 1} lookup {DELAY_TABLE}"]
        self._ip_batch(isp, [f"link set {DELAY_DEVICE} up", *rules,
                             f"route add 100.64.{k}.0/24 dev {DELAY_DEVICE} table {DELAY_TABLE}",
                             f"route add {LAN4_NET} dev {DELAY_DEVICE} table {DELAY_TABLE}"])
        if self.ipv6:
            self._ip_batch(isp, [*rules, f"route add 2001:db8:100:{k}::/64 dev {DELAY_DEVICE} table {DELAY_TABLE}",
                                 f"route add {LAN6_NET} dev {DELAY_DEVICE} table {DELAY_TABLE}"], family="-6")
        # A packet coming back out of the relay was already tracked (and de-NATed) on its way in.
        self.nft(isp, f"""
table inet lab_delay {{
    chain prerouting {{
        type filter hook prerouting priority raw; policy accept;
        iifname "{DELAY_DEVICE}" notrack
    }}
}}
""")

    def _clear_impairment(self, k: int) -> None:
        impairment = self._impairment.pop(k, None)
        if impairment is None:
            return
        isp = self.isp(k)
        if impairment == "netem":
            self.run(isp, ["tc", "qdisc", "del", "dev", "up0", "root"], check=False)
            return
        self._stop(impairment)
        self._processes.remove(impairment)
        families = ["-4", "-6"] if self.ipv6 else ["-4"]
        for family in families:
            for pref in (DELAY_TABLE, DELAY_TABLE + 1):
                self.run(isp, ["ip", family, "rule", "del", "pref", pref], check=False)
        self.nft(isp, "table inet lab_delay {}\ndelete table inet lab_delay\n")


@atexit.register
def _destroy_leftover_labs() -> None:
    for lab in list(_labs_with_namespaces):
        try:
            lab.destroy()
        except (LabError, OSError, subprocess.SubprocessError):
            pass
