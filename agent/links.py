"""Links: watch the WAN devices through netlink (pyroute2's AsyncIPRoute monitor).

Two things matter to the agent and both arrive within milliseconds of the kernel's change:

* a device's link state: carrier lost or regained (operstate LOWERLAYERDOWN/DOWN vs UP), or
  the device removed altogether (a PPPoE session ending). Carrier loss takes a WAN down at
  once, without waiting for probes; the kernel sends no route events for it.
* a change of a WAN device's addresses or of its routes in the main table: a DHCP renew or a
  PPPoE reconnect brings a new address or gateway, and the WAN's own routing table and its
  `from <address>` rule must follow. Changes to other tables are ignored: NetPath's own
  route updates land there and must not echo back.

The monitor only reports; the agent decides. The sync `IPRoute` cannot be used here: inside a
running event loop it raises.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("netpath.links")

MAIN_TABLE = 254
IFF_UP = 0x1
DOWN_OPERSTATES = ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT")
RESTART_DELAY = 1.0  # seconds before the monitor opens a new socket after an error


def link_is_up(msg) -> bool:
    """Administratively up, with carrier, and not reported down by the driver."""
    return bool(msg.get("flags", 0) & IFF_UP) and msg.get("carrier", 1) != 0 \
        and msg.get("operstate") not in DOWN_OPERSTATES


class LinkMonitor:
    """Calls `on_link(device, up, gone)` when a watched device's link state changes and
    `on_address(device)` when its addresses or main-table routes change. After the netlink
    socket had to be reopened (events may have been lost), `on_resync()` is called."""

    def __init__(self, devices, on_link, on_address, on_resync):
        self.devices = set(devices)
        self.on_link = on_link
        self.on_address = on_address
        self.on_resync = on_resync
        self.names: dict = {}  # ifindex -> device name
        self.state: dict = {}  # device -> last reported link state (True up, False down)
        self.task: "asyncio.Task | None" = None
        self.ready = asyncio.Event()

    def watch(self, devices) -> None:
        self.devices = set(devices)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="link-monitor")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.rtnl import (RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR,
                                           RTMGRP_IPV6_ROUTE, RTMGRP_LINK)

        groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
        first = True
        while True:
            try:
                async with AsyncIPRoute() as monitor:
                    await monitor.bind(groups=groups)
                    # Subscribed first, dumped second: no change falls between the two.
                    async with AsyncIPRoute() as dump:
                        for msg in [m async for m in await dump.link("dump")]:
                            self._link(msg, report=not first)
                    if not first:
                        self.on_resync()
                    first = False
                    self.ready.set()
                    while True:
                        async for msg in monitor.get():
                            self._dispatch(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ENOBUFS after a burst, or a netlink hiccup: start over
                log.warning("link monitor: %s: %s; reopening netlink in %g s",
                            type(exc).__name__, exc, RESTART_DELAY)
                await asyncio.sleep(RESTART_DELAY)

    def _dispatch(self, msg) -> None:
        event = msg.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            self._link(msg, report=True)
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            name = self.names.get(msg.get("index"))
            if name in self.devices:
                self.on_address(name)
        elif event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            if msg.get("table") != MAIN_TABLE:
                return
            name = self.names.get(msg.get("oif"))
            if name in self.devices:
                self.on_address(name)

    def _link(self, msg, report: bool) -> None:
        index, name = msg.get("index"), msg.get("ifname")
        if name is None:
            return
        gone = msg.get("event") == "RTM_DELLINK"
        if gone:
            self.names.pop(index, None)
        else:
            self.names[index] = name
        if name not in self.devices:
            return
        up = False if gone else link_is_up(msg)
        before = self.state.get(name)
        self.state[name] = up
        if report and before != up:
            self.on_link(name, up, gone)
