"""`netpath status|interfaces|...`: rendering from reply fixtures, and the real command
against a real socket served by ipc.serve in a background event loop."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

import pytest

from netpath.agent import client, ipc

NOW = 1_800_000_000.0


def iface(name, device, state, since_ago, usable, **extra):
    row = {
        "name": name, "device": device, "family": "ipv4", "enabled": True, "admin": "enabled",
        "link": "up", "state": state, "usable": usable, "since": NOW - since_ago,
        "reason": "", "method": "ping", "score": 5 if usable else 0, "up": 2, "down": 3,
        "targets": [], "latency": {"avg": None, "min": None, "max": None, "jitter": None},
        "loss_pct": None, "mark": "0x00000100", "table": 1, "gateway": None, "address": None,
        "tx_bytes": 0, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0, "connections": 0,
    }
    row.update(extra)
    return row


WAN = iface("wan", "eth1", "online", 2 * 3600 + 3 * 60 + 9, True,
            reason="round succeeded (2/2 targets)", loss_pct=0.0, connections=132,
            latency={"avg": 12.34, "min": 10.0, "max": 15.5, "jitter": 1.25},
            targets=[{"target": "192.0.2.1", "ok": True, "sent": 5, "received": 5, "latency_ms": 12.1,
                      "error": None},
                     {"target": "198.51.100.1", "ok": False, "sent": 5, "received": 0, "latency_ms": None,
                      "error": "timeout"}],
            gateway="100.64.1.1", address="100.64.1.2", tx_bytes=3 * 1024 * 1024, tx_packets=2345)
WANB = iface("wanb", "eth2", "offline", 5 * 60 + 12, False, reason="3 of 3 rounds failed (0/2 targets)",
             loss_pct=100.0, mark="0x00000200", table=2)
LTE = iface("lte", "wwan0", "disabled", 40, False, admin="disabled", reason="disabled by administrator",
            mark="0x00000300", table=3)

POLICY = {"name": "balanced", "mode": "balanced", "last_resort": "unreachable",
          "members": [{"name": "wan_m1", "interface": "wan", "metric": 1, "weight": 3, "alive": True},
                      {"name": "wanb_m1", "interface": "wanb", "metric": 1, "weight": 2, "alive": False}],
          "state": "10", "spread": {"ipv4": {"wan": 100.0}, "ipv6": {}},
          "last_resort_active": {"ipv4": False, "ipv6": True}}

REPLIES = {
    "status": {"ok": True, "version": "0.1.0", "bundle": {"dir": "/var/lib/netpath/bundle", "digest": "ab" * 32},
               "uptime": 3 * 86400 + 4 * 3600 + 5, "interfaces": [WAN, WANB, LTE], "policies": [POLICY]},
    "interfaces": {"ok": True, "interfaces": [WAN, WANB, LTE]},
    "policies": {"ok": True, "policies": [POLICY]},
    "rules": {"ok": True, "rules": [{"name": "https", "policy": "balanced", "packets": 420, "bytes": 2048},
                                    {"name": "voip", "policy": "wan_only", "packets": 0, "bytes": 0}]},
    "history": {"ok": True, "history": [
        {"time": NOW - 312, "interface": "wanb", "from": "online", "to": "disconnecting", "reason": "1 of 3 rounds failed"},
        {"time": NOW - 300, "interface": "wanb", "from": "disconnecting", "to": "offline", "reason": "3 of 3 rounds failed"}]},
    "metrics": {"ok": True, "metrics": {
        "interfaces": {"wan": {"up": 1, "latency_ms": 12.34, "loss_pct": 0.0, "score": 5, "tx_bytes": 3145728,
                               "rx_bytes": 1024, "connections": 132, "state_changes": 1},
                       "wanb": {"up": 0, "latency_ms": None, "loss_pct": 100.0, "score": 0, "tx_bytes": 0,
                                "rx_bytes": 0, "connections": 0, "state_changes": 2}},
        "rules": {"https": {"packets": 420, "bytes": 2048}}, "swaps": 4, "swap_seconds_last": 0.0031}},
    "reload": {"ok": True, "bundle": {"dir": "/var/lib/netpath/bundle", "digest": "cd" * 32}, "changed": True},
}


def line_of(text: str, *words) -> str:
    """The one line that contains all `words`."""
    found = [line for line in text.splitlines() if all(w in line for w in words)]
    assert len(found) == 1, (words, text)
    return found[0]


# --- rendering -------------------------------------------------------------------------------

def test_status_tells_at_a_glance_what_is_online_and_since_when():
    text = client.render_status(REPLIES["status"], NOW)
    assert "NetPath 0.1.0, agent up 3d04h" in text
    assert "abababababab" in text and "/var/lib/netpath/bundle" in text
    assert "1 of 3 interfaces carry traffic; not: wanb, lte" in text
    header = line_of(text, "INTERFACE", "STATE", "FOR")
    wan = line_of(text, "wan ", "online")
    assert "2h03m (since " in wan and "eth1" in wan and "12.3 ms" in wan and "132" in wan
    wanb = line_of(text, "wanb", "offline")
    assert "5m12s (since " in wanb and "100%" in wanb and "3 of 3 rounds failed" in wanb
    assert "40s (since " in line_of(text, "lte", "disabled")
    # Columns line up: each state starts where the STATE header does.
    column = header.index("STATE")
    assert wan.index("online") == wanb.index("offline") == column
    assert "wan 100%" in line_of(text, "balanced", "balanced")
    assert "unreachable (last resort)" in line_of(text, "balanced", "balanced")


def test_interfaces_in_detail():
    text = client.render_interfaces(REPLIES["interfaces"], NOW)
    assert text.splitlines()[0].startswith("wan  online for 2h03m (since ")
    assert "score 5/5 (down 3, up 2), method ping; round succeeded (2/2 targets)" in text
    ok_target = line_of(text, "192.0.2.1")
    assert "ok" in ok_target and "12.1 ms" in ok_target and "5/5" in ok_target
    bad_target = line_of(text, "198.51.100.1")
    assert "failed" in bad_target and "0/5" in bad_target and "timeout" in bad_target
    assert "latency avg 12.3 ms, min 10.0 ms, max 15.5 ms, jitter 1.2 ms; loss 0%" in text
    assert "gateway 100.64.1.1, address 100.64.1.2" in text
    assert "tx 3.0 MiB (2345 packets)" in text and "132 connections" in text
    assert "admin disabled" in line_of(text, "wwan0")
    only = client.render_interfaces(REPLIES["interfaces"], NOW, names=["wanb"])
    assert only.startswith("wanb  offline") and "eth1" not in only
    assert client.render_interfaces(REPLIES["interfaces"], NOW, names=["nope"]) == "no interfaces named nope"


def test_policies_rules_history_metrics():
    policies = client.render_policies(REPLIES["policies"], NOW)
    assert "balanced  balanced, last resort unreachable, alive-state 10" in policies
    assert "wan 100%" in line_of(policies, "ipv4")
    assert "alive" in line_of(policies, "wan_m1") and "dead" in line_of(policies, "wanb_m1")
    assert "weight 3" in line_of(policies, "wan_m1")

    rules = client.render_rules(REPLIES["rules"], NOW)
    assert "420" in line_of(rules, "https", "balanced") and "2.0 KiB" in line_of(rules, "https")
    assert rules.splitlines()[0].split() == ["RULE", "POLICY", "FLOWS", "BYTES"]  # new flows, not packets

    history = client.render_history(REPLIES["history"], NOW)
    assert "disconnecting -> offline" in line_of(history, "5m00s", "wanb")
    assert history.splitlines()[-1].startswith(time.strftime("%H:%M:%S", time.localtime(NOW - 300)))

    text = client.render_metrics(REPLIES["metrics"], NOW)
    assert "3.0 MiB" in line_of(text, "wan ", "12.3 ms")
    assert "100%" in line_of(text, "wanb")
    assert "state swaps: 4, last took 3.1 ms" in text
    assert "RULE FLOWS BYTES" in " ".join(text.split())

    assert client.render_history({"ok": True, "history": []}, NOW) == "no state changes yet"
    assert client.render_rules({"ok": True, "rules": []}, NOW) == "no rules"


def test_helpers():
    assert [client.duration(s) for s in (0, 59, 60, 3599, 3600, 86399, 86400 * 3 + 7200)] == \
        ["0s", "59s", "1m00s", "59m59s", "1h00m", "23h59m", "3d02h"]
    assert client.size(1023) == "1023 B" and client.size(1536) == "1.5 KiB"
    assert client.percent(None) == "-" and client.percent(12.5) == "12.5%"


# --- the command against a real socket --------------------------------------------------------

class Agent:
    """ipc.serve with fixture replies, on an event loop in a background thread."""

    def __init__(self, path: str):
        self.path = path
        self.requests: list = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = None

    async def dispatch(self, request: dict) -> dict:
        self.requests.append(request)
        cmd = request["cmd"]
        if cmd in ("enable", "disable"):
            if request.get("interface") not in ("wan", "wanb", "lte"):
                return ipc.error_reply(f"unknown interface {request.get('interface')!r}; known: lte, wan, wanb")
            return {"ok": True, "interface": request["interface"], "admin": cmd + "d", "state": "disabled"}
        if cmd == "ifevent":
            return {"ok": True}
        if cmd == "metrics" and request.get("format") == "prometheus":
            from netpath.agent.metrics import prometheus_text
            return {"ok": True, "text": prometheus_text(REPLIES["metrics"]["metrics"])}
        return REPLIES.get(cmd) or ipc.error_reply(f"unknown command {cmd!r}")

    def __enter__(self):
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(ipc.serve(self.path, self.dispatch), self.loop).result(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(ipc.stop(self.server), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def sockdir():
    path = tempfile.mkdtemp(prefix="ipc-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(sockdir):
    with Agent(os.path.join(sockdir, "np.sock")) as running:
        yield running


def test_status_table_from_a_running_agent(agent, capsys):
    assert client.main(["status", "--socket", agent.path], prog="netpath") == 0
    out = capsys.readouterr().out
    assert "1 of 3 interfaces carry traffic" in out and line_of(out, "wanb", "offline")
    assert agent.requests == [{"cmd": "status"}]


def test_json_passes_the_reply_through(agent, capsys):
    for command in ("status", "interfaces", "policies", "rules", "history", "metrics", "reload"):
        assert client.main([command, "--json", "--socket", agent.path]) == 0
        assert json.loads(capsys.readouterr().out) == REPLIES[command]


def test_arguments_reach_the_agent(agent, capsys):
    assert client.main(["disable", "wanb", "--socket", agent.path]) == 0
    assert capsys.readouterr().out.strip() == "wanb: admin disabled, state disabled"
    assert client.main(["history", "--limit", "5", "--socket", agent.path]) == 0
    assert client.main(["metrics", "--prometheus", "--socket", agent.path]) == 0
    text = capsys.readouterr().out
    assert "# TYPE netpath_interface_up gauge" in text and 'netpath_interface_up{interface="wan"} 1' in text
    assert client.main(["ifevent", "ifup", "wan", "eth1", "--socket", agent.path]) == 0
    assert client.main(["ifevent", "ifdown", "wan", "--socket", agent.path]) == 0
    assert capsys.readouterr().out == ""
    assert agent.requests == [
        {"cmd": "disable", "interface": "wanb"},
        {"cmd": "history", "limit": 5},
        {"cmd": "metrics", "format": "prometheus"},
        {"cmd": "ifevent", "action": "ifup", "interface": "wan", "device": "eth1"},
        {"cmd": "ifevent", "action": "ifdown", "interface": "wan", "device": None},
    ]


def test_agent_refusal_exits_1_with_its_message(agent, capsys):
    assert client.main(["enable", "eth9", "--socket", agent.path], prog="netpath") == 1
    err = capsys.readouterr().err
    assert "netpath enable: the agent refused: unknown interface 'eth9'; known: lte, wan, wanb" in err
    assert client.main(["enable", "eth9", "--json", "--socket", agent.path]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_no_agent_exits_1_with_a_clear_message(sockdir, capsys):
    path = os.path.join(sockdir, "np.sock")
    for argv in (["status"], ["interfaces", "--json"], ["enable", "wan"], ["reload"]):
        assert client.main([*argv, "--socket", path], prog="netpath") == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"no NetPath agent is running (nothing answers on {path})" in captured.err
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a crashed agent's leftover
    stale.bind(path)
    stale.close()
    assert client.main(["status", "--socket", path]) == 1
    assert "no NetPath agent is running" in capsys.readouterr().err


def test_ifevent_is_silent_and_succeeds_without_an_agent(sockdir, capsys):
    path = os.path.join(sockdir, "np.sock")
    assert client.main(["ifevent", "ifup", "wan", "eth1", "--socket", path]) == 0
    assert capsys.readouterr() == ("", "")


def test_bad_arguments_exit_2(capsys):
    assert client.main([]) == 2
    assert "no command given" in capsys.readouterr().err
    assert client.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert client.main(["enable"]) == 2
    assert client.main(["ifevent", "ifsideways", "wan"]) == 2
    assert client.main(["status", "--watch", "--interval", "0"]) == 2
    capsys.readouterr()
    assert client.main(["status", "--help"]) == 0
    assert "usage: netpath status" in capsys.readouterr().out


def test_prog_from_the_top_level_cli_is_not_doubled(capsys):
    client.main(["status", "--help"], prog="netpath status")
    assert "usage: netpath status [" in capsys.readouterr().out


def test_watch_frames_and_json_lines(agent, sockdir):
    args = SimpleNamespace(socket=agent.path, timeout=5.0, json=False, interval=0.05, names=[], prometheus=False)
    out = io.StringIO()
    assert client.watch("status", args, out, iterations=2) == 0
    frames = out.getvalue().split("every 0.05s: netpath status")
    assert len(frames) == 3 and all("1 of 3 interfaces carry traffic" in f for f in frames[1:])

    args.json = True
    out = io.StringIO()
    client.watch("rules", args, out, iterations=3)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [REPLIES["rules"]] * 3

    # The agent goes away: the view says so and keeps trying instead of ending.
    args.json, args.socket = False, os.path.join(sockdir, "gone.sock")
    out = io.StringIO()
    client.watch("status", args, out, iterations=1)
    assert "no NetPath agent is running" in out.getvalue() and "(retrying)" in out.getvalue()


def test_watch_refreshes_in_place_on_a_terminal(agent):
    """The real command on a pseudo-terminal: cursor home and clear, frame after frame."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "netpath.agent.client", "status", "--watch",
                             "--interval", "0.1", "--socket", agent.path],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while seen.count(b"carry traffic") < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C ends the view cleanly
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            rc = None
        os.close(master)
    assert seen.count(b"carry traffic") >= 3
    assert seen.count(client.HOME.encode()) >= 3 and client.CLEAR_BELOW.encode() in seen
    assert rc == 0


def test_module_entry_point_exits_1_without_agent(sockdir):
    proc = subprocess.run([sys.executable, "-m", "netpath.agent.client", "status", "--socket",
                           os.path.join(sockdir, "np.sock")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "no NetPath agent is running" in proc.stderr


def test_version_of_both_programs_is_the_projects():
    import subprocess
    import sys
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from netpath.agent import VERSION

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert VERSION == project["version"]
    bin_dir = Path(sys.executable).parent
    for program in ("netpath", "netpath-agent"):
        done = subprocess.run([str(bin_dir / program), "--version"], capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"{program} {VERSION}\n", "")


def test_history_limit_below_one_is_an_argument_error(capsys):
    assert client.main(["history", "--limit", "0", "--socket", "/nonexistent.sock"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
