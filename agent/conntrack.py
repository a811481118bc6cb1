"""Delete the conntrack entries of one WAN (by its mark under NetPath's mask).

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

CONNTRACK_TIMEOUT = 10.0
_DELETED = re.compile(rb"(\d+) flow entries have been deleted")

log = logging.getLogger("netpath.conntrack")


class ConntrackError(Exception):
    pass


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
