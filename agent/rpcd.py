"""The Python half of the rpcd exec plugin `luci.netpath`: the calls that act or compute.

rpcd runs the plugin program luci/root/usr/libexec/rpcd/luci.netpath (busybox ash) for
every ubus call. It answers `list` and the read calls (status, interfaces, history) from
the agent's snapshot files itself, and hands every other call, and a read the snapshot
cannot answer, to `python3 -m netpath.agent.rpcd call METHOD` with the same standard
input: the arguments as JSON. One JSON object goes to stdout. rpcd ignores the exit status
and does not check arguments against the `list` signature, so every argument is checked
here.

Every reply carries "ok". Errors are {"ok": false, "error": "<what to do>"}; when the
agent cannot be reached the reply also says "agent": "not running", so the views can show
a banner instead of failing. Nothing in a request is ever run or opened: an interface
name selects one of the bundle's interfaces, a ping target must parse as an IP address
and reaches `ping` as one argv element.

Environment (for tests and unusual installs): NETPATH_SOCKET (default
/var/run/netpath.sock), NETPATH_BUNDLE (default /var/lib/netpath/bundle).
"""

import ipaddress
import json
import os
import subprocess
import sys

from .names import DEVICE_RE, NAME_RE, plain_ip  # the compiler's own patterns

DEFAULT_BUNDLE = "/var/lib/netpath/bundle"
AGENT_TIMEOUT = 10.0  # seconds; rpcd itself gives up after 120
PING_TIMEOUT = 15.0  # 3 echoes with -W 1 take about 3 s
MAX_OUTPUT = 64 * 1024  # rpcd's pipe buffers are 256 KiB; stay well below
MAX_RULESET = 192 * 1024
HISTORY_MAX = 200


class BadArguments(Exception):
    """A request LuCI should not have sent; the message names the argument."""


def socket_path():
    from .ipc import DEFAULT_SOCKET

    return os.environ.get("NETPATH_SOCKET") or DEFAULT_SOCKET


def bundle_dir():
    return os.environ.get("NETPATH_BUNDLE") or DEFAULT_BUNDLE


def error(message, **extra):
    return {"ok": False, "error": message, **extra}


# --- arguments ---------------------------------------------------------------------------

def _string(args, key, required=True):
    value = args.get(key)
    if value is None or value == "":
        if required:
            raise BadArguments(f'"{key}" is required')
        return None
    if not isinstance(value, str):
        raise BadArguments(f'"{key}" must be a string, got {type(value).__name__}')
    return value


def _name(args, key):
    value = _string(args, key)
    if not NAME_RE.match(value):
        raise BadArguments(f'"{key}": {value!r} is not an interface name '
                           "(1-32 letters, digits or underscores)")
    return value


def _address(args, key):
    value = _string(args, key).strip()
    try:
        return str(plain_ip(value))  # no IPv6 zone id: it would carry any text to ping
    except ValueError:
        raise BadArguments(f'"{key}": {value!r} is not an IP address') from None


def _port(args, key):
    value = args.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise BadArguments(f'"{key}" must be a port number 0..65535, got {value!r}')
    return value


def _limit(args):
    value = args.get("limit")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= HISTORY_MAX:
        raise BadArguments(f'"limit" must be a whole number 1..{HISTORY_MAX}, got {value!r}')
    return value


# --- the agent -----------------------------------------------------------------------------

def ask_agent(message):
    """The agent's reply to one request, or an error reply naming what went wrong."""
    from . import ipc

    try:
        return ipc.request(socket_path(), message, timeout=AGENT_TIMEOUT)
    except ipc.AgentNotRunning as exc:
        return error(str(exc), agent="not running")
    except ipc.IpcError as exc:
        return error(str(exc), agent="unreachable")


def load_bundle():
    from . import bundle as bundle_mod

    try:
        return bundle_mod.read(bundle_dir()), None
    except bundle_mod.BundleError as exc:
        return None, error(f"{exc} (the service compiles /etc/config/netpath into "
                           f"{DEFAULT_BUNDLE} when it starts)")


# --- methods -------------------------------------------------------------------------------

def call_status(args):
    return ask_agent({"cmd": "status"})


def call_interfaces(args):
    return ask_agent({"cmd": "interfaces"})


def call_metrics(args):
    return ask_agent({"cmd": "metrics"})


def call_history(args):
    limit = _limit(args)
    return ask_agent({"cmd": "history", **({"limit": limit} if limit else {})})


def call_enable(args):
    return ask_agent({"cmd": "enable", "interface": _name(args, "interface")})


def call_disable(args):
    return ask_agent({"cmd": "disable", "interface": _name(args, "interface")})


def call_explain(args):
    """`netpath explain --json` on the bundle. Without "down", the interfaces the running
    agent cannot use count as down; with no agent, the config's initial states do."""
    from . import explain

    src, dst = _address(args, "src"), _address(args, "dst")
    if ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
        raise BadArguments('"src" and "dst" must be of the same family (both IPv4 or both IPv6)')
    proto = (_string(args, "proto", required=False) or "tcp").lower()
    if proto not in explain.PROTO_NUMBERS:
        raise BadArguments(f'"proto": {proto!r} is not one of {", ".join(sorted(explain.PROTO_NUMBERS))}')
    iif = _string(args, "iif", required=False) or ""
    if iif and not DEVICE_RE.match(iif):
        raise BadArguments(f'"iif": {iif!r} is not a device name')
    sport, dport = _port(args, "sport"), _port(args, "dport")
    down = args.get("down")
    if down is not None and (not isinstance(down, list) or not all(isinstance(d, str) for d in down)):
        raise BadArguments('"down" must be a list of interface names')

    bundle, problem = load_bundle()
    if problem:
        return problem
    names = [i.name for i in bundle.model.interfaces]
    if down is not None:
        unknown = [d for d in down if d not in names]
        if unknown:
            raise BadArguments(f'"down": no interface {", ".join(map(repr, unknown))} in the bundle '
                               f'(have: {", ".join(names) or "none"})')
        state_from = "request"
    else:
        live = ask_agent({"cmd": "interfaces"})
        if live.get("ok"):
            down = [i["name"] for i in live["interfaces"] if not i.get("usable")]
            state_from = "agent"
        else:
            state_from = "config"  # explain's default: the initial states
    packet = explain.Packet(src, dst, proto, sport, dport, iif)
    try:
        result = explain.explain(bundle.model, packet, frozenset(down) if down is not None else None)
    except ValueError as exc:
        raise BadArguments(str(exc)) from None
    return {"ok": True, "state_from": state_from, "text": explain.format_text(result), **result}


def _ping_device(name):
    """The device `name` sends through: the agent's (it resolves logical interfaces),
    else the bundle's."""
    live = ask_agent({"cmd": "interfaces"})
    if live.get("ok"):
        for iface in live["interfaces"]:
            if iface["name"] == name:
                return iface["device"], None
        known = ", ".join(i["name"] for i in live["interfaces"]) or "none"
        return None, error(f'"interface": no interface {name!r} in the running agent (have: {known})')
    bundle, problem = load_bundle()
    if problem:
        return None, problem
    for iface in bundle.model.interfaces:
        if iface.name == name:
            return iface.device, None
    known = ", ".join(i.name for i in bundle.model.interfaces) or "none"
    return None, error(f'"interface": no interface {name!r} in the bundle (have: {known})')


def call_ping(args):
    name = _name(args, "interface")
    target = _address(args, "target")
    device, problem = _ping_device(name)
    if problem:
        return problem
    if not DEVICE_RE.match(device or ""):
        return error(f"interface {name!r} has no usable device ({device!r})")
    argv = ["ping", "-I", device, "-c", "3", "-W", "1", target]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PING_TIMEOUT)
    except FileNotFoundError:
        return error("`ping` is not installed")
    except subprocess.TimeoutExpired:
        return error(f"ping did not finish within {PING_TIMEOUT:g} s", command=argv)
    output = (proc.stdout + proc.stderr).decode("utf-8", "replace")[:MAX_OUTPUT]
    return {"ok": True, "interface": name, "device": device, "target": target, "command": argv,
            "exit_code": proc.returncode, "reachable": proc.returncode == 0, "output": output}


def call_ruleset(args):
    bundle, problem = load_bundle()
    if problem:
        return problem
    rel = bundle.manifest.get("ruleset", "ruleset.nft")
    text = bundle.text(rel) if isinstance(rel, str) else bundle.text("ruleset.nft")
    truncated = len(text) > MAX_RULESET
    return {"ok": True, "bundle": str(bundle.directory), "digest": bundle.digest,
            "text": text[:MAX_RULESET], "truncated": truncated}


METHODS = {
    "status": call_status, "interfaces": call_interfaces, "metrics": call_metrics,
    "history": call_history, "enable": call_enable, "disable": call_disable,
    "explain": call_explain, "ping": call_ping, "ruleset": call_ruleset,
}


def read_arguments(stream):
    raw = stream.read(MAX_OUTPUT + 1)
    if len(raw) > MAX_OUTPUT:
        raise BadArguments("the arguments are too long")
    if not raw.strip():
        return {}
    try:
        args = json.loads(raw)
    except ValueError:
        raise BadArguments("the arguments are not valid JSON") from None
    if not isinstance(args, dict):
        raise BadArguments("the arguments must be a JSON object")
    args.pop("ubus_rpc_session", None)  # added by rpcd for calls from LuCI
    return args


def call(method, stream):
    handler = METHODS.get(method)
    if handler is None:
        return error(f"unknown method {method!r}; known methods: {', '.join(sorted(METHODS))}")
    try:
        return handler(read_arguments(stream))
    except BadArguments as exc:
        return error(f"{method}: {exc}")


def main(argv):
    if len(argv) == 3 and argv[1] == "call":
        try:
            reply = call(argv[2], sys.stdin)
        except Exception as exc:  # rpcd shows nothing of a traceback; say what broke
            reply = error(f"internal error in luci.netpath {argv[2]}: {type(exc).__name__}: {exc}")
    else:
        print("usage: python3 -m netpath.agent.rpcd call METHOD  (arguments as JSON on stdin)",
              file=sys.stderr)
        return 2
    json.dump(reply, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
