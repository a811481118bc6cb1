"""Health: the per-interface state machine of mwan3track, as pure functions.

The tracker (asyncio, probes, timers) lives elsewhere. It calls these functions with what it
saw and sleeps for the number of seconds they return; nothing here does I/O or reads a clock.

Score and states (mwan3track's main loop, openwrt/packages net/mwan3)
-------------------------------------------------------------------
``full = down + up``. An ONLINE interface has score ``full``; an OFFLINE one has score 0.

Failed round: ``score -= 1``, then

* ``score < up``: score = 0, no event. Sleep ``failure_interval`` with
  ``keep_failure_interval``, else ``interval``. (Offline or recovering: stay unusable.)
* ``score >= up``: DISCONNECTING, event ``disconnecting`` on entry only; sleep ``failure_interval``.
  If now ``score == up``: OFFLINE, score 0, event ``disconnected``.

Successful round: if ``score < full`` and targets were lost since the last good round, event
``connecting`` (on entry only). Then ``score += 1`` and

* ``score > up``: ONLINE, score = full (one good round re-arms all ``down`` rounds); sleep ``interval``.
* ``score <= up``: CONNECTING (event on entry only); sleep ``recovery_interval``.
  If now ``score == up``: ONLINE, score = full, event ``connected``.

Hence ``down`` consecutive failed rounds take an ONLINE interface OFFLINE and ``up`` consecutive
good rounds bring an OFFLINE one back; one round of the other kind restarts the count.

Two mwan3 details are kept on purpose because hooks can see them:

* A DISCONNECTING interface that recovers emits ``connecting`` (when targets were lost) and is
  ONLINE again without a ``connected`` event: it never stopped carrying traffic.
* A failed round during CONNECTING resets the score to 0 but the status stays CONNECTING, so
  the next good round does not emit ``connecting`` a second time.

One mwan3 defect is not kept: mwan3track writes ``online`` to its status file on recovery from
DISCONNECTING but leaves its in-memory status at ``disconnecting``, which can swallow the
``disconnecting`` event of the next outage. Here every departure from ONLINE emits it.

Usable (carries traffic): ONLINE and DISCONNECTING. mwan3's hotplug handler ``15-mwan3`` acts
only on ``connected`` and ``disconnected``, so policies drop an interface at ``disconnected`` and
take it back at ``connected``; ``disconnecting``/``connecting`` only reach user scripts.

check_quality
-------------
A probed target is judged by its loss (integer percent, as busybox ``ping`` prints it) and the
integer part of its average RTT; a probe without replies counts as loss 100 %, 999999 ms.
``loss >= failure_loss`` or ``latency >= failure_latency`` is down; ``loss <= recovery_loss`` and
``latency <= recovery_latency`` is up; anything between the two levels is in the band.

mwan3track never counts a band target as up, in any state, so an ONLINE interface whose latency
sits between the levels fails its rounds and goes offline after ``down`` of them. NetPath uses
the band as hysteresis instead: while the interface is usable a band target counts as up (only
the failure levels take it down), while it is unusable a band target does not count (only the
recovery levels bring it back). ``TrackSettings.mwan3_quality_band=True`` restores mwan3's rule.

Link and administrative state
-----------------------------
Carrier loss (netifd ``ifdown``) takes the interface OFFLINE at once; probe rounds are ignored
until the link is back. Link back (``ifup``) starts again from ``initial_state`` and asks for a
round at once, as mwan3track's ``firstconnect`` does. DISABLED is NetPath's manual override:
no traffic, rounds and link changes are recorded but change nothing until re-enabled.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import Enum

# mwan3track's stand-ins for "no reply": the probe counts as 100 % loss and this latency.
NO_REPLY_LATENCY_MS = 999999
NO_REPLY_LOSS_PCT = 100


class Status(str, Enum):
    ONLINE = "online"  # usable, score = down + up
    OFFLINE = "offline"  # unusable, score 0 (tracking said so, or the link is down)
    CONNECTING = "connecting"  # unusable, good rounds are counting up towards `up`
    DISCONNECTING = "disconnecting"  # still usable, failed rounds are counting down towards `down`
    DISABLED = "disabled"  # administratively disabled (manual override), no traffic


USABLE = frozenset({Status.ONLINE, Status.DISCONNECTING})

# Hotplug ACTIONs, as mwan3 passes them to /etc/mwan3.user.
CONNECTED = "connected"
DISCONNECTED = "disconnected"
CONNECTING = "connecting"
DISCONNECTING = "disconnecting"
IFUP = "ifup"
IFDOWN = "ifdown"


@dataclass(frozen=True)
class TrackSettings:
    """One interface's tracking options (mwan3 `config interface`, code defaults)."""

    reliability: int = 1
    count: int = 1
    timeout: float = 4.0
    interval: float = 10.0
    failure_interval: float | None = None  # None = interval (mwan3 backend default)
    recovery_interval: float | None = None  # None = interval
    keep_failure_interval: bool = False
    up: int = 5
    down: int = 5
    initial_state: str = "online"  # "online" | "offline"
    check_quality: bool = False
    failure_latency: float = 1000.0  # ms
    recovery_latency: float = 500.0  # ms
    failure_loss: float = 40.0  # percent
    recovery_loss: float = 10.0  # percent
    # True: a target between the recovery and failure levels never counts as up (mwan3track).
    # False: it keeps the current state (see the module docstring).
    mwan3_quality_band: bool = False

    def __post_init__(self) -> None:
        for name in ("reliability", "count", "up", "down"):
            if getattr(self, name) < 1:
                raise ValueError(f"track option '{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("timeout", "interval", "failure_interval", "recovery_interval"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"track option '{name}' must be more than 0 seconds, got {value}")
        if self.initial_state not in ("online", "offline"):
            raise ValueError(
                f"track option 'initial_state' must be 'online' or 'offline', got {self.initial_state!r}"
            )

    @property
    def full_score(self) -> int:
        return self.down + self.up

    @property
    def failure_sleep(self) -> float:
        return self.interval if self.failure_interval is None else self.failure_interval

    @property
    def recovery_sleep(self) -> float:
        return self.interval if self.recovery_interval is None else self.recovery_interval

    @classmethod
    def from_dict(cls, d: dict) -> "TrackSettings":
        """Build from a mapping such as the bundle's track section; unknown keys are ignored.

        Values may be strings (UCI): numbers are parsed, booleans accept 0/1/true/false/yes/no/on/off.
        """
        kinds = {
            "reliability": int, "count": int, "up": int, "down": int,
            "timeout": float, "interval": float, "failure_interval": float,
            "recovery_interval": float, "failure_latency": float, "recovery_latency": float,
            "failure_loss": float, "recovery_loss": float,
            "keep_failure_interval": bool, "check_quality": bool, "mwan3_quality_band": bool,
            "initial_state": str,
        }
        known = {f.name for f in fields(cls)}
        values = {}
        for key, value in d.items():
            if key not in known:
                continue
            if value is None and key in ("failure_interval", "recovery_interval"):
                values[key] = None
                continue
            values[key] = _coerce(key, value, kinds[key])
        return cls(**values)


def _coerce(key: str, value, kind):
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"track option '{key}' must be a boolean (0/1), got {value!r}")
    if kind is str:
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"track option '{key}' must be a number, got {value!r}") from None
    if kind is int:
        if number != int(number):
            raise ValueError(f"track option '{key}' must be a whole number, got {value!r}")
        return int(number)
    return number


@dataclass(frozen=True)
class TargetResult:
    """What one probe of one target saw (the tracker fills it from its probe)."""

    target: str
    sent: int
    received: int
    latency_ms: float | None  # average RTT of the replies, None if none
    error: str | None = None


@dataclass(frozen=True)
class TargetVerdict:
    """How a round judged one target (mwan3's TRACK_<ip>, LATENCY_<ip>, LOSS_<ip>)."""

    target: str
    state: str  # "up" | "down" | "skipped" (in the quality band, counted as neither)
    loss_pct: int  # as compared with the loss levels
    latency_ms: int  # integer part of the average RTT; NO_REPLY_LATENCY_MS without replies
    error: str | None = None


@dataclass(frozen=True)
class Health:
    status: Status
    score: int  # mwan3's score (0 .. down+up)
    turn: int = 0  # rounds since start or since the last `connected` (mwan3's TURN)
    reason: str = ""  # why the status last changed
    lost: int = 0  # targets judged down since the last good round (mwan3's LOST)
    link_up: bool = True
    last_round_ok: bool | None = None  # None until a round has been judged
    targets: tuple = ()  # TargetVerdict of each target probed in the last round


@dataclass(frozen=True)
class Step:
    health: Health
    events: tuple  # hotplug ACTIONs emitted by this step, in order
    sleep: float  # seconds until the next round
    changed: bool  # is_usable() differs from before this step


def is_usable(health: Health) -> bool:
    """True when the interface carries traffic: ONLINE or DISCONNECTING.

    DISCONNECTING is still usable because mwan3 only rebuilds policies on ``disconnected``;
    CONNECTING is not, because it takes them back only on ``connected``.
    """
    return health.status in USABLE


def should_probe(health: Health) -> bool:
    """False while the link is down or the interface is disabled: rounds would be ignored."""
    return health.link_up and health.status is not Status.DISABLED


def needs_tracking(method: str, targets) -> bool:
    """mwan3 starts no tracker without targets; NetPath also has the explicit method "none"."""
    return method != "none" and len(tuple(targets)) > 0


def _from_initial_state(settings: TrackSettings, reason: str, turn: int = 0) -> Health:
    """firstconnect: ONLINE (a `connected`, which restarts TURN) or OFFLINE (TURN kept)."""
    if settings.initial_state == "online":
        return Health(Status.ONLINE, settings.full_score, reason=f"{reason} (initial_state online)")
    return Health(
        Status.OFFLINE, 0, turn,
        reason=f"{reason} (initial_state offline: waiting for {settings.up} good rounds)",
    )


def initial(settings: TrackSettings, link_up: bool = True) -> Health:
    """The state on start, as mwan3track's firstconnect leaves it."""
    if not link_up:
        return Health(Status.OFFLINE, 0, link_up=False, reason="link down")
    return _from_initial_state(settings, "started")


def start(settings: TrackSettings, link_up: bool = True) -> Step:
    """initial() with what firstconnect emits: ``connected`` when it starts ONLINE.

    The first round runs at once (sleep 0) when the link is up. ``changed`` is relative to an
    interface not carrying traffic before the agent knew about it.
    """
    health = initial(settings, link_up)
    usable = is_usable(health)
    return Step(health, (CONNECTED,) if usable else (), 0.0 if link_up else settings.interval, usable)


def untracked(settings: TrackSettings, link_up: bool = True, enabled: bool = True) -> Health:
    """State of an interface without tracking (no targets, or method "none").

    As in mwan3 it follows ``initial_state`` and the link only: with ``initial_state offline``
    nothing will ever bring it online. on_link() and on_admin() apply to it unchanged.
    """
    health = initial(settings, link_up)
    if not enabled:
        return replace(health, status=Status.DISABLED, score=0, reason="disabled by administrator")
    return health


def target_verdict(result: TargetResult, settings: TrackSettings, health: Health) -> TargetVerdict:
    """Judge one target; with check_quality the levels that apply depend on ``health``."""
    replied = result.received > 0 and result.error is None and result.sent > 0
    if replied and result.latency_ms is None and settings.check_quality:
        replied = False  # a quality check cannot pass without a latency to compare
    if not replied:
        return TargetVerdict(result.target, "down", NO_REPLY_LOSS_PCT, NO_REPLY_LATENCY_MS, result.error)
    # busybox ping prints integer percent; mwan3 keeps the integer part of the average RTT
    loss = (result.sent - min(result.received, result.sent)) * 100 // result.sent
    latency = int(result.latency_ms) if result.latency_ms is not None else 0
    if not settings.check_quality:
        return TargetVerdict(result.target, "up", loss, latency)
    if loss >= settings.failure_loss or latency >= settings.failure_latency:
        return TargetVerdict(result.target, "down", loss, latency)
    if loss <= settings.recovery_loss and latency <= settings.recovery_latency:
        return TargetVerdict(result.target, "up", loss, latency)
    in_band_counts_as_up = is_usable(health) and not settings.mwan3_quality_band
    return TargetVerdict(result.target, "up" if in_band_counts_as_up else "skipped", loss, latency)


def _verdicts(results, settings: TrackSettings, health: Health) -> tuple:
    return tuple(target_verdict(r, settings, health) for r in results)


def round_ok(results: "list[TargetResult]", settings: TrackSettings, health: Health) -> bool:
    """A round succeeds when at least ``reliability`` targets are up.

    The tracker probes targets in list order and may stop as soon as this turns True, as
    mwan3track does (the rest are "skipped").
    """
    return sum(v.state == "up" for v in _verdicts(results, settings, health)) >= settings.reliability


def _summary(verdicts: tuple, settings: TrackSettings) -> str:
    up = sum(v.state == "up" for v in verdicts)
    what = "targets within latency/loss limits" if settings.check_quality else "targets answered"
    return f"{up}/{len(verdicts)} {what}"


def _unchanged(health: Health, settings: TrackSettings) -> Step:
    return Step(health, (), settings.interval, False)


def on_round(health: Health, results: "list[TargetResult]", settings: TrackSettings) -> Step:
    """Apply one probe round (the results of the targets probed, in order)."""
    if not should_probe(health):
        return _unchanged(health, settings)
    verdicts = _verdicts(results, settings, health)
    ok = sum(v.state == "up" for v in verdicts) >= settings.reliability
    lost = health.lost + sum(v.state == "down" for v in verdicts)
    summary = _summary(verdicts, settings)
    full, up = settings.full_score, settings.up
    status, reason, turn, events = health.status, health.reason, health.turn, []

    if not ok:
        score = health.score - 1
        if score < up:
            if health.score > 0:  # only CONNECTING can get here with a score: it starts over
                reason = f"round failed ({summary}), recovery starts over"
            score = 0
            sleep = settings.failure_sleep if settings.keep_failure_interval else settings.interval
        else:
            sleep = settings.failure_sleep
            if status is not Status.DISCONNECTING:
                status = Status.DISCONNECTING
                events.append(DISCONNECTING)
            reason = f"{full - score} of {settings.down} rounds failed ({summary})"
            if score == up:
                status, score = Status.OFFLINE, 0
                events.append(DISCONNECTED)
    else:
        # mwan3 announces a recovery before counting the round, whenever targets were lost
        if health.score < full and lost > 0 and status is not Status.CONNECTING:
            status = Status.CONNECTING
            events.append(CONNECTING)
        score = health.score + 1
        lost = 0
        if score > up:
            if health.status is Status.DISCONNECTING:
                reason = f"round succeeded ({summary}) after {full - health.score} failed"
            status, score = Status.ONLINE, full
            sleep = settings.interval
        else:
            if status is not Status.CONNECTING:
                status = Status.CONNECTING
                events.append(CONNECTING)
            reason = f"{score} of {up} rounds succeeded ({summary})"
            sleep = settings.recovery_sleep
            if score == up:
                status, score, turn = Status.ONLINE, full, 0
                events.append(CONNECTED)

    new = Health(status, score, turn + 1, reason, lost, health.link_up, ok, verdicts)
    return Step(new, tuple(events), sleep, is_usable(new) != is_usable(health))


def on_link(health: Health, up: bool, settings: TrackSettings) -> Step:
    """The interface's link (netifd ifup/ifdown) went up or down.

    Down: OFFLINE at once; ``disconnected`` follows ``ifdown`` when it was usable. Up: back to
    ``initial_state`` with a round at once; ``connected`` follows ``ifup`` when that is online.
    A report of the state the link already has changes nothing. While DISABLED the link state
    is only recorded.
    """
    if up == health.link_up:
        return _unchanged(health, settings)
    if health.status is Status.DISABLED:
        return Step(replace(health, link_up=up), (), settings.interval, False)
    if not up:
        new = Health(Status.OFFLINE, 0, health.turn, "link down", 0, False)
        events = (IFDOWN, DISCONNECTED) if is_usable(health) else (IFDOWN,)
        return Step(new, events, settings.interval, is_usable(health))
    new = _from_initial_state(settings, "link up", health.turn)
    events = (IFUP, CONNECTED) if is_usable(new) else (IFUP,)
    return Step(new, events, 0.0, is_usable(new))


def on_admin(health: Health, enabled: bool, settings: TrackSettings) -> Step:
    """Manual override. Disable: DISABLED at once (``disconnected`` if it was usable).

    Enable: like a link coming up (``initial_state``, a round at once), or OFFLINE while the
    link is down. Asking for the current setting changes nothing.
    """
    already_enabled = health.status is not Status.DISABLED
    if enabled == already_enabled:
        return _unchanged(health, settings)
    if not enabled:
        new = Health(Status.DISABLED, 0, health.turn, "disabled by administrator", 0, health.link_up)
        return Step(new, (DISCONNECTED,) if is_usable(health) else (), settings.interval, is_usable(health))
    if not health.link_up:
        new = Health(Status.OFFLINE, 0, health.turn, "enabled by administrator; link down", 0, False)
        return Step(new, (), settings.interval, False)
    new = _from_initial_state(settings, "enabled by administrator", health.turn)
    return Step(new, (CONNECTED,) if is_usable(new) else (), 0.0, is_usable(new))


def rebase(health: Health, settings: TrackSettings) -> Health:
    """Carry a state over to new settings (reload) without changing whether it is usable.

    The score is moved into the range the new ``up``/``down`` allow for the status. A
    DISCONNECTING interface whose new ``down`` is 1 has no such range and is ONLINE again.
    """
    full, up = settings.full_score, settings.up
    if health.status is Status.DISCONNECTING:
        if up + 1 > full - 1:
            return replace(health, status=Status.ONLINE, score=full)
        return replace(health, score=min(max(health.score, up + 1), full - 1))
    if health.status is Status.CONNECTING:
        return replace(health, score=min(health.score, up - 1))
    return replace(health, score=full if health.status is Status.ONLINE else 0)
