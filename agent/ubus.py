"""Ask OpenWrt's netifd (through the `ubus` command) which device carries a logical interface.

A NetPath interface's `ifname` may name a kernel device (`eth0`) or an OpenWrt logical
interface (`wan`, `wwan`). Only netifd knows which device a logical interface uses right
now: for PPPoE, DHCP over a bridge or a modem it changes across reconnects. netifd answers
`ubus call network.interface.<name> status` with a JSON object whose `l3_device` is the
device that carries the layer-3 traffic (`pppoe-wan`) while the interface is up, and whose
`device` is the configured lower device (`eth1`).

netifd also creates family-specific sub-interfaces for dynamic protocols, e.g. `wan_6` for
the DHCPv6 client of a PPPoE `wan`. Like mwan3 (`common.sh`, see reference/mwan3.md §1.2),
an IPv4 lookup prefers `<name>_4` and an IPv6 lookup prefers `<name>_6` whenever netifd
knows that alias, and falls back to `<name>` only when it does not.

Standard library only: this module runs on the router, where `ubus` is `/bin/ubus`. Off
OpenWrt there is no `ubus`, and every lookup answers None.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import subprocess

__all__ = ["logical_to_device", "interface_status"]

log = logging.getLogger(__name__)

# netifd interfaces are UCI section names. Anything else (`eth0.2`, `pppoe-wan`) cannot be
# a logical interface, and a dot would address a different ubus object, so it is refused
# before ubus is asked.
_LOGICAL_NAME = re.compile(r"[A-Za-z0-9_]{1,64}\Z")

# The suffix netifd gives the family-specific alias of a dynamic interface.
_FAMILY_SUFFIX = {"ipv4": "_4", "ipv6": "_6"}

# `ubus` exit status for "object not found" (UBUS_STATUS_NOT_FOUND).
_UBUS_NOT_FOUND = 4


def interface_status(name: str, timeout: float = 2.0) -> dict | None:
    """netifd's status object for logical interface `name`, or None.

    None means: `ubus` is not installed, netifd does not know `name`, `name` cannot be a
    logical interface, or ubus did not answer within `timeout` seconds.
    """
    if not _LOGICAL_NAME.match(name):
        return None
    ubus = shutil.which("ubus")
    if ubus is None:
        return None
    # ubus has its own timeout (whole seconds, at least 1); the subprocess timeout on top
    # covers a ubus that hangs before it even reaches ubusd.
    argv = [ubus, "-t", str(max(1, math.ceil(timeout))), "call",
            f"network.interface.{name}", "status"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 1.0)
    except subprocess.TimeoutExpired:
        log.warning("ubus did not answer within %.1f s about interface %r", timeout, name)
        return None
    except OSError as error:
        log.warning("cannot run %s: %s", ubus, error)
        return None
    if done.returncode != 0:
        if done.returncode != _UBUS_NOT_FOUND:
            log.warning("ubus call network.interface.%s status failed (exit %d): %s",
                        name, done.returncode, done.stderr.strip())
        return None
    try:
        status = json.loads(done.stdout)
    except ValueError:
        log.warning("ubus answered about interface %r with something that is not JSON: %r",
                    name, done.stdout[:200])
        return None
    return status if isinstance(status, dict) else None


def logical_to_device(name: str, timeout: float = 2.0, family: str | None = None) -> str | None:
    """The kernel device of OpenWrt logical interface `name`, or None.

    Returns netifd's `l3_device` (set while the interface is up), else its `device`.
    With `family` "ipv4" or "ipv6", the alias `<name>_4` or `<name>_6` is used instead of
    `name` when netifd knows it. None when ubus is missing, the interface is unknown, or
    netifd reports no device for it.
    """
    if family is not None and family not in _FAMILY_SUFFIX:
        raise ValueError(f"family {family!r}: use 'ipv4', 'ipv6' or None")
    status = None
    if family is not None:
        status = interface_status(name + _FAMILY_SUFFIX[family], timeout)
    if status is None:
        status = interface_status(name, timeout)
    if status is None:
        return None
    for key in ("l3_device", "device"):
        device = status.get(key)
        if isinstance(device, str) and device:
            return device
    return None
