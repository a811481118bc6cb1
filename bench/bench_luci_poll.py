"""CPU cost of one LuCI overview poll on the router (printed, nothing asserted). Needs root;
builds its own namespaces.

    .venv/bin/python bench/bench_luci_poll.py [--polls 20]

Every few seconds LuCI's overview asks rpcd for `luci.netpath status` and
`luci.netpath history {"limit":10}`; rpcd starts the plugin program once per call. This
measures the CPU time (user + system) of every process one poll starts, with wait4's
rusage of the plugin process (which includes its waited-for children: cat, tail, python),
against a real netpath-agent tracking two uplinks in a lab:

  before  the Python plugin (the calls go to `python3 -m netpath.agent.rpcd`, the code
          the rpcd plugin ran until the busybox-ash plugin took over; it asks the socket)
  after   luci/root/usr/libexec/rpcd/luci.netpath under busybox ash (the agent's snapshot)

Polls alternate between the two (noise from other load hits both alike); the figures are
medians and the ratio before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "luci"))

from harness import labagent  # noqa: E402
from lab import netlab  # noqa: E402

PLUGIN = REPO / "luci" / "root" / "usr" / "libexec" / "rpcd" / "luci.netpath"
POLL = (("status", {}), ("history", {"limit": 10}))  # what overview.js asks per refresh
SESSION = {"ubus_rpc_session": "0123456789abcdef0123456789abcdef"}


def run_measured(argv: list, stdin: str, env: dict) -> tuple:
    """(CPU seconds of the process and its children, stdout)."""
    read_end, write_end = os.pipe()
    out_read, out_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(read_end, 0)
        os.dup2(out_write, 1)
        for fd in (read_end, write_end, out_read, out_write):
            os.close(fd)
        os.execvpe(argv[0], argv, env)
    os.close(read_end)
    os.close(out_write)
    os.write(write_end, stdin.encode())
    os.close(write_end)
    chunks = []
    while chunk := os.read(out_read, 65536):
        chunks.append(chunk)
    os.close(out_read)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        raise RuntimeError(f"{argv} exited {status}")
    return usage.ru_utime + usage.ru_stime, b"".join(chunks).decode()


def one_poll(kind: str, env: dict) -> float:
    total = 0.0
    for method, args in POLL:
        stdin = json.dumps({**args, **SESSION})
        if kind == "before":
            argv = [sys.executable, "-m", "netpath.agent.rpcd", "call", method]
        else:
            argv = ["busybox", "sh", str(PLUGIN), "call", method]
        seconds, out = run_measured(argv, stdin, env)
        reply = json.loads(out)
        if not reply.get("ok"):
            raise RuntimeError(f"{kind} {method}: {reply}")
        if kind == "after" and method == "status" and "snapshot" not in reply:
            raise RuntimeError("the ash plugin did not answer from the snapshot")
        total += seconds
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--polls", type=int, default=20)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="netpath-bench-") as tmp:
        work = Path(tmp)
        lab = netlab.Lab()
        try:
            lab.build()
            lab.start_servers()
            bundle = labagent.compile_bundle(labagent.write_lab_config(work / "etc"), work / "bundle")
            agent = labagent.LabAgent(lab, bundle, work).start()
            try:
                agent.wait_states({"wan1": "online", "wan2": "online"}, timeout=30)
                env = {**os.environ, "NETPATH_SOCKET": agent.socket, "NETPATH_BUNDLE": str(bundle),
                       "NETPATH_PYTHON": sys.executable}
                samples = {"before": [], "after": []}
                one_poll("before", env)  # warm the page cache for both
                one_poll("after", env)
                for _ in range(args.polls):
                    for kind in ("before", "after"):
                        samples[kind].append(one_poll(kind, env))
            finally:
                agent.stop()
        finally:
            lab.destroy()
    before, after = (statistics.median(samples[k]) for k in ("before", "after"))
    print(f"one overview poll (status + history), CPU time of every process it starts, "
          f"median of {args.polls} alternating polls:")
    print(f"  before (Python plugin): {before * 1000:7.1f} ms")
    print(f"  after  (ash + snapshot): {after * 1000:7.1f} ms")
    print(f"  ratio before/after: {before / after:.0f}x" if after else "  after: below the clock's resolution")


if __name__ == "__main__":
    main()
