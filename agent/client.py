"""`netpath status|interfaces|policies|rules|enable|disable|reload|metrics|history|ifevent`:
the agent's socket commands from the shell.

Readable tables by default (one glance tells what is online, what is not and since when),
`--json` for scripts (the agent's reply as it came), `--watch` for a view that refreshes
in place. Exit status: 0 success, 1 no agent or the agent refused, 2 bad arguments.
`ifevent` (called by the OpenWrt hotplug script) exits 0 without a word when no agent runs.

Standard library only, and nothing heavy is imported: this runs on routers, from hotplug.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import ipc

DEFAULT_INTERVAL = 2.0
IFEVENT_TIMEOUT = 3.0  # under the hotplug script's own 5 s bound
MISSING = "-"


# --- formatting helpers ------------------------------------------------------------------

def duration(seconds) -> str:
    """A short human duration: 45s, 3m12s, 2h03m, 5d04h."""
    if seconds is None:
        return MISSING
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def clock(timestamp, now: float) -> str:
    """Local time of day for the last 24 hours, the date before that."""
    if timestamp is None:
        return MISSING
    if now - timestamp < 86400:
        return time.strftime("%H:%M:%S", time.localtime(timestamp))
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def since(timestamp, now: float) -> str:
    if timestamp is None:
        return MISSING
    return f"{duration(now - timestamp)} (since {clock(timestamp, now)})"


def size(count) -> str:
    if count is None:
        return MISSING
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def percent(value) -> str:
    if value is None:
        return MISSING
    return f"{value:.0f}%" if float(value).is_integer() else f"{value:.1f}%"


def millis(value) -> str:
    return MISSING if value is None else f"{value:.1f} ms"


def number(value) -> str:
    return MISSING if value is None else str(value)


def table(headers: list, rows: list, indent: str = "", show_headers: bool = True) -> list:
    """Left-aligned columns two spaces apart; the last column is free text."""
    cells = [[str(c) for c in headers]] if show_headers else []
    cells += [[MISSING if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        text = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
        lines.append((indent + text).rstrip())
    return lines


def spread_text(policy: dict, family: str) -> str:
    spread = (policy.get("spread") or {}).get(family) or {}
    if (policy.get("last_resort_active") or {}).get(family):
        return f"{policy.get('last_resort', '?')} (last resort)"
    if not spread:
        return MISSING
    return ", ".join(f"{name} {percent(share)}" for name, share in spread.items())


# --- renderers: reply dict -> text --------------------------------------------------------

def render_status(reply: dict, now: float) -> str:
    bundle = reply.get("bundle") or {}
    digest = (bundle.get("digest") or "")[:12]
    lines = [f"NetPath {reply.get('version', '?')}, agent up {duration(reply.get('uptime'))}; "
             f"bundle {bundle.get('dir', '?')} (sha256 {digest or '?'})"]
    if reply.get("enabled") is False:
        return "\n".join([*lines, reply.get("message") or "NetPath is disabled"])
    interfaces = reply.get("interfaces") or []
    usable = [i["name"] for i in interfaces if i.get("usable")]
    unusable = [i["name"] for i in interfaces if not i.get("usable")]
    summary = f"{len(usable)} of {len(interfaces)} interfaces carry traffic"
    if unusable:
        summary += f"; not: {', '.join(unusable)}"
    lines += [summary, ""]
    lines += interface_table(interfaces, now)
    policies = reply.get("policies") or []
    if policies:
        lines.append("")
        lines += table(["POLICY", "MODE", "IPV4", "IPV6"],
                       [[p.get("name"), p.get("mode"), spread_text(p, "ipv4"), spread_text(p, "ipv6")]
                        for p in policies])
    lines += ["", kernel_line(reply.get("kernel"), now)]
    return "\n".join(lines)


def kernel_line(kernel: "dict | None", now: float) -> str:
    """When NetPath's kernel state last drifted, what was put right, how often."""
    if not kernel:
        return "kernel: drift not reported by this agent"
    if kernel.get("last_drift") is None:
        return "kernel: as loaded, no drift since the agent started"
    repairs = ", ".join(f"{obj} {n}" for obj, n in (kernel.get("repairs") or {}).items()) or "none"
    line = f"kernel: changed outside NetPath {duration(now - kernel['last_drift'])} ago"
    if kernel.get("last_error"):
        return f"{line}, NOT repaired: {kernel['last_error']}; repairs so far: {repairs}"
    return f"{line}, repaired ({', '.join(kernel.get('last_repaired') or []) or '?'}); repairs so far: {repairs}"


def interface_table(interfaces: list, now: float) -> list:
    if not interfaces:
        return ["no interfaces"]
    rows = []
    for i in interfaces:
        latency = (i.get("latency") or {}).get("avg")
        rows.append([i.get("name"), i.get("state"), since(i.get("since"), now), i.get("link"),
                     i.get("device"), millis(latency), percent(i.get("loss_pct")),
                     number(i.get("connections")), i.get("reason") or ""])
    return table(["INTERFACE", "STATE", "FOR", "LINK", "DEVICE", "LATENCY", "LOSS", "CONNS", "REASON"],
                 rows)


def render_interfaces(reply: dict, now: float, names=()) -> str:
    interfaces = [i for i in reply.get("interfaces") or [] if not names or i.get("name") in names]
    if not interfaces:
        return "no interfaces" + (f" named {', '.join(names)}" if names else "")
    blocks = []
    for i in interfaces:
        lat = i.get("latency") or {}
        full = (i.get("up") or 0) + (i.get("down") or 0)
        lines = [f"{i.get('name')}  {i.get('state')} for {since(i.get('since'), now)}",
                 f"  device   {i.get('device')} ({i.get('family')}), link {i.get('link')}, "
                 f"admin {i.get('admin')}, config {'enabled' if i.get('enabled') else 'disabled'}, "
                 f"{'carries traffic' if i.get('usable') else 'carries no traffic'}",
                 f"  health   score {number(i.get('score'))}/{full} (down {number(i.get('down'))}, "
                 f"up {number(i.get('up'))}), method {i.get('method')}; {i.get('reason') or ''}".rstrip("; ")]
        targets = i.get("targets") or []
        target_rows = []
        for t in targets:
            verdict = MISSING if t.get("ok") is None else ("ok" if t.get("ok") else "failed")
            target_rows.append([t.get("target"), verdict, millis(t.get("latency_ms")),
                                f"{number(t.get('received'))}/{number(t.get('sent'))}", t.get("error") or ""])
        for n, line in enumerate(table(["TARGET", "RESULT", "LATENCY", "REPLIES", "ERROR"], target_rows)
                                 if target_rows else ["none"]):
            lines.append(("  targets  " if n == 0 else "           ") + line)
        lines.append(f"  window   latency avg {millis(lat.get('avg'))}, min {millis(lat.get('min'))}, "
                     f"max {millis(lat.get('max'))}, jitter {millis(lat.get('jitter'))}; "
                     f"loss {percent(i.get('loss_pct'))}")
        lines.append(f"  routing  mark {i.get('mark')}, table {i.get('table')}, "
                     f"gateway {i.get('gateway') or MISSING}, address {i.get('address') or MISSING}")
        lines.append(f"  traffic  tx {size(i.get('tx_bytes'))} ({number(i.get('tx_packets'))} packets), "
                     f"rx {size(i.get('rx_bytes'))} ({number(i.get('rx_packets'))} packets), "
                     f"{number(i.get('connections'))} connections")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_policies(reply: dict, now: float) -> str:
    policies = reply.get("policies") or []
    if not policies:
        return "no policies"
    blocks = []
    for p in policies:
        lines = [f"{p.get('name')}  {p.get('mode')}, last resort {p.get('last_resort')}, "
                 f"alive-state {p.get('state')}",
                 f"  ipv4     {spread_text(p, 'ipv4')}",
                 f"  ipv6     {spread_text(p, 'ipv6')}"]
        rows = [[m.get("name"), m.get("interface"), f"metric {m.get('metric')}",
                 f"weight {m.get('weight')}", "alive" if m.get("alive") else "dead"]
                for m in p.get("members") or []]
        for n, line in enumerate(table([""] * 5, rows, show_headers=False) if rows else ["none"]):
            lines.append(("  members  " if n == 0 else "           ") + line)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_rules(reply: dict, now: float) -> str:
    rules = reply.get("rules") or []
    if not rules:
        return "no rules"
    return "\n".join(table(["RULE", "POLICY", "FLOWS", "BYTES"],
                           [[r.get("name"), r.get("policy"), number(r.get("packets")), size(r.get("bytes"))]
                            for r in rules]))


def render_history(reply: dict, now: float) -> str:
    history = reply.get("history") or []
    if not history:
        return "no state changes yet"
    return "\n".join(table(["TIME", "AGO", "INTERFACE", "CHANGE", "REASON"],
                           [[clock(h.get("time"), now), duration(now - h["time"]) if h.get("time") else MISSING,
                             h.get("interface"), f"{h.get('from')} -> {h.get('to')}", h.get("reason") or ""]
                            for h in history]))


def render_metrics(reply: dict, now: float) -> str:
    metrics = reply.get("metrics") or {}
    interfaces = metrics.get("interfaces") or {}
    lines = table(["INTERFACE", "UP", "LATENCY", "LOSS", "SCORE", "TX", "RX", "CONNS", "CHANGES"],
                  [[name, number(m.get("up")), millis(m.get("latency_ms")), percent(m.get("loss_pct")),
                    number(m.get("score")), size(m.get("tx_bytes")), size(m.get("rx_bytes")),
                    number(m.get("connections")), number(m.get("state_changes"))]
                   for name, m in sorted(interfaces.items())])
    rules = metrics.get("rules") or {}
    if rules:
        lines.append("")
        lines += table(["RULE", "FLOWS", "BYTES"],
                       [[name, number(r.get("packets")), size(r.get("bytes"))] for name, r in sorted(rules.items())])
    last = metrics.get("swap_seconds_last")
    lines += ["", f"state swaps: {number(metrics.get('swaps'))}, last took "
                  f"{MISSING if last is None else f'{last * 1000:.1f} ms'}"]
    return "\n".join(lines)


def render_enable(reply: dict, now: float) -> str:
    return f"{reply.get('interface')}: admin {reply.get('admin')}, state {reply.get('state')}"


def render_reload(reply: dict, now: float) -> str:
    bundle = reply.get("bundle") or {}
    verdict = "changed" if reply.get("changed") else "unchanged, nothing to do"
    return f"bundle {bundle.get('dir', '?')} (sha256 {(bundle.get('digest') or '?')[:12]}): {verdict}"


# --- commands ----------------------------------------------------------------------------

# subcommand -> (help, renderer, can be watched)
COMMANDS = {
    "status": ("overview: interfaces, since when, policies", render_status, True),
    "interfaces": ("interfaces in detail: health, targets, routing, traffic", render_interfaces, True),
    "policies": ("policies: how new flows are spread now", render_policies, True),
    "rules": ("rules and how many new flows each one matched", render_rules, True),
    "enable": ("lift a manual disable of an interface", render_enable, False),
    "disable": ("take an interface out of every policy until enabled again", render_enable, False),
    "reload": ("load the current bundle (as SIGHUP does)", render_reload, False),
    "metrics": ("figures for monitoring (--prometheus: exposition text)", render_metrics, True),
    "history": ("recent state changes, newest last", render_history, True),
    "ifevent": ("pass a netifd event to the agent (hotplug)", None, False),
}


def _parser(command: str, prog: str) -> argparse.ArgumentParser:
    help_text, _render, watchable = COMMANDS[command]
    p = argparse.ArgumentParser(prog=prog, description=help_text[0].upper() + help_text[1:] + ".")
    if command in ("enable", "disable"):
        p.add_argument("interface", help="interface name, as in the config")
    elif command == "interfaces":
        p.add_argument("names", nargs="*", metavar="INTERFACE", help="show only these")
    elif command == "history":
        p.add_argument("--limit", type=int, metavar="N", help="at most the last N changes")
    elif command == "metrics":
        p.add_argument("--prometheus", action="store_true", help="Prometheus text exposition format")
    elif command == "ifevent":
        p.add_argument("action", choices=("ifup", "ifdown", "ifupdate"))
        p.add_argument("interface", help="netifd's logical interface name")
        p.add_argument("device", nargs="?", help="the device netifd reports")
    p.add_argument("--socket", default=os.environ.get("NETPATH_SOCKET", ipc.DEFAULT_SOCKET),
                   help=f"the agent's control socket (default: {ipc.DEFAULT_SOCKET})")
    p.add_argument("--timeout", type=float, default=IFEVENT_TIMEOUT if command == "ifevent" else 5.0,
                   help="seconds to wait for the agent")
    if command != "ifevent":
        p.add_argument("--json", action="store_true", help="print the agent's reply as JSON")
    if watchable:
        p.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
        p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                       help=f"refresh interval for --watch (default: {DEFAULT_INTERVAL:g})")
    return p


def build_request(command: str, args) -> dict:
    message = {"cmd": command}
    if command in ("enable", "disable"):
        message["interface"] = args.interface
    elif command == "history" and args.limit is not None:
        message["limit"] = args.limit
    elif command == "metrics" and args.prometheus:
        message["format"] = "prometheus"
    elif command == "ifevent":
        message.update(action=args.action, interface=args.interface, device=args.device)
    return message


def render(command: str, args, reply: dict, now: float) -> str:
    if command == "metrics" and args.prometheus:
        return reply.get("text", "").rstrip("\n")
    if command == "interfaces":
        return render_interfaces(reply, now, args.names)
    return COMMANDS[command][1](reply, now)


def usage(prog: str) -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"usage: {prog} COMMAND [--socket PATH] [--json] ...", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (help_text, _r, _w) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv, prog: str = "netpath") -> int:
    """Run one socket command; argv[0] is the subcommand (`status`, `enable`, ...)."""
    argv = list(argv)
    if not argv or argv[0] not in COMMANDS:
        problem = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"{usage(prog)}\n\n{prog}: error: {problem}", file=sys.stderr)
        return 2
    command = argv[0]
    sub_prog = prog if prog.split()[-1] == command else f"{prog} {command}"
    try:
        args = _parser(command, sub_prog).parse_args(argv[1:])
    except SystemExit as exc:  # --help (0) or bad arguments (2): argparse already said why
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "watch", False) and args.interval <= 0:
        print(f"{sub_prog}: error: --interval must be more than 0 seconds", file=sys.stderr)
        return 2
    if command == "history" and args.limit is not None and args.limit < 1:
        print(f"{sub_prog}: error: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        if getattr(args, "watch", False):
            return watch(command, args, sys.stdout)
        if command == "ifevent":
            return _ifevent(args, sub_prog)
        return _once(command, args, sub_prog, sys.stdout)
    except BrokenPipeError:  # `netpath status --watch | head`: the reader has seen enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush fails silently
        return 0


def disabled_in_config() -> "str | None":
    """The config file when its globals say `enabled 0` (then the init script starts no agent)."""
    path = os.path.join(os.environ.get("UCI_CONFIG_DIR", "/etc/config"), "netpath")
    try:
        from netpath.compiler import uci  # the UCI reader alone: standard library only

        section = uci.load(path, strict=False).get("globals")
    except (OSError, ValueError, uci.UciError):  # no file, or one the compiler will refuse
        return None
    option = section.options.get("enabled") if section is not None else None
    return path if option is not None and option.value in ("0", "off", "false", "no", "disabled") else None


def _once(command: str, args, prog: str, out) -> int:
    try:
        reply = ipc.request(args.socket, build_request(command, args), timeout=args.timeout)
    except ipc.AgentNotRunning as exc:
        config = disabled_in_config()
        print(f"{prog}: NetPath is disabled (globals enabled 0) in {config}: no agent runs; enable it with "
              "`uci set netpath.globals.enabled=1; uci commit netpath; /etc/init.d/netpath start`" if config
              else f"{prog}: {exc}", file=sys.stderr)
        return 1
    except ipc.IpcError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out.write(json.dumps(reply, indent=2) + "\n")
        return 0 if reply["ok"] else 1
    if not reply["ok"]:
        print(f"{prog}: the agent refused: {reply.get('error', 'no reason given')}", file=sys.stderr)
        return 1
    if command == "interfaces" and args.names:
        known = [i.get("name") for i in reply.get("interfaces") or []]
        unknown = [n for n in args.names if n not in known]
        if unknown:
            print(f"{prog}: no interface {', '.join(map(repr, unknown))} in the running agent "
                  f"(have: {', '.join(known) or 'none'})", file=sys.stderr)
            return 2
    out.write(render(command, args, reply, time.time()) + "\n")
    return 0


def _ifevent(args, prog: str) -> int:
    try:
        reply = ipc.request(args.socket, build_request("ifevent", args), timeout=args.timeout)
    except ipc.AgentNotRunning:
        return 0  # nothing to tell: the agent reads the links itself when it starts
    except ipc.IpcError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    if not reply["ok"]:
        print(f"{prog}: the agent refused: {reply.get('error', 'no reason given')}", file=sys.stderr)
        return 1
    return 0


# Cursor home, then each line clears its own rest and the end clears below: the view is
# redrawn over itself without the flicker of clearing the whole screen first.
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"


def watch_frame(command: str, args, now: float) -> str:
    """One refresh of --watch: the rendered reply, or what keeps it from being shown."""
    header = f"every {args.interval:g}s: netpath {command}    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}"
    try:
        reply = ipc.request(args.socket, build_request(command, args), timeout=args.timeout)
    except ipc.IpcError as exc:
        return f"{header}\n\n{exc} (retrying)"
    if not reply["ok"]:
        return f"{header}\n\nthe agent refused: {reply.get('error', 'no reason given')}"
    return f"{header}\n\n{render(command, args, reply, now)}"


def watch(command: str, args, out, iterations: int | None = None) -> int:
    """Refresh until Ctrl-C (or `iterations` frames). With --json: one reply per line."""
    in_place = out.isatty() and not args.json
    if in_place:
        out.write(HOME + "\x1b[2J")  # start from a blank screen once
    count = 0
    try:
        while iterations is None or count < iterations:
            started = time.monotonic()
            if args.json:
                try:
                    reply = ipc.request(args.socket, build_request(command, args), timeout=args.timeout)
                except ipc.IpcError as exc:
                    reply = {"ok": False, "error": str(exc)}
                out.write(json.dumps(reply) + "\n")
            elif in_place:
                frame = watch_frame(command, args, time.time())
                out.write(HOME + "".join(line + CLEAR_LINE + "\n" for line in frame.split("\n")) + CLEAR_BELOW)
            else:
                out.write(watch_frame(command, args, time.time()) + "\n\n")
            out.flush()
            count += 1
            if iterations is not None and count >= iterations:
                break
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="netpath"))
