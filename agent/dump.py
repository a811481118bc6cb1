"""`netpath dump [BUNDLE]`: one text to paste into a bug report (mwan3's `mwan3 internal`).

Versions, the bundle and its config's digest (not the config: it may hold addresses and URLs
a user would rather not publish), the agent's status and history, `nft list table` of
NetPath's table, NetPath's ip rules (protocol 93, or the bundle's) and routing tables, the
link and address state of every WAN device, and the last log lines. Every part is read
on its own with a time limit; a part that cannot be read says why and the dump goes on.
Credentials in URLs (`scheme://user:password@`) are masked wherever they appear.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

from . import VERSION
from . import bundle as bundle_mod
from . import ipc

DEFAULT_BUNDLE = "/var/lib/netpath/bundle"
COMMAND_TIMEOUT = 10
LOG_LINES = 60
CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")


def run(argv: list) -> str:
    """What `argv` printed (stdout, then stderr), or why it could not run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              stdin=subprocess.DEVNULL, errors="replace")
    except FileNotFoundError:
        return f"({argv[0]} is not installed)"
    except subprocess.TimeoutExpired:
        return f"({' '.join(argv)} did not finish within {COMMAND_TIMEOUT} s)"
    text = (done.stdout + done.stderr).rstrip("\n")
    if done.returncode != 0:
        text += f"\n(exit status {done.returncode})"
    return text or "(nothing)"


def read_text(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read().rstrip("\n")
    except OSError as exc:
        return f"({path}: {exc.strerror})"


def versions() -> str:
    lines = [f"netpath {VERSION}", f"python {platform.python_version()}", f"kernel {platform.release()} "
             f"{platform.machine()}", run(["nft", "--version"]), run(["ip", "-V"])]
    if os.path.exists("/etc/openwrt_release"):
        lines.append(read_text("/etc/openwrt_release"))
    elif os.path.exists("/etc/os-release"):
        lines += [line for line in read_text("/etc/os-release").splitlines() if line.startswith("PRETTY_NAME=")]
    return "\n".join(lines)


def agent_part(socket_path: str) -> str:
    try:
        status = ipc.request(socket_path, {"cmd": "status"}, timeout=5)
        history = ipc.request(socket_path, {"cmd": "history", "limit": 50}, timeout=5)
    except ipc.IpcError as exc:
        return str(exc)
    return json.dumps({"status": status, "history": history.get("history")}, indent=2, sort_keys=True)


def log_part() -> str:
    if shutil.which("logread"):  # OpenWrt
        lines = [line for line in run(["logread"]).splitlines() if "netpath" in line]
        return "\n".join(lines[-LOG_LINES:]) or "(no netpath lines in logread)"
    if shutil.which("journalctl"):
        return run(["journalctl", "--no-pager", "-n", str(LOG_LINES), "-t", "netpath-agent", "-t", "netpath"])
    return "(no logread or journalctl here: see the agent's stderr)"


def dump(bundle_dir: str, socket_path: str) -> str:
    parts = [("NetPath dump", time.strftime("%Y-%m-%d %H:%M:%S %z")), ("versions", versions())]
    try:
        b = bundle_mod.read(bundle_dir)
    except bundle_mod.BundleError as exc:
        b = None
        parts.append(("bundle", str(exc)))
    if b is not None:
        model = b.model
        parts.append(("bundle", f"{b.directory}\nmanifest sha256 {b.digest}\nconfig digest {model.source_digest}\n"
                                f"enabled {model.enabled}, table inet {model.table}, mark mask 0x{model.mask:08x}, "
                                f"route protocol {model.route_protocol}\ninterfaces: "
                                + ", ".join(f"{i.name} ({i.family}, device {i.device}, mark 0x{i.mark:08x}, "
                                            f"table {i.table}{'' if i.enabled else ', disabled'})"
                                            for i in model.interfaces)))
    parts.append(("agent", agent_part(socket_path)))
    table = b.model.table if b else "netpath"
    protocol = b.model.route_protocol if b else 93
    parts.append((f"nft list table inet {table}", run(["nft", "list", "table", "inet", table])))
    for family in ("-4", "-6"):
        parts.append((f"ip {family} rule (protocol {protocol})", run(["ip", family, "rule", "show", "protocol",
                                                                      str(protocol)])))
    if b is not None:
        for iface in b.model.interfaces:
            family = "-4" if iface.family == "ipv4" else "-6"
            parts.append((f"ip {family} route show table {iface.table} ({iface.name})",
                          run(["ip", family, "route", "show", "table", str(iface.table)])))
        for device in sorted({i.device for i in b.model.interfaces}):
            parts.append((f"link and addresses of {device}", run(["ip", "-d", "addr", "show", "dev", device])))
    parts.append(("ip route (main)", run(["ip", "-4", "route", "show", "table", "main"]) + "\n"
                  + run(["ip", "-6", "route", "show", "table", "main"])))
    parts.append(("log", log_part()))
    text = "\n\n".join(f"== {title} ==\n{body}" for title, body in parts) + "\n"
    return CREDENTIALS.sub(r"\1***:***@", text)


def main(argv, prog: str = "netpath dump") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Everything a bug report needs, as one text.")
    p.add_argument("bundle", nargs="?", default=DEFAULT_BUNDLE, help=f"bundle directory (default {DEFAULT_BUNDLE})")
    p.add_argument("--socket", default=os.environ.get("NETPATH_SOCKET", ipc.DEFAULT_SOCKET),
                   help=f"the agent's control socket (default {ipc.DEFAULT_SOCKET})")
    args = p.parse_args(argv)
    try:
        sys.stdout.write(dump(args.bundle, args.socket))
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
