"""A real netpath-agent inside a lab's router namespace, configured with a UCI file (the
format the LuCI pages edit), for the LuCI tests and the screenshots.

    config = write_lab_config(tmp_path / "etc")          # tmp_path/etc/netpath
    bundle = compile_bundle(config, tmp_path / "bundle")
    agent = LabAgent(lab, bundle, tmp_path).start()
    agent.request("interfaces")
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
NETPATH = str(BIN / "netpath")
AGENT = str(BIN / "netpath-agent")
START_TIMEOUT = 20.0

# Two uplinks of tests/lab/netlab.py (devices wan1, wan2; ISP gateways 100.64.k.1), tracked
# by pinging the lab's internet server every second, balanced 3:1.
LAB_UCI = """
config globals 'globals'
\toption enabled '1'
\toption nft_table 'netpath'

config interface 'wan1'
\toption ifname 'wan1'
\toption gateway '100.64.1.1'
\toption track_method 'ping'
\tlist track_targets '203.0.113.10'
\toption interval '1'
\toption timeout '1'
\toption failure_interval '1'
\toption recovery_interval '1'
\toption down '3'
\toption up '2'

config interface 'wan2'
\toption ifname 'wan2'
\toption gateway '100.64.2.1'
\toption track_method 'ping'
\tlist track_targets '203.0.113.10'
\toption interval '1'
\toption timeout '1'
\toption failure_interval '1'
\toption recovery_interval '1'
\toption down '3'
\toption up '2'

config member 'wan1_w3'
\toption interface 'wan1'
\toption metric '1'
\toption weight '3'

config member 'wan2_w1'
\toption interface 'wan2'
\toption metric '1'
\toption weight '1'

config policy 'balanced'
\tlist members 'wan1_w3'
\tlist members 'wan2_w1'
\toption mode 'balanced'

config rule 'https'
\toption proto 'tcp'
\toption dest_port '443'
\toption sticky '1'
\toption policy 'balanced'

config rule 'default_rule'
\tlist dest_ip '0.0.0.0/0'
\toption policy 'balanced'
"""


def write_lab_config(directory) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "netpath"
    path.write_text(LAB_UCI.lstrip())
    return path


def compile_bundle(config, out, check: bool = True) -> Path:
    argv = [NETPATH, "compile", str(config), "--format", "uci", "-o", str(out)]
    if not check:
        argv.append("--no-check")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"netpath compile {config} failed: {proc.stderr.strip()}")
    return Path(out)


class LabAgent:
    def __init__(self, lab, bundle, workdir):
        self.lab = lab
        self.bundle = Path(bundle)
        self.workdir = Path(workdir)
        self.socket = str(self.workdir / "agent.sock")
        self.log_path = self.workdir / "agent.log"
        self.process = None

    def start(self) -> "LabAgent":
        hooks = self.workdir / "no-hooks"
        hooks.mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = self.lab.popen("router", [AGENT, "--bundle", str(self.bundle), "--socket", self.socket,
                                                     "--hooks", str(hooks)], stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"netpath-agent exited {self.process.returncode}: {self.log()}")
            try:
                if self.request("status").get("ok"):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"netpath-agent did not answer within {START_TIMEOUT:g} s: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(self, cmd: str, **args) -> dict:
        from netpath.agent import ipc

        try:
            return ipc.request(self.socket, {"cmd": cmd, **args}, timeout=10)
        except ipc.IpcError as exc:
            raise OSError(str(exc)) from None

    def states(self) -> dict:
        return {i["name"]: i["state"] for i in self.request("interfaces")["interfaces"]}

    def wait_states(self, wanted: dict, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if all(states.get(name) == state for name, state in wanted.items()):
                return states
            if time.monotonic() > deadline:
                raise AssertionError(f"agent states {states}, wanted {wanted} within {timeout:g} s")
            time.sleep(0.2)
