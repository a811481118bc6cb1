"""The rpcd exec plugin luci.netpath, run exactly as rpcd runs it: `luci.netpath list`, and
`luci.netpath call METHOD` with the arguments as JSON on stdin and one JSON object back.

Without an agent: the method list, argument checks, the error objects when nothing answers
on the socket (a path with nothing behind it, and a stale socket file), explain and ruleset
on a real compiled bundle, and ping through the loopback device. In the lab (marked `lab`):
the same calls against a real netpath-agent inside the router namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import labagent

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PLUGIN = REPO / "luci" / "root" / "usr" / "libexec" / "rpcd" / "luci.netpath"
EXAMPLE = REPO / "examples" / "three_wan_balanced.uci"
AGENT_METHODS = ("status", "interfaces", "metrics", "history", "enable", "disable")
TEST_NET = "203.0.113.10"


def run_plugin(argv, stdin="", socket_path="/nonexistent/netpath.sock", bundle="/nonexistent/bundle", prefix=(),
               python=sys.executable):
    """The plugin as rpcd runs it on OpenWrt: under busybox ash, its Python half on PATH's python3
    (here NETPATH_PYTHON: the interpreter that has NetPath installed)."""
    env = {**os.environ, "NETPATH_SOCKET": str(socket_path), "NETPATH_BUNDLE": str(bundle), "NETPATH_PYTHON": python}
    return subprocess.run([*prefix, "busybox", "sh", str(PLUGIN), *argv], input=stdin, capture_output=True,
                          text=True, timeout=60, env=env)


def call(method, args=None, raw=None, **kw) -> dict:
    proc = run_plugin(["call", method], raw if raw is not None else json.dumps(args or {}), **kw)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1, "one JSON object, one line"
    reply = json.loads(proc.stdout)
    assert isinstance(reply, dict) and isinstance(reply["ok"], bool)
    if not reply["ok"]:
        assert isinstance(reply["error"], str) and reply["error"]
    return reply


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The three-WAN example compiled for real (without the kernel check: no nft needed)."""
    return labagent.compile_bundle(EXAMPLE, tmp_path_factory.mktemp("example") / "bundle", check=False)


@pytest.fixture(params=["missing", "stale"])
def dead_socket(request, tmp_path):
    """A socket path with no agent: nothing there, or a socket file nobody listens on."""
    path = tmp_path / "netpath.sock"
    if request.param == "stale":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.close()
        assert path.exists()
    return path


# -- list -------------------------------------------------------------------------------------

def rpcd_type(example) -> str:
    """The ubus type rpcd infers from an example value in `list` output (plugin.c)."""
    if isinstance(example, bool):
        return "boolean"
    if isinstance(example, int):
        return {8: "int8", 16: "int16", 64: "int64"}.get(example, "int32")
    return {str: "string", list: "array", dict: "table"}[type(example)]


def test_list_describes_every_method_and_its_arguments():
    proc = run_plugin(["list"])
    assert proc.returncode == 0 and proc.stderr == ""
    methods = json.loads(proc.stdout)
    signature = {m: {a: rpcd_type(v) for a, v in args.items()} for m, args in methods.items()}
    assert signature == {
        "status": {}, "interfaces": {}, "metrics": {}, "history": {"limit": "int32"},
        "enable": {"interface": "string"}, "disable": {"interface": "string"},
        "explain": {"src": "string", "dst": "string", "proto": "string", "sport": "int32", "dport": "int32",
                    "iif": "string", "down": "array"},
        "ping": {"interface": "string", "target": "string"},
        "ruleset": {},
    }


def test_usage_errors_go_to_stderr_with_status_2():
    for argv in ([], ["call"], ["lists"], ["call", "status", "extra"]):
        proc = run_plugin(argv)
        assert proc.returncode == 2 and proc.stdout == "" and "usage" in proc.stderr


# -- no agent ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", AGENT_METHODS)
def test_without_an_agent_every_agent_call_answers_an_error_object(method, dead_socket):
    args = {"interface": "wan"} if method in ("enable", "disable") else {}
    reply = call(method, args, socket_path=dead_socket)
    assert reply["ok"] is False
    assert reply["agent"] == "not running"
    assert str(dead_socket) in reply["error"]


# -- argument checks --------------------------------------------------------------------------

BAD_ARGUMENTS = [
    ("enable", {}, '"interface" is required'),
    ("disable", {"interface": ""}, '"interface" is required'),
    ("enable", {"interface": 5}, '"interface" must be a string'),
    ("enable", {"interface": "wan; reboot"}, "is not an interface name"),
    ("disable", {"interface": "w" * 33}, "is not an interface name"),
    ("history", {"limit": 0}, '"limit" must be a whole number'),
    ("history", {"limit": "5"}, '"limit" must be a whole number'),
    ("history", {"limit": True}, '"limit" must be a whole number'),
    ("ping", {"interface": "wan"}, '"target" is required'),
    ("ping", {"interface": "wan", "target": "203.0.113.10; reboot"}, "is not an IP address"),
    ("ping", {"interface": "wan", "target": "-f"}, "is not an IP address"),
    ("ping", {"interface": "wan", "target": "example.com"}, "is not an IP address"),
    ("ping", {"interface": "wan", "target": "fe80::1%eth0 -f"}, "is not an IP address"),
    ("explain", {"src": "fe80::1%x", "dst": "2001:db8::1"}, "is not an IP address"),
    ("ping", {"interface": "../x", "target": TEST_NET}, "is not an interface name"),
    ("explain", {"dst": TEST_NET}, '"src" is required'),
    ("explain", {"src": "192.168.1.2", "dst": "2001:db8::1"}, "same family"),
    ("explain", {"src": "192.168.1.2", "dst": TEST_NET, "proto": "xyz"}, '"proto"'),
    ("explain", {"src": "192.168.1.2", "dst": TEST_NET, "dport": 70000}, '"dport" must be a port'),
    ("explain", {"src": "192.168.1.2", "dst": TEST_NET, "sport": -1}, '"sport" must be a port'),
    ("explain", {"src": "192.168.1.2", "dst": TEST_NET, "iif": "br lan"}, "is not a device name"),
    ("explain", {"src": "192.168.1.2", "dst": TEST_NET, "down": "wan"}, '"down" must be a list'),
]


@pytest.mark.parametrize("method,args,message", BAD_ARGUMENTS)
def test_bad_arguments_are_refused_before_anything_runs(method, args, message, dead_socket):
    reply = call(method, args, socket_path=dead_socket)
    assert reply["ok"] is False
    assert message in reply["error"]
    assert reply["error"].startswith(f"{method}: ")
    assert "agent" not in reply, "refused before the agent was asked"


@pytest.mark.parametrize("raw,message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"status"', "must be a JSON object"),
    ("{" + '"x": "' + "a" * 70000 + '"}', "too long"),
])
def test_malformed_input_is_an_error_object(raw, message):
    reply = call("status", raw=raw)
    assert reply["ok"] is False and message in reply["error"]


def test_unknown_method_names_the_known_ones():
    reply = call("reboot")
    assert reply["ok"] is False
    assert "unknown method 'reboot'" in reply["error"] and "ping" in reply["error"]


def test_empty_stdin_means_no_arguments(dead_socket):
    reply = call("status", raw="", socket_path=dead_socket)
    assert reply["agent"] == "not running"


# -- the bundle -------------------------------------------------------------------------------

def netpath_explain(bundle, *args) -> subprocess.CompletedProcess:
    return subprocess.run([labagent.NETPATH, "explain", str(bundle), *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("packet,cli", [
    ({"src": "192.168.1.5", "dst": "198.51.100.7", "dport": 443}, ["--dport", "443"]),
    ({"src": "192.168.1.20", "dst": "198.51.100.9", "proto": "udp", "dport": 53}, ["--proto", "udp", "--dport", "53"]),
    ({"src": "192.168.1.5", "dst": "198.51.100.7", "dport": 443, "down": ["wan", "wanb"]},
     ["--dport", "443", "--down", "wan", "--down", "wanb"]),
])
def test_explain_answers_what_netpath_explain_json_answers(bundle, dead_socket, packet, cli):
    reply = call("explain", {**packet, "ubus_rpc_session": "0123abcd"}, socket_path=dead_socket, bundle=bundle)
    assert reply["ok"] is True, reply
    assert reply["state_from"] == ("request" if "down" in packet else "config")
    proc = netpath_explain(bundle, "--src", packet["src"], "--dst", packet["dst"], *cli, "--json")
    assert proc.returncode == 0, proc.stderr
    expected = json.loads(proc.stdout)
    text = netpath_explain(bundle, "--src", packet["src"], "--dst", packet["dst"], *cli).stdout
    assert reply["text"] == text.rstrip("\n")
    got = {k: v for k, v in reply.items() if k not in ("ok", "state_from", "text")}
    assert got == expected


def test_explain_with_an_empty_down_list_treats_every_interface_as_up(bundle, dead_socket):
    from netpath.agent import explain

    reply = call("explain", {"src": "192.168.1.5", "dst": "198.51.100.7", "down": []}, socket_path=dead_socket,
                 bundle=bundle)
    expected = explain.explain(explain.load_model(bundle), explain.Packet("192.168.1.5", "198.51.100.7"), frozenset())
    assert reply["state_from"] == "request"
    assert {k: v for k, v in reply.items() if k not in ("ok", "state_from", "text")} == json.loads(json.dumps(expected))


def test_explain_refuses_interfaces_the_bundle_does_not_have(bundle):
    reply = call("explain", {"src": "192.168.1.5", "dst": TEST_NET, "down": ["wan", "nope"]}, bundle=bundle)
    assert reply["ok"] is False and "'nope'" in reply["error"] and "wanb" in reply["error"]


def test_ruleset_is_the_bundles_ruleset_file(bundle):
    reply = call("ruleset", bundle=bundle)
    assert reply["ok"] is True
    assert reply["text"] == (bundle / "ruleset.nft").read_text()
    assert reply["digest"] == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert reply["truncated"] is False and reply["bundle"] == str(bundle)


@pytest.mark.parametrize("method,args", [
    ("ruleset", {}), ("explain", {"src": "192.168.1.5", "dst": TEST_NET}),
    ("ping", {"interface": "wan", "target": TEST_NET}),
])
def test_without_a_bundle_the_error_says_how_to_make_one(method, args, tmp_path, dead_socket):
    reply = call(method, args, socket_path=dead_socket, bundle=tmp_path / "nothing")
    assert reply["ok"] is False
    assert "not a NetPath bundle" in reply["error"] and "netpath compile" in reply["error"]


def test_a_tampered_bundle_is_refused(bundle, tmp_path):
    copy = tmp_path / "bundle"
    subprocess.run(["cp", "-a", str(bundle), str(copy)], check=True, timeout=30)
    (copy / "ruleset.nft").write_text("table inet netpath { }\n")
    reply = call("ruleset", bundle=copy)
    assert reply["ok"] is False and "ruleset.nft" in reply["error"]


# -- ping -------------------------------------------------------------------------------------

LOOPBACK_UCI = """
config interface 'loop'
\toption ifname 'lo'
\toption track_method 'none'

config member 'loop_m'
\toption interface 'loop'

config policy 'p'
\tlist members 'loop_m'

config rule 'r'
\toption policy 'p'
"""


@pytest.fixture(scope="module")
def loopback_bundle(tmp_path_factory):
    directory = tmp_path_factory.mktemp("loopback")
    config = directory / "netpath"
    config.write_text(LOOPBACK_UCI.lstrip())
    return labagent.compile_bundle(config, directory / "bundle", check=False)


def test_ping_runs_ping_through_the_interfaces_device(loopback_bundle, dead_socket):
    reply = call("ping", {"interface": "loop", "target": "127.0.0.1"}, socket_path=dead_socket,
                 bundle=loopback_bundle)
    assert reply["ok"] is True, reply
    assert reply["command"] == ["ping", "-I", "lo", "-c", "3", "-W", "1", "127.0.0.1"]
    assert reply["device"] == "lo" and reply["interface"] == "loop"
    assert reply["exit_code"] == 0 and reply["reachable"] is True
    assert "127.0.0.1" in reply["output"]


def test_ping_names_the_interfaces_it_knows(loopback_bundle, dead_socket):
    reply = call("ping", {"interface": "wan", "target": "127.0.0.1"}, socket_path=dead_socket,
                 bundle=loopback_bundle)
    assert reply["ok"] is False and "no interface 'wan'" in reply["error"] and "loop" in reply["error"]


# -- against a real agent in the lab ----------------------------------------------------------

@pytest.fixture(scope="module")
def lab_agent(lab_module, tmp_path_factory):
    work = tmp_path_factory.mktemp("agent")
    lab_module.start_servers()
    config = labagent.write_lab_config(work / "etc")
    bundle = labagent.compile_bundle(config, work / "bundle")
    agent = labagent.LabAgent(lab_module, bundle, work).start()
    try:
        agent.wait_states({"wan1": "online", "wan2": "online"}, timeout=30)
        yield agent
    finally:
        agent.stop()


def lab_call(agent, method, args=None, in_router=False, **kw) -> dict:
    prefix = ["ip", "netns", "exec", agent.lab.router] if in_router else []
    return call(method, args, socket_path=agent.socket, bundle=agent.bundle, prefix=prefix, **kw)


NO_PYTHON = "/bin/false"  # as NETPATH_PYTHON: a call that reached the Python half answers nothing


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.lab
def test_overview_reads_are_served_from_the_snapshot_without_python(lab_agent):
    session = {"ubus_rpc_session": "0123456789abcdef0123456789abcdef"}  # what rpcd adds for LuCI
    status = lab_call(lab_agent, "status", session, python=NO_PYTHON)
    direct = lab_agent.request("status")
    assert status["ok"] is True and isinstance(status["snapshot"], float)
    assert {k: status[k] for k in ("version", "bundle", "enabled")} == \
        {k: direct[k] for k in ("version", "bundle", "enabled")}
    assert [(i["name"], i["device"], i["state"], i["admin"]) for i in status["interfaces"]] == \
        [(i["name"], i["device"], i["state"], i["admin"]) for i in direct["interfaces"]]
    assert [p["name"] for p in status["policies"]] == ["balanced"]
    interfaces = lab_call(lab_agent, "interfaces", {}, python=NO_PYTHON)
    assert [i["name"] for i in interfaces["interfaces"]] == ["wan1", "wan2"]
    lab_agent.request("disable", interface="wan2")
    lab_agent.request("enable", interface="wan2")
    full = lab_agent.request("history")["history"]
    assert len(full) >= 2
    assert wait_for(lambda: lab_call(lab_agent, "history", {}, python=NO_PYTHON)["history"] == full)
    for args, expected in (({**session, "limit": 1}, full[-1:]), ({"limit": 200}, full), ({}, full)):
        reply = lab_call(lab_agent, "history", args, python=NO_PYTHON)
        assert reply == {"ok": True, "history": expected}
    # what the snapshot cannot answer still reaches Python, which checks it
    refused = lab_call(lab_agent, "history", {"limit": "5"})
    assert refused["ok"] is False and '"limit" must be a whole number' in refused["error"]
    with pytest.raises(AssertionError):
        lab_call(lab_agent, "metrics", python=NO_PYTHON)


@pytest.mark.lab
def test_the_snapshot_follows_a_change_at_once(lab_agent):
    def admin_of_wan1():
        reply = lab_call(lab_agent, "status", python=NO_PYTHON)
        return next(i["admin"] for i in reply["interfaces"] if i["name"] == "wan1")

    try:
        assert lab_call(lab_agent, "disable", {"interface": "wan1"})["ok"] is True
        # well before the periodic rewrite (every 5 s): the change itself triggers a write
        assert wait_for(lambda: admin_of_wan1() == "disabled", timeout=2.0)
        history = lab_call(lab_agent, "history", {"limit": 1}, python=NO_PYTHON)["history"]
        assert history[-1]["interface"] == "wan1" and history[-1]["to"] == "disabled"
    finally:
        lab_call(lab_agent, "enable", {"interface": "wan1"})
    assert wait_for(lambda: admin_of_wan1() == "enabled", timeout=2.0)


@pytest.mark.lab
def test_a_stopped_or_killed_agent_is_reported_not_running(lab, tmp_path):
    from netpath.agent import snapshot

    config = labagent.write_lab_config(tmp_path / "etc")
    bundle = labagent.compile_bundle(config, tmp_path / "bundle", check=False)
    files = snapshot.paths(str(tmp_path / "agent.sock"))
    for ending in ("stop", "kill"):
        agent = labagent.LabAgent(lab, bundle, tmp_path).start()
        try:
            assert wait_for(lambda: os.path.exists(files["history"]))
            assert Path(files["pid"]).read_text() == f"{agent.process.pid}\n"
            if ending == "stop":
                agent.stop()
                assert not any(os.path.exists(f) for f in files.values()), "removed on a clean stop"
            else:
                agent.process.kill()
                agent.process.wait(10)
                assert os.path.exists(files["status"]), "a killed agent leaves its files"
            reply = call("status", socket_path=agent.socket)  # the stale files are not served
            assert reply["ok"] is False and reply["agent"] == "not running", reply
        finally:
            agent.stop()


@pytest.mark.lab
def test_status_and_interfaces_are_the_agents(lab_agent):
    status = lab_call(lab_agent, "status")
    direct = lab_agent.request("status")
    assert status["ok"] is True
    assert status["bundle"] == direct["bundle"] and status["version"] == direct["version"]
    interfaces = lab_call(lab_agent, "interfaces")
    assert [(i["name"], i["device"], i["state"]) for i in interfaces["interfaces"]] == \
        [(i["name"], i["device"], i["state"]) for i in lab_agent.request("interfaces")["interfaces"]]
    metrics = lab_call(lab_agent, "metrics")
    assert set(metrics["metrics"]["interfaces"]) == {"wan1", "wan2"}
    history = lab_call(lab_agent, "history", {"limit": 1})
    assert history["ok"] is True and len(history["history"]) <= 1


@pytest.mark.lab
def test_disable_and_enable_go_to_the_agent_and_explain_follows(lab_agent):
    packet = {"src": "192.168.10.2", "dst": TEST_NET, "dport": 80}
    try:
        reply = lab_call(lab_agent, "disable", {"interface": "wan1"})
        assert reply["ok"] is True and reply["admin"] == "disabled"
        wan1 = next(i for i in lab_agent.request("interfaces")["interfaces"] if i["name"] == "wan1")
        assert wan1["admin"] == "disabled" and wan1["usable"] is False
        explained = lab_call(lab_agent, "explain", packet)
        assert explained["state_from"] == "agent"
        assert explained["interface"] == "wan2" and explained["alive"] == ["wan2"]
    finally:
        reply = lab_call(lab_agent, "enable", {"interface": "wan1"})
    assert reply["ok"] is True and reply["admin"] == "enabled"
    unknown = lab_call(lab_agent, "enable", {"interface": "wan9"})
    assert unknown["ok"] is False and "wan9" in unknown["error"]


@pytest.mark.lab
def test_ping_leaves_through_the_chosen_uplink(lab_agent):
    lab = lab_agent.lab
    for name in ("wan1", "wan2"):
        reply = lab_call(lab_agent, "ping", {"interface": name, "target": TEST_NET}, in_router=True)
        assert reply["ok"] is True and reply["reachable"] is True, reply
        assert reply["command"] == ["ping", "-I", name, "-c", "3", "-W", "1", TEST_NET]
    lab.isp_blackhole(1)
    try:
        cut = lab_call(lab_agent, "ping", {"interface": "wan1", "target": TEST_NET}, in_router=True)
        other = lab_call(lab_agent, "ping", {"interface": "wan2", "target": TEST_NET}, in_router=True)
    finally:
        lab.isp_blackhole(1, on=False)
    assert cut["ok"] is True and cut["reachable"] is False and cut["exit_code"] != 0
    assert other["reachable"] is True


def test_with_no_agent_a_disabled_config_is_named(tmp_path):
    """On OpenWrt the init script starts no agent for `globals enabled 0`; the plugin asks
    `uci` (here a stand-in on PATH answering as the real one would) and says so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uci").write_text('#!/bin/sh\n[ "$*" = "-q get netpath.globals.enabled" ] && echo 0\n')
    (bin_dir / "uci").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NETPATH_SOCKET": str(tmp_path / "none.sock"),
           "NETPATH_PYTHON": NO_PYTHON}
    done = subprocess.run(["busybox", "sh", str(PLUGIN), "call", "status"], input="{}", capture_output=True,
                          text=True, timeout=60, env=env)
    reply = json.loads(done.stdout)
    assert reply["ok"] is False and reply["agent"] == "not running" and reply["enabled"] is False
    assert reply["error"].startswith("NetPath is disabled (globals enabled 0): no agent runs")


def test_netpath_status_names_a_disabled_config_when_no_agent_runs(tmp_path):
    (tmp_path / "netpath").write_text("config globals 'globals'\n\toption enabled '0'\n")
    env = {**os.environ, "UCI_CONFIG_DIR": str(tmp_path)}
    done = subprocess.run([labagent.NETPATH, "status", "--socket", str(tmp_path / "none.sock")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(f"netpath status: NetPath is disabled (globals enabled 0) in {tmp_path / 'netpath'}")
