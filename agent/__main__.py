"""`netpath-agent --bundle DIR [--socket PATH]` (also `python -m netpath.agent`).

Runs in the foreground: applies the bundle, tracks the WANs, swaps state variants, answers
on the control socket. SIGHUP reloads the bundle directory; SIGTERM removes what NetPath
installed unless --keep; a crash or SIGKILL leaves the last state in the kernel.
Exit status: 0 stopped, 1 failure of the system, 2 bad input (bundle, arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import os
import sys

from .hooks import DEFAULT_DIRECTORY as DEFAULT_HOOKS


def _logging(level: str, syslog: bool) -> None:
    handlers = [logging.StreamHandler(sys.stderr)]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    if syslog and os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter("netpath-agent[%(process)d]: %(message)s"))
        handlers.append(handler)
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=handlers, force=True)


def _host_port(text: str) -> tuple:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9101")
    return host.strip("[]"), int(port)


def main(argv=None) -> int:
    from .ipc import DEFAULT_SOCKET

    p = argparse.ArgumentParser(prog="netpath-agent",
                                description="Track the uplinks and keep NetPath's policies in line with their health.")
    p.add_argument("--bundle", required=True, metavar="DIR", help="bundle directory (from `netpath compile`)")
    p.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                   help=f"control socket (default {DEFAULT_SOCKET}; 'none' for no socket)")
    p.add_argument("--hooks", default=DEFAULT_HOOKS, metavar="DIR",
                   help=f"directory of hook scripts (default {DEFAULT_HOOKS})")
    p.add_argument("--keep", action="store_true",
                   help="on SIGTERM leave the last state in the kernel instead of removing it")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--syslog", action="store_true", help="also log to syslog (/dev/log)")
    p.add_argument("--metrics-listen", metavar="HOST:PORT", type=_host_port,
                   help="also serve the Prometheus metrics at http://HOST:PORT/metrics (off by default; "
                        "no authentication: bind to loopback or the LAN)")
    args = p.parse_args(argv)
    _logging(args.log_level, args.syslog)

    from . import bundle as bundle_mod
    from .apply import ApplyError
    from .daemon import Agent
    from .ipc import IpcError
    from .nft import NftError

    agent = Agent(args.bundle, None if args.socket == "none" else args.socket, args.hooks, args.keep,
                  metrics_listen=args.metrics_listen)
    try:
        return asyncio.run(agent.run())
    except bundle_mod.BundleError as exc:
        print(f"netpath-agent: {exc}", file=sys.stderr)
        return 2
    except (ApplyError, NftError, IpcError, OSError) as exc:
        print(f"netpath-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
