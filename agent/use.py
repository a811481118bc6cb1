"""`netpath use IFACE -- CMD [ARGS]`: run CMD so that every connection it and its children
open leaves through IFACE (mwan3's `mwan3 use`).

mwan3 preloads a library (LD_PRELOAD) that sets SO_MARK on every socket: it misses static
binaries and programs that clear the environment, and needs a compiled helper per
architecture. NetPath uses the kernel instead: CMD runs in a cgroup of its own (cgroup v2,
under /sys/fs/cgroup/netpath-use/), which it and everything it starts cannot leave, and a
small nft table of its own matches the sockets of that cgroup (`socket cgroupv2`):

* a `type route` output chain at priority mangle + 5 gives their packets IFACE's mark (and
  their flows IFACE's conntrack mark), before NetPath's own output chain (mangle + 10),
  which leaves an already marked packet alone; the changed mark re-routes the packet
  through NetPath's `fwmark` rule into IFACE's routing table;
* a nat postrouting chain masquerades the router's own packets with IFACE's mark on IFACE's
  device (`socket` matches do not exist at postrouting): the source address was chosen by
  the main table before the mark existed, and an ISP drops packets from another uplink's
  address.

IFACE is a NetPath interface name, an OpenWrt logical name or a device; every interface it
names counts, one per family (a device that carries `wan` and `wan6` moves both families).
The bundle's rules must be loaded (the agent runs, or `netpath apply`). The table and the
cgroup are removed when CMD and every process it started have ended; the exit status is
CMD's (128 + N when a signal N ended it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from . import bundle as bundle_mod
from .nft import Nft, NftError

DEFAULT_BUNDLE = "/var/lib/netpath/bundle"
CGROUP_ROOT = "/sys/fs/cgroup"  # where nft looks up the path of `socket cgroupv2`
PARENT = "netpath-use"
MOUNT_TIMEOUT = 10


class UseError(Exception):
    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def cgroup2_root() -> str:
    """The cgroup v2 hierarchy under /sys/fs/cgroup (mounted there when nothing is, as
    procd and systemd do; `ip netns exec` gives a fresh /sys without it)."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[2:3] == ["cgroup2"]]
    for point in points:
        if point == CGROUP_ROOT or point.startswith(CGROUP_ROOT + "/"):
            return point
    if os.path.ismount(CGROUP_ROOT) or not os.path.isdir(CGROUP_ROOT):
        raise UseError(f"no cgroup v2 hierarchy under {CGROUP_ROOT} (mounted: {', '.join(points) or 'none'}); "
                       "netpath use needs one")
    done = subprocess.run(["mount", "-t", "cgroup2", "none", CGROUP_ROOT], capture_output=True, text=True,
                          timeout=MOUNT_TIMEOUT)
    if done.returncode != 0:
        raise UseError(f"cannot mount cgroup2 on {CGROUP_ROOT}: {done.stderr.strip()}")
    return CGROUP_ROOT


def interfaces_for(model, name: str) -> list:
    """The enabled interfaces `name` names (by name, OpenWrt logical name or device), at most one
    per family; UseError (status 2) naming the known ones otherwise."""
    found = [i for i in model.interfaces if name in (i.name, i.logical, i.device)]
    if not found:
        known = ", ".join(i.name for i in model.interfaces) or "none"
        raise UseError(f"no interface {name!r} in the bundle (have: {known})", 2)
    disabled = [i.name for i in found if not i.enabled]
    found = [i for i in found if i.enabled]
    if not found:
        raise UseError(f"interface {', '.join(disabled)} is disabled in the config (option enabled 0)", 2)
    by_family = {}
    for iface in found:
        if iface.family in by_family:
            raise UseError(f"{name!r} names two {iface.family} interfaces ({by_family[iface.family].name}, "
                           f"{iface.name}); name one of them", 2)
        by_family[iface.family] = iface
    return list(by_family.values())


def ruleset(table: str, path: str, level: int, interfaces: list, mask: int) -> str:
    keep = f"0x{~mask & 0xFFFFFFFF:08x}"
    socket = f'socket cgroupv2 level {level} "{path}"'
    marks, nat = [], []
    for iface in interfaces:
        mark = f"0x{iface.mark:08x}"
        marks.append(f"\t\tmeta nfproto {iface.family} {socket} meta mark set meta mark & {keep} | {mark} "
                     f"ct mark set ct mark & {keep} | {mark}")
        # `socket` is not available at postrouting: the mark (set above) and a local source
        # address single out the router's own packets bound for this uplink.
        nat.append(f'\t\tmeta nfproto {iface.family} meta mark & 0x{mask:08x} == {mark} fib saddr type local '
                   f'oifname "{iface.device}" masquerade')
    return "\n".join([
        f"table inet {table} {{",
        "\tchain output {",
        "\t\ttype route hook output priority mangle + 5; policy accept;", *marks, "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat - 5; policy accept;", *nat, "\t}",
        "}", ""])


def _populated(cgroup: str) -> bool:
    try:
        with open(os.path.join(cgroup, "cgroup.events")) as events:
            return "populated 1" in events.read()
    except FileNotFoundError:
        return False


def run(bundle_dir: str, name: str, argv: list, prog: str) -> int:
    model = bundle_mod.read(bundle_dir).model
    if not model.enabled:
        raise UseError("NetPath is disabled (globals enabled 0): no uplink has a routing table", 2)
    interfaces = interfaces_for(model, name)
    nft = Nft()
    if not nft.list_json(f"table inet {model.table}"):
        raise UseError(f"NetPath's rules are not loaded (no table inet {model.table}): start the agent "
                       "or run `netpath apply`")
    root = cgroup2_root()
    pid = os.getpid()
    leaf = f"{interfaces[0].name}-{pid}"
    cgroup = os.path.join(root, PARENT, leaf)
    os.makedirs(cgroup)
    table = f"netpath_use_{pid}"
    nft_path = os.path.relpath(cgroup, CGROUP_ROOT)
    try:
        nft.load(ruleset(table, nft_path, 2, interfaces, model.mask))
        return _run_in(cgroup, argv, prog)
    finally:
        try:
            nft.load(f"delete table inet {table}\n")
        except NftError as exc:
            print(f"{prog}: could not remove table inet {table}: {exc}", file=sys.stderr)
        try:
            os.rmdir(cgroup)
        except OSError as exc:
            print(f"{prog}: could not remove {cgroup}: {exc.strerror}", file=sys.stderr)


def _run_in(cgroup: str, argv: list, prog: str) -> int:
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # the cgroup first, then CMD: not one packet leaves before it is in place
        os.close(ready_write)
        os.read(ready_read, 1)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            print(f"{prog}: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
            os._exit(127)
    os.close(ready_read)
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as procs:
        procs.write(str(child))
    os.write(ready_write, b"x")
    os.close(ready_write)
    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    previous = {s: signal.signal(s, lambda sig, _frame: os.kill(child, sig)) for s in forwarded}
    try:
        _, status = os.waitpid(child, 0)
        while _populated(cgroup):  # a child CMD left behind still uses the uplink
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main(argv, prog: str = "netpath use") -> int:
    argv = list(argv)
    command = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(prog=prog, usage=f"{prog} [--bundle DIR] IFACE -- CMD [ARGS]",
                                description="Run CMD so that every connection it and its children open "
                                            "leaves through IFACE.")
    p.add_argument("interface", metavar="IFACE", help="NetPath interface, OpenWrt interface or device")
    p.add_argument("--bundle", default=DEFAULT_BUNDLE, metavar="DIR",
                   help=f"the bundle in use (default {DEFAULT_BUNDLE})")
    args = p.parse_args(argv)
    if not command:
        p.error("no command given: netpath use IFACE -- CMD [ARGS]")
    try:
        return run(args.bundle, args.interface, command, prog)
    except bundle_mod.BundleError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except UseError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.status
    except (NftError, OSError, subprocess.SubprocessError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
