"""`netpath-agent --bundle DIR [--socket PATH]` (also `python -m netpath.agent`).

Runs in the foreground: applies the bundle, tracks the WANs, swaps state variants, answers
on the control socket. SIGHUP reloads the bundle directory; SIGTERM removes what NetPath
installed unless --keep; a crash or SIGKILL leaves the last state in the kernel.
Exit status: 0 stopped, 1 failure of the system, 2 bad input (bundle, arguments) or another
agent already owns this network namespace or the socket (agent/owner.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .hooks import DEFAULT_DIRECTORY as DEFAULT_HOOKS
from .names import AGENT_LOG_LEVELS, host_port


SYSLOG_ADDRESS = "/dev/log"


def _logging(level: str, syslog: bool) -> None:
    """To stderr; with --syslog (and a syslog socket) to syslog instead, facility daemon, each
    record at its own priority. procd files every line of a service's stderr under daemon.err,
    so on OpenWrt the init script passes --syslog and `logread -l` tells info from errors."""
    if syslog and os.path.exists(SYSLOG_ADDRESS):
        from logging.handlers import SysLogHandler

        handler = SysLogHandler(address=SYSLOG_ADDRESS, facility=SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter("netpath-agent[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)


M_ARENA_MAX = -8  # glibc's malloc.h


def _one_malloc_arena() -> None:
    """glibc gives each thread that allocates its own malloc arena, and keeps its pages: the
    worker threads of start-up and reloads (bundle reading, apply) left about 2 MiB resident
    for good. The agent's threads only run short jobs, one arena is plenty. Only where ctypes
    is loaded anyway (libnftables); musl (OpenWrt) has no per-thread arenas."""
    if "ctypes" not in sys.modules:
        return
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        pass


def _host_port(text: str) -> tuple:
    try:
        return host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv=None) -> int:
    from .ipc import DEFAULT_SOCKET

    p = argparse.ArgumentParser(prog="netpath-agent",
                                description="Track the uplinks and keep NetPath's policies in line with their health.")
    from . import VERSION

    p.add_argument("--version", action="version", version=f"netpath-agent {VERSION}")
    p.add_argument("--bundle", required=True, metavar="DIR", help="bundle directory (from `netpath compile`)")
    p.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                   help=f"control socket (default {DEFAULT_SOCKET}; 'none' for no socket)")
    p.add_argument("--hooks", default=DEFAULT_HOOKS, metavar="DIR",
                   help=f"directory of hook scripts (default {DEFAULT_HOOKS})")
    p.add_argument("--keep", action="store_true",
                   help="on SIGTERM leave the last state in the kernel instead of removing it")
    p.add_argument("--log-level", default="info", choices=AGENT_LOG_LEVELS)
    p.add_argument("--syslog", action="store_true", help="log to syslog (/dev/log, facility daemon) instead of stderr")
    p.add_argument("--metrics-listen", metavar="HOST:PORT", type=_host_port,
                   help="also serve the Prometheus metrics at http://HOST:PORT/metrics (off by default; "
                        "no authentication: bind to loopback or the LAN)")
    args = p.parse_args(argv)
    _logging(args.log_level, args.syslog)

    from . import bundle as bundle_mod
    from .apply import ApplyError
    from .daemon import Agent
    from .ipc import IpcError, SocketInUse
    from .nft import NftError
    from .owner import Owned

    agent = Agent(args.bundle, None if args.socket == "none" else args.socket, args.hooks, args.keep,
                  metrics_listen=args.metrics_listen)
    _one_malloc_arena()  # before asyncio starts a worker thread
    try:
        return asyncio.run(agent.run())
    except bundle_mod.BundleError as exc:
        print(f"netpath-agent: {exc}", file=sys.stderr)
        return 2
    except Owned as exc:
        print(f"netpath-agent: {exc}; stop it first (this agent changed nothing)", file=sys.stderr)
        return 2
    except SocketInUse as exc:
        print(f"netpath-agent: {exc} (this agent changed nothing)", file=sys.stderr)
        return 2
    except (ApplyError, NftError, IpcError, OSError) as exc:
        print(f"netpath-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
