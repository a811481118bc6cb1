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
    """(interface name -> device, logical name -> device, notes): the devices of the
    interfaces whose `ifname` is a logical interface netifd knows, and of the rules'
    `src_iface` names that are not NetPath interfaces (`lan` -> `br-lan`)."""
    devices, incoming, notes = {}, {}, []
    for name, iface in cfg["interfaces"].items():
        device = _device(iface["ifname"], iface["family"], f"interface '{name}'", "ifname", notes)
        if device:
            devices[name] = device
    for rule in cfg["rules"]:
        logical = rule.get("src_iface")
        if not logical or logical in cfg["interfaces"] or logical in incoming:
            continue  # a NetPath interface stands for its own (mapped) device
        device = _device(logical, None, f"rule '{rule['name']}'", "src_iface", notes)
        if device:
            incoming[logical] = device
    return devices, incoming, notes


def _device(name: str, family, where: str, option: str, notes: list) -> "str | None":
    """netifd's device for logical interface `name`; None to keep `name` as the device."""
    device = ubus.logical_to_device(name, family=family)
    if not device or device == name:
        return None
    if not DEVICE_RE.match(device):
        notes.append(f"{where}: netifd names device {device!r} for '{name}', which is not a valid "
                     f"device name; kept '{option}'")
        return None
    notes.append(f"{where}: OpenWrt interface '{name}' is device '{device}' now")
    return device
