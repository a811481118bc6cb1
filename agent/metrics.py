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
import subprocess
from pathlib import Path

from .drift import OBJECTS

SYSFS_NET = Path("/sys/class/net")
PROC_CONNTRACK = Path("/proc/net/nf_conntrack")
CONNTRACK_TIMEOUT = 10.0
RULE_COMMENT_PREFIX = "rule "  # the compiler tags each user rule `comment "rule <name>"`
RULES_CHAIN = "rules"

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
    """{rule name: {"packets", "bytes"}} from the counters of chain `rules` in `inet <table>`.

    A rule that matches both families has two nft rules with the same comment; their
    counters add up. `nft` is an agent.nft.Nft (None: make one). {} when the table is absent."""
    if nft is None:
        from .nft import Nft

        nft = Nft()
    listing = nft.list_json(f"chain inet {table} {RULES_CHAIN}")
    counters: dict = {}
    for item in listing.get("nftables", ()):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule or rule.get("chain") != RULES_CHAIN:
            continue
        comment = rule.get("comment", "")
        if not comment.startswith(RULE_COMMENT_PREFIX):
            continue
        counter = next((e["counter"] for e in rule.get("expr", ())
                        if isinstance(e, dict) and "counter" in e), None)
        if not isinstance(counter, dict):
            continue  # e.g. the `log` line that precedes a logging rule
        name = comment[len(RULE_COMMENT_PREFIX):]
        total = counters.setdefault(name, {"packets": 0, "bytes": 0})
        total["packets"] += int(counter.get("packets", 0))
        total["bytes"] += int(counter.get("bytes", 0))
    return counters


# --- Prometheus text exposition format (version 0.0.4) -----------------------------------

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# metric name, type, help, key in the reply, scale to base units (seconds, ratio)
_INTERFACE_METRICS = (
    ("netpath_interface_up", "gauge", "1 when the interface carries traffic (online or disconnecting).",
     "up", 1),
    ("netpath_interface_latency_seconds", "gauge", "Average probe round-trip time over the tracking window.",
     "latency_ms", 0.001),
    ("netpath_interface_loss_ratio", "gauge", "Share of probes lost over the tracking window (0..1).",
     "loss_pct", 0.01),
    ("netpath_interface_score", "gauge", "Health score (0 .. down+up, mwan3 semantics).",
     "score", 1),
    ("netpath_interface_transmit_bytes_total", "counter", "Bytes sent on the interface's device.",
     "tx_bytes", 1),
    ("netpath_interface_receive_bytes_total", "counter", "Bytes received on the interface's device.",
     "rx_bytes", 1),
    ("netpath_interface_connections", "gauge", "Conntrack entries carrying the interface's mark.",
     "connections", 1),
    ("netpath_interface_state_changes_total", "counter", "State changes since the agent started.",
     "state_changes", 1),
)
_RULE_METRICS = (
    ("netpath_rule_packets_total", "counter", "Packets that matched the rule (new flows).", "packets"),
    ("netpath_rule_bytes_total", "counter", "Bytes of the packets that matched the rule.", "bytes"),
)
_GLOBAL_METRICS = (
    ("netpath_state_swaps_total", "counter", "State variant swaps loaded into nft.", "swaps", 1),
    ("netpath_state_swap_duration_seconds", "gauge", "Duration of the last state variant swap.",
     "swap_seconds_last", 1),
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


def prometheus_text(metrics: dict) -> str:
    """The `metrics` reply data as Prometheus text. Unknown values (null) are left out,
    as the format intends, rather than exported as zero."""
    lines: list = []
    interfaces = metrics.get("interfaces") or {}
    for name, kind, help_text, key, scale in _INTERFACE_METRICS:
        samples = []
        for iface in sorted(interfaces):
            value = _number(interfaces[iface].get(key), scale)
            if value is not None:
                samples.append(((("interface", iface),), value))
        _family(lines, name, kind, help_text, samples)
    rules = metrics.get("rules") or {}
    for name, kind, help_text, key in _RULE_METRICS:
        samples = []
        for rule in sorted(rules):
            value = _number(rules[rule].get(key))
            if value is not None:
                samples.append(((("rule", rule),), value))
        _family(lines, name, kind, help_text, samples)
    for name, kind, help_text, key, scale in _GLOBAL_METRICS:
        value = _number(metrics.get(key), scale)
        _family(lines, name, kind, help_text, [((), value)] if value is not None else [])
    if "kernel_repairs" in metrics:
        repairs = metrics["kernel_repairs"] or {}
        _family(lines, "netpath_kernel_repairs_total", "counter",
                "Repairs of NetPath's kernel state changed by another program, by kind of object.",
                [((("object", obj),), str(int(repairs.get(obj, 0))))
                 for obj in (*OBJECTS, *sorted(set(repairs) - set(OBJECTS)))])
    return "\n".join(lines) + "\n"


# --- optional HTTP endpoint (--metrics-listen) -------------------------------------------

HTTP_TIMEOUT = 5.0
MAX_HTTP_HEAD = 8192


async def serve_metrics_http(host: str, port: int, get_text) -> asyncio.AbstractServer:
    """Serve `GET /metrics` on host:port with the text of `get_text()` (plain or async).

    Deliberately tiny: HTTP/1.0 semantics, one request per connection, no other paths.
    Bind it to a loopback or LAN address; it has no authentication."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            status, body, head_only = await asyncio.wait_for(_http_answer(reader, get_text),
                                                             HTTP_TIMEOUT)
        except asyncio.TimeoutError:
            status, body = "408 Request Timeout", "request timeout\n"
        except Exception as exc:  # a failing reader must not end the endpoint
            log.exception("metrics endpoint: cannot produce the metrics")
            status, body = "500 Internal Server Error", f"cannot produce the metrics: {exc}\n"
        payload = body.encode()
        content_type = PROMETHEUS_CONTENT_TYPE if status.startswith("200") else "text/plain; charset=utf-8"
        head = (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
        try:
            writer.write(head if head_only else head + payload)
            await asyncio.wait_for(writer.drain(), HTTP_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            writer.transport.abort()
        finally:
            writer.close()

    return await asyncio.start_server(on_connect, host, port, limit=MAX_HTTP_HEAD)


async def _http_answer(reader: asyncio.StreamReader, get_text) -> tuple:
    try:
        request_line = await reader.readuntil(b"\n")
        while (await reader.readuntil(b"\n")).strip():  # headers: read and ignore
            pass
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return "400 Bad Request", "bad request\n", False
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
        text = await text
    return "200 OK", text, method == "HEAD"
