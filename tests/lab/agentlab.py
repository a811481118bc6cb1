"""Run `netpath-agent` inside a lab's router namespace and talk to it over its socket.

    bundle = compile_bundle(tmp_path, agent_config(track={"interval": 1}))
    agent = RunningAgent(lab, bundle, tmp_path).start()
    agent.wait_state("wan1", "offline", timeout=10)

Used by tests/lab/test_agent.py and bench/bench_agent.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from lab import netlab  # noqa: E402

BIN = Path(sys.executable).parent
NETPATH = str(BIN / "netpath")
AGENT = str(BIN / "netpath-agent")

FAST_TRACK = {"interval": 1, "timeout": 1, "failure_interval": 1, "recovery_interval": 1, "down": 3, "up": 2}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def default_targets(method: str, k: int) -> list:
    if method == "dns":
        return [netlab.DNS4]
    if method == "arping":
        return [netlab.isp_gateway4(k)]
    return [netlab.HTTP4]


def agent_config(wans=(1, 2), method="ping", track=None, mode="failover", metrics=None, weights=None,
                 last_resort="unreachable", flush_conntrack=(), targets=None, per_wan_track=None) -> str:
    """A TOML config: one IPv4 interface per lab WAN k (device wan<k>), one member each, one
    policy `p` and one rule sending everything to it."""
    track = {**FAST_TRACK, **(track or {})}
    metrics = metrics or {k: k for k in wans}
    weights = weights or {k: 1 for k in wans}
    lines = ['[global]', 'nft_table = "netpath"']
    for k in wans:
        lines += [f"[interfaces.wan{k}]", f'ifname = "wan{k}"', f'gateway = "{netlab.isp_gateway4(k)}"',
                  f"flush_conntrack = {_toml_value(list(flush_conntrack))}",
                  f"[interfaces.wan{k}.track]", f'method = "{method}"',
                  f"targets = {_toml_value((targets or {}).get(k, default_targets(method, k)))}"]
        if method == "dns":
            lines += ['dns_query = "www.lab.test"', 'dns_type = "A"']
        for key, value in {**track, **(per_wan_track or {}).get(k, {})}.items():
            lines.append(f"{key} = {_toml_value(value)}")
    for k in wans:
        lines += [f"[members.m{k}]", f'interface = "wan{k}"', f"metric = {metrics[k]}", f"weight = {weights[k]}"]
    lines += ["[policies.p]", f"members = {_toml_value([f'm{k}' for k in wans])}", f'mode = "{mode}"',
              f'last_resort = "{last_resort}"',
              "[[rules]]", 'name = "everything"', 'dest_ip = ["0.0.0.0/0"]', 'policy = "p"']
    return "\n".join(lines) + "\n"


def compile_bundle(directory: Path, text: str, name: str = "bundle") -> Path:
    directory = Path(directory)
    config = directory / f"{name}.toml"
    config.write_text(text)
    out = directory / name
    proc = subprocess.run([NETPATH, "compile", str(config), "-o", str(out)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"netpath compile failed: {proc.stderr}")
    return out


class AgentError(RuntimeError):
    pass


class RunningAgent:
    def __init__(self, lab: netlab.Lab, bundle: Path, workdir: Path, hooks: "Path | None" = None,
                 extra: tuple = (), name: str = "agent", env: "dict | None" = None):
        self.lab = lab
        self.env = env  # the agent's environment (None: the test's own)
        self.bundle = Path(bundle)
        self.workdir = Path(workdir)
        self.socket = str(self.workdir / f"{name}.sock")
        self.log_path = self.workdir / f"{name}.log"
        self.hooks = hooks or (self.workdir / "no-hooks")
        self.extra = list(extra)
        self.process: "subprocess.Popen | None" = None
        self.started_at = None

    @property
    def pid(self) -> int:
        return self.process.pid  # `ip netns exec` execs the agent: same pid

    def start(self, timeout: float = 15.0) -> "RunningAgent":
        self._log = open(self.log_path, "a")
        argv = [AGENT, "--bundle", str(self.bundle), "--socket", self.socket, "--hooks", str(self.hooks),
                *self.extra]
        self.started_at = time.time()
        self.process = self.lab.popen("router", argv, stdout=self._log, stderr=self._log, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AgentError(f"netpath-agent exited {self.process.returncode}: {self.log()}")
            try:
                if self.request("status", check=False).get("ok"):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AgentError(f"netpath-agent did not answer within {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def request(self, cmd: str, check: bool = True, **args) -> dict:
        from netpath.agent import ipc

        try:
            reply = ipc.request(self.socket, {"cmd": cmd, **args}, timeout=30)
        except ipc.IpcError as exc:
            raise OSError(str(exc)) from None
        if check and not reply.get("ok"):
            raise AgentError(f"{cmd}: {reply.get('error')}")
        return reply

    def interface(self, name: str) -> dict:
        return next(i for i in self.request("interfaces")["interfaces"] if i["name"] == name)

    def state(self, name: str) -> str:
        return self.interface(name)["state"]

    def history(self) -> list:
        return self.request("history")["history"]

    def wait_state(self, name: str, state: str, timeout: float) -> float:
        """Poll until interface `name` is in `state`; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.state(name) == state:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AgentError(f"{name} not {state} within {timeout} s (now {self.state(name)}); log:\n{self.log()}")

    def send_signal(self, sig) -> None:
        os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AgentError(f"netpath-agent ignored signal {sig} for {timeout} s; log:\n{self.log()}")

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def thread_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))


def uplink(lab: netlab.Lab, timeout: float = 1.0) -> "str | None":
    """The WAN a fresh connection from the LAN client leaves by (None: it failed)."""
    return lab.uplink_of(lab.fetch(timeout=timeout))


def spread(lab: netlab.Lab, count: int = 6) -> dict:
    """How `count` fresh connections from the LAN client left: {"wan1": n, "wan2": m, "errors": e}."""
    histogram = lab.http_histogram(count, timeout=0.5)
    counts = {}
    for seen, n in netlab.seen_counts(histogram).items():
        name = lab.uplink_of(seen) or seen
        counts[name] = counts.get(name, 0) + n
    if histogram.get("errors"):
        counts["errors"] = histogram["errors"]
    return counts


def is_balanced(counts: dict, live=("wan1", "wan2"), count: int = 6) -> bool:
    """Whether `count` connections spread evenly over the `live` uplinks, none failing
    (balanced mode is numgen inc: strictly alternating)."""
    return counts == {name: count // len(live) for name in live}


def wait_balanced(lab: netlab.Lab, since: float, timeout: float = 10.0, live=("wan1", "wan2")) -> float:
    """Seconds from `since` (a time.monotonic()) until fresh connections spread over the
    `live` uplinks again, with none failing."""
    deadline = time.monotonic() + timeout
    counts = {}
    while time.monotonic() < deadline:
        counts = spread(lab)
        if is_balanced(counts, live):
            return time.monotonic() - since
    raise AssertionError(f"new connections not balanced over {', '.join(live)} within {timeout} s: {counts}")


def reset_lab(lab: netlab.Lab) -> None:
    """Undo every impairment and NetPath's state in the router, for the next test."""
    for k in lab.wan_numbers:
        lab.isp_blackhole(k, on=False)
        lab.carrier(k, True)
        lab.netem(k)
    lab.run("router", [NETPATH, "apply", "--remove"], check=False)


# --- pytest fixtures shared by the agent and socket lab tests (import them into a module) ----


@pytest.fixture(scope="module")
def lab2(lab_module):
    """The module's lab with its internet servers running."""
    lab_module.start_servers()
    return lab_module


@pytest.fixture
def agents(lab2, tmp_path):
    """agents(bundle, workdir=None, **kw) starts an agent; all are stopped and the lab reset afterwards."""
    started = []

    def start(bundle, workdir=None, **kw):
        agent = RunningAgent(lab2, bundle, workdir or tmp_path, name=f"agent{len(started)}", **kw)
        started.append(agent)
        return agent.start()

    yield start
    for agent in started:
        if agent.process and agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait(5)
    reset_lab(lab2)
