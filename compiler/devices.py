"""Map OpenWrt logical interface names to kernel devices, at compile time on the router.

The ruleset matches devices by name (`iifname`, `oifname`), so an `ifname` that names a
netifd interface (`wan`, `wwan`) must become the device that carries it (`pppoe-wan`)
before rendering. netifd answers through `ubus` (netpath.agent.ubus); when it knows the
name, its answer wins even over a device of the same name (on DSA routers the WAN port
itself is called `wan`, while the logical `wan` may be `pppoe-wan`). On a build host there
is no ubus: nothing is mapped and the compile stays a pure function of the config. The OpenWrt init script recompiles on netifd's interface events,
so a device that changes (a PPPoE reconnect, a modem) reaches the ruleset.
"""

from __future__ import annotations

from netpath.agent import ubus

from .validate import DEVICE_RE


def map_logical(cfg: dict) -> tuple:
    """(interface name -> device, notes) for the interfaces whose `ifname` is a logical
    interface netifd knows."""
    devices, notes = {}, []
    for name, iface in cfg["interfaces"].items():
        ifname = iface["ifname"]
        device = ubus.logical_to_device(ifname, family=iface["family"])
        if not device or device == ifname:
            continue
        if not DEVICE_RE.match(device):
            notes.append(f"interface '{name}': netifd names device {device!r} for '{ifname}', "
                         "which is not a valid device name; kept 'ifname'")
            continue
        devices[name] = device
        notes.append(f"interface '{name}': OpenWrt interface '{ifname}' is device '{device}' now")
    return devices, notes
