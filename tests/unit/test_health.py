"""The health state machine against mwan3track's documented behaviour.

Expected values come from mwan3's rules (score = down + up, one step per round, the interval
rules, the §3.5 detection formula), or from ``Mwan3Track`` below: a line-by-line transcription
of mwan3track's main loop, kept apart from the code under test.
"""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from netpath.agent import health as h
from netpath.agent.health import Health, Status, TargetResult, TrackSettings

RANGE = range(1, 11)  # LuCI's range for up and down
PAIRS = list(itertools.product(RANGE, RANGE))


# ---------------------------------------------------------------- helpers


def answered(target="192.0.2.1", latency=20.0, sent=1, received=None):
    received = sent if received is None else received
    return TargetResult(target, sent, received, latency if received else None)


def silent(target="192.0.2.1", sent=1):
    return TargetResult(target, sent, 0, None, "timeout")


GOOD = [answered()]
BAD = [silent()]


def track(**kw) -> TrackSettings:
    return TrackSettings(**kw)


def drive(s: TrackSettings, rounds, health: Health | None = None):
    """Run rounds (each a list of TargetResult) from ``health`` (default: start state)."""
    health = h.initial(s) if health is None else health
    steps = []
    for results in rounds:
        step = h.on_round(health, results, s)
        steps.append(step)
        health = step.health
    return health, steps


def reachable(s: TrackSettings) -> list[Health]:
    """Every state probe rounds can reach from either initial state, one representative per
    (status, score, whether targets were lost)."""
    starts = [h.initial(TrackSettings(**{**_fields(s), "initial_state": st_}))
              for st_ in ("online", "offline")]
    seen, todo, found = set(), deque(starts), []
    while todo:
        health = todo.popleft()
        key = (health.status, health.score, health.lost > 0)
        if key in seen:
            continue
        seen.add(key)
        found.append(health)
        for results in (GOOD, BAD):
            todo.append(h.on_round(health, results, s).health)
    return found


def _fields(s: TrackSettings) -> dict:
    return {f: getattr(s, f) for f in s.__dataclass_fields__}


class Mwan3Track:
    """mwan3track's main loop (openwrt/packages net/mwan3, master), transcribed line by line:
    the in-memory STATUS, the STATUS file, score, lost, turn and the hotplug events.

    One line differs from upstream, as documented in netpath.agent.health: where upstream
    writes "online" to the file on recovery it leaves STATUS alone; here STATUS follows.
    """

    def __init__(self, s: TrackSettings):
        self.s = s
        self.score = s.down + s.up
        self.lost = 0
        self.turn = 0
        self.STATUS = ""
        self.file = ""
        self.events: list[str] = []
        # firstconnect
        if self.STATUS != "online":
            self.STATUS = s.initial_state
        if self.STATUS == "offline":
            self.disconnected(first=True)
        else:
            self.score = s.down + s.up
            self.connected()

    def disconnected(self, first=False):
        before = self.file
        self.STATUS = self.file = "offline"
        self.score = 0
        if first:
            return
        if before in ("online", "disconnecting"):
            self.events.append("disconnected")

    def connected(self):
        self.STATUS = self.file = "online"
        self.score = self.s.down + self.s.up
        self.lost = self.turn = 0
        self.events.append("connected")

    def disconnecting(self):
        if self.STATUS != "disconnecting":
            self.STATUS = self.file = "disconnecting"
            self.events.append("disconnecting")

    def connecting(self):
        if self.STATUS != "connecting":
            self.STATUS = self.file = "connecting"
            self.events.append("connecting")

    def round(self, alive: list[bool]) -> float:
        s, up, down = self.s, self.s.up, self.s.down
        self.events = []
        host_up_count = 0
        for ok in alive:  # targets in list order until reliability is reached
            if host_up_count < s.reliability:
                if ok:
                    host_up_count += 1
                else:
                    self.lost += 1
        sleep_time = s.interval
        if host_up_count < s.reliability:
            self.score -= 1
            if self.score < up:
                self.score = 0
                if s.keep_failure_interval:
                    sleep_time = s.failure_sleep
            else:
                self.disconnecting()
                sleep_time = s.failure_sleep
            if self.score == up:
                self.disconnected()
        else:
            if self.score < down + up and self.lost > 0:
                self.connecting()
            self.score += 1
            self.lost = 0
            if self.score > up:
                self.file = "online"
                self.STATUS = "online"  # the deliberate deviation (upstream: file only)
                self.score = down + up
            elif self.score <= up:
                self.connecting()
                sleep_time = s.recovery_sleep
            if self.score == up:
                self.connected()
        self.turn += 1
        return sleep_time


def probed(alive: list[bool], s: TrackSettings, health: Health) -> list[TargetResult]:
    """What a tracker probes: targets in order, stopping once the round is won."""
    results = []
    for i, ok in enumerate(alive):
        if results and h.round_ok(results, s, health):
            break
        target = f"198.51.100.{i + 1}"
        results.append(answered(target) if ok else silent(target))
    return results


def assert_invariants(health: Health, s: TrackSettings):
    full = s.down + s.up
    assert 0 <= health.score <= full
    expected_scores = {
        Status.ONLINE: range(full, full + 1),
        Status.DISCONNECTING: range(s.up + 1, full),
        Status.OFFLINE: range(0, 1),
        Status.CONNECTING: range(0, s.up),
        Status.DISABLED: range(0, 1),
    }
    assert health.score in expected_scores[health.status], health
    if not health.link_up:
        assert health.status in (Status.OFFLINE, Status.DISABLED)


# ---------------------------------------------------------------- score arithmetic


@pytest.mark.parametrize("up,down", PAIRS)
def test_score_starts_at_down_plus_up_online_and_at_zero_offline(up, down):
    online = h.initial(track(up=up, down=down, initial_state="online"))
    offline = h.initial(track(up=up, down=down, initial_state="offline"))
    assert (online.status, online.score) == (Status.ONLINE, down + up)
    assert (offline.status, offline.score) == (Status.OFFLINE, 0)


@pytest.mark.parametrize("up,down", PAIRS)
def test_each_failed_round_costs_one_point_and_down_of_them_take_online_offline(up, down):
    s = track(up=up, down=down)
    health = h.initial(s)
    for failed in range(1, down + 1):
        step = h.on_round(health, BAD, s)
        health = step.health
        if failed < down:
            assert (health.status, health.score) == (Status.DISCONNECTING, down + up - failed)
            assert step.events == (("disconnecting",) if failed == 1 else ())
            assert h.is_usable(health) and not step.changed
        else:
            assert (health.status, health.score) == (Status.OFFLINE, 0)
            assert step.events == (("disconnecting", "disconnected") if down == 1 else ("disconnected",))
            assert step.changed and not h.is_usable(health)


@pytest.mark.parametrize("up,down", PAIRS)
def test_each_good_round_earns_one_point_and_up_of_them_bring_offline_online(up, down):
    s = track(up=up, down=down, initial_state="offline")
    health = h.initial(s)
    for good in range(1, up + 1):
        step = h.on_round(health, GOOD, s)
        health = step.health
        if good < up:
            assert (health.status, health.score) == (Status.CONNECTING, good)
            assert step.events == (("connecting",) if good == 1 else ())
            assert not h.is_usable(health) and not step.changed
        else:
            assert (health.status, health.score) == (Status.ONLINE, down + up)
            assert step.events == (("connecting", "connected") if up == 1 else ("connected",))
            assert step.changed and h.is_usable(health)


@pytest.mark.parametrize("up,down", PAIRS)
def test_failed_rounds_to_go_offline_and_good_rounds_to_come_back_from_every_reachable_state(up, down):
    s = track(up=up, down=down)
    for start in reachable(s):
        health = start
        if h.is_usable(start):
            # ONLINE needs `down` failures; DISCONNECTING has already used (full - score) of them
            expected = down - (down + up - start.score)
            rounds = 0
            while h.is_usable(health):
                health = h.on_round(health, BAD, s).health
                rounds += 1
            assert rounds == expected, start
            assert h.is_usable(h.on_round(start, GOOD, s).health)
        else:
            # OFFLINE needs `up` good rounds; CONNECTING has already banked `score` of them
            expected = up - start.score
            rounds = 0
            while not h.is_usable(health):
                health = h.on_round(health, GOOD, s).health
                rounds += 1
            assert rounds == expected, start
            assert (health.status, health.score) == (Status.ONLINE, down + up)
            assert not h.is_usable(h.on_round(start, BAD, s).health)


@pytest.mark.parametrize("up,down", PAIRS)
def test_one_good_round_rearms_all_down_rounds(up, down):
    s = track(up=up, down=down)
    for failed in range(1, down):
        health, _ = drive(s, [BAD] * failed + [GOOD])
        assert (health.status, health.score) == (Status.ONLINE, down + up)
        health, _ = drive(s, [BAD] * (down - 1), health)
        assert health.status is Status.DISCONNECTING


@pytest.mark.parametrize("up,down", PAIRS)
def test_one_failed_round_restarts_the_up_count(up, down):
    s = track(up=up, down=down, initial_state="offline")
    for good in range(1, up):
        health, steps = drive(s, [GOOD] * good + [BAD])
        # mwan3 keeps reporting "connecting" with score 0 and emits nothing
        assert (health.status, health.score, steps[-1].events) == (Status.CONNECTING, 0, ())
        health, steps = drive(s, [GOOD] * (up - 1), health)
        assert not h.is_usable(health)
        assert all("connecting" not in st_.events for st_ in steps)
        assert h.on_round(health, GOOD, s).events == ("connected",)


def test_recovering_from_disconnecting_emits_connecting_but_no_connected():
    s = track(up=3, down=3)
    health, steps = drive(s, [BAD, GOOD])
    assert [st_.events for st_ in steps] == [("disconnecting",), ("connecting",)]
    assert health.status is Status.ONLINE and not steps[1].changed
    # the next outage announces itself again
    assert h.on_round(health, BAD, s).events == ("disconnecting",)


def test_recovering_without_lost_targets_emits_nothing():
    # reliability 2 with two answering targets whose second is in the quality band: the round
    # fails with nothing lost (mwan3: "skipped"), so the recovery has no "Lost N ping(s)"
    s = track(up=3, down=3, reliability=2, check_quality=True, mwan3_quality_band=True)
    band = [answered("192.0.2.1", 10.0), answered("192.0.2.2", 700.0)]
    fine = [answered("192.0.2.1", 10.0), answered("192.0.2.2", 10.0)]
    health, steps = drive(s, [band, fine])
    assert steps[0].events == ("disconnecting",) and steps[0].health.lost == 0
    assert steps[1].events == () and health.status is Status.ONLINE


def test_turn_counts_rounds_and_restarts_when_connected():
    s = track(up=2, down=2, initial_state="offline")
    health, steps = drive(s, [BAD, BAD, GOOD, GOOD, GOOD])
    assert [st_.health.turn for st_ in steps] == [1, 2, 3, 1, 2]


def test_changed_is_true_exactly_when_usability_flips():
    s = track(up=2, down=2)
    health, steps = drive(s, [BAD, BAD, GOOD, GOOD, BAD, GOOD])
    before = h.initial(s)
    for step in steps:
        assert step.changed == (h.is_usable(before) != h.is_usable(step.health))
        before = step.health
    assert [st_.changed for st_ in steps] == [False, True, False, True, False, False]


@pytest.mark.parametrize("status,usable", [
    (Status.ONLINE, True), (Status.DISCONNECTING, True),  # 15-mwan3 ignores "disconnecting"
    (Status.OFFLINE, False), (Status.CONNECTING, False),  # and waits for "connected"
    (Status.DISABLED, False),
])
def test_only_connected_and_disconnected_move_traffic_so_disconnecting_still_carries_it(status, usable):
    assert h.is_usable(Health(status, 0)) is usable


# ---------------------------------------------------------------- the transcribed loop


@hsettings(max_examples=300, deadline=None)
@given(
    up=st.integers(1, 10), down=st.integers(1, 10), reliability=st.integers(1, 3),
    initial_state=st.sampled_from(["online", "offline"]), keep=st.booleans(),
    rounds=st.lists(st.lists(st.booleans(), min_size=3, max_size=3), max_size=40),
)
def test_matches_mwan3track_main_loop_round_by_round(up, down, reliability, initial_state, keep, rounds):
    s = track(up=up, down=down, reliability=reliability, initial_state=initial_state,
              keep_failure_interval=keep, interval=10, failure_interval=3, recovery_interval=7)
    oracle = Mwan3Track(s)
    step = h.start(s)
    assert step.events == tuple(oracle.events)
    health = step.health
    for alive in rounds:
        sleep = oracle.round(alive)
        step = h.on_round(health, probed(alive, s, health), s)
        health = step.health
        assert (health.status.value, health.score, health.lost, health.turn) == (
            oracle.file, oracle.score, oracle.lost, oracle.turn)
        assert step.events == tuple(oracle.events)
        assert step.sleep == sleep
        assert_invariants(health, s)


# ---------------------------------------------------------------- sleeps


def _state(name: str, s: TrackSettings) -> Health:
    """Reach a named state through rounds (s has up = down = 3)."""
    online = h.initial(s)
    offline = h.initial(TrackSettings(**{**_fields(s), "initial_state": "offline"}))
    return {
        "online": online,
        "disconnecting": drive(s, [BAD], online)[0],
        "offline": offline,
        "connecting": drive(s, [GOOD], offline)[0],
        "connecting-restarted": drive(s, [GOOD, BAD], offline)[0],
    }[name]


# (state, round, which setting mwan3 sleeps for: without / with keep_failure_interval)
SLEEPS = [
    ("online", GOOD, "interval", "interval"),
    ("online", BAD, "failure_interval", "failure_interval"),
    ("disconnecting", GOOD, "interval", "interval"),
    ("disconnecting", BAD, "failure_interval", "failure_interval"),
    ("offline", BAD, "interval", "failure_interval"),
    ("offline", GOOD, "recovery_interval", "recovery_interval"),
    ("connecting", GOOD, "recovery_interval", "recovery_interval"),
    ("connecting", BAD, "interval", "failure_interval"),
    ("connecting-restarted", BAD, "interval", "failure_interval"),
]


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("state,results,plain,kept", SLEEPS)
def test_sleep_follows_mwan3_interval_rules(state, results, plain, kept, keep):
    s = track(up=3, down=3, interval=10, failure_interval=3, recovery_interval=7,
              keep_failure_interval=keep)
    step = h.on_round(_state(state, s), results, s)
    assert step.sleep == getattr(s, kept if keep else plain)


@pytest.mark.parametrize("down", [1, 2, 5])
def test_the_round_that_goes_offline_still_sleeps_failure_interval(down):
    s = track(down=down, interval=10, failure_interval=3)
    _, steps = drive(s, [BAD] * down)
    assert steps[-1].events[-1] == "disconnected" and steps[-1].sleep == 3


@pytest.mark.parametrize("up", [1, 2, 5])
def test_the_round_that_comes_back_sleeps_recovery_interval(up):
    s = track(up=up, initial_state="offline", interval=10, recovery_interval=7)
    _, steps = drive(s, [GOOD] * up)
    assert steps[-1].events[-1] == "connected" and steps[-1].sleep == 7


def test_failure_and_recovery_interval_default_to_interval():
    s = TrackSettings.from_dict({"interval": "30"})
    assert s.failure_interval is None and s.recovery_interval is None
    assert h.on_round(h.initial(s), BAD, s).sleep == 30
    offline = h.initial(track(interval=30, initial_state="offline"))
    assert h.on_round(offline, GOOD, s).sleep == 30


# ---------------------------------------------------------------- reliability


@hsettings(max_examples=200, deadline=None)
@given(alive=st.lists(st.booleans(), min_size=1, max_size=6), data=st.data())
def test_round_succeeds_when_at_least_reliability_targets_answer(alive, data):
    reliability = data.draw(st.integers(1, len(alive) + 1))
    s = track(reliability=reliability)
    results = [answered(f"192.0.2.{i}") if ok else silent(f"192.0.2.{i}") for i, ok in enumerate(alive)]
    for health in (h.initial(s), h.initial(track(reliability=reliability, initial_state="offline"))):
        assert h.round_ok(results, s, health) == (sum(alive) >= reliability)
        assert h.round_ok(list(reversed(results)), s, health) == (sum(alive) >= reliability)


def test_reliability_two_of_four_fails_with_one_answer_and_passes_with_two():
    s = track(reliability=2, down=2)
    one = [silent("a"), answered("b"), silent("c"), silent("d")]
    two = [silent("a"), answered("b"), silent("c"), answered("d")]
    health, steps = drive(s, [one, two])
    assert [st_.health.last_round_ok for st_ in steps] == [False, True]
    assert steps[0].health.reason == "1 of 2 rounds failed (1/4 targets answered)"
    assert health.status is Status.ONLINE


def test_a_round_stops_probing_once_reliability_is_reached():
    s = track(reliability=2)
    results = probed([True, False, True, True, True], s, h.initial(s))
    assert [r.target for r in results] == ["198.51.100.1", "198.51.100.2", "198.51.100.3"]


def test_partial_replies_count_as_an_answer_without_check_quality():
    s = track()
    verdict = h.target_verdict(answered(sent=5, received=1), s, h.initial(s))
    assert (verdict.state, verdict.loss_pct) == ("up", 80)


# ---------------------------------------------------------------- check_quality


Q = dict(check_quality=True, failure_latency=1000, recovery_latency=500, failure_loss=40, recovery_loss=10)


@pytest.mark.parametrize("latency,received,state_online,state_offline", [
    (20.0, 10, "up", "up"),  # under both recovery levels
    (500.0, 10, "up", "up"),  # recovery levels are inclusive (<=)
    (500.9, 10, "up", "up"),  # mwan3 compares the integer part of the average RTT
    (501.0, 10, "up", "skipped"),  # band: failure levels rule while usable
    (999.9, 10, "up", "skipped"),
    (1000.0, 10, "down", "down"),  # failure levels are inclusive (>=)
    (20.0, 9, "up", "up"),  # 10 % loss
    (20.0, 8, "up", "skipped"),  # 20 % loss: band
    (20.0, 6, "down", "down"),  # 40 % loss
    (20.0, 0, "down", "down"),  # no reply: 100 %, 999999 ms
])
def test_check_quality_judges_each_target_by_loss_and_integer_latency(
        latency, received, state_online, state_offline):
    s = track(**Q)
    online, offline = h.initial(s), h.initial(track(**Q, initial_state="offline"))
    result = answered(latency=latency, sent=10, received=received)
    assert h.target_verdict(result, s, online).state == state_online
    assert h.target_verdict(result, s, offline).state == state_offline
    verdict = h.target_verdict(result, s, online)
    assert verdict.loss_pct == (10 - received) * 10
    assert verdict.latency_ms == (int(latency) if received else h.NO_REPLY_LATENCY_MS)


def test_check_quality_loss_is_integer_percent_like_busybox_ping():
    s = track(**{**Q, "failure_loss": 34})
    verdict = h.target_verdict(answered(sent=3, received=2), s, h.initial(s))
    assert verdict.loss_pct == 33 and verdict.state == "up"


def test_check_quality_probe_error_counts_as_full_loss():
    s = track(**Q)
    result = TargetResult("192.0.2.1", 5, 5, 10.0, error="network unreachable")
    verdict = h.target_verdict(result, s, h.initial(s))
    assert (verdict.state, verdict.loss_pct, verdict.latency_ms) == ("down", 100, 999999)


@hsettings(max_examples=100, deadline=None)
@given(latency=st.floats(501, 999.99), rounds=st.integers(1, 30), up=st.integers(1, 10),
       down=st.integers(1, 10))
def test_check_quality_latency_between_recovery_and_failure_levels_keeps_the_current_state(
        latency, rounds, up, down):
    for initial_state in ("online", "offline"):
        s = track(**Q, up=up, down=down, initial_state=initial_state)
        health, steps = drive(s, [[answered(latency=latency)]] * rounds)
        assert health.status.value == initial_state
        assert all(not st_.changed and st_.events == () for st_ in steps)


def test_check_quality_band_holds_a_disconnecting_interface_up():
    s = track(**Q, down=3)
    health, steps = drive(s, [BAD, [answered(latency=800)]])
    assert health.status is Status.ONLINE and steps[-1].events == ("connecting",)


def test_check_quality_failure_level_takes_online_offline_after_down_rounds():
    s = track(**Q, down=3)
    health, _ = drive(s, [[answered(latency=1000)]] * 3)
    assert health.status is Status.OFFLINE


def test_check_quality_recovery_level_brings_offline_back_after_up_rounds():
    s = track(**Q, up=3, initial_state="offline")
    health, _ = drive(s, [[answered(latency=500)]] * 3)
    assert health.status is Status.ONLINE


@pytest.mark.parametrize("down", [1, 3, 5])
def test_mwan3_quality_band_never_counts_a_band_target_as_up_so_online_goes_offline(down):
    s = track(**Q, down=down, mwan3_quality_band=True)
    health, steps = drive(s, [[answered(latency=700)]] * down)
    assert health.status is Status.OFFLINE
    assert all(st_.health.targets[0].state == "skipped" for st_ in steps)
    assert health.lost == 0  # skipped targets are not "lost"


# ---------------------------------------------------------------- link


@pytest.mark.parametrize("initial_state", ["online", "offline"])
@pytest.mark.parametrize("up,down", [(1, 1), (3, 2), (5, 5), (2, 7)])
def test_link_loss_takes_any_state_offline_at_once(up, down, initial_state):
    s = track(up=up, down=down, initial_state=initial_state)
    for start in reachable(s):
        step = h.on_link(start, False, s)
        assert (step.health.status, step.health.score, step.health.link_up) == (Status.OFFLINE, 0, False)
        was_usable = h.is_usable(start)
        assert step.events == (("ifdown", "disconnected") if was_usable else ("ifdown",))
        assert step.changed == was_usable
        assert not h.should_probe(step.health)


def test_rounds_are_ignored_while_the_link_is_down():
    s = track(up=1)
    down = h.on_link(h.initial(s), False, s).health
    for results in (GOOD, BAD):
        step = h.on_round(down, results, s)
        assert step.health == down and step.events == () and not step.changed


@pytest.mark.parametrize("initial_state", ["online", "offline"])
def test_link_back_follows_initial_state_and_probes_at_once(initial_state):
    s = track(up=3, down=3, initial_state=initial_state)
    offline_by_tracking, _ = drive(s, [BAD] * 3, h.initial(track(up=3, down=3)))
    for before in (h.initial(s), offline_by_tracking):
        gone = h.on_link(before, False, s).health
        step = h.on_link(gone, True, s)
        assert step.sleep == 0
        assert step.health.link_up
        if initial_state == "online":
            assert (step.health.status, step.health.score) == (Status.ONLINE, 6)
            assert step.events == ("ifup", "connected") and step.changed
        else:
            assert (step.health.status, step.health.score) == (Status.OFFLINE, 0)
            assert step.events == ("ifup",) and not step.changed


def test_link_back_online_still_detects_a_dead_upstream():
    # openwrt/packages#20428: after ifdown/ifup the score must be re-armed, or failures never count
    s = track(up=2, down=2)
    health, _ = drive(s, [BAD, BAD])
    health = h.on_link(h.on_link(health, False, s).health, True, s).health
    health, steps = drive(s, [BAD, BAD], health)
    assert health.status is Status.OFFLINE and steps[-1].events == ("disconnected",)


def test_repeated_link_reports_change_nothing():
    s = track()
    health = h.initial(s)
    assert h.on_link(health, True, s) == h.Step(health, (), s.interval, False)
    gone = h.on_link(health, False, s).health
    assert h.on_link(gone, False, s).health == gone


def test_start_with_link_down_waits_offline():
    s = track()
    step = h.start(s, link_up=False)
    assert (step.health.status, step.health.link_up, step.events) == (Status.OFFLINE, False, ())
    assert h.on_link(step.health, True, s).events == ("ifup", "connected")


def test_start_online_emits_connected_and_probes_at_once():
    step = h.start(track())
    assert (step.events, step.sleep, step.changed) == (("connected",), 0.0, True)
    step = h.start(track(initial_state="offline"))
    assert (step.events, step.sleep, step.changed) == ((), 0.0, False)


# ---------------------------------------------------------------- admin override


@pytest.mark.parametrize("up,down", [(1, 1), (3, 2), (5, 5)])
def test_admin_disable_stops_traffic_from_any_state(up, down):
    s = track(up=up, down=down)
    for start in reachable(s):
        step = h.on_admin(start, False, s)
        assert (step.health.status, step.health.score) == (Status.DISABLED, 0)
        assert step.events == (("disconnected",) if h.is_usable(start) else ())
        assert step.changed == h.is_usable(start)
        assert not h.is_usable(step.health) and not h.should_probe(step.health)


def test_disabled_ignores_rounds_and_link_changes_until_enabled():
    s = track(up=1)
    disabled = h.on_admin(h.initial(s), False, s).health
    assert h.on_round(disabled, GOOD, s).health == disabled
    step = h.on_link(disabled, False, s)
    assert (step.health.status, step.events, step.changed) == (Status.DISABLED, (), False)
    step = h.on_admin(step.health, True, s)
    assert (step.health.status, step.events, step.changed) == (Status.OFFLINE, (), False)
    step = h.on_link(step.health, True, s)
    assert step.health.status is Status.ONLINE and step.events == ("ifup", "connected")


@pytest.mark.parametrize("initial_state", ["online", "offline"])
def test_admin_enable_follows_initial_state(initial_state):
    s = track(initial_state=initial_state)
    disabled = h.on_admin(h.initial(s), False, s).health
    step = h.on_admin(disabled, True, s)
    assert step.health.status.value == initial_state
    assert step.events == (("connected",) if initial_state == "online" else ())
    assert step.sleep == 0


def test_repeated_admin_requests_change_nothing():
    s = track()
    health = h.initial(s)
    assert h.on_admin(health, True, s).health == health
    disabled = h.on_admin(health, False, s).health
    assert h.on_admin(disabled, False, s).health == disabled


# ---------------------------------------------------------------- untracked interfaces


@pytest.mark.parametrize("initial_state,link_up,enabled,expected", [
    ("online", True, True, Status.ONLINE),
    ("offline", True, True, Status.OFFLINE),  # nothing will ever bring it up, as in mwan3
    ("online", False, True, Status.OFFLINE),
    ("online", True, False, Status.DISABLED),
])
def test_untracked_interface_follows_initial_state_and_link_only(initial_state, link_up, enabled, expected):
    assert h.untracked(track(initial_state=initial_state), link_up, enabled).status is expected


def test_tracking_needs_targets_and_a_method():
    assert h.needs_tracking("ping", ["192.0.2.1"])
    assert not h.needs_tracking("ping", [])
    assert not h.needs_tracking("none", ["192.0.2.1"])


# ---------------------------------------------------------------- §3.5 worked failover timing


def simulate_detection(s: TrackSettings, targets: int, t_probe: float, phi: float):
    """Seconds from the start of an outage to the `disconnected` event, by running the tracker
    loop: the next round starts after phi; a probe of a dead target takes t_probe."""
    health, clock = h.initial(s), phi
    while True:
        results = probed([False] * targets, s, health)
        clock += len(results) * t_probe
        step = h.on_round(health, results, s)
        health = step.health
        if "disconnected" in step.events:
            return clock
        clock += step.sleep


def simulate_recovery(s: TrackSettings, targets: int, rtt: float, phi: float):
    health, clock = h.initial(TrackSettings(**{**_fields(s), "initial_state": "offline"})), phi
    while True:
        results = probed([True] * targets, s, health)
        clock += len(results) * rtt
        step = h.on_round(health, results, s)
        health = step.health
        if "connected" in step.events:
            return clock
        clock += step.sleep


# name, settings, targets, documented best / worst (mwan3.md §3.5 table)
DETECTION = [
    ("code defaults, 1 target", dict(), 1, 60, 70),
    ("upstream default config wan", dict(reliability=2), 4, 120, 130),
    ("shipped config before 2.10", dict(reliability=2, interval=5, timeout=2, down=3, up=8), 4, 34, 39),
    ("common tuned config", dict(interval=5, timeout=2, down=3), 2, 22, 27),
    ("aggressive", dict(timeout=1, interval=3, failure_interval=3, down=1), 2, 2, 5),
]


@pytest.mark.parametrize("name,kw,targets,best,worst", DETECTION, ids=[d[0] for d in DETECTION])
def test_worked_failover_timing_matches_the_documented_formula(name, kw, targets, best, worst):
    s = track(**kw)
    t = (s.count - 1) + s.timeout  # one failed probe
    P = targets * t  # a failing round probes every target
    for phi in (0, s.interval / 2, s.interval):
        expected = phi + s.down * P + (s.down - 1) * s.failure_sleep
        assert simulate_detection(s, targets, t, phi) == pytest.approx(expected)
    assert simulate_detection(s, targets, t, 0) == pytest.approx(best)
    assert simulate_detection(s, targets, t, s.interval) == pytest.approx(worst)


@pytest.mark.parametrize("keep", [False, True])
def test_worked_recovery_timing_matches_the_documented_formula(keep):
    s = track(interval=10, failure_interval=4, keep_failure_interval=keep)
    # phi' runs up to the sleep between two failed rounds while offline
    offline = h.initial(track(initial_state="offline"))
    longest_wait = h.on_round(offline, BAD, s).sleep
    assert longest_wait == (s.failure_sleep if keep else s.interval)
    for phi in (0, longest_wait):
        expected = phi + s.up * 0 + (s.up - 1) * s.recovery_sleep
        assert simulate_recovery(s, 1, 0, phi) == pytest.approx(expected)
    if not keep:  # the table row: recovery with code defaults, best 40 s, worst 50 s
        assert simulate_recovery(s, 1, 0, 0) == pytest.approx(40)
        assert simulate_recovery(s, 1, 0, longest_wait) == pytest.approx(50)


def test_recovery_probes_only_reliability_targets_per_round():
    s = track(reliability=2, up=3, recovery_interval=5)
    rtt = 0.05
    expected = 3 * (2 * rtt) + 2 * 5  # up * P_ok + (up - 1) * recovery_interval, P_ok = reliability * RTT
    assert simulate_recovery(s, 4, rtt, 0) == pytest.approx(expected)


# ---------------------------------------------------------------- whole-machine properties


OPS = st.one_of(
    st.tuples(st.just("round"), st.lists(st.booleans(), min_size=1, max_size=3)),
    st.tuples(st.just("link"), st.booleans()),
    st.tuples(st.just("admin"), st.booleans()),
)


@hsettings(max_examples=300, deadline=None)
@given(up=st.integers(1, 6), down=st.integers(1, 6), initial_state=st.sampled_from(["online", "offline"]),
       link=st.booleans(), ops=st.lists(OPS, max_size=40))
def test_every_sequence_of_rounds_link_and_admin_changes_keeps_mwan3_score_ranges(
        up, down, initial_state, link, ops):
    s = track(up=up, down=down, initial_state=initial_state, interval=10, failure_interval=3,
              recovery_interval=7)
    step = h.start(s, link)
    health = step.health
    for op, arg in ops:
        before = health
        if op == "round":
            step = h.on_round(health, probed(arg, s, health), s)
        elif op == "link":
            step = h.on_link(health, arg, s)
        else:
            step = h.on_admin(health, arg, s)
        health = step.health
        assert_invariants(health, s)
        assert step.changed == (h.is_usable(before) != h.is_usable(health))
        assert step.sleep in (0.0, s.interval, 3, 7)
        # hooks only hear about traffic changes through connected / disconnected
        if step.changed:
            assert ("connected" if h.is_usable(health) else "disconnected") in step.events
        else:
            assert "connected" not in step.events and "disconnected" not in step.events


@hsettings(max_examples=200, deadline=None)
@given(up=st.integers(1, 8), down=st.integers(1, 8), up2=st.integers(1, 8), down2=st.integers(1, 8),
       rounds=st.lists(st.booleans(), max_size=20), initial_state=st.sampled_from(["online", "offline"]))
def test_rebase_to_new_up_down_keeps_usability_and_score_ranges(up, down, up2, down2, rounds, initial_state):
    s = track(up=up, down=down, initial_state=initial_state)
    health, _ = drive(s, [GOOD if ok else BAD for ok in rounds])
    s2 = track(up=up2, down=down2)
    moved = h.rebase(health, s2)
    assert h.is_usable(moved) == h.is_usable(health)
    assert_invariants(moved, s2)


@pytest.mark.parametrize("rounds,new,status,score", [
    # 3 of 5 good rounds banked; with up 2 the next good round must connect
    (["offline", True, True, True], dict(up=2, down=2), Status.CONNECTING, 1),
    # 1 of 4 failures used; with down 1 there is no disconnecting state left
    (["online", False], dict(up=2, down=1), Status.ONLINE, 3),
    # 3 of 4 failures used; with down 2 one failure is left
    (["online", False, False, False], dict(up=2, down=2), Status.DISCONNECTING, 3),
])
def test_rebase_moves_the_score_into_the_new_range_of_its_status(rounds, new, status, score):
    s = track(up=5, down=4, initial_state=rounds[0])
    health, _ = drive(s, [GOOD if ok else BAD for ok in rounds[1:]])
    moved = h.rebase(health, track(**new))
    assert (moved.status, moved.score) == (status, score)


# ---------------------------------------------------------------- settings


def test_settings_from_bundle_ignore_unknown_keys_and_read_uci_strings():
    s = TrackSettings.from_dict({
        "method": "ping", "targets": ["192.0.2.1"], "size": 56,
        "reliability": "2", "up": "3", "down": 4, "interval": "5", "failure_interval": None,
        "keep_failure_interval": "1", "check_quality": "0", "initial_state": "offline",
        "failure_latency": "800",
    })
    assert (s.reliability, s.up, s.down, s.interval, s.failure_sleep) == (2, 3, 4, 5.0, 5.0)
    assert s.keep_failure_interval is True and s.check_quality is False
    assert s.initial_state == "offline" and s.failure_latency == 800.0


def test_settings_defaults_are_mwan3_code_defaults():
    s = TrackSettings.from_dict({})
    assert (s.reliability, s.count, s.timeout, s.interval, s.up, s.down) == (1, 1, 4.0, 10.0, 5, 5)
    assert (s.failure_sleep, s.recovery_sleep, s.initial_state) == (10.0, 10.0, "online")
    assert (s.failure_latency, s.recovery_latency, s.failure_loss, s.recovery_loss) == (1000, 500, 40, 10)


@pytest.mark.parametrize("d,message", [
    ({"up": 0}, "'up' must be at least 1"),
    ({"down": "x"}, "'down' must be a number"),
    ({"reliability": "1.5"}, "'reliability' must be a whole number"),
    ({"interval": 0}, "'interval' must be more than 0"),
    ({"initial_state": "up"}, "'initial_state' must be 'online' or 'offline'"),
    ({"check_quality": "maybe"}, "'check_quality' must be a boolean"),
])
def test_settings_reject_bad_values_naming_the_option(d, message):
    with pytest.raises(ValueError, match=message):
        TrackSettings.from_dict(d)


def test_the_default_tracking_settings_detect_a_dead_uplink_within_10_s_at_one_probe_per_second():
    """The compiler's defaults (a config that sets no timing), run through the state machine
    on a virtual clock: the worst case is an outage that starts just after a good round,
    then every probe waits its full timeout. docs/config.md documents the bound."""
    from netpath.compiler import load, resolve, validate
    from netpath.agent.track import settings_of

    source = load.loads(b"config interface 'wan'\n\toption ifname 'eth0'\n\tlist track_targets '192.0.2.1'\n"
                            b"config member 'm'\n\toption interface 'wan'\nconfig policy 'p'\n\tlist members 'm'\n"
                            b"config rule 'r'\n\toption policy 'p'\n", "netpath", "uci")
    model = resolve.resolve(validate.validate(source), source.locator)
    settings = settings_of(model.interfaces[0])
    assert settings.count == 1 and settings.interval >= 1.0, "at most one probe per second per target"
    health = h.initial(settings)
    clock = settings.interval  # the good round ended, its sleep runs, the outage began at 0
    lost = [h.TargetResult("192.0.2.1", sent=1, received=0, latency_ms=None, error="timeout")]
    while True:
        clock += settings.timeout  # the round's probe waits its full time
        step = h.on_round(health, lost, settings)
        health = step.health
        if h.DISCONNECTED in step.events:
            break
        clock += step.sleep
    assert not h.is_usable(health)
    assert clock == settings.interval + settings.down * settings.timeout + (settings.down - 1) * settings.failure_sleep
    assert clock <= 10.0, f"{clock} s"
