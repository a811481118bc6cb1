"""Links: watch the WAN devices through rtnetlink.

Two things matter to the agent and both arrive within milliseconds of the kernel's change:

* a device's link state: carrier lost or regained (operstate LOWERLAYERDOWN/DOWN vs UP), or
  the device removed altogether (a PPPoE session ending). Carrier loss takes a WAN down at
  once, without waiting for probes; the kernel sends no route events for it.
* a change of a WAN device's addresses or of its routes in the main table: a DHCP renew or a
  PPPoE reconnect brings a new address or gateway, and the WAN's own routing table and its
  `from <address>` rule must follow.
* a change of NetPath's policy routing: an ip rule of its route protocol added or deleted, a
  route of a WAN table changed. The agent compares the kernel with what it wants and puts
  it right (kernel drift); its own updates echo back here too and compare equal.

The monitor only reports; the agent decides. It reads a NETLINK_ROUTE socket subscribed to
the link, address, route and rule groups, watched by the event loop, and decodes just the fields
above. pyroute2's AsyncIPRoute does the same job but importing it costs about 12 MiB of
resident memory, 40 % of the agent's whole budget on a router, for four integers and a name.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct

log = logging.getLogger("netpath.links")

MAIN_TABLE = 254
IFF_UP = 0x1
RESTART_DELAY = 1.0  # seconds before the monitor opens a new socket after an error
RESTART_MAX = 60.0  # seconds: the longest wait after errors in a row

# linux/rtnetlink.h, linux/if_link.h, linux/netlink.h
NETLINK_ROUTE = 0
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400
RTMGRP_IPV4_RULE, RTMGRP_IPV6_RULE = 0x80, 1 << (19 - 1)  # RTNLGRP_IPV4_RULE 8, RTNLGRP_IPV6_RULE 19
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE \
    | RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWRULE, RTM_DELRULE = 32, 33
FRA_PROTOCOL = 21
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_IFNAME, IFLA_OPERSTATE, IFLA_CARRIER = 3, 16, 33
RTA_OIF, RTA_TABLE = 4, 15
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
DOWN_OPERSTATES = ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT")
_EVENTS = {RTM_NEWLINK: "RTM_NEWLINK", RTM_DELLINK: "RTM_DELLINK", RTM_NEWADDR: "RTM_NEWADDR",
           RTM_DELADDR: "RTM_DELADDR", RTM_NEWROUTE: "RTM_NEWROUTE", RTM_DELROUTE: "RTM_DELROUTE",
           RTM_NEWRULE: "RTM_NEWRULE", RTM_DELRULE: "RTM_DELRULE"}


def _attributes(data: bytes, offset: int) -> dict:
    attrs = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        attrs[kind & 0x3FFF] = data[offset + 4:offset + length]  # without NLA_F_NESTED/BYTEORDER
        offset += (length + 3) & ~3
    return attrs


def split(data: bytes):
    """(message type, payload after struct nlmsghdr) of each netlink message in a datagram."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        yield kind, data[offset + 16:offset + length]
        offset += (length + 3) & ~3


def decode(data: bytes) -> list:
    """The rtnetlink messages in one datagram, as dicts with the fields the agent uses
    (the keys pyroute2 would give them): event, index, ifname, flags, operstate, carrier,
    table, oif, protocol (of a rule). NLMSG_ERROR becomes {"event": "error", "errno": n}; NLMSG_DONE {"event": "done"}."""
    messages = []
    for kind, body in split(data):
        if kind == NLMSG_DONE:
            messages.append({"event": "done"})
        elif kind == NLMSG_ERROR:
            messages.append({"event": "error", "errno": -struct.unpack_from("=i", body)[0] if body else 0})
        elif kind in (RTM_NEWLINK, RTM_DELLINK) and len(body) >= 16:
            _family, _type, index, flags = struct.unpack_from("=BxHiI", body)
            attrs = _attributes(body, 16)
            msg = {"event": _EVENTS[kind], "index": index, "flags": flags}
            if IFLA_IFNAME in attrs:
                msg["ifname"] = attrs[IFLA_IFNAME].split(b"\0", 1)[0].decode(errors="replace")
            if IFLA_OPERSTATE in attrs:
                state = attrs[IFLA_OPERSTATE][0]
                msg["operstate"] = OPERSTATES[state] if state < len(OPERSTATES) else "UNKNOWN"
            if IFLA_CARRIER in attrs:
                msg["carrier"] = attrs[IFLA_CARRIER][0]
            messages.append(msg)
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and len(body) >= 8:
            messages.append({"event": _EVENTS[kind], "index": struct.unpack_from("=I", body, 4)[0]})
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE) and len(body) >= 12:
            attrs = _attributes(body, 12)
            table = struct.unpack_from("=I", attrs[RTA_TABLE])[0] if RTA_TABLE in attrs else body[4]
            msg = {"event": _EVENTS[kind], "table": table}
            if RTA_OIF in attrs:
                msg["oif"] = struct.unpack_from("=I", attrs[RTA_OIF])[0]
            messages.append(msg)
        elif kind in (RTM_NEWRULE, RTM_DELRULE) and len(body) >= 12:
            attrs = _attributes(body, 12)
            msg = {"event": _EVENTS[kind]}
            if FRA_PROTOCOL in attrs and attrs[FRA_PROTOCOL]:
                msg["protocol"] = attrs[FRA_PROTOCOL][0]
            messages.append(msg)
    return messages


def link_is_up(msg) -> bool:
    """Administratively up, with carrier, and not reported down by the driver."""
    return bool(msg.get("flags", 0) & IFF_UP) and msg.get("carrier", 1) != 0 \
        and msg.get("operstate") not in DOWN_OPERSTATES


def open_netlink(groups: int, protocol: int = NETLINK_ROUTE) -> socket.socket:
    """A non-blocking netlink socket of `protocol`, subscribed to the multicast `groups` mask."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, groups))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def dump_links() -> list:
    """Every link of this namespace (RTM_GETLINK dump), decoded."""
    loop = asyncio.get_running_loop()
    with open_netlink(0) as sock:
        request = struct.pack("=IHHII", 16 + 16, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + bytes(16)
        await loop.sock_sendall(sock, request)
        links = []
        while True:
            for msg in decode(await loop.sock_recv(sock, 1 << 16)):
                if msg["event"] == "done":
                    return links
                if msg["event"] == "error":
                    raise OSError(msg["errno"], f"link dump failed: {os.strerror(msg['errno'])}")
                links.append(msg)


async def read_forever(sock: socket.socket, handle) -> None:
    """Call `handle(datagram)` for everything `sock` receives, woken by the event loop (no
    polling); returns only by an exception (OSError, cancellation)."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(sock.fileno(), readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            while True:
                try:
                    data = sock.recv(1 << 16)
                except (BlockingIOError, InterruptedError):
                    break
                handle(data)
    finally:
        loop.remove_reader(sock.fileno())


class NetlinkWatch:
    """A task that reads one netlink socket (multicast `groups` of `protocol`) until stopped.
    After an error (the socket's, or anything its handler raises: logged) the socket is opened
    again after RESTART_DELAY; `_session(sock, first)` is told whether events may have been
    lost before it (first False)."""

    NAME = "netlink watch"

    def __init__(self, groups: int, netlink: int = NETLINK_ROUTE):
        self.groups = groups
        self.netlink = netlink
        self.task: "asyncio.Task | None" = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=self.NAME)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        first, delay = True, RESTART_DELAY / 2
        loop = asyncio.get_running_loop()
        while True:
            opened = loop.time()
            try:
                with open_netlink(self.groups, self.netlink) as sock:
                    await self._session(sock, first)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                # ENOBUFS: a burst overran the socket and events were lost; start over. An
                # error that comes back at once (no such protocol) waits longer each time.
                if exc.errno == errno.ENOBUFS or loop.time() - opened > RESTART_MAX:
                    delay = RESTART_DELAY
                else:
                    delay = min(2 * delay, RESTART_MAX)
                level = logging.INFO if exc.errno == errno.ENOBUFS else logging.WARNING
                log.log(level, "%s: %s; reopening netlink in %g s", self.NAME, exc, delay)
                await asyncio.sleep(delay)
            except Exception as exc:
                # The task would end silently and the agent hear no change again. Logged with
                # its traceback, and listened to again (resynchronised: events were lost).
                delay = RESTART_DELAY if loop.time() - opened > RESTART_MAX else min(2 * delay, RESTART_MAX)
                log.error("%s: unexpected error %r; reopening netlink in %g s", self.NAME, exc, delay,
                          exc_info=exc)
                await asyncio.sleep(delay)
            first = False

    async def _session(self, sock: socket.socket, first: bool) -> None:
        raise NotImplementedError


class LinkMonitor(NetlinkWatch):
    """Calls `on_link(device, up, gone)` when a watched device's link state changes and
    `on_address(device)` when its addresses or main-table routes change, and `on_routing()`
    when an ip rule of route protocol `protocol` or a route of one of `tables` changes. After
    the netlink socket had to be reopened (events may have been lost), `on_resync()` is called."""

    def __init__(self, devices, on_link, on_address, on_resync, on_routing=None, tables=(),
                 protocol: "int | None" = None):
        super().__init__(GROUPS)
        self.devices = set(devices)
        self.on_link = on_link
        self.on_address = on_address
        self.on_resync = on_resync
        self.on_routing = on_routing
        self.tables = set(tables)
        self.protocol = protocol
        self.names: dict = {}  # ifindex -> device name
        self.state: dict = {}  # device -> last reported link state (True up, False down)
        self.ready = asyncio.Event()

    def watch(self, devices, tables=None, protocol: "int | None" = None) -> None:
        self.devices = set(devices)
        if tables is not None:
            self.tables = set(tables)
        if protocol is not None:
            self.protocol = protocol

    NAME = "link monitor"

    async def _session(self, sock: socket.socket, first: bool) -> None:
        # Subscribed first, dumped second: no change falls between the two.
        for msg in await dump_links():
            self._link(msg, report=not first)
        if not first:
            self.on_resync()
        self.ready.set()
        await self._read(sock)

    async def _read(self, sock: socket.socket) -> None:
        def handle(data: bytes) -> None:
            for msg in decode(data):
                self._dispatch(msg)

        await read_forever(sock, handle)

    def _dispatch(self, msg) -> None:
        event = msg.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            self._link(msg, report=True)
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            name = self.names.get(msg.get("index"))
            if name in self.devices:
                self.on_address(name)
        elif event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            if msg.get("table") in self.tables and self.on_routing is not None:
                self.on_routing()
            if msg.get("table") != MAIN_TABLE:
                return
            name = self.names.get(msg.get("oif"))
            if name in self.devices:
                self.on_address(name)
        elif event in ("RTM_NEWRULE", "RTM_DELRULE"):
            # a kernel that does not report the protocol (before 4.17): any rule may be NetPath's
            if self.on_routing is not None and msg.get("protocol", self.protocol) == self.protocol:
                self.on_routing()

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
