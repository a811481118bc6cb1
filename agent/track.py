"""Track: one asyncio task per interface that probes its targets and feeds agent/health.py.

A round probes every target of the interface at once (a dead target costs its timeout, not
the sum of all timeouts), with each probe bound to the WAN: SO_BINDTODEVICE on the device,
the WAN address as source, and SO_MARK = NetPath's "default" mark so NetPath's own chains
leave the probe alone and the `oif <device>` rule picks the WAN's table. After the round the
task sleeps for what health.on_round() says (interval, failure_interval, recovery_interval),
unless a link or administrative change wakes it early.

Link and admin changes (from netlink, IPC or hotplug) are applied at once through
health.on_link()/on_admin(); a round that was already running when one arrived is discarded,
so a stale result never overrides a newer fact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from . import health as hl
from . import probes
from .model import Interface

log = logging.getLogger("netpath.track")

WINDOW_ROUNDS = 10  # rounds kept for the latency/loss figures of `interfaces`
ROUND_GRACE = 1.0  # seconds beyond the probe timeout before a round is cut off regardless


def settings_of(iface: Interface) -> hl.TrackSettings:
    t = iface.track
    return hl.TrackSettings(
        reliability=t.reliability, count=t.count, timeout=t.timeout, interval=t.interval,
        failure_interval=t.failure_interval, recovery_interval=t.recovery_interval,
        keep_failure_interval=t.keep_failure_interval, up=t.up, down=t.down,
        initial_state=t.initial_state, check_quality=t.check_quality,
        failure_latency=t.failure_latency, recovery_latency=t.recovery_latency,
        failure_loss=t.failure_loss, recovery_loss=t.recovery_loss)


def is_tracked(iface: Interface) -> bool:
    return hl.needs_tracking(iface.track.method, iface.track.targets)


def _untracked_step(health: hl.Health, settings: hl.TrackSettings) -> hl.Step:
    """From `health` to the state of an untracked interface with the same link."""
    new = hl.untracked(settings, health.link_up)
    was, now = hl.is_usable(health), hl.is_usable(new)
    events = () if was == now else (hl.CONNECTED,) if now else (hl.DISCONNECTED,)
    return hl.Step(new, events, settings.interval, was != now)


class Tracker:
    """The health of one interface and the task that keeps it current.

    `on_step(tracker, before, step)` is called for every step that changed the
    status or emitted events; the agent swaps variants, flushes conntrack and runs hooks."""

    def __init__(self, iface: Interface, fwmark: int, health: hl.Health, on_step, source=None):
        self.iface = iface
        self.settings = settings_of(iface)
        self.fwmark = fwmark
        self.health = health
        self.on_step = on_step
        self.source = source  # WAN address the probes are sent from, when known
        self.since = time.time()
        self.state_changes = 0
        self.results: dict = {}  # target -> last probes.ProbeResult
        self.window: deque = deque(maxlen=WINDOW_ROUNDS)  # of lists of ProbeResult
        self.rounds = 0
        self._generation = 0  # bumped by link/admin changes: a round started before is stale
        self._wake = asyncio.Event()
        self.task: "asyncio.Task | None" = None

    @property
    def name(self) -> str:
        return self.iface.name

    @property
    def usable(self) -> bool:
        return hl.is_usable(self.health)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"track-{self.name}")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def update(self, iface: Interface) -> None:
        """New settings from a reloaded bundle; the state carries over (health.rebase).

        An interface that is no longer tracked takes the state of an untracked one (link and
        initial_state) instead: no round would ever move it out of what tracking left. An
        administrative disable stays. Only changed settings (or a moved device) start a round
        at once: a reload keeps the probe rhythm."""
        changed = (iface.track, iface.device, iface.family) != (self.iface.track, self.iface.device, self.iface.family)
        self.iface = iface
        self.settings = settings_of(iface)
        self.health = hl.rebase(self.health, self.settings)
        known = set(iface.track.targets)
        self.results = {t: r for t, r in self.results.items() if t in known}
        if not is_tracked(iface) and self.health.status is not hl.Status.DISABLED:
            self._generation += 1  # a round still running measured what is no longer tracked
            self._apply(_untracked_step(self.health, self.settings))
        if changed:
            self._wake.set()

    # -- the task ------------------------------------------------------------------------------

    async def _run(self) -> None:
        sleep = 0.0
        while True:
            await self._sleep(sleep)
            if not is_tracked(self.iface) or not hl.should_probe(self.health):
                sleep = self.settings.interval
                continue
            generation = self._generation
            raw = await self.round()
            if generation != self._generation:
                sleep = 0.0  # the link or admin state changed meanwhile: probe afresh
                continue  # and the stale round stays out of the figures too
            self._record(raw)
            results = [hl.TargetResult(r.target, r.sent, r.received, r.latency_ms, r.error) for r in raw]
            step = hl.on_round(self.health, results, self.settings)
            self._apply(step)
            sleep = step.sleep

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            try:
                await asyncio.wait_for(self._wake.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        self._wake.clear()

    def specs(self) -> list:
        t = self.iface.track
        return [probes.ProbeSpec(
            method=t.method, target=target, device=self.iface.device,
            family=6 if self.iface.family == "ipv6" else 4, source=self.source, count=t.count,
            timeout=t.timeout, size=t.size, max_ttl=t.max_ttl, http_url=t.http_url or None,
            http_status=t.http_status, dns_query=t.dns_query, dns_type=t.dns_type,
            fwmark=self.fwmark) for target in t.targets]

    async def round(self) -> list:
        """Probe all targets concurrently; one probes.ProbeResult per target, in order."""
        specs = self.specs()
        limit = max(s.timeout for s in specs) + ROUND_GRACE
        tasks = [asyncio.ensure_future(probes.probe(s)) for s in specs]
        done, pending = await asyncio.wait(tasks, timeout=limit)
        for task in pending:  # probes enforce their own timeout; this is the belt to those braces
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        raw = []
        for spec, task in zip(specs, tasks):
            if task in done and not task.cancelled() and task.exception() is None:
                raw.append(task.result())
            else:
                error = "timeout" if task in pending else f"probe failed: {task.exception()!r}"
                raw.append(probes.ProbeResult(spec.target, spec.count, 0, (), error))
        return raw

    def _record(self, raw: list) -> None:
        """A round that counts: into the figures of `interfaces` and `metrics`."""
        self.rounds += 1
        self.window.append(raw)
        self.results = {r.target: r for r in raw}

    # -- facts from outside -------------------------------------------------------------------

    def link_changed(self, up: bool) -> None:
        self._generation += 1
        self._apply(hl.on_link(self.health, up, self.settings))

    def admin_changed(self, enabled: bool) -> None:
        self._generation += 1
        self._apply(hl.on_admin(self.health, enabled, self.settings))

    def _apply(self, step: hl.Step) -> None:
        before = self.health
        self.health = step.health
        if step.health.status != before.status:
            self.since = time.time()
            self.state_changes += 1
        if step.health.status != before.status or step.events or step.changed:
            self.on_step(self, before, step)
        if step.sleep == 0.0:
            self._wake.set()

    # -- figures ------------------------------------------------------------------------------

    def figures(self) -> dict:
        """Latency (ms) and loss (%) over the sliding window of rounds."""
        return window_figures(r for results in self.window for r in results)

    def answering(self, target: "str | None" = None) -> bool:
        """Whether `target` (None: any target) answered in the last `down` rounds, as many
        failed rounds as take the interface out: until then its window latency still means
        something; after, it would pretend a value while nothing answers."""
        recent = list(self.window)[-max(1, self.settings.down):]
        return any(r.received for results in recent for r in results if target is None or r.target == target)

    def target_figures(self, target: str) -> dict:
        """The same figures for one target."""
        return window_figures(r for results in self.window for r in results if r.target == target)


def window_figures(results) -> dict:
    """{"latency": {"avg", "min", "max", "jitter"} (ms, None without a reply), "loss_pct"
    (None without a probe)} over probes.ProbeResult values."""
    sent = received = 0
    latencies = []
    for r in results:
        sent += r.sent
        received += r.received
        latencies.extend(r.latencies_ms)
    latency = {"avg": None, "min": None, "max": None, "jitter": None}
    if latencies:
        latency = {"avg": round(sum(latencies) / len(latencies), 3), "min": min(latencies),
                   "max": max(latencies),
                   "jitter": round(sum(abs(a - b) for a, b in zip(latencies, latencies[1:]))
                                   / max(1, len(latencies) - 1), 3)}
    loss = round(100.0 * (sent - received) / sent, 1) if sent else None
    return {"latency": latency, "loss_pct": loss}
