"""Figures about the running system: link counters, connections per mark, rule hit
counters, and their Prometheus text exposition.

The readers look at the kernel of the network namespace the process runs in (sysfs,
/proc/net/nf_conntrack, nft); they block on file reads or a subprocess, so the agent
calls them through `asyncio.to_thread`. They never change anything.

Standard library only (the `nftables` binding is used through agent.nft when present).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import socket
import subprocess
from pathlib import Path

from .drift import OBJECTS
from .names import RULE_COUNTER_PREFIX
from .clients import Refusals, serve as serve_clients

SYSFS_NET = Path("/sys/class/net")
PROC_CONNTRACK = Path("/proc/net/nf_conntrack")
CONNTRACK_TIMEOUT = 10.0

LINK_COUNTERS = ("tx_bytes", "rx_bytes", "tx_packets", "rx_packets")

log = logging.getLogger("netpath.metrics")


# --- readers ----------------------------------------------------------------------------

def link_stats(device: str, sysfs: Path = SYSFS_NET) -> dict:
    """tx/rx bytes and packets of `device`; each is None when the device or counter is missing."""
    stats = {}
    if not device or "/" in device or device in (".", ".."):
        return dict.fromkeys(LINK_COUNTERS)
    base = Path(sysfs) / device / "statistics"
    for name in LINK_COUNTERS:
        try:
            stats[name] = int((base / name).read_text().strip())
        except (OSError, ValueError):
            stats[name] = None
    return stats


_MARK_FIELD = re.compile(rb"\bmark=(\d+)")


def count_marks(lines, mask: int) -> dict:
    """{mark & mask: entries} over conntrack lines in /proc or `conntrack -L` format.
    Key 0 counts the flows without a mark under `mask`."""
    counts: dict = {}
    for line in lines:
        found = _MARK_FIELD.search(line)
        if found is None:
            continue
        mark = int(found.group(1)) & mask
        counts[mark] = counts.get(mark, 0) + 1
    return counts


def conntrack_by_mark(mask: int, proc_path: Path = PROC_CONNTRACK) -> dict | None:
    """Conntrack entries per connection mark (masked with `mask`) in this namespace.

    Reads /proc/net/nf_conntrack, else runs `conntrack -L`; None when the kernel exposes
    no conntrack table either way (the figure is unknown, not zero)."""
    try:
        with open(proc_path, "rb") as table:
            return count_marks(table, mask)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.debug("cannot read %s: %s", proc_path, exc)
    try:
        proc = subprocess.run(["conntrack", "-L"], capture_output=True, timeout=CONNTRACK_TIMEOUT)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        log.warning("conntrack -L did not finish within %g s; connection counts unknown",
                    CONNTRACK_TIMEOUT)
        return None
    if proc.returncode != 0:
        log.debug("conntrack -L failed: %s", proc.stderr.decode(errors="replace").strip())
        return None
    return count_marks(proc.stdout.splitlines(), mask)


def rule_counters(nft, table: str) -> dict:
    """{rule name: {"packets", "bytes"}} from the rules' named counters in `inet <table>`.

    The counter is hit by the first packet of each flow the rule decides (later packets
    carry the flow's mark and skip the rules): "packets" are new flows. A rule that matches
    both families counts both in its one counter. `nft` is an agent.nft.Nft (None: make
    one). {} when the table is absent."""
    if nft is None:
        from .nft import Nft

        nft = Nft()
    counters: dict = {}
    for item in nft.list_json(f"counters table inet {table}").get("nftables", ()):
        counter = item.get("counter") if isinstance(item, dict) else None
        if not isinstance(counter, dict) or not str(counter.get("name", "")).startswith(RULE_COUNTER_PREFIX):
            continue
        counters[counter["name"][len(RULE_COUNTER_PREFIX):]] = {
            "packets": int(counter.get("packets", 0)), "bytes": int(counter.get("bytes", 0))}
    return counters


# --- the agent's own figures -------------------------------------------------------------

# Seconds: a state swap takes about a millisecond; 1 s means the kernel was struggling.
SWAP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Histogram:
    """Counts of observations per upper bound (cumulative at export), their sum and count:
    a few integers, whatever the number of observations."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds=SWAP_BUCKETS):
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1

    def snapshot(self) -> dict:
        """{"buckets": [[upper bound, cumulative count], ...], "sum", "count"} (+Inf is count)."""
        cumulative, running = [], 0
        for bound, n in zip(self.bounds, self.counts):
            running += n
            cumulative.append([bound, running])
        return {"buckets": cumulative, "sum": self.sum, "count": self.count}


PROC_SELF = Path("/proc/self")


def process_figures(proc: Path = PROC_SELF) -> dict:
    """The process's start time (unix s), CPU seconds, resident and virtual memory (bytes) and
    file descriptors, from /proc; a figure the system does not expose is None."""
    import os
    import resource

    figures = dict.fromkeys(("start_time", "cpu_seconds", "resident_bytes", "virtual_bytes",
                             "open_fds", "max_fds"))
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        # Fields after the command name, which is in parentheses and may hold spaces.
        stat = (proc / "stat").read_text().rpartition(")")[2].split()
        figures["cpu_seconds"] = (int(stat[11]) + int(stat[12])) / ticks  # utime + stime
        figures["virtual_bytes"] = int(stat[20])
        figures["resident_bytes"] = int(stat[21]) * page
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        figures["start_time"] = boot + int(stat[19]) / ticks
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    try:
        figures["open_fds"] = len(os.listdir(proc / "fd"))
    except OSError:
        pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    figures["max_fds"] = None if soft == resource.RLIM_INFINITY else soft
    return figures


# --- Prometheus text exposition format (version 0.0.4) -----------------------------------

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("online", "disconnecting", "connecting", "offline", "disabled")

# metric name, type, help, key in an interface's figures, scale to base units (seconds, ratio)
_INTERFACE_METRICS = (
    ("netpath_interface_up", "gauge", "1 when the interface carries traffic (online or disconnecting).",
     "up", 1),
    ("netpath_interface_link_up", "gauge", "1 when the interface's device exists and has carrier.",
     "link_up", 1),
    ("netpath_interface_enabled", "gauge",
     "1 when the interface is enabled, in the config and at run time (netpath enable/disable).",
     "enabled", 1),
    ("netpath_interface_last_change_timestamp_seconds", "gauge",
     "Unix time of the interface's last state change (the agent's start when none since).",
     "last_change", 1),
    ("netpath_interface_latency_seconds", "gauge",
     "Average probe round-trip time over the tracking window; absent while no target answers.",
     "latency_ms", 0.001),
    ("netpath_interface_latency_min_seconds", "gauge", "Shortest probe round-trip time over the window.",
     "latency_min_ms", 0.001),
    ("netpath_interface_latency_max_seconds", "gauge", "Longest probe round-trip time over the window.",
     "latency_max_ms", 0.001),
    ("netpath_interface_jitter_seconds", "gauge",
     "Mean difference between consecutive probe round-trip times over the window.", "jitter_ms", 0.001),
    ("netpath_interface_loss_ratio", "gauge", "Share of probes lost over the tracking window (0..1).",
     "loss_pct", 0.01),
    ("netpath_interface_score", "gauge", "Health score (0 .. down+up, mwan3 semantics).",
     "score", 1),
    ("netpath_interface_transmit_bytes_total", "counter", "Bytes sent on the interface's device.",
     "tx_bytes", 1),
    ("netpath_interface_receive_bytes_total", "counter", "Bytes received on the interface's device.",
     "rx_bytes", 1),
    ("netpath_interface_connections", "gauge",
     "Conntrack entries carrying the interface's mark (the agent's own probes not counted).",
     "connections", 1),
    ("netpath_interface_state_changes_total", "counter", "State changes since the agent started.",
     "state_changes", 1),
)
# the same for each probe target of an interface
_TARGET_METRICS = (
    ("netpath_target_up", "gauge", "1 when the target answered in the interface's last probe round.",
     "up", 1),
    ("netpath_target_latency_seconds", "gauge",
     "Average round-trip time to the target over the window; absent while it does not answer.",
     "latency_ms", 0.001),
    ("netpath_target_latency_min_seconds", "gauge", "Shortest round-trip time to the target over the window.",
     "latency_min_ms", 0.001),
    ("netpath_target_latency_max_seconds", "gauge", "Longest round-trip time to the target over the window.",
     "latency_max_ms", 0.001),
    ("netpath_target_jitter_seconds", "gauge",
     "Mean difference between consecutive round-trip times to the target over the window.",
     "jitter_ms", 0.001),
    ("netpath_target_loss_ratio", "gauge", "Share of the probes to the target lost over the window (0..1).",
     "loss_pct", 0.01),
)
_GLOBAL_METRICS = (
    ("netpath_state_swaps_total", "counter", "State variant swaps loaded into nft.", "swaps", 1),
    ("netpath_state_swap_failures_total", "counter",
     "State transactions the kernel refused (the whole bundle is loaded instead, else retried in 5 s).",
     "swap_failures", 1),
    ("netpath_state_swap_last_duration_seconds", "gauge", "Duration of the last state variant swap.",
     "swap_seconds_last", 1),
    ("netpath_reloads_total", "counter", "Bundle reloads that completed (SIGHUP or netpath reload).",
     "reloads", 1),
    ("netpath_reload_failures_total", "counter", "Bundle reloads refused or failed (the old bundle stayed).",
     "reload_failures", 1),
)
_PROCESS_METRICS = (
    ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
     "start_time"),
    ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
     "cpu_seconds"),
    ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", "resident_bytes"),
    ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", "virtual_bytes"),
    ("process_open_fds", "gauge", "Number of open file descriptors.", "open_fds"),
    ("process_max_fds", "gauge", "Maximum number of open file descriptors.", "max_fds"),
)


def _label_value(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value, scale=1) -> str | None:
    """Exposition form of a sample value; None for a value that is unknown (no sample)."""
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and scale == 1:
        return str(value)
    scaled = float(value) * scale
    if math.isnan(scaled):
        return "NaN"
    if math.isinf(scaled):
        return "+Inf" if scaled > 0 else "-Inf"
    return repr(scaled)


def _family(lines: list, name: str, kind: str, help_text: str, samples: list) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        label_text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels)
        lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")


def _scaled_samples(rows: list, key: str, scale) -> list:
    """[(labels, text)] for the rows [(labels, figures)] whose `key` is known."""
    samples = []
    for labels, figures in rows:
        value = _number(figures.get(key), scale)
        if value is not None:
            samples.append((labels, value))
    return samples


def _histogram(lines: list, name: str, help_text: str, snapshot: "dict | None") -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} histogram")
    if not snapshot:
        return
    for bound, count in snapshot["buckets"]:
        lines.append(f'{name}_bucket{{le="{_number(float(bound))}"}} {count}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {snapshot["count"]}')
    lines.append(f"{name}_sum {_number(float(snapshot['sum']))}")
    lines.append(f"{name}_count {snapshot['count']}")


def prometheus_text(metrics: dict) -> str:
    """The `metrics` reply data as Prometheus text. Unknown values (null) are left out,
    as the format intends, rather than exported as zero."""
    lines: list = []
    interfaces = metrics.get("interfaces") or {}
    names = sorted(interfaces)
    if "version" in metrics:
        _family(lines, "netpath_build_info", "gauge", "The agent's version and the running bundle's sha256 "
                "(first 12 digits); always 1.",
                [((("version", metrics["version"]), ("bundle", metrics.get("bundle") or "")), "1")])
    _family(lines, "netpath_interface_info", "gauge",
            "1 for each interface: its device (for joins with node_exporter's node_network_*{device}), "
            "family and OpenWrt logical name.",
            [((("interface", n), ("device", interfaces[n].get("device") or ""),
               ("family", interfaces[n].get("family") or ""), ("logical", interfaces[n].get("logical") or "")), "1")
             for n in names if "device" in interfaces[n]])
    _family(lines, "netpath_interface_state", "gauge",
            f"1 for the interface's current state, 0 for the others ({', '.join(STATES)}).",
            [((("interface", n), ("state", state)), "1" if interfaces[n].get("state") == state else "0")
             for n in names if "state" in interfaces[n] for state in STATES])
    rows = [((("interface", n),), interfaces[n]) for n in names]
    for name, kind, help_text, key, scale in _INTERFACE_METRICS:
        _family(lines, name, kind, help_text, _scaled_samples(rows, key, scale))
    targets = [((("interface", n), ("target", t)), figures)
               for n in names for t, figures in sorted((interfaces[n].get("targets") or {}).items())]
    for name, kind, help_text, key, scale in _TARGET_METRICS:
        _family(lines, name, kind, help_text, _scaled_samples(targets, key, scale))
    policies = metrics.get("policies") or {}
    shares = [((("policy", p), ("family", family), ("interface", iface)), _number(share))
              for p in sorted(policies) for family, spread in sorted(policies[p].get("shares", {}).items())
              for iface, share in sorted(spread.items())]
    _family(lines, "netpath_policy_share_ratio", "gauge",
            "Share of the policy's new flows each member interface gets now (0..1).", shares)
    _family(lines, "netpath_policy_last_resort", "gauge",
            "1 while no member of the policy is alive for the family and its last_resort decides.",
            [((("policy", p), ("family", family)), "1" if active else "0")
             for p in sorted(policies) for family, active in sorted(policies[p].get("last_resort", {}).items())])
    rules = metrics.get("rules") or {}
    _family(lines, "netpath_rule_new_flows_total", "counter",
            "New flows the rule decided (its counter sees the first packet of each flow only).",
            _scaled_samples([((("rule", r),), rules[r]) for r in sorted(rules)], "packets", 1))
    for name, kind, help_text, key, scale in _GLOBAL_METRICS:
        _family(lines, name, kind, help_text, _scaled_samples([((), metrics)], key, scale))
    if "kernel_repairs" in metrics:
        repairs = metrics["kernel_repairs"] or {}
        _family(lines, "netpath_kernel_repairs_total", "counter",
                "Repairs of NetPath's kernel state changed by another program, by kind of object.",
                [((("object", obj),), str(int(repairs.get(obj, 0))))
                 for obj in (*OBJECTS, *sorted(set(repairs) - set(OBJECTS)))])
    _histogram(lines, "netpath_state_swap_duration_seconds", "Duration of the state variant swaps.",
               metrics.get("swap_seconds"))
    process = metrics.get("process") or {}
    for name, kind, help_text, key in _PROCESS_METRICS:
        _family(lines, name, kind, help_text, _scaled_samples([((), process)], key, 1))
    return "\n".join(lines) + "\n"


# --- optional HTTP endpoint (--metrics-listen) -------------------------------------------

HTTP_TIMEOUT = 5.0  # seconds for the request head to arrive, and again for the reply to be taken
MAX_HTTP_HEAD = 8192  # bytes of request line and headers together
MAX_HTTP_CLIENTS = 16  # connections served at once; the next ones are told 503 at once
HTTP_ACCEPT_RATE = 100  # connections accepted a second (a scraper comes every few seconds)
HTTP_BACKLOG = 128


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(HTTP_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_metrics_http(host: str, port: int, get_text, max_clients: int = MAX_HTTP_CLIENTS):
    """Serve `GET /metrics` on host:port with the text of `get_text()` (plain or async).

    Deliberately tiny: HTTP/1.0 semantics, one request per connection, no other paths.
    Bind it to a loopback or LAN address; it has no authentication. Bounded like the control
    socket: `max_clients` connections at once (503 past that), HTTP_TIMEOUT to send the
    request and again to take the reply, MAX_HTTP_HEAD bytes of request head; clients are
    accepted only outside the agent's descriptor reserve (agent/clients.py)."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            status, body, head_only = await _http_answer(reader, get_text)
        except asyncio.TimeoutError:
            status, body = "408 Request Timeout", "request timeout\n"
        except Exception as exc:  # a failing reader must not end the endpoint
            log.exception("metrics endpoint: cannot produce the metrics")
            status, body = "500 Internal Server Error", f"cannot produce the metrics: {exc}\n"
        await _http_reply(writer, status, body, head_only)

    busy = _http_bytes("503 Service Unavailable", f"busy: {max_clients} connections are open; try again\n",
                      extra="Retry-After: 1\r\n")
    return serve_clients(_listen(host, port), on_connect, MAX_HTTP_HEAD, Refusals("metrics endpoint", log),
                         max_clients, busy, HTTP_ACCEPT_RATE)


def _http_bytes(status: str, body: str, head_only: bool = False, extra: str = "") -> bytes:
    """A whole HTTP/1.0 reply (without its body for HEAD)."""
    payload = body.encode()
    content_type = PROMETHEUS_CONTENT_TYPE if status.startswith("200") else "text/plain; charset=utf-8"
    head = (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n{extra}"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    return head if head_only else head + payload


async def _http_reply(writer: asyncio.StreamWriter, status: str, body: str, head_only: bool = False) -> None:
    try:
        writer.write(_http_bytes(status, body, head_only))
        await asyncio.wait_for(writer.drain(), HTTP_TIMEOUT)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        writer.transport.abort()
    finally:
        writer.close()


async def _read_head(reader: asyncio.StreamReader) -> "bytes | None":
    """The request line, once the whole head has arrived; None when the head is too long."""
    request_line = await reader.readuntil(b"\n")
    size = len(request_line)
    while True:
        line = await reader.readuntil(b"\n")  # headers: read and ignore
        size += len(line)
        if size > MAX_HTTP_HEAD:
            return None
        if not line.strip():
            return request_line


async def _http_answer(reader: asyncio.StreamReader, get_text) -> tuple:
    too_long = ("431 Request Header Fields Too Large",
                f"request head longer than {MAX_HTTP_HEAD // 1024} KiB\n", False)
    try:
        request_line = await asyncio.wait_for(_read_head(reader), HTTP_TIMEOUT)
    except (asyncio.LimitOverrunError, ValueError):  # one line longer than the stream's limit
        return too_long
    except asyncio.IncompleteReadError:
        return "400 Bad Request", "bad request\n", False
    if request_line is None:
        return too_long
    parts = request_line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return "400 Bad Request", "bad request\n", False
    method, target = parts[0], parts[1]
    if target.split("?", 1)[0] != "/metrics":
        return "404 Not Found", "not found; the metrics are at /metrics\n", False
    if method not in ("GET", "HEAD"):
        return "405 Method Not Allowed", "only GET /metrics\n", False
    text = get_text()
    if inspect.isawaitable(text):
        text = await asyncio.wait_for(text, HTTP_TIMEOUT)
    return "200 OK", text, method == "HEAD"
