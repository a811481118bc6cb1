"""The agent's smaller parts with real processes: hook scripts, the conntrack flush (in a
throw-away network namespace), and what the agent imports."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from netpath.agent import hooks


def write_script(path, body: str, mode=0o755):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def test_hooks_run_in_name_order_with_the_event_in_their_environment(tmp_path):
    record = tmp_path / "record"
    directory = tmp_path / "hooks.d"
    directory.mkdir()
    write_script(directory / "20-second", f'echo "second $ACTION $INTERFACE $DEVICE" >> {record}\n')
    write_script(directory / "10-first", f'echo "first $ACTION $INTERFACE $DEVICE" >> {record}\n')
    write_script(directory / "30-not-executable", f"echo never >> {record}\n", mode=0o644)

    async def run():
        runner = hooks.Hooks(directory, timeout=5)
        runner.start()
        runner.submit("disconnected", "wan", "eth0")
        runner.submit("connected", "wan", "eth0")
        while runner.runs < 4:
            await asyncio.sleep(0.01)
        await runner.stop()

    asyncio.run(run())
    assert record.read_text().splitlines() == [
        "first disconnected wan eth0", "second disconnected wan eth0",
        "first connected wan eth0", "second connected wan eth0"]


def test_a_hook_that_hangs_is_killed_and_the_loop_keeps_running(tmp_path):
    script = write_script(tmp_path / "hang", "sleep 30 &\nwait\n")

    async def run():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        status = await hooks.run_script(script, {"ACTION": "ifup", "INTERFACE": "wan", "DEVICE": "eth0",
                                                 "PATH": os.environ["PATH"]}, timeout=0.5)
        took = time.monotonic() - started
        task.cancel()
        return status, took, ticks

    status, took, ticks = asyncio.run(run())
    assert status is None
    assert took < 5
    assert ticks >= 5  # the loop ran while the hook hung


def test_a_hook_that_prints_forever_costs_no_memory_and_is_killed_at_its_limit(tmp_path, caplog):
    """`yes` writes some hundred MB/s into the agent's pipe: the agent keeps only the last
    few KiB (for the log line) and kills the hook at its time limit."""
    import tracemalloc

    pid_file = tmp_path / "pid"
    script = write_script(tmp_path / "chatty", f"echo $$ > {pid_file}\nexec yes\n")
    env = {"ACTION": "ifup", "INTERFACE": "wan", "DEVICE": "eth0", "PATH": os.environ["PATH"]}

    async def run():
        tracemalloc.start()
        try:
            status = await hooks.run_script(script, env, timeout=2.0)
            return status, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    status, peak = asyncio.run(run())
    print(f"peak Python memory while `yes` ran for 2 s: {peak / 1024:.0f} KiB")
    assert status is None  # killed at its time limit
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    assert peak < 4 * 1024 * 1024, peak

    loud = write_script(tmp_path / "loud", "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done\n"
                                           "echo the last words; exit 3\n")
    with caplog.at_level("WARNING", logger="netpath.hooks"):
        assert asyncio.run(hooks.run_script(loud, env, timeout=20)) == 3
    message = caplog.records[-1].getMessage()
    assert "exited 3" in message and message.endswith("the last words") and "line 19999" in message
    assert len(message) < hooks.OUTPUT_KEPT + 500


def test_missing_hooks_directory_is_no_hooks(tmp_path):
    assert hooks.scripts(tmp_path / "absent") == []


FLUSH = textwrap.dedent("""
    import asyncio, json, subprocess
    from netpath.agent import conntrack
    def add(src, mark):
        subprocess.run(["conntrack", "-I", "-p", "udp", "-s", src, "-d", "203.0.113.10", "--sport", "1000",
                        "--dport", "53", "--timeout", "100", "--mark", str(mark)], check=True, capture_output=True)
    add("192.0.2.1", 0x100)
    add("192.0.2.2", 0x100 | 0x10000)   # other bits outside the mask: still wan's flow
    add("192.0.2.3", 0x200)
    add("192.0.2.4", 0)
    deleted = asyncio.run(conntrack.flush_mark(0x100, 0x3f00))
    left = subprocess.run(["conntrack", "-L"], capture_output=True, text=True).stdout
    print(json.dumps({"deleted": deleted, "left": left}))
""")


def conntrack_script(script: str) -> dict:
    """Run `script` in a network namespace of its own (its own conntrack table); its JSON line."""
    if os.geteuid() != 0 or not shutil.which("conntrack") or not shutil.which("unshare"):
        pytest.skip("needs root, conntrack and unshare")
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


FORGET = textwrap.dedent("""
    import asyncio, json, subprocess
    from netpath.agent import conntrack
    def add(*args):
        subprocess.run(["conntrack", "-I", "--timeout", "100", *args], check=True, capture_output=True)
    udp = ["-p", "udp", "--dport", "53", "-d", "203.0.113.10"]
    add(*udp, "-s", "192.0.2.1", "--sport", "1001", "--mark", str(0x100))            # unanswered: goes
    add("-p", "tcp", "--state", "SYN_SENT", "-s", "192.0.2.2", "-d", "203.0.113.10", "--sport", "1002",
        "--dport", "80", "--mark", str(0x100 | 0x10000))                             # SYN_SENT, other bits: goes
    add(*udp, "-s", "192.0.2.3", "--sport", "1003", "--mark", str(0x100), "--status", "SEEN_REPLY")  # answered
    add(*udp, "-s", "192.0.2.4", "--sport", "1004", "--mark", str(0x200))            # another WAN's
    add("-p", "udp", "-s", "2001:db8::1", "-d", "2001:db8::53", "--sport", "1005", "--dport", "53",
        "--mark", str(0x100))                                                        # the other family
    deleted = asyncio.run(conntrack.forget_unreplied(0x100, 0x3f00, "ipv4"))
    left = subprocess.run(["conntrack", "-L", "-f", "ipv4"], capture_output=True, text=True).stdout
    left6 = subprocess.run(["conntrack", "-L", "-f", "ipv6"], capture_output=True, text=True).stdout
    print(json.dumps({"deleted": deleted, "left": left, "left6": left6}))
""")


@pytest.mark.lab
def test_forget_unreplied_deletes_only_the_unanswered_entries_of_the_mark():
    result = conntrack_script(FORGET)
    assert result["deleted"] == 2
    kept = sorted(line.split("sport=")[1].split()[0] for line in result["left"].splitlines() if "sport=" in line)
    assert kept == ["1003", "1004"], result["left"]
    assert "sport=1005" in result["left6"]


@pytest.mark.lab
def test_conntrack_flush_deletes_only_the_marked_flows():
    result = conntrack_script(FLUSH)
    assert result["deleted"] == 2
    assert "192.0.2.3" in result["left"] and "192.0.2.4" in result["left"]
    assert "192.0.2.1" not in result["left"] and "192.0.2.2" not in result["left"]


FLUSH_FAMILY = textwrap.dedent("""
    import asyncio, json, subprocess
    from netpath.agent import conntrack
    def add(src, dst, mark):
        subprocess.run(["conntrack", "-I", "-p", "udp", "-s", src, "-d", dst, "--sport", "1000",
                        "--dport", "53", "--timeout", "100", "--mark", str(mark)], check=True, capture_output=True)
    add("192.0.2.1", "203.0.113.10", 0x100)
    add("2001:db8::1", "2001:db8:1::10", 0x100)
    deleted = asyncio.run(conntrack.flush_mark(0x100, 0x3f00, "ipv4"))
    left = subprocess.run(["conntrack", "-L", "-f", "ipv6"], capture_output=True, text=True).stdout
    left4 = subprocess.run(["conntrack", "-L", "-f", "ipv4"], capture_output=True, text=True).stdout
    print(json.dumps({"deleted": deleted, "left": left + left4}))
""")


@pytest.mark.lab
def test_conntrack_flush_of_one_family_leaves_the_other():
    """An IPv4 WAN's flush must not take the IPv6 flows that share its mark."""
    result = conntrack_script(FLUSH_FAMILY)
    assert result["deleted"] == 1
    assert "2001:db8::1" in result["left"] and "192.0.2.1" not in result["left"]


def test_the_agent_never_imports_the_compiler_stack_or_unused_probe_libraries():
    code = textwrap.dedent("""
        import sys, json
        import netpath.agent.__main__, netpath.agent.daemon, netpath.agent.commands
        import netpath.agent.track, netpath.agent.links, netpath.agent.swap, netpath.agent.hooks
        print(json.dumps(sorted(m for m in ("jinja2", "voluptuous", "yaml", "tomli", "netpath.compiler",
                                            "requests", "dns", "scapy") if m in sys.modules)))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_bad_arguments_exit_2_with_a_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "netpath.agent", "--bundle", str(tmp_path), "--socket", "none"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not a NetPath bundle" in proc.stderr


MONITOR = textwrap.dedent("""
    import asyncio, json, subprocess
    from netpath.agent.links import LinkMonitor

    async def main():
        events = []
        monitor = LinkMonitor({"npa0"}, lambda dev, up, gone: events.append(["link", dev, up, gone]),
                              lambda dev: events.append(["address", dev]), lambda: events.append(["resync"]))
        monitor.start()
        await asyncio.wait_for(monitor.ready.wait(), 5)
        steps = ["link add npa0 type veth peer name npa1", "link set npa0 up", "link set npa1 up",
                 "addr add 100.64.99.2/24 dev npa0", "route add default via 100.64.99.1 dev npa0",
                 "route add 198.51.100.0/24 via 100.64.99.1 dev npa0 table 1001",
                 "link set npa1 down", "link set npa1 up", "link del npa0"]
        marks = []
        for step in steps:
            subprocess.run(["ip", *step.split()], check=True)
            await asyncio.sleep(0.1)
            marks.append([step, len(events)])
        await monitor.stop()
        print(json.dumps({"events": events, "marks": marks}))

    asyncio.run(main())
""")


@pytest.mark.lab
def test_link_monitor_reports_carrier_addresses_and_main_table_routes():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare")
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", MONITOR], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    events = result["events"]
    links = [e[2] for e in events if e[0] == "link"]
    # new and without carrier, up with the peer, down on carrier loss, up again, down (removed)
    assert links == [False, True, False, True, False]
    after = dict(result["marks"])
    before_table_route = after["route add default via 100.64.99.1 dev npa0"]
    assert ["address", "npa0"] in events[:before_table_route]
    # a route in another table (NetPath's own) is not reported back
    assert after["route add 198.51.100.0/24 via 100.64.99.1 dev npa0 table 1001"] == before_table_route


# --- logging --------------------------------------------------------------------------------


def _save_logging():
    import logging

    root = logging.getLogger()
    return root.level, list(root.handlers)


def _restore_logging(saved):
    import logging

    root = logging.getLogger()
    for handler in root.handlers:
        handler.close()
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]


def test_syslog_logging_uses_facility_daemon_and_the_records_own_priority(tmp_path, monkeypatch, capsys):
    """procd files a service's stderr under daemon.err; with --syslog the agent's info lines
    must arrive as daemon.info (<30>), warnings as daemon.warning (<28>), and not on stderr."""
    import logging
    import socket

    from netpath.agent import __main__ as agent_main

    address = str(tmp_path / "log")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(address)
    sink.settimeout(5)
    monkeypatch.setattr(agent_main, "SYSLOG_ADDRESS", address)
    saved = _save_logging()
    try:
        agent_main._logging("info", syslog=True)
        log = logging.getLogger("netpath.test")
        log.debug("not at info level")
        log.info("wan: online")
        log.warning("wan: online -> offline")
        log.error("cannot load")
        received = [sink.recv(4096).decode() for _ in range(3)]
    finally:
        _restore_logging(saved)
        sink.close()
    pid = os.getpid()
    assert received == [f"<30>netpath-agent[{pid}]: wan: online\x00",
                        f"<28>netpath-agent[{pid}]: wan: online -> offline\x00",
                        f"<27>netpath-agent[{pid}]: cannot load\x00"]
    assert capsys.readouterr().err == ""


def test_without_a_syslog_socket_the_agent_logs_to_stderr(tmp_path, monkeypatch, capsys):
    import logging

    from netpath.agent import __main__ as agent_main

    monkeypatch.setattr(agent_main, "SYSLOG_ADDRESS", str(tmp_path / "missing"))
    saved = _save_logging()
    try:
        agent_main._logging("warning", syslog=True)
        logging.getLogger("netpath.test").warning("wan: offline")
    finally:
        _restore_logging(saved)
    assert capsys.readouterr().err.endswith(" WARNING wan: offline\n")
