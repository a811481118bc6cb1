"""The agent: one asyncio process that applies a bundle, tracks every WAN, swaps state
variants on a change, and answers on its control socket.

Start-up applies the bundle with the same `apply()` as `netpath apply`. When a NetPath table
is already loaded (the agent was restarted, or killed: fail-static), the interfaces start in
the states that explain the variants in the kernel, so a restart changes nothing.

A change of an interface's usability runs, in order: the state transaction (the variants of
the policies whose alive-mask changed, one nft transaction), for an interface out of use the
deletion of its conntrack entries that never saw a reply, the conntrack flush of the
interface's mark when its `flush_conntrack` names the event, then the hook scripts.
Every kernel write goes through one lock, so a swap never interleaves with a reload.

The agent owns the truth about its kernel state (agent.drift): the kernel's change
notifications (nftables', rtnetlink's rules and routes) and a slow periodic comparison wake a
check of NetPath's table, ip rules and WAN tables against what the agent loaded; what another
program changed is loaded again (the whole bundle for the nft table, with the current states;
the routing plan for rules and routes), counted, logged and reported by `status`. Its own
writes echo back as events too, and compare equal.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import subprocess
import time
from collections import deque

from . import apply as apply_mod
from . import bundle as bundle_mod
from . import conntrack, drift, health as hl, owner, probes, swap
from .hooks import DEFAULT_DIRECTORY as DEFAULT_HOOKS, Hooks
from .links import LinkMonitor
from .metrics import Histogram
from .nft import Nft, NftError
from .track import Tracker, is_tracked, settings_of

log = logging.getLogger("netpath.agent")

HISTORY_LENGTH = 200
ADDRESS_SETTLE = 0.2  # seconds: a DHCP renew sends a burst of address/route events
SWAP_RETRY = 5.0  # seconds before a rejected state transaction is tried again
UNANSWERED_AGAIN = 0.5  # seconds after the swap: the second pass over the out-of-use WAN's unanswered entries
DRIFT_SETTLE = 0.1  # seconds: a kernel change comes as a burst of events; one check after it
DRIFT_INTERVAL = 10.0  # seconds between the periodic comparisons (the safety net for lost events)
DRIFT_RETRY = 2.0  # seconds before a failed repair is tried again
REPAIR_BURST = (5, 10.0)  # more repairs than this within these seconds: slow down (a fight)
DOWN_EVENTS = (hl.DISCONNECTED, hl.IFDOWN)


def _log_failure(task: asyncio.Task) -> None:
    """Done-callback of the agent's own tasks: an exception nobody awaits is logged."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed: %r", task.get_name(), task.exception(), exc_info=task.exception())


FAMILY_SUFFIXES = {"_4": "ipv4", "_6": "ipv6"}


def concerned(interfaces, interface: str, device: "str | None") -> list:
    """The NetPath interfaces that netifd's event for `interface` (and `device`) is about.

    netifd names an interface by its section (what `ifname` or `logical` hold) or, for one
    family of a dynamic protocol, `<name>_4` / `<name>_6` (DHCPv6 on a PPPoE `wan` is
    `wan_6`); hotplug adds the device on ifup and ifupdate. A plain name concerns the
    interfaces it names, whatever their family; `<name>_6` only the IPv6 interfaces of
    `<name>` (those it names, and those on its devices), `<name>_4` only the IPv4 ones: a
    lost DHCPv6 lease must not take the IPv4 uplink offline."""

    def named(iface, name: str) -> bool:
        return name in {iface.name, iface.logical, iface.device} - {""}

    devices = {device} if device else set()
    base, family = interface, None
    if not any(named(i, interface) for i in interfaces) and interface[-2:] in FAMILY_SUFFIXES:
        base, family = interface[:-2], FAMILY_SUFFIXES[interface[-2:]]
        devices |= {i.device for i in interfaces if base and named(i, base)}
    return [i.name for i in interfaces
            if (family is None or i.family == family) and ((base and named(i, base)) or i.device in devices)]


class Agent:
    def __init__(self, bundle_dir, socket_path=None, hooks_dir=DEFAULT_HOOKS, keep: bool = False,
                 nft: "Nft | None" = None, metrics_listen: "tuple | None" = None, run_dir: str = owner.RUN_DIR):
        self.bundle_dir = bundle_dir
        self.socket_path = socket_path
        self.keep = keep
        self.nft = nft or Nft()
        self.hooks = Hooks(hooks_dir)
        self.bundle: "bundle_mod.Bundle | None" = None
        self.trackers: dict = {}  # interface name -> Tracker
        self.links: dict = {}  # interface name -> apply.Link
        self.loaded_masks: dict = {}  # policy -> alive-mask in the kernel
        self.disabled: set = set()  # runtime override (IPC disable), survives reloads
        self.history: deque = deque(maxlen=HISTORY_LENGTH)
        self.swaps = 0
        self.swap_seconds_last: "float | None" = None
        self.swap_seconds = Histogram()
        self.swap_failures = 0
        self.reloads = 0
        self.reload_failures = 0
        self.started = time.time()
        self.kernel_lock = asyncio.Lock()
        self.reload_lock = asyncio.Lock()
        self.monitor: "LinkMonitor | None" = None
        self.server = None
        self.run_dir = run_dir  # where the namespace's lock file lives (agent/owner.py)
        self.claim: "owner.Claim | None" = None
        self._listener = None  # the control socket, bound before the kernel is touched
        self.metrics_listen = metrics_listen  # (host, port) of the optional Prometheus endpoint
        self.metrics_server = None
        self.commands = None  # commands.Commands, made when the socket or metrics endpoint opens
        self.snapshot = None  # snapshot.SnapshotWriter: the read replies as files, beside the socket
        self.stopping = asyncio.Event()
        self._background: set = set()
        self._reloads: set = set()  # reload tasks: they run to their end whoever waits on them
        self._reload_wanted = False  # a SIGHUP came since the signal-driven reload began
        self._signal_reloads: "asyncio.Task | None" = None
        self._pending_resync: dict = {}  # interface -> timer handle
        self._sync_retry: "asyncio.TimerHandle | None" = None  # after a refused state transaction
        self._event_locks: dict = {}  # interface -> lock keeping its conntrack flushes and hooks in order
        self.kernel = drift.Record()  # kernel drift: what was repaired, when, how often
        self._expected_nft: dict = {}  # drift.structure() of the table right after the agent's last write
        self._drift_kinds: set = set()  # "nft", "routing": what the next check looks at
        self._drift_timer: "asyncio.TimerHandle | None" = None
        self._repair_times: deque = deque(maxlen=REPAIR_BURST[0])
        self.nft_watch: "drift.NftWatch | None" = None
        self._patrol: "asyncio.Task | None" = None

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def model(self):
        return self.bundle.model

    async def start(self) -> None:
        # Before anything reads or writes the kernel: one agent per network namespace (the
        # lock), and the socket path must be free (another agent, maybe in another
        # namespace, may answer on it). Either raises, and nothing was changed.
        self.claim = owner.claim("agent", self.socket_path, self.run_dir)
        if self.socket_path:
            from . import ipc

            self._listener = ipc.bind(self.socket_path)
        self.bundle = await asyncio.to_thread(bundle_mod.read, self.bundle_dir)
        if self.model.enabled:
            await asyncio.to_thread(_refuse_beside_mwan3, self.model.route_protocol)
        self.hooks.start()
        if not self.model.enabled:
            log.warning("NetPath is disabled in the config (globals enabled 0): removed its state, "
                        "tracking nothing")
            await asyncio.to_thread(apply_mod.remove, self.model.table, self.model.route_protocol, self.nft)
        else:
            await self._take_over()
        self.monitor = LinkMonitor(self._devices(), self._on_link, self._on_address, self._on_resync,
                                   lambda: self._suspect("routing"), self._tables(), self.model.route_protocol)
        self.monitor.start()
        self.nft_watch = drift.NftWatch(self.model.table, self._owned_sets(), lambda: self._suspect("nft"))
        self.nft_watch.start()
        try:
            await asyncio.wait_for(self.monitor.ready.wait(), 5.0)
        except asyncio.TimeoutError:
            log.warning("link monitor not ready after 5 s; link events may be late")
        self._reconcile_links()
        # The kernel's variants were the starting point; links that changed while no agent
        # ran (or since the links were read) are in the trackers now: the kernel follows at once.
        await self.sync()
        self._suspect("nft", "routing")  # what changed before the watches were listening
        self._patrol = self._spawn(self._patrol_kernel(), "kernel-patrol")
        for tracker in self.trackers.values():
            tracker.start()
        if self.socket_path:
            from . import ipc

            self.server = await ipc.serve(self.socket_path, self._commands().dispatch, sock=self._listener)
            from .snapshot import SnapshotWriter

            # Only once the socket is ours: a second agent refused above must not overwrite
            # the running one's files.
            self.snapshot = SnapshotWriter(self.socket_path, self._read, self.history)
            self.snapshot.start()
        if self.metrics_listen:
            await self._serve_metrics(*self.metrics_listen)
        log.info("started with bundle %s (%s): %s", self.bundle_dir, self.bundle.digest[:12],
                 ", ".join(f"{t.name} {t.health.status.value}" for t in self.trackers.values()) or "no interfaces")

    async def _serve_metrics(self, host: str, port: int) -> None:
        """The same text as the socket's {"cmd":"metrics","format":"prometheus"}, over HTTP."""
        from .metrics import serve_metrics_http

        commands = self._commands()

        async def text() -> str:
            return (await commands.dispatch({"cmd": "metrics", "format": "prometheus"}))["text"]

        self.metrics_server = await serve_metrics_http(host, port, text)
        log.info("serving Prometheus metrics on http://%s:%d/metrics", host, port)

    def _commands(self):
        """The one command table of the socket and the metrics endpoint (one reader nft
        context and its lock for both)."""
        if self.commands is None:
            from .commands import Commands

            self.commands = Commands(self)
        return self.commands

    async def _read(self, cmd: str) -> dict:
        return await self._commands().snapshot(cmd)

    def _changed(self) -> None:
        """What the read commands show has changed (state, admin, bundle): refresh the snapshot."""
        if self.snapshot is not None:
            self.snapshot.changed()

    async def _take_over(self) -> None:
        """Apply the bundle, starting each interface in the state the kernel already shows."""
        model = self.model
        links = await asyncio.to_thread(apply_mod.read_links, model)
        guess = apply_mod.initial_alive(model, links)
        listing = self.nft.list_json(f"table inet {model.table}")
        alive = None
        if listing:
            alive = swap.alive_from_kernel(model, swap.loaded_variants(self.bundle, listing), guess)
            if alive is None:
                log.info("the loaded NetPath table does not match this bundle: starting from initial states")
            else:
                log.info("took over the running state: alive %s", ", ".join(sorted(alive)) or "none")
        taken_over = alive is not None
        if alive is None:
            alive = guess
        for iface in model.interfaces:
            if iface.enabled:
                self.trackers[iface.name] = self._new_tracker(model, iface, links.get(iface.name),
                                                              iface.name in alive, taken_over)
        # What the trackers start from (the kernel's variants, corrected by the links: an
        # uplink whose carrier went while no agent ran is not kept) is what goes in.
        async with self.kernel_lock:
            result = await asyncio.to_thread(apply_mod.apply, self.bundle, self.alive(), self.nft, links)
            self.loaded_masks = dict(result.masks)
            await self._remember_nft()
        if taken_over and result.masks != apply_mod.masks_for(model, alive):
            log.warning("took over the running state, but the links changed meanwhile: alive %s",
                        ", ".join(sorted(self.alive())) or "none")
        self.links = links
        missing = await probes.preload(i.track.method for i in model.interfaces if i.enabled and is_tracked(i))
        for message in missing:
            log.error("%s: interfaces using this method will fail their rounds", message)

    def _new_tracker(self, model, iface, link, alive: bool, taken_over: bool) -> Tracker:
        settings = settings_of(iface)
        link_up = bool(link and link.exists and link.up)
        if not is_tracked(iface):
            # No round will ever run: its state comes from initial_state and the link alone,
            # whatever the kernel shows (an OFFLINE taken over would stay for good).
            health = hl.untracked(settings, link_up)
        elif taken_over and link_up:
            health = (hl.Health(hl.Status.ONLINE, settings.full_score, reason="taken over from the kernel")
                      if alive else
                      hl.Health(hl.Status.OFFLINE, 0, reason="taken over from the kernel (not in use)"))
        else:
            health = hl.initial(settings, link_up)
        if iface.name in self.disabled:
            health = hl.on_admin(health, False, settings).health
        source = link.addresses[0] if link and link.addresses else None
        return Tracker(iface, model.special["default"]["mark"], health, self._on_step, source)

    def _devices(self) -> set:
        return {t.iface.device for t in self.trackers.values()}

    def _tables(self) -> set:
        return {i.table for i in self.model.interfaces if i.enabled}

    def _owned_sets(self) -> set:
        return {name for _family, name in apply_mod.BYPASS_SETS}

    def _reconcile_links(self) -> None:
        """Link changes between reading the links and the monitor's first dump."""
        for tracker in self.trackers.values():
            up = self.monitor.state.get(tracker.iface.device, False)
            if up != tracker.health.link_up:
                tracker.link_changed(up)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        try:
            await self.start()
            # Everything imported and built at start-up lives for the whole run: move it out of
            # the collector's reach, so a full collection (10-25 ms) never stalls a probe round.
            gc.collect()
            gc.freeze()
            await self.stopping.wait()
            await self.shutdown()
        finally:
            self._let_go()
        return 0

    def _let_go(self) -> None:
        """Give up the socket path (when it never came to serve) and the namespace's lock."""
        if self._listener is not None and self.server is None:
            from . import ipc

            ipc.unbind(self._listener, self.socket_path)
        self._listener = None
        if self.claim is not None:
            self.claim.release()
            self.claim = None

    async def shutdown(self) -> None:
        # A reload half done would leave the kernel on one bundle and the agent on another.
        await asyncio.gather(*self._reloads, return_exceptions=True)
        if self._sync_retry is not None:
            self._sync_retry.cancel()
            self._sync_retry = None
        # No repair may follow: the removal below is the agent's own and must stay.
        if self._drift_timer is not None:
            self._drift_timer.cancel()
            self._drift_timer = None
        if self.nft_watch:
            await self.nft_watch.stop()
        for tracker in self.trackers.values():
            await tracker.stop()
        if self.monitor:
            await self.monitor.stop()
        if self.metrics_server is not None:
            self.metrics_server.close()
            await self.metrics_server.wait_closed()
        if self.snapshot is not None:
            await self.snapshot.stop()
        if self.server is not None:
            from . import ipc

            await ipc.stop(self.server)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.hooks.stop()
        if self.keep:
            log.info("stopped; --keep: the last state stays in the kernel")
            return
        async with self.kernel_lock:
            await asyncio.to_thread(apply_mod.remove, self.model.table, self.model.route_protocol, self.nft)
        log.info("stopped; removed table inet %s and NetPath's rules and routes", self.model.table)

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task

    # -- state changes ---------------------------------------------------------------------------

    def alive(self) -> set:
        return {name for name, t in self.trackers.items() if t.usable}

    def _on_step(self, tracker: Tracker, before: hl.Health, step: hl.Step) -> None:
        new = step.health
        if new.status != before.status:
            figures = tracker.figures()
            verdicts = ", ".join(f"{v.target} {v.latency_ms if v.latency_ms != hl.NO_REPLY_LATENCY_MS else '-'} ms "
                                 f"loss {v.loss_pct}%" for v in new.targets) or "no probe figures"
            log.warning("%s: %s -> %s (%s); %s; window loss %s%%", tracker.name, before.status.value,
                        new.status.value, new.reason, verdicts,
                        "-" if figures["loss_pct"] is None else figures["loss_pct"])
            self.history.append({"time": time.time(), "interface": tracker.name, "from": before.status.value,
                                 "to": new.status.value, "reason": new.reason})
        if step.changed or step.events:
            self._spawn(self._after_change(tracker, step.events, step.changed), f"change-{tracker.name}")
            self._changed()
        elif new.targets and not before.targets:
            self._changed()  # the first figures (latency, loss) since start or the link came back

    async def _after_change(self, tracker: Tracker, events: tuple, changed: bool = True) -> None:
        if not await self.sync():
            # The kernel still routes as before: a flush would cut flows that have nowhere
            # else to go yet, and hooks would announce a change that did not happen.
            log.warning("%s: %s: skipped the conntrack flush and hooks, the kernel refused the state",
                        tracker.name, ", ".join(events) or "change")
            return
        # Taken right after the (FIFO) kernel lock: an interface's events keep their order
        # even while a conntrack flush of an earlier change is still running.
        async with self._event_locks.setdefault(tracker.name, asyncio.Lock()):
            iface = tracker.iface
            if changed and not tracker.usable:
                if await self._forget_unreplied(tracker):
                    self._spawn(self._forget_unreplied_again(tracker), f"unanswered-{tracker.name}")
            for event in events:
                if event in iface.flush_conntrack:
                    await self._flush_conntrack(tracker, event)
                self.hooks.submit(event, iface.name, iface.device)

    async def sync(self) -> bool:
        """Bring the kernel's variants in line with the current health. True when the kernel
        holds the variants of the current health (loaded now or already)."""
        async with self.kernel_lock:
            wanted = apply_mod.masks_for(self.model, self.alive())
            if wanted == self.loaded_masks:
                return True
            changed = swap.changed_policies(self.loaded_masks, wanted)
            text = swap.transaction(self.bundle, self.loaded_masks, wanted, changed)
            try:
                seconds = await swap.load(self.nft, text)
            except NftError as exc:
                self.swap_failures += 1
                # An object the transaction names may be gone (someone flushed the ruleset):
                # the same transaction would fail again; the whole bundle puts it all back.
                log.error("the kernel refused the state transaction (%s); loading the whole bundle", exc)
                if await self._reapply_nft(None, "the state transaction was refused"):
                    return True
                log.error("retrying the state transaction in %g s", SWAP_RETRY)
                self._retry_sync_later()
                return False
            self.loaded_masks = wanted
            self._changed()
            self.swaps += 1
            self.swap_seconds_last = seconds
            self.swap_seconds.observe(seconds)
            await self._remember_nft()
            log.info("state swap: %s in %.2f ms", ", ".join(f"{p}={wanted[p] or '-'}" for p in changed),
                     seconds * 1000)
            return True

    def _retry_sync_later(self) -> None:
        """One pending retry at a time, however many transactions were refused meanwhile."""
        if self._sync_retry is None and not self.stopping.is_set():
            self._sync_retry = asyncio.get_running_loop().call_later(SWAP_RETRY, self._retry_sync)

    def _retry_sync(self) -> None:
        self._sync_retry = None
        self._spawn(self.sync(), "sync-retry")

    async def _forget_unreplied(self, tracker: Tracker, again: bool = False) -> bool:
        """The out-of-use WAN's connection attempts that never got an answer: a new socket
        on one of their ports would inherit the dead mark (flush_conntrack or not). True when
        the entries were looked at."""
        iface = tracker.iface
        if not self._others_alive(iface):
            return False
        try:
            deleted = await conntrack.forget_unreplied(iface.mark, self.model.mask, iface.family)
        except conntrack.ConntrackError as exc:
            log.error("%s: could not delete its unanswered conntrack entries: %s", iface.name, exc)
            return False
        if not again:
            log.info("%s: out of use: deleted %d unanswered conntrack entries with mark 0x%08x", iface.name,
                     deleted, iface.mark)
        elif deleted:
            log.warning("%s: out of use: %d more unanswered conntrack entries with mark 0x%08x deleted %g s "
                        "after the swap (their packets were in flight at it)", iface.name, deleted, iface.mark,
                        UNANSWERED_AGAIN)
        return True

    async def _forget_unreplied_again(self, tracker: Tracker) -> None:
        """A packet the kernel was still deciding by the old variants while the swap committed
        gets its conntrack entry (and the dead mark) a moment later, after the first pass has
        looked: one more pass, if the interface is still out of use (under the kernel lock, so
        no swap can bring it back meanwhile)."""
        await asyncio.sleep(UNANSWERED_AGAIN)
        async with self.kernel_lock:
            # A reload meanwhile made new trackers: the state is theirs, and their own swaps' passes.
            if tracker.usable or self.stopping.is_set() or self.trackers.get(tracker.name) is not tracker:
                return
            await self._forget_unreplied(tracker, again=True)

    async def _flush_conntrack(self, tracker: Tracker, event: str) -> None:
        iface = tracker.iface
        if event in DOWN_EVENTS and not self._others_alive(iface):
            log.info("%s: %s: conntrack kept (no other %s member of its policies is alive)", iface.name, event,
                     iface.family)
            return
        try:
            deleted = await conntrack.flush_mark(iface.mark, self.model.mask, iface.family)
        except conntrack.ConntrackError as exc:
            log.error("%s: %s: %s", iface.name, event, exc)
            return
        log.info("%s: %s: deleted %d conntrack entries with mark 0x%08x", iface.name, event, deleted, iface.mark)

    def _others_alive(self, iface) -> bool:
        """Whether a flow of `iface` has somewhere to go: another alive member of its family
        (an IPv4 flow cannot move to an IPv6 uplink) in one of its policies."""
        alive = self.alive() - {iface.name}
        for policy in self.model.policies:
            names = {m.interface for m in policy.members if m.family == iface.family}
            if iface.name in names and names & alive:
                return True
        return False

    # -- links -----------------------------------------------------------------------------------

    def _trackers_on(self, device: str) -> list:
        return [t for t in self.trackers.values() if t.iface.device == device]

    def _on_link(self, device: str, up: bool, gone: bool) -> None:
        for tracker in self._trackers_on(device):
            log.info("%s: link %s%s", tracker.name, "up" if up else "down", " (device removed)" if gone else "")
            tracker.link_changed(up)
            if up:
                self._schedule_resync(tracker.name)

    def _on_address(self, device: str) -> None:
        for tracker in self._trackers_on(device):
            self._schedule_resync(tracker.name)

    def _on_resync(self) -> None:
        self._reconcile_links()
        for name in self.trackers:
            self._schedule_resync(name)
        self._suspect("routing")

    # -- kernel drift ----------------------------------------------------------------------------

    def _suspect(self, *kinds: str) -> None:
        """Something may have changed NetPath's kernel objects ("nft": its table; "routing":
        its ip rules or WAN tables): compare once the burst of events is over."""
        self._drift_kinds.update(kinds)
        if self._drift_timer is None and not self.stopping.is_set():
            self._drift_timer = asyncio.get_running_loop().call_later(
                DRIFT_SETTLE, lambda: self._spawn(self._check_kernel(), "kernel-check"))

    async def _patrol_kernel(self) -> None:
        while True:
            await asyncio.sleep(DRIFT_INTERVAL)
            self._suspect("nft", "routing")

    async def _check_kernel(self) -> None:
        self._drift_timer = None
        kinds, self._drift_kinds = self._drift_kinds, set()
        if self.stopping.is_set() or self.bundle is None or not self.model.enabled:
            return
        if len(self._repair_times) == REPAIR_BURST[0] and \
                time.monotonic() - self._repair_times[0] < REPAIR_BURST[1]:
            log.error("kernel drift: %d repairs within %g s, another program keeps changing NetPath's "
                      "state; comparing again in %g s", REPAIR_BURST[0], REPAIR_BURST[1], DRIFT_RETRY)
            self._repair_times.clear()
            self._later(kinds)
            return
        async with self.kernel_lock:
            try:
                if "nft" in kinds:
                    await self._check_nft()
                if "routing" in kinds:
                    await self._check_routing()
            except (apply_mod.ApplyError, NftError, OSError, subprocess.SubprocessError, ValueError) as exc:
                log.error("kernel drift: could not compare or repair (tried again in %g s): %s", DRIFT_RETRY, exc)
                self.kernel.failed(str(exc))
                self._later(kinds)

    def _later(self, kinds) -> None:
        asyncio.get_running_loop().call_later(DRIFT_RETRY, lambda: self._suspect(*kinds))

    async def _remember_nft(self, table: "str | None" = None) -> None:
        """After the agent's own nft write (under the kernel lock): what the table must look like."""
        table = table or self.model.table
        listing = await asyncio.to_thread(self.nft.list_json, f"table inet {table}", True)
        self._expected_nft = drift.structure(listing, table)

    async def _nft_drift(self) -> list:
        listing = await asyncio.to_thread(self.nft.list_json, f"table inet {self.model.table}", True)
        return drift.differences(self._expected_nft, drift.structure(listing, self.model.table))

    async def _check_nft(self) -> None:
        drifted = await self._nft_drift()
        if drifted:
            log.warning("kernel drift: the %s of table inet %s changed outside NetPath", " and ".join(drifted),
                        self.model.table)
            await self._reapply_nft(drifted, "kernel drift")
            return
        table, wanted = self.model.table, apply_mod.bypass_networks(self.model, self.links)
        changed = []
        for name, networks in wanted.items():
            listing = await asyncio.to_thread(self.nft.list_json, f"set inet {table} {name}")
            elements = drift.set_elements(listing)
            if elements is None or drift.intervals(elements) != drift.intervals(networks):
                changed.append(name)
        if changed:
            log.warning("kernel drift: set %s of table inet %s changed outside NetPath; refilled with the "
                        "WAN links' networks", ", ".join(changed), table)
            await swap.load(self.nft, swap.bypass_transaction(self.model, self.links))
            self._repaired(["set"])

    async def _reapply_nft(self, drifted: "list | None", why: str) -> bool:
        """Load the whole bundle with the current states (under the kernel lock). Sets that
        still exist keep their contents; the agent's own are refilled. True when it went in."""
        if drifted is None:
            drifted = await self._nft_drift() or ["chain"]
        try:
            result = await asyncio.to_thread(apply_mod.apply, self.bundle, self.alive(), self.nft, self.links)
        except (apply_mod.ApplyError, NftError, OSError, subprocess.SubprocessError) as exc:
            log.error("%s: could not load the bundle again: %s", why, exc)
            self.kernel.failed(str(exc))
            return False
        self.loaded_masks = dict(result.masks)
        await self._remember_nft()
        objects = drifted + ["rule"] * bool(result.rule_changes) + ["route"] * bool(result.route_changes)
        log.warning("kernel drift repaired (%s): loaded the bundle again with the current states %s", why,
                    ", ".join(f"{p}={m or '-'}" for p, m in sorted(result.masks.items())))
        self._repaired(objects)
        return True

    async def _check_routing(self) -> None:
        bundle = self.bundle
        plan = await asyncio.to_thread(apply_mod.routing_plan, bundle, self.links)
        if not plan["rule"] and not plan["route"]:
            return
        # Before calling it drift: the links may have moved (an address event still settling).
        links = await asyncio.to_thread(apply_mod.read_links, bundle.model)
        moved = links != self.links
        self.links = links
        for name, tracker in self.trackers.items():
            link = links.get(name)
            tracker.source = link.addresses[0] if link and link.addresses else None
        plan = await asyncio.to_thread(apply_mod.routing_plan, bundle, links)
        objects = [kind for kind in ("rule", "route") if plan[kind]]
        if not objects:
            return
        await asyncio.to_thread(apply_mod.run_lines, plan["rule"])
        await asyncio.to_thread(apply_mod.run_lines, plan["route"])
        lines = "; ".join(line for kind in objects for batch in plan[kind].values() for line in batch)
        if moved:
            log.info("routing updated to the links: %s", lines)
            return
        log.warning("kernel drift: NetPath's %s changed outside NetPath; put back: %s",
                    " and ".join("ip rules" if k == "rule" else "WAN table routes" for k in objects), lines)
        self._repaired(objects)

    def _repaired(self, objects: list) -> None:
        self.kernel.repaired(objects)
        self._repair_times.append(time.monotonic())
        self._changed()

    def _schedule_resync(self, name: str) -> None:
        if name in self._pending_resync:
            return
        loop = asyncio.get_running_loop()
        self._pending_resync[name] = loop.call_later(
            ADDRESS_SETTLE, lambda: self._spawn(self.resync(name), f"resync-{name}"))

    async def resync(self, name: str) -> bool:
        """Re-read one WAN's addresses and gateway; re-run apply's rule/route sync when they
        changed (DHCP renew, PPPoE reconnect). True when something was changed."""
        self._pending_resync.pop(name, None)
        try:
            return await self._resync(name)
        except (apply_mod.ApplyError, NftError, OSError, subprocess.SubprocessError, ValueError) as exc:
            log.error("%s: could not update its routing to the link's addresses (tried again on the next "
                      "link or address change): %s", name, exc)
            return False

    async def _resync(self, name: str) -> bool:
        tracker = self.trackers.get(name)
        if tracker is None:
            return False
        link = await asyncio.to_thread(apply_mod.read_link, tracker.iface)
        before = self.links.get(name)
        tracker.source = link.addresses[0] if link.addresses else None
        self.links[name] = link
        async with self.kernel_lock:
            bundle, links = self.bundle, dict(self.links)
            # Compared with the kernel, not with the cached link: a device deleted and made
            # again with the same addresses (a PPPoE reconnect) took its WAN table's route along.
            changes = sum(await asyncio.to_thread(apply_mod.sync_routing, bundle, links))
            if before is None or before.networks != link.networks:
                await swap.load(self.nft, swap.bypass_transaction(bundle.model, links))
                changes += 1
        if not changes:
            return False
        log.info("%s: routing updated: address %s, gateway %s", name, ", ".join(link.addresses) or "none",
                 link.gateway or "none (on-link)")
        return True

    def _retire(self, previous, model) -> None:
        """After a reload that renamed the table or changed the route protocol: take away
        what the previous bundle installed under the old names."""
        if previous.table != model.table:
            apply_mod.remove_table(previous.table, self.nft)
        if previous.route_protocol != model.route_protocol:
            apply_mod.remove_routing(previous.route_protocol)

    # -- commands --------------------------------------------------------------------------------

    def set_admin(self, name: str, enabled: bool) -> Tracker:
        tracker = self.trackers[name]
        if enabled:
            self.disabled.discard(name)
        else:
            self.disabled.add(name)
        tracker.admin_changed(enabled)
        self._changed()
        return tracker

    def ifevent(self, action: str, interface: str, device: "str | None" = None) -> list:
        """A netifd event (hotplug); returns the names of the interfaces it applied to."""
        names = concerned([t.iface for t in self.trackers.values()], interface, device)
        for name in names:
            tracker = self.trackers[name]
            if action == "ifdown":
                tracker.link_changed(False)
            elif action == "ifup":
                tracker.link_changed(True)
                self._schedule_resync(name)
            elif action == "ifupdate":
                self._schedule_resync(name)
        return names

    def _reload_on_signal(self) -> None:
        """SIGHUP. Signals that arrive while a reload runs are merged into one more reload
        after it (a storm of `kill -HUP` is two reloads at most, never a queue of them)."""
        self._reload_wanted = True
        if self._signal_reloads is None or self._signal_reloads.done():
            self._signal_reloads = self._spawn(self._reload_while_wanted(), "reload")

    async def _reload_while_wanted(self) -> None:
        while self._reload_wanted and not self.stopping.is_set():
            self._reload_wanted = False
            await self._reload_logged()

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except (bundle_mod.BundleError, apply_mod.ApplyError, NftError, OSError) as exc:
            log.error("reload failed, still running the previous bundle: %s", exc)

    async def reload(self) -> bool:
        """Load the bundle directory again; True when it differs from the running one.

        The new ruleset goes in with the variants of the current health, in one transaction:
        interfaces that stay keep their state (their flows keep their marks), removed ones
        lose their routes and rules, new ones start from initial_state.

        The reload runs to its end even when the caller stops waiting (a request's time
        limit, a client cancelled at shutdown): stopped halfway, the kernel could hold the
        new bundle while the agent still tracks and swaps the old one."""
        task = asyncio.ensure_future(self._reload_counted())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_failure)  # nobody is left to hear how it ended
            raise

    async def _reload_counted(self) -> bool:
        try:
            changed = await self._reload()
        except BaseException:
            self.reload_failures += 1
            raise
        self.reloads += 1
        return changed

    async def _reload(self) -> bool:
        async with self.reload_lock:
            new = await asyncio.to_thread(bundle_mod.read, self.bundle_dir)
            changed = new.digest != self.bundle.digest
            model = new.model
            links = await asyncio.to_thread(apply_mod.read_links, model)
            await probes.preload(i.track.method for i in model.interfaces if i.enabled and is_tracked(i))
            async with self.kernel_lock:
                kept, added = {}, {}
                for iface in model.interfaces:
                    if not iface.enabled:
                        continue
                    old = self.trackers.get(iface.name)
                    if old is not None and (old.iface.device, old.iface.family) == (iface.device, iface.family):
                        kept[iface.name] = iface
                    else:
                        added[iface.name] = iface
                previous = self.bundle
                # Everything that can refuse the new bundle runs before the first kernel write
                # (bundle.read checked the tracking settings; this builds them): a refused
                # reload leaves kernel, trackers and bundle as they were.
                try:
                    for iface in kept.values():
                        settings_of(iface)
                    fresh = {name: self._new_tracker(model, iface, links.get(name), False, False)
                             for name, iface in added.items()}
                except ValueError as exc:
                    raise bundle_mod.BundleError(f"{self.bundle_dir}: {exc}") from None
                alive = {n for n in kept if self.trackers[n].usable} | {n for n, t in fresh.items() if t.usable}
                if model.enabled:
                    result = await asyncio.to_thread(apply_mod.apply, new, alive, self.nft, links)
                    masks = dict(result.masks)
                    await self._remember_nft(model.table)
                else:
                    await asyncio.to_thread(apply_mod.remove, model.table, model.route_protocol, self.nft)
                    masks = {}
                    kept, fresh = {}, {}
                if model.enabled:
                    await asyncio.to_thread(self._retire, previous.model, model)
                removed = [t for n, t in self.trackers.items() if n not in kept]
                for tracker in removed:
                    await tracker.stop()
                trackers = {}
                for iface in model.interfaces:
                    if iface.name in kept:
                        tracker = self.trackers[iface.name]
                        tracker.update(iface)
                        tracker.fwmark = model.special["default"]["mark"]
                        trackers[iface.name] = tracker
                    elif iface.name in fresh:
                        trackers[iface.name] = fresh[iface.name]
                self.bundle, self.links, self.loaded_masks, self.trackers = new, links, masks, trackers
                for tracker in fresh.values():
                    tracker.start()
                if self.monitor:
                    self.monitor.watch(self._devices(), self._tables(), model.route_protocol)
                if self.nft_watch:
                    self.nft_watch.table = model.table
            log.info("reloaded bundle %s (%s)%s; interfaces: %s", self.bundle_dir, new.digest[:12],
                     "" if changed else " (unchanged)",
                     ", ".join(f"{t.name} {t.health.status.value}" for t in trackers.values()) or "none")
        await self.sync()  # catch up with changes that arrived while the new bundle went in
        self._changed()
        return changed


def _refuse_beside_mwan3(protocol: int) -> None:
    rules = apply_mod.mwan3_rules(protocol)
    if rules:
        shown = "; ".join(rules[:3]) + (f"; and {len(rules) - 3} more" if len(rules) > 3 else "")
        raise apply_mod.ApplyError(
            f"mwan3 is running (its ip rules: {shown}): NetPath and mwan3 cannot route side by side; "
            "stop and disable mwan3 first (/etc/init.d/mwan3 stop; /etc/init.d/mwan3 disable), "
            "see docs/mwan3-migration.md")
