"""Delete the conntrack entries of one WAN (by its mark under NetPath's mask).

Two cases:

* `forget_unreplied`, on every swap that takes a WAN out of use, whatever flush_conntrack
  says: the entries of connection attempts that never got an answer through it (TCP
  SYN_SENT, UDP or ICMP without a reply). The kernel keeps them for up to 120 s and a new
  socket that gets the port of a failed attempt (ports are handed out again) would meet such
  an entry and inherit the dead WAN's mark. Deleted, the next packet of the tuple starts a
  new entry, which the current policy decides (and NAT gives the live WAN's address).
  Established flows are not touched: they keep their WAN. This speaks ctnetlink directly
  (one dump filtered by the mark, deletes by tuple and id), so it needs no tool.
* `flush_mark`, when the interface's `flush_conntrack` names the event: every entry.

When a WAN dies, its established flows are stuck: their replies would come back on a link
that no longer carries anything. Deleting the entries that carry the dead WAN's mark lets
the next packet of each flow be decided again (onto a live WAN); flows of the other WANs
are not touched. mwan3 flushes the whole table instead.

`conntrack -D -f FAMILY --mark M/MASK` (conntrack-tools) for the WAN's address family, as
argv with a timeout, in a child process: the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct

from .links import split

CONNTRACK_TIMEOUT = 10.0
_DELETED = re.compile(rb"(\d+) flow entries have been deleted")

log = logging.getLogger("netpath.conntrack")


class ConntrackError(Exception):
    pass


# linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h, nf_conntrack_common.h
NETLINK_NETFILTER = 12
IPCTNL_MSG_CT_NEW = 1 << 8  # NFNL_SUBSYS_CTNETLINK << 8 | message: what a dump answers
IPCTNL_MSG_CT_GET = 1 << 8 | 1
IPCTNL_MSG_CT_DELETE = 1 << 8 | 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
CTA_TUPLE_ORIG, CTA_STATUS, CTA_MARK, CTA_ID, CTA_ZONE, CTA_MARK_MASK, CTA_STATUS_MASK = 1, 3, 8, 12, 18, 21, 26
IPS_SEEN_REPLY = 1 << 1
FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
DELETE_BATCH = 256  # delete requests per send (each is acknowledged)


def _attribute(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)


def _message(kind: int, flags: int, seq: int, family: int, attributes: bytes = b"") -> bytes:
    body = struct.pack("=BBH", family, 0, 0) + attributes  # nfgenmsg, NFNETLINK_V0
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _raw_attributes(body: bytes) -> dict:
    """type -> the whole attribute (header included, to send back as it came) of a ctnetlink
    message body (after its 4-byte nfgenmsg)."""
    found, offset = {}, 4
    while offset + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = body[offset:offset + length]
        offset += (length + 3) & ~3
    return found


def _error(body: bytes) -> int:
    return -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0


def unreplied_deletes(dump: list, mark: int, mask: int, family: int, first_seq: int) -> list:
    """The delete requests (by original tuple, zone and id) for the entries of the dumped
    datagrams that carry `mark` under `mask` and never saw a reply."""
    requests = []
    for datagram in dump:
        for kind, body in split(datagram):
            if kind != IPCTNL_MSG_CT_NEW:
                continue
            attrs = _raw_attributes(body)
            if CTA_TUPLE_ORIG not in attrs or CTA_STATUS not in attrs or CTA_MARK not in attrs:
                continue
            status = struct.unpack_from("!I", attrs[CTA_STATUS], 4)[0]
            entry_mark = struct.unpack_from("!I", attrs[CTA_MARK], 4)[0]
            if status & IPS_SEEN_REPLY or entry_mark & mask != mark:
                continue
            key = attrs[CTA_TUPLE_ORIG] + attrs.get(CTA_ZONE, b"") + attrs.get(CTA_ID, b"")
            requests.append(_message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK,
                                     first_seq + len(requests), family, key))
    return requests


async def _exchange(loop, sock, request: bytes) -> list:
    """Send one dump request; the datagrams of its answer up to NLMSG_DONE."""
    await loop.sock_sendall(sock, request)
    datagrams = []
    while True:
        data = await loop.sock_recv(sock, 1 << 16)
        datagrams.append(data)
        for kind, body in split(data):
            if kind == NLMSG_DONE:
                return datagrams
            if kind == NLMSG_ERROR and _error(body):
                raise ConntrackError(f"conntrack dump refused: {_error(body)}")


async def forget_unreplied(mark: int, mask: int, family: str) -> int:
    """Delete the entries of `family` ("ipv4"/"ipv6") whose mark & mask == mark and that
    never saw a reply; returns how many were deleted."""
    af = FAMILIES[family]
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
    except OSError as exc:
        raise ConntrackError(f"no ctnetlink socket ({exc.strerror}): is nf_conntrack_netlink loaded?") from None
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        sock.setblocking(False)
        # The kernel filters the dump by mark (and, from Linux 5.17, by status); both are
        # checked again here, so an older kernel only sends more.
        selection = (_attribute(CTA_MARK, struct.pack("!I", mark)) + _attribute(CTA_MARK_MASK, struct.pack("!I", mask))
                     + _attribute(CTA_STATUS, struct.pack("!I", 0))
                     + _attribute(CTA_STATUS_MASK, struct.pack("!I", IPS_SEEN_REPLY)))
        try:
            dump = await _exchange(loop, sock, _message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, af,
                                                         selection))
            requests = unreplied_deletes(dump, mark, mask, af, first_seq=2)
            deleted = 0
            for start in range(0, len(requests), DELETE_BATCH):
                batch = requests[start:start + DELETE_BATCH]
                await loop.sock_sendall(sock, b"".join(batch))
                acked = 0
                while acked < len(batch):
                    for kind, body in split(await loop.sock_recv(sock, 1 << 16)):
                        if kind == NLMSG_ERROR:
                            acked += 1
                            deleted += _error(body) == 0  # ENOENT: gone (or answered) meanwhile
        except OSError as exc:
            raise ConntrackError(f"conntrack netlink: {exc}") from None
    return deleted


async def _delete(argv: list, timeout: float) -> int:
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        raise ConntrackError("conntrack (conntrack-tools) is not installed; "
                             "flush_conntrack needs it") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise ConntrackError(f"{' '.join(argv)} did not finish within {timeout:g} s") from None
    found = _DELETED.search(err + out)
    if found:
        return int(found.group(1))  # exit status 1 with "0 flow entries" is not a failure
    if proc.returncode != 0:
        raise ConntrackError(f"{' '.join(argv)} failed: {err.decode(errors='replace').strip()}")
    return 0


async def flush_mark(mark: int, mask: int, family: "str | None" = None,
                     timeout: float = CONNTRACK_TIMEOUT) -> int:
    """Delete the entries of `family` ("ipv4"/"ipv6"; None: both) whose mark & mask == mark;
    returns how many."""
    deleted = 0
    for name in (family,) if family else ("ipv4", "ipv6"):
        deleted += await _delete(["conntrack", "-D", "-f", name, "--mark", f"{mark}/{mask}"],
                                 timeout)
    return deleted
