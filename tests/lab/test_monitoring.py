"""A real Prometheus scrapes a real agent in the lab every second, with the shipped alert
rules (their `for:` cut to seconds, see tests/lab/promlab.py) and the shipped dashboard's
queries: after ISP 1 starts dropping everything, Prometheus holds the state change, the
per-target loss and a firing NetPathUplinkDown alert; after NetPath's table is deleted behind
the agent's back, its repair and NetPathKernelRepairs firing; and every dashboard query returns
data.

Also a helper program, for the README's screenshot of the dashboard drawn from the lab's data:

    sudo .venv/bin/python tests/lab/test_monitoring.py screenshot [docs/screenshots/dashboard.png]
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import pytest  # noqa: E402

from lab import netlab, promlab  # noqa: E402
from lab.agentlab import RunningAgent, agent_config, compile_bundle, lab2, reset_lab  # noqa: E402,F401

pytestmark = pytest.mark.lab

METRICS_ADDRESS = "127.0.0.1:9101"  # the router namespace's loopback
TRACK = {"interval": 0.5, "timeout": 0.5, "failure_interval": 0.5, "recovery_interval": 0.5, "down": 3, "up": 2}


def monitored_bundle(directory: Path) -> Path:
    return compile_bundle(directory, agent_config(mode="balanced", metrics={1: 1, 2: 1}, weights={1: 3, 2: 1},
                                                  track=TRACK))


def keep_fetching(lab, stop: threading.Event, pause: float = 0.2) -> None:
    while not stop.is_set():
        try:
            lab.fetch(timeout=1)
        except Exception:  # a request through an uplink that is going down may fail
            pass
        stop.wait(pause)


@pytest.fixture(scope="module")
def monitored(lab2, tmp_path_factory):
    """Agent + Prometheus; wan2 disabled and enabled again, then ISP 1 blackholed until the
    alert fires, then NetPath's table deleted from outside until the repair alert fires.
    Yields (agent, prometheus, start time, blackhole time)."""
    if promlab.find_prometheus() is None:
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus; scripts/setup.sh does)")
    work = tmp_path_factory.mktemp("monitoring")
    agent = RunningAgent(lab2, monitored_bundle(work), work, extra=("--metrics-listen", METRICS_ADDRESS)).start()
    prom = promlab.Prometheus(lab2, "router", work, [METRICS_ADDRESS])
    stop = threading.Event()
    traffic = threading.Thread(target=keep_fetching, args=(lab2, stop), daemon=True)
    try:
        prom.start()
        started = time.time()
        traffic.start()
        prom.wait_for('up{job="netpath"} == 1', timeout=15)
        time.sleep(3)
        agent.request("disable", interface="wan2")  # planned: must not page
        time.sleep(3)
        agent.request("enable", interface="wan2")
        agent.wait_state("wan2", "online", timeout=10)
        time.sleep(2)
        blackholed = time.time()
        lab2.isp_blackhole(1)
        agent.wait_state("wan1", "offline", timeout=15)
        prom.wait_for('ALERTS{alertname="NetPathUplinkDown",alertstate="firing",interface="wan1"}', timeout=20)
        lab2.run("router", ["nft", "delete", "table", "inet", "netpath"])  # behind the agent's back
        prom.wait_for('ALERTS{alertname="NetPathKernelRepairs",alertstate="firing"}', timeout=20)
        yield agent, prom, started, blackholed
    finally:
        stop.set()
        traffic.join(5)
        prom.stop()
        agent.stop()
        reset_lab(lab2)


def values(result: list) -> list:
    return [float(v) for item in result for _, v in item.get("values", [item.get("value")])]


def test_prometheus_sees_the_state_change_loss_and_alert(monitored):
    agent, prom, started, blackholed = monitored
    now = time.time()
    # The state change: online before the blackhole, offline after it.
    offline = prom.query_range('netpath_interface_state{interface="wan1",state="offline"}', started, now)
    assert len(offline) == 1
    points = offline[0]["values"]
    assert float(points[0][1]) == 0 and float(points[-1][1]) == 1
    assert all(float(v) == 0 for t, v in points if float(t) < blackholed)
    assert prom.query('netpath_interface_up{interface="wan1"} == 0')
    assert prom.query('increase(netpath_interface_state_changes_total{interface="wan1"}[1m]) > 0')
    # Per target: ISP 1 drops the probes, ISP 2 does not.
    lost = prom.query(f'netpath_target_loss_ratio{{interface="wan1",target="{netlab.HTTP4}"}}')
    assert float(lost[0]["value"][1]) > 0
    assert prom.query(f'netpath_target_up{{interface="wan1",target="{netlab.HTTP4}"}} == 0')
    assert not prom.query('netpath_target_latency_seconds{interface="wan1"}'), "a latency while nothing answers"
    assert float(prom.query('netpath_target_loss_ratio{interface="wan2"}')[0]["value"][1]) == 0
    assert prom.query('netpath_target_latency_seconds{interface="wan2"} > 0')
    # The alerts: wan1 fires; the planned disable of wan2 never did; the policy kept an uplink.
    firing = {(a["labels"]["alertname"], a["labels"].get("interface")) for a in prom.alerts()
              if a["state"] == "firing"}
    assert ("NetPathUplinkDown", "wan1") in firing
    assert ("NetPathKernelRepairs", None) in firing
    assert prom.query('netpath_kernel_repairs_total{object="table"} >= 1')
    assert ("NetPathUplinkDown", "wan2") not in firing
    assert not prom.query_range('ALERTS{interface="wan2"}', started, now)
    assert not any(name == "NetPathPolicyOnLastResort" for name, _ in firing)
    assert prom.query('netpath_policy_share_ratio{interface="wan2",policy="p",family="ipv4"} == 1')
    # The planned disable shows as a state, not as an outage.
    disabled = prom.query_range('netpath_interface_state{interface="wan2",state="disabled"}', started, now)
    assert 1.0 in values(disabled)
    assert agent.request("status")["ok"]


def test_every_dashboard_query_returns_data(monitored):
    agent, prom, started, _ = monitored
    results = promlab.run_queries(promlab.load_dashboard(), prom, started, time.time())
    empty = [key for key, series in results.items()
             if not any(not math.isnan(v) for _, points in series for _, v in points)]
    assert not empty, f"dashboard queries without data: {empty}"
    timeline = results[("Uplink states", "A")]
    codes = {name: {v for _, v in points} for name, points in timeline}
    assert codes["wan1"] >= {4.0, 1.0} and 0.0 in codes["wan2"]  # online, offline; disabled
    page = promlab.render_dashboard(promlab.load_dashboard(), results, started, time.time())
    assert page.count('class="panel"') == len(promlab.load_dashboard()["panels"])


def test_promtool_accepts_the_agents_real_exposition(monitored):
    agent, prom, _, _ = monitored
    promtool = promlab.find_prometheus().replace("prometheus", "promtool")
    scrape = agent.lab.run("router", [sys.executable, "-c", "import urllib.request, sys; sys.stdout.write("
                                      f"urllib.request.urlopen('http://{METRICS_ADDRESS}/metrics', timeout=5)"
                                      ".read().decode())"]).stdout
    assert "netpath_target_loss_ratio{" in scrape and "process_resident_memory_bytes " in scrape
    proc = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


# --- the README's screenshot ------------------------------------------------------------------


def screenshot(out: Path) -> Path:
    """About three minutes of lab life (traffic, a planned disable, two outages of ISP 1, extra
    delay on wan2, NetPath's table deleted from outside and repaired), drawn from Prometheus's
    answers and shot with headless Chromium."""
    sys.path.insert(0, str(TESTS_DIR / "luci"))
    from harness import cdp

    import tempfile

    with tempfile.TemporaryDirectory(prefix="netpath-monitoring-") as tmp, netlab.Lab(wans=2) as lab:
        work = Path(tmp)
        lab.build()
        lab.start_servers()
        agent = RunningAgent(lab, monitored_bundle(work), work, extra=("--metrics-listen", METRICS_ADDRESS)).start()
        prom = promlab.Prometheus(lab, "router", work, [METRICS_ADDRESS]).start()
        stop = threading.Event()
        traffic = threading.Thread(target=keep_fetching, args=(lab, stop, 0.05), daemon=True)
        try:
            started = time.time()
            traffic.start()
            try:
                lab.netem(2, delay_ms=20)
            except netlab.LabError as exc:
                print(f"no extra delay on wan2: {exc}")
            for seconds, step in ((30, None), (20, lambda: agent.request("disable", interface="wan2")),
                                  (20, lambda: agent.request("enable", interface="wan2")),
                                  (25, lambda: lab.isp_blackhole(1)), (25, lambda: lab.isp_blackhole(1, on=False)),
                                  (15, lambda: lab.isp_blackhole(1)), (25, lambda: lab.isp_blackhole(1, on=False)),
                                  (20, lambda: lab.run("router", ["nft", "delete", "table", "inet", "netpath"]))):
                if step:
                    step()
                time.sleep(seconds)
            end = time.time()
            dashboard = promlab.load_dashboard()
            results = promlab.run_queries(dashboard, prom, started, end)
            page = work / "dashboard.html"
            page.write_text(promlab.render_dashboard(
                dashboard, results, started, end,
                "drawn from a real Prometheus scraping netpath-agent in the lab; ISP 1 blackholed twice, "
                "wan2 disabled once, the nft table deleted behind the agent's back once"))
            with cdp.Browser(work / "chromium", width=1280, height=900) as browser:
                shot = browser.open(page.as_uri())
                time.sleep(0.5)
                path = shot.screenshot(out)
            print(f"wrote {path}")
            return path
        finally:
            stop.set()
            traffic.join(5)
            prom.stop()
            agent.stop()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "screenshot":
        target = Path(sys.argv[2]) if len(sys.argv) > 2 else TESTS_DIR.parent / "docs" / "screenshots" / "dashboard.png"
        screenshot(target)
    else:
        print(__doc__)
        sys.exit(2)
