"""The control socket's command table (the IPC contract): each command reads the running
Agent or asks it to act. Arguments are checked here; nothing named in a request is ever run,
opened or loaded: an interface name only selects one of the agent's own trackers.

Readers that block (sysfs, /proc/net/nf_conntrack, nft listings) run in worker threads with
their own nft context, so a request never stalls the probes or a state swap.
"""

from __future__ import annotations

import asyncio
import time

from . import VERSION
from . import bundle as bundle_mod
from . import health as hl
from . import metrics as metrics_mod
from .apply import ApplyError
from .daemon import HISTORY_LENGTH
from .names import DEVICE_RE, NAME_RE
from .nft import Nft, NftError
from .policy import alive_from_mask, decide

DISABLED = "NetPath is disabled (globals enabled 0)"
SNAPSHOT_CONNTRACK_AGE = 30.0  # seconds: how old the connection counts of a status snapshot may be
IFEVENT_ACTIONS = ("ifup", "ifdown", "ifupdate")
# The arguments each command takes besides "cmd"; anything else is refused, so a request that
# names something the agent does not do (a reload of another bundle) cannot look accepted.
ARGUMENTS = {"status": (), "interfaces": (), "policies": (), "rules": (), "enable": ("interface",),
             "disable": ("interface",), "reload": (), "ifevent": ("action", "interface", "device"),
             "metrics": ("format",), "history": ("limit",)}


class BadRequest(Exception):
    pass


class Commands:
    def __init__(self, agent):
        self.agent = agent
        self._reader_nft = None  # a second nft context: listings run in threads, swaps on the loop
        self._reader_lock = asyncio.Lock()
        self._conntrack = None  # (monotonic time, mask, counts): the last conntrack count
        self.table = {
            "status": self.status, "interfaces": self.interfaces, "policies": self.policies,
            "rules": self.rules, "enable": self.enable, "disable": self.disable, "reload": self.reload,
            "ifevent": self.ifevent, "metrics": self.metrics, "history": self.history,
        }

    async def dispatch(self, request: dict) -> dict:
        handler = self.table.get(request.get("cmd"))
        if handler is None:
            return {"ok": False, "error": f"unknown command {request.get('cmd')!r}; known commands: "
                                          f"{', '.join(sorted(self.table))}"}
        allowed = ARGUMENTS[request["cmd"]]
        unknown = sorted(set(request) - {"cmd", *allowed})
        if unknown:
            takes = ", ".join(f'"{a}"' for a in allowed) or "no arguments"
            names = ", ".join(f'"{u}"' for u in unknown)
            return {"ok": False, "error": f"unknown argument {names} for {request['cmd']}; it takes {takes}"}
        try:
            data = await handler(request)
        except BadRequest as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **data}

    # -- arguments -----------------------------------------------------------------------------

    def _interface(self, request: dict, tracked: bool = True) -> str:
        name = request.get("interface")
        if self.agent.bundle and not self.agent.model.enabled:
            raise BadRequest(f"{DISABLED}: no interface is tracked; set it to 1 and reload")
        known = [i.name for i in self.agent.model.interfaces] if self.agent.bundle else []
        if not isinstance(name, str) or name not in known:
            raise BadRequest(f'"interface" must name an interface of the running bundle '
                             f'({", ".join(known) or "none"}), got {name!r}')
        if tracked and name not in self.agent.trackers:
            raise BadRequest(f"interface {name!r} is disabled in the config (option enabled 0); "
                             "enable it there and reload")
        return name

    # -- readers ---------------------------------------------------------------------------------

    def _nft(self) -> Nft:
        if self._reader_nft is None:
            self._reader_nft = Nft()
        return self._reader_nft

    def _bundle_info(self) -> dict:
        agent = self.agent
        return {"dir": str(agent.bundle_dir), "digest": agent.bundle.digest}

    async def _connections(self, mask: int, max_age: float) -> "dict | None":
        """Conntrack entries per mark; reading the whole table costs about 1 ms per 1000
        entries, so the status snapshot (every few seconds) may take a count up to
        `max_age` seconds old. Requests always count afresh."""
        now = time.monotonic()
        cached = self._conntrack
        if cached is not None and cached[1] == mask and now - cached[0] <= max_age:
            return cached[2]
        counts = await asyncio.to_thread(metrics_mod.conntrack_by_mark, mask)
        self._conntrack = (now, mask, counts)
        return counts

    async def _interface_rows(self, conntrack_max_age: float = 0.0) -> list:
        agent = self.agent
        model = agent.model
        if not model.enabled:
            return []  # nothing is tracked or routed: no interface has a state of its own
        connections = await self._connections(model.mask, conntrack_max_age)
        rows = []
        for iface in model.interfaces:
            stats = await asyncio.to_thread(metrics_mod.link_stats, iface.device)
            tracker = agent.trackers.get(iface.name)
            link = agent.links.get(iface.name)
            row = {
                "name": iface.name, "device": iface.device, "family": iface.family, "enabled": iface.enabled,
                "admin": "disabled" if iface.name in agent.disabled else "enabled",
                "method": iface.track.method, "up": iface.track.up, "down": iface.track.down,
                "mark": f"0x{iface.mark:08x}", "table": iface.table,
                "gateway": (link.gateway or None) if link else (iface.gateway or None),
                "address": (link.addresses[0] if link and link.addresses else None),
                "connections": None if connections is None else connections.get(iface.mark, 0),
                **{k: stats.get(k) for k in ("tx_bytes", "rx_bytes", "tx_packets", "rx_packets")},
            }
            if tracker is None:
                row.update(link="unknown", state="disabled", usable=False, since=agent.started,
                           reason="disabled in the config", score=0, targets=[],
                           latency={"avg": None, "min": None, "max": None, "jitter": None}, loss_pct=None)
            else:
                health = tracker.health
                figures = tracker.figures()
                row.update(
                    link="up" if health.link_up else "down", state=health.status.value,
                    usable=hl.is_usable(health), since=tracker.since, reason=health.reason,
                    score=health.score, targets=[self._target(t, tracker) for t in iface.track.targets],
                    latency=figures["latency"], loss_pct=figures["loss_pct"])
            rows.append(row)
        return rows

    @staticmethod
    def _target(target: str, tracker) -> dict:
        result = tracker.results.get(target)
        window = {**tracker.target_figures(target), "answering": tracker.answering(target)}
        if result is None:
            return {"target": target, "ok": None, "sent": 0, "received": 0, "latency_ms": None, "error": None,
                    **window}
        latency = result.latency_ms
        return {"target": target, "ok": result.ok, "sent": result.sent, "received": result.received,
                "latency_ms": None if latency is None else round(latency, 3), "error": result.error, **window}

    def _policy_rows(self) -> list:
        agent = self.agent
        rows = []
        if not agent.model.enabled:
            return rows
        for policy in agent.model.policies:
            members = policy.policy_members()
            mask = agent.loaded_masks.get(policy.name)
            alive = alive_from_mask(members, mask) if mask is not None else frozenset()
            spread, last_resort_active = {}, {}
            for family in ("ipv4", "ipv6"):
                decision = decide(policy.mode, policy.last_resort, members, alive, family)
                spread[family] = {k: round(v, 1) for k, v in decision.shares().items()}
                has_members = any(m.family == family for m in members)
                last_resort_active[family] = decision.kind == "last_resort" and has_members
            rows.append({
                "name": policy.name, "mode": policy.mode, "last_resort": policy.last_resort,
                "members": [{"name": m.name, "interface": m.interface, "metric": m.metric, "weight": m.weight,
                             "alive": m.name in alive} for m in members],
                "state": mask, "spread": spread, "last_resort_active": last_resort_active,
            })
        return rows

    async def _rule_counters(self) -> dict:
        table = self.agent.model.table
        # One libnftables context must not be used by two threads at once (concurrent listings
        # corrupt its netlink state and libnftables aborts the whole agent); waiting here, on
        # the loop, keeps the worker threads free.
        async with self._reader_lock:
            return await asyncio.to_thread(metrics_mod.rule_counters, self._nft(), table)

    # -- commands --------------------------------------------------------------------------------

    async def snapshot(self, cmd: str) -> dict:
        """The reply to `cmd` (status, interfaces) for the status snapshot files."""
        handler = {"status": self.status, "interfaces": self.interfaces}[cmd]
        return {"ok": True, **await handler({"cmd": cmd}, conntrack_max_age=SNAPSHOT_CONNTRACK_AGE)}

    async def status(self, request: dict, conntrack_max_age: float = 0.0) -> dict:
        enabled = self.agent.model.enabled
        return {"version": VERSION, "bundle": self._bundle_info(),
                "uptime": round(time.time() - self.agent.started, 3), "enabled": enabled,
                **({} if enabled else {"message": DISABLED}),
                "interfaces": await self._interface_rows(conntrack_max_age), "policies": self._policy_rows(),
                "kernel": self.agent.kernel.report()}

    async def interfaces(self, request: dict, conntrack_max_age: float = 0.0) -> dict:
        return {"interfaces": await self._interface_rows(conntrack_max_age)}

    async def policies(self, request: dict) -> dict:
        return {"policies": self._policy_rows()}

    async def rules(self, request: dict) -> dict:
        counters = await self._rule_counters()
        return {"rules": [{"name": r.name, "policy": r.target if r.target_kind == "policy" else None,
                           "packets": counters.get(r.name, {}).get("packets", 0),
                           "bytes": counters.get(r.name, {}).get("bytes", 0)}
                          for r in self.agent.model.rules]}

    async def _admin(self, request: dict, enabled: bool) -> dict:
        name = self._interface(request)
        tracker = self.agent.set_admin(name, enabled)
        await self.agent.sync()  # disable moves new flows away before the reply
        return {"interface": name, "admin": "enabled" if enabled else "disabled",
                "state": tracker.health.status.value}

    async def enable(self, request: dict) -> dict:
        return await self._admin(request, True)

    async def disable(self, request: dict) -> dict:
        return await self._admin(request, False)

    async def reload(self, request: dict) -> dict:
        try:
            changed = await self.agent.reload()
        except bundle_mod.BundleError as exc:
            raise BadRequest(f"reload refused, the running bundle stays: {exc}") from None
        except (ApplyError, NftError, OSError) as exc:
            raise BadRequest(f"reload failed, the running bundle stays: {exc}") from None
        return {"bundle": self._bundle_info(), "changed": changed}

    async def ifevent(self, request: dict) -> dict:
        action = request.get("action")
        if action not in IFEVENT_ACTIONS:
            raise BadRequest(f'"action" must be one of {", ".join(IFEVENT_ACTIONS)}, got {action!r}')
        # netifd's name: a section name, an `ifname`, its `_4`/`_6` alias or a device. An event
        # for an interface NetPath does not manage is not an error (it changes nothing).
        name = request.get("interface")
        if not isinstance(name, str) or not (NAME_RE.match(name) or DEVICE_RE.match(name)):
            raise BadRequest(f'"interface" must be the name netifd gives an interface (letters, digits, '
                             f"'_', '.', '-'), got {name!r}")
        device = request.get("device")
        if device is not None and not isinstance(device, str):
            raise BadRequest(f'"device" must be a device name or null, got {device!r}')
        return {"interfaces": self.agent.ifevent(action, name, device)}

    async def metrics(self, request: dict) -> dict:
        fmt = request.get("format", "json")
        if fmt not in ("json", "prometheus"):
            raise BadRequest(f'"format" must be "json" or "prometheus", got {fmt!r}')
        agent = self.agent
        rows = await self._interface_rows()
        data = {
            "version": VERSION, "bundle": agent.bundle.digest[:12],
            "interfaces": {row["name"]: self._interface_figures(row) for row in rows},
            "policies": {row["name"]: self._policy_figures(row, policy)
                         for row, policy in zip(self._policy_rows(), agent.model.policies)},
            "rules": await self._rule_counters(),
            "swaps": agent.swaps,
            "swap_seconds_last": agent.swap_seconds_last,
            "swap_seconds": agent.swap_seconds.snapshot(),
            "swap_failures": agent.swap_failures,
            "reloads": agent.reloads,
            "reload_failures": agent.reload_failures,
            "process": await asyncio.to_thread(metrics_mod.process_figures),
            "kernel_repairs": dict(agent.kernel.repairs),
        }
        if fmt == "prometheus":
            return {"text": metrics_mod.prometheus_text(data)}
        return {"metrics": data}

    def _interface_figures(self, row: dict) -> dict:
        """One interface of the metrics reply. While nothing answers (no reply in the last
        `down` rounds), there is no latency to report: the window's earlier replies would
        pretend one."""
        answering = any(t["answering"] for t in row["targets"])
        latency = row["latency"] if answering else dict.fromkeys(row["latency"])
        return {
            "up": 1 if row["usable"] else 0, "state": row["state"],
            "link_up": {"up": 1, "down": 0}.get(row["link"]),
            "enabled": 1 if row["enabled"] and row["admin"] == "enabled" else 0,
            "device": row["device"], "family": row["family"],
            "logical": self.agent.model.interface(row["name"]).logical,
            "latency_ms": latency["avg"], "latency_min_ms": latency["min"], "latency_max_ms": latency["max"],
            "jitter_ms": latency["jitter"], "loss_pct": row["loss_pct"], "score": row["score"],
            "tx_bytes": row["tx_bytes"], "rx_bytes": row["rx_bytes"], "connections": row["connections"],
            "state_changes": self._state_changes(row["name"]), "last_change": row["since"],
            "targets": {t["target"]: self._target_figures(t) for t in row["targets"]},
        }

    @staticmethod
    def _policy_figures(row: dict, policy) -> dict:
        """Share ratios of every member interface (0 for those left out now) and whether the
        last resort decides, for each family the policy has members of."""
        shares, last_resort = {}, {}
        for member in policy.policy_members():
            spread = row["spread"][member.family]
            shares.setdefault(member.family, {})[member.interface] = round(spread.get(member.interface, 0) / 100, 4)
            last_resort[member.family] = row["last_resort_active"][member.family]
        return {"shares": shares, "last_resort": last_resort}

    @staticmethod
    def _target_figures(target: dict) -> dict:
        latency = target["latency"] if target["answering"] else dict.fromkeys(target["latency"])
        return {"up": None if target["ok"] is None else 1 if target["ok"] else 0,
                "latency_ms": latency["avg"], "latency_min_ms": latency["min"], "latency_max_ms": latency["max"],
                "jitter_ms": latency["jitter"], "loss_pct": target["loss_pct"]}

    def _state_changes(self, name: str) -> int:
        tracker = self.agent.trackers.get(name)
        return tracker.state_changes if tracker else 0

    async def history(self, request: dict) -> dict:
        limit = request.get("limit", HISTORY_LENGTH)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise BadRequest(f'"limit" must be a whole number of at least 1, got {limit!r}')
        return {"history": list(self.agent.history)[-limit:]}
