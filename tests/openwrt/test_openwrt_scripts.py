"""NetPath's OpenWrt glue: init script, hotplug script, package files, agent/ubus.py.

There is no OpenWrt on the test host, so the shell scripts run under the small harness in
`harness/`: POSIX sh stand-ins for /etc/rc.common, /lib/functions.sh and procd.sh that
record every call in a log and model procd's instance bookkeeping (an instance declared
again unchanged keeps running, one no longer declared stops). `netpath` on PATH is a
recording wrapper that runs the REAL `netpath compile` / `netpath check`, so the scripts
are tested against the real compiler and its real error messages. The scripts run under
`busybox ash` (OpenWrt's shell) when busybox is installed, else under /bin/sh.

agent/ubus.py is tested against `fake_ubus/ubus`, a test double of OpenWrt's ubus CLI
placed first on PATH: acceptable here because the real one needs an OpenWrt system.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from netpath.agent import ubus
from netpath.compiler import uci

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HARNESS = HERE / "harness"
FAKE_UBUS = HERE / "fake_ubus"
PACKAGE = REPO / "openwrt" / "netpath"
FILES = PACKAGE / "files"
INIT_SCRIPT = FILES / "etc" / "init.d" / "netpath"
HOTPLUG_SCRIPT = FILES / "etc" / "hotplug.d" / "iface" / "16-netpath"
SHIPPED_CONFIG = FILES / "etc" / "config" / "netpath"
HOOK_EXAMPLE = FILES / "etc" / "netpath" / "hooks.d" / "example.sample"

PYTHON = Path(sys.executable)
NETPATH = PYTHON.parent / "netpath"
SHELL = ["busybox", "ash"] if shutil.which("busybox") else ["/bin/sh"]

# The seed config from the project's brief, enabled; a second, disabled WAN and a LAN
# that NetPath does not manage round it off.
ENABLED_CONFIG = """\
config globals 'globals'
	option enabled '1'
	option nft_table 'netpath'

config interface 'wan'
	option enabled '1'
	option ifname 'eth0'
	option track_method 'ping'
	list track_targets '192.0.2.1'

config interface 'wanb'
	option enabled '1'
	option ifname 'wwan'
	option track_method 'ping'
	list track_targets '198.51.100.1'

config interface 'spare'
	option enabled '0'
	option ifname 'eth3'
	option track_method 'ping'
	list track_targets '203.0.113.1'

config member 'wan_m1_w1'
	option interface 'wan'
	option metric '1'
	option weight '1'

config member 'wanb_m1_w1'
	option interface 'wanb'
	option metric '1'
	option weight '1'

config policy 'balanced'
	list members 'wan_m1_w1'
	list members 'wanb_m1_w1'
	option mode 'balanced'

config rule 'guests'
	option src_iface 'guest'
	option policy 'balanced'

config rule 'default_rule'
	option policy 'balanced'
"""

# A policy naming a member that does not exist: the compiler must refuse it.
BROKEN_CONFIG = ENABLED_CONFIG.replace("list members 'wanb_m1_w1'", "list members 'nope'")
DISABLED_CONFIG = ENABLED_CONFIG.replace("option enabled '1'\n\toption nft_table",
                                         "option enabled '0'\n\toption nft_table")


# --- the harness ---------------------------------------------------------------------------

class Router:
    """One simulated router: a UCI config dir, procd state, and the harness's call log."""

    def __init__(self, root: Path):
        self.root = root
        self.config_dir = root / "etc" / "config"
        self.state = root / "procd"
        self.log_file = root / "calls.log"
        self.bundle = root / "var" / "lib" / "netpath" / "bundle"
        self.pidfile = root / "var" / "run" / "netpath-agent.pid"
        for path in (self.config_dir, self.state, self.pidfile.parent):
            path.mkdir(parents=True)
        self.log_file.touch()

    def write_config(self, text: str):
        (self.config_dir / "netpath").write_text(text)

    def env(self, **extra) -> dict:
        env = {
            "PATH": f"{HARNESS / 'bin'}:{os.environ['PATH']}",
            "HARNESS_DIR": str(HARNESS),
            "HARNESS_LOG": str(self.log_file),
            "HARNESS_STATE": str(self.state),
            "HARNESS_PYTHON": str(PYTHON),
            "NETPATH_REAL": str(NETPATH),
            "UCI_CONFIG_DIR": str(self.config_dir),
            "NETPATH_BIN": str(HARNESS / "bin" / "netpath"),
            "NETPATH_BUNDLE": str(self.bundle),
            "NETPATH_PIDFILE": str(self.pidfile),
        }
        env.update(extra)
        return env

    def calls(self) -> list[list[str]]:
        return [line.split("\t") for line in self.log_file.read_text().splitlines()]

    def clear_log(self):
        self.log_file.write_text("")

    def init(self, action: str, **env) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*SHELL, str(HARNESS / "rc.common"), str(INIT_SCRIPT), action],
            env=self.env(**env), capture_output=True, text=True, timeout=60)

    def hotplug(self, action: str, interface: str, device: str = "", **env):
        return subprocess.run(
            [*SHELL, str(HARNESS / "run-hotplug"), str(HOTPLUG_SCRIPT)],
            env=self.env(ACTION=action, INTERFACE=interface, DEVICE=device, **env),
            capture_output=True, text=True, timeout=60)


def named(calls, name):
    return [call for call in calls if call[0] == name]


def procd_events(calls):
    return [tuple(call[1:]) for call in calls if call[0] == "procd-event"]


def index_of(calls, predicate):
    for position, call in enumerate(calls):
        if predicate(call):
            return position
    raise AssertionError(f"no such call in {calls}")


def logged_messages(calls, priority=None):
    return [call[-1] for call in named(calls, "logger")
            if priority is None or f"daemon.{priority}" in call]


def compiler_errors(config_text: str, tmp_path: Path) -> list[str]:
    """What the real compiler says about a config, to compare with what reached syslog."""
    path = tmp_path / "check-input"
    path.write_text(config_text)
    done = subprocess.run([str(NETPATH), "check", "--format", "uci", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done
    return [line.replace(str(path), "") for line in done.stderr.splitlines() if line.strip()]


@pytest.fixture
def router(tmp_path):
    return Router(tmp_path / "router")


@pytest.fixture
def running_router(router):
    router.write_config(ENABLED_CONFIG)
    done = router.init("start")
    assert done.returncode == 0, done.stderr
    assert procd_events(router.calls()) == [("start", "agent")]
    router.clear_log()
    return router


# --- init script: start ----------------------------------------------------------------------

def test_start_compiles_then_declares_the_agent_with_respawn(router):
    router.write_config(ENABLED_CONFIG)
    done = router.init("start")
    assert done.returncode == 0, done.stderr
    calls = router.calls()

    compile_at = index_of(calls, lambda c: c[:2] == ["netpath", "compile"])
    assert calls[compile_at][2:] == [str(router.config_dir / "netpath"), "-o", str(router.bundle)]
    assert ["netpath-exit", "compile", "0"] in calls
    assert (router.bundle / "manifest.json").is_file()

    instance_at = index_of(calls, lambda c: c == ["procd_open_instance", "agent"])
    assert compile_at < instance_at
    params = {c[1]: c[2:] for c in named(calls, "procd_set_param")}
    # --syslog: the agent logs at real priorities itself (procd files stderr as daemon.err);
    # stderr 1 keeps a crash's traceback.
    assert params["command"] == [
        "/usr/bin/netpath-agent", "--bundle", str(router.bundle),
        "--socket", "/var/run/netpath.sock", "--hooks", "/etc/netpath/hooks.d",
        "--log-level", "info", "--syslog"]
    assert "respawn" in params
    assert params["stderr"] == ["1"] and "stdout" not in params
    assert named(calls, "procd_append_param") == []
    assert procd_events(calls) == [("start", "agent")]


def test_globals_log_level_and_metrics_listen_reach_the_agent(router):
    router.write_config(ENABLED_CONFIG.replace(
        "option nft_table 'netpath'",
        "option nft_table 'netpath'\n\toption log_level 'debug'\n\toption metrics_listen '192.168.1.1:9101'"))
    done = router.init("start")
    assert done.returncode == 0, done.stderr
    calls = router.calls()
    command = {c[1]: c[2:] for c in named(calls, "procd_set_param")}["command"]
    assert command[command.index("--log-level") + 1] == "debug"
    assert named(calls, "procd_append_param") == [["procd_append_param", "command", "--metrics-listen",
                                                    "192.168.1.1:9101"]]


def test_start_refuses_while_mwan3_runs(router):
    router.write_config(ENABLED_CONFIG)
    (router.state / "services").mkdir()
    (router.state / "services" / "mwan3").touch()
    done = router.init("start")
    calls = router.calls()
    assert ["procd_running", "mwan3"] in calls
    assert named(calls, "procd_open_instance") == [] and procd_events(calls) == []
    assert named(calls, "netpath") == []  # not even compiled
    [message] = logged_messages(calls, "err")
    assert message.startswith("mwan3 is running: NetPath does not start beside it; stop and disable mwan3 first")
    assert "/etc/init.d/mwan3 stop; /etc/init.d/mwan3 disable" in message
    # Once mwan3 is gone, it starts.
    (router.state / "services" / "mwan3").unlink()
    router.clear_log()
    assert router.init("start").returncode == 0
    assert procd_events(router.calls()) == [("start", "agent")]


def test_start_registers_reload_and_interface_triggers(router):
    router.write_config(ENABLED_CONFIG)
    router.init("start")
    calls = router.calls()
    assert ["procd_add_reload_trigger", "netpath"] in calls
    watched = {c[2] for c in named(calls, "procd_add_interface_trigger")}
    # The enabled sections' ifnames and the rules' src_iface names (only they can be logical
    # interfaces the compiler maps to devices); the disabled 'spare' is not watched.
    assert watched == {"eth0", "wwan", "guest"}
    for call in named(calls, "procd_add_interface_trigger"):
        assert call[1] == "interface.*"
        assert call[3:] == ["/etc/init.d/netpath", "reload"]


def test_start_of_a_disabled_config_declares_nothing(router):
    router.write_config(DISABLED_CONFIG)
    done = router.init("start")
    assert done.returncode == 0, done.stderr
    calls = router.calls()
    assert named(calls, "netpath") == []
    assert named(calls, "procd_open_instance") == []
    assert procd_events(calls) == []
    # Still listening for config changes, so enabling NetPath from LuCI starts it.
    assert ["procd_add_reload_trigger", "netpath"] in calls
    assert named(calls, "procd_add_interface_trigger") == []


def test_shipped_config_is_disabled_and_starts_nothing(router):
    router.write_config(SHIPPED_CONFIG.read_text())
    router.init("start")
    assert named(router.calls(), "procd_open_instance") == []


def test_start_with_a_broken_config_and_no_bundle_does_not_start(router, tmp_path):
    router.write_config(BROKEN_CONFIG)
    router.init("start")  # rc.common's start does not pass start_service's status on
    calls = router.calls()
    assert ["netpath-exit", "compile", "2"] in calls
    assert named(calls, "procd_open_instance") == []
    assert not router.bundle.exists()
    messages = logged_messages(calls, "err")
    for line in compiler_errors(BROKEN_CONFIG, tmp_path):
        assert any(line in message for message in messages), (line, messages)


def test_start_with_a_broken_config_runs_the_last_good_bundle(router):
    router.write_config(ENABLED_CONFIG)
    router.init("start")
    good_manifest = (router.bundle / "manifest.json").read_bytes()
    router.init("stop")
    router.clear_log()

    router.write_config(BROKEN_CONFIG)
    done = router.init("start")
    assert done.returncode == 0, done.stderr
    calls = router.calls()
    assert ["netpath-exit", "compile", "2"] in calls
    assert procd_events(calls) == [("start", "agent")]
    assert (router.bundle / "manifest.json").read_bytes() == good_manifest
    assert any("last bundle" in m for m in logged_messages(calls, "warn"))


# --- init script: reload -----------------------------------------------------------------------

def test_reload_recompiles_and_sends_hup_without_a_new_instance(running_router):
    router = running_router
    old_manifest = (router.bundle / "manifest.json").read_bytes()
    # A real change: the second WAN's weight.
    router.write_config(ENABLED_CONFIG.replace(
        "option interface 'wanb'\n\toption metric '1'\n\toption weight '1'",
        "option interface 'wanb'\n\toption metric '1'\n\toption weight '3'"))
    done = router.init("reload")
    assert done.returncode == 0, done.stderr
    calls = router.calls()

    compile_at = index_of(calls, lambda c: c[:2] == ["netpath", "compile"])
    signal_at = index_of(calls, lambda c: c == ["procd_send_signal", "netpath", "agent", "HUP"])
    assert compile_at < signal_at
    assert ["netpath-exit", "compile", "0"] in calls
    assert (router.bundle / "manifest.json").read_bytes() != old_manifest
    # procd keeps the running agent (definition unchanged) and only signals it.
    assert procd_events(calls) == [("keep", "agent"), ("signal", "agent", "HUP")]
    assert len([c for c in calls if c[:2] == ["netpath", "compile"]]) == 1


@pytest.mark.parametrize("form", ["implied", "named"])
def test_reload_signals_the_agent_with_both_forms_of_service_running(running_router, form):
    """`service_running agent` never matches where rc.common takes the service name first."""
    router = running_router
    router.write_config(ENABLED_CONFIG.replace("list track_targets '192.0.2.1'", "list track_targets '192.0.2.9'"))
    done = router.init("reload", HARNESS_SERVICE_RUNNING=form)
    assert done.returncode == 0, done.stderr
    assert procd_events(router.calls()) == [("keep", "agent"), ("signal", "agent", "HUP")]


def test_reload_that_changes_nothing_does_not_signal_the_agent(running_router):
    router = running_router
    old_manifest = (router.bundle / "manifest.json").read_bytes()
    done = router.init("reload")
    assert done.returncode == 0, done.stderr
    calls = router.calls()
    assert ["netpath-exit", "compile", "0"] in calls
    assert (router.bundle / "manifest.json").read_bytes() == old_manifest
    assert ["procd_send_signal", "netpath", "agent", "HUP"] not in calls
    assert procd_events(calls) == [("keep", "agent")]


def test_reload_with_a_broken_config_logs_why_and_keeps_everything(running_router, tmp_path):
    router = running_router
    old_manifest = (router.bundle / "manifest.json").read_bytes()
    router.write_config(BROKEN_CONFIG)
    done = router.init("reload")
    assert done.returncode != 0
    calls = router.calls()

    assert ["netpath-exit", "compile", "2"] in calls
    assert named(calls, "procd_send_signal") == []
    assert named(calls, "procd_open_service") == []
    assert procd_events(calls) == []
    assert (router.bundle / "manifest.json").read_bytes() == old_manifest
    messages = logged_messages(calls, "err")
    for line in compiler_errors(BROKEN_CONFIG, tmp_path):
        assert any(line in message for message in messages), (line, messages)
    assert any("keeping the running configuration" in m for m in logged_messages(calls))


def test_reload_after_enabling_starts_the_agent(router):
    router.write_config(DISABLED_CONFIG)
    router.init("start")
    router.clear_log()
    router.write_config(ENABLED_CONFIG)
    done = router.init("reload")
    assert done.returncode == 0, done.stderr
    calls = router.calls()
    assert procd_events(calls) == [("start", "agent")]
    assert named(calls, "procd_send_signal") == []


def test_reload_after_disabling_stops_the_agent_and_keeps_the_trigger(running_router):
    router = running_router
    router.write_config(DISABLED_CONFIG)
    done = router.init("reload")
    assert done.returncode == 0, done.stderr
    calls = router.calls()
    assert procd_events(calls) == [("stop", "agent")]
    assert named(calls, "procd_kill") == []  # the service, and its triggers, stay
    assert ["procd_add_reload_trigger", "netpath"] in calls
    stop_at = index_of(calls, lambda c: c[:2] == ["procd-event", "stop"])
    sweep_at = index_of(calls, lambda c: c[:3] == ["netpath", "apply", "--remove"])
    assert stop_at < sweep_at


# --- init script: stop -------------------------------------------------------------------------

def test_stop_kills_the_agent_then_sweeps(running_router):
    router = running_router
    done = router.init("stop")
    assert done.returncode == 0, done.stderr
    calls = router.calls()
    kill_at = index_of(calls, lambda c: c[0] == "procd_kill")
    sweep_at = index_of(calls, lambda c: c[:3] == ["netpath", "apply", "--remove"])
    assert kill_at < sweep_at
    assert calls[sweep_at][3:] == [str(router.bundle)]
    assert procd_events(calls) == [("stop", "agent")]


def test_stop_sweeps_only_after_the_agent_has_exited(running_router):
    """A live process stands in for the agent: it takes a moment to clean up on SIGTERM.
    The sweep must come after it is gone, or it would race with the agent."""
    router = running_router
    stand_in = subprocess.Popen(
        ["/bin/sh", "-c",
         'trap \'sleep 1; printf "agent-exited\\n" >> "$HARNESS_LOG"; exit 0\' TERM; '
         'while :; do sleep 0.1; done'],
        env=router.env())
    # Reap it the moment it exits, as procd would, so `kill -0` stops seeing it.
    reaper = threading.Thread(target=stand_in.wait, daemon=True)
    reaper.start()
    try:
        router.pidfile.write_text(f"{stand_in.pid}\n")
        done = router.init("stop")
        assert done.returncode == 0, done.stderr
    finally:
        if stand_in.poll() is None:
            stand_in.kill()
        reaper.join(timeout=30)
    calls = router.calls()
    exited_at = index_of(calls, lambda c: c == ["agent-exited"])
    sweep_at = index_of(calls, lambda c: c[:3] == ["netpath", "apply", "--remove"])
    assert exited_at < sweep_at


# --- hotplug -----------------------------------------------------------------------------------

@pytest.fixture
def hotplug_router(router):
    router.write_config(ENABLED_CONFIG)
    return router


def ifevents(router):
    return [c[2:] for c in named(router.calls(), "netpath") if c[1] == "ifevent"]


@pytest.mark.parametrize("action, interface, device, expected", [
    # managed by section name (ifname is a device)
    ("ifup", "wan", "eth0", ["ifup", "wan", "eth0"]),
    # managed by ifname, which names the logical interface
    ("ifupdate", "wwan", "wwan0", ["ifupdate", "wwan", "wwan0"]),
    # ifdown carries no DEVICE: none is passed
    ("ifdown", "wan", "", ["ifdown", "wan"]),
    # netifd's IPv6 sub-interface of wan
    ("ifup", "wan_6", "pppoe-wan", ["ifup", "wan_6", "pppoe-wan"]),
    # another logical interface on a managed device
    ("ifup", "wan6", "eth0", ["ifup", "wan6", "eth0"]),
])
def test_hotplug_passes_events_of_managed_interfaces(hotplug_router, action, interface,
                                                     device, expected):
    done = hotplug_router.hotplug(action, interface, device)
    assert done.returncode == 0, done.stderr
    assert ifevents(hotplug_router) == [expected + ["--socket", "/var/run/netpath.sock"]]


@pytest.mark.parametrize("action, interface, device", [
    ("ifup", "lan", "br-lan"),          # not NetPath's
    ("ifup", "spare", "eth3"),          # NetPath's, but disabled
    ("ifup-failed", "wan", ""),         # an action the agent does not take
    ("free", "wan", ""),
    ("ifup", "", "eth0"),               # no interface
])
def test_hotplug_ignores_other_events(hotplug_router, action, interface, device):
    done = hotplug_router.hotplug(action, interface, device)
    assert done.returncode == 0, done.stderr
    assert named(hotplug_router.calls(), "netpath") == []


def test_hotplug_does_nothing_while_netpath_is_disabled(router):
    router.write_config(DISABLED_CONFIG)
    done = router.hotplug("ifup", "wan", "eth0")
    assert done.returncode == 0
    assert named(router.calls(), "netpath") == []


def test_hotplug_never_fails_when_the_agent_cannot_be_told(hotplug_router):
    done = hotplug_router.hotplug("ifup", "wan", "eth0", HARNESS_IFEVENT_STATUS="1")
    assert done.returncode == 0
    assert len(ifevents(hotplug_router)) == 1
    assert any("wan" in m for m in logged_messages(hotplug_router.calls(), "warn"))


# --- shell quality and package files -----------------------------------------------------------

SHELL_FILES = [INIT_SCRIPT, HOTPLUG_SCRIPT, HOOK_EXAMPLE,
               HARNESS / "rc.common", HARNESS / "run-hotplug", HARNESS / "functions.sh",
               HARNESS / "procd.sh", *sorted((HARNESS / "bin").iterdir()), FAKE_UBUS / "ubus",
               REPO / "scripts" / "build-packages.sh", REPO / "luci" / "root" / "etc" / "uci-defaults" / "40_luci-netpath"]


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    # The OpenWrt scripts declare `shell=ash` (checked as dash: POSIX plus `local`);
    # the others run under /bin/sh.
    dialect = [] if "shell=ash" in path.read_text() else ["-s", "sh"]
    done = subprocess.run(["shellcheck", "-x", *dialect, str(path)], cwd=path.parent,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_shipped_config_is_disabled_and_otherwise_valid(tmp_path):
    package = uci.load(SHIPPED_CONFIG)
    assert package.get("globals").options["enabled"].value == "0"
    # Enabled as it stands, the compiler accepts it.
    enabled = tmp_path / "netpath"
    enabled.write_text(SHIPPED_CONFIG.read_text().replace(
        "option enabled '0'", "option enabled '1'", 1))
    done = subprocess.run([str(NETPATH), "check", "--format", "uci", str(enabled)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def makefile_vars(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        if ":=" in line and not line.startswith(("\t", " ", "#")):
            name, value = line.split(":=", 1)
            values[name.strip()] = value.strip()
    return values


@pytest.mark.parametrize("makefile", [
    PACKAGE / "Makefile",
    REPO / "luci" / "Makefile",
    REPO / "openwrt" / "python-voluptuous" / "Makefile",
], ids=lambda p: p.parent.name)
def test_makefile_versions_suit_opkg_and_apk(makefile):
    values = makefile_vars(makefile)
    # apk: digits and dots (suffixes aside), integer release.
    assert re.fullmatch(r"\d+(\.\d+)*", values["PKG_VERSION"]), values["PKG_VERSION"]
    assert re.fullmatch(r"\d+", values["PKG_RELEASE"]), values["PKG_RELEASE"]
    if "PYPI_NAME" in values:
        assert re.fullmatch(r"[0-9a-f]{64}", values["PKG_HASH"]), values["PKG_HASH"]


def test_netpath_makefile_matches_the_project():
    values = makefile_vars(PACKAGE / "Makefile")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert values["PKG_VERSION"] == project["version"]
    assert makefile_vars(REPO / "luci" / "Makefile")["PKG_VERSION"] == project["version"]
    text = (PACKAGE / "Makefile").read_text()
    # Every file the package installs from files/ exists, and every file there is installed.
    installed = set(re.findall(r"\./files/(\S+)", text))
    shipped = {str(p.relative_to(FILES)) for p in FILES.rglob("*") if p.is_file()}
    assert installed == shipped
    assert "/etc/config/netpath" in text.split("define Package/netpath/conffiles", 1)[1]
    for script in project["scripts"]:
        assert f"/usr/bin/{script}" in text


# --- agent/ubus.py -----------------------------------------------------------------------------

@pytest.fixture
def fake_ubus(monkeypatch, tmp_path):
    log = tmp_path / "ubus.log"
    monkeypatch.setenv("PATH", f"{FAKE_UBUS}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_UBUS_LOG", str(log))
    monkeypatch.delenv("FAKE_UBUS_MODE", raising=False)
    return log


def test_ubus_prefers_the_l3_device(fake_ubus):
    assert ubus.logical_to_device("wan") == "pppoe-wan"
    assert fake_ubus.read_text().splitlines() == ["-t 2 call network.interface.wan status"]


def test_ubus_falls_back_to_the_configured_device_of_a_down_interface(fake_ubus):
    assert ubus.logical_to_device("wanb") == "eth2"


def test_ubus_unknown_interface_is_none(fake_ubus):
    assert ubus.logical_to_device("nosuch") is None


def test_ubus_family_alias(fake_ubus):
    # lte_4 exists: an IPv4 lookup uses it; lte_6 does not: an IPv6 lookup uses lte.
    assert ubus.logical_to_device("lte", family="ipv4") == "wwan0"
    assert ubus.logical_to_device("lte", family="ipv6") == "cdc-wdm0"
    assert ubus.logical_to_device("lte") == "cdc-wdm0"
    asked = [line.split()[3] for line in fake_ubus.read_text().splitlines()]
    assert asked == ["network.interface.lte_4", "network.interface.lte_6",
                     "network.interface.lte", "network.interface.lte"]
    with pytest.raises(ValueError):
        ubus.logical_to_device("lte", family="inet")


@pytest.mark.parametrize("name", ["eth0.2", "pppoe-wan", "wan status", "", "wan.x"])
def test_ubus_is_not_asked_about_names_that_are_no_logical_interface(fake_ubus, name):
    assert ubus.logical_to_device(name) is None
    assert not fake_ubus.exists()


def test_ubus_missing_is_none(monkeypatch, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert ubus.logical_to_device("wan") is None


def test_ubus_that_hangs_is_none(fake_ubus, monkeypatch):
    monkeypatch.setenv("FAKE_UBUS_MODE", "hang")
    assert ubus.logical_to_device("wan", timeout=0.2) is None


def test_ubus_answer_that_is_not_json_is_none(fake_ubus, monkeypatch):
    monkeypatch.setenv("FAKE_UBUS_MODE", "garbage")
    assert ubus.interface_status("wan") is None


def test_ubus_status_is_the_whole_object(fake_ubus):
    status = ubus.interface_status("wan")
    assert status["proto"] == "pppoe"
    assert status["route"][0]["nexthop"] == "100.64.0.1"
