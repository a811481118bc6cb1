"""Screenshots of every luci-app-netpath view for the documentation, taken on the harness
with a real agent in a throw-away lab (needs root, `ip netns`, Chromium):

    sudo .venv/bin/python tests/luci/screenshots.py [OUTPUT_DIR]     # default docs/screenshots

wan2 gets 30 ms of extra delay so the two uplinks differ, the LAN client fetches from the
lab's server throughout, and ISP 2 drops everything for a while so the overview has state
changes to show. The rpcd plugin runs inside the router namespace, so the Diagnostics
page's ping really leaves through the chosen uplink.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from harness import cdp, labagent  # noqa: E402
from harness.server import HarnessServer  # noqa: E402
from lab import netlab  # noqa: E402

OUTPUT = HERE.parents[1] / "docs" / "screenshots"
READY = "document.body.dataset.viewReady == '1'"


def keep_fetching(lab, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            lab.fetch(timeout=2)
        except Exception:  # an uplink that is down is part of the picture
            pass
        stop.wait(0.2)


def shoot(browser, server, view, out: Path, prepare=None, **query) -> Path:
    url = server.view_url(f"netpath/{view}") + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    page = browser.open(url)
    page.wait_for(READY)
    if prepare:
        prepare(page)
    errors = page.errors()
    if errors:
        raise RuntimeError(f"{view}: page errors: {errors}")
    path = page.screenshot(out)
    print(f"wrote {path}")
    return path


def main(argv) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUTPUT
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="netpath-shots-") as tmp, netlab.Lab(wans=2) as lab:
        work = Path(tmp)
        lab.build()
        lab.start_servers()
        try:
            lab.netem(2, delay_ms=30)
        except netlab.LabError as exc:
            print(f"no extra delay on wan2: {exc}")
        config = labagent.write_lab_config(work / "etc")
        bundle = labagent.compile_bundle(config, work / "bundle")
        agent = labagent.LabAgent(lab, bundle, work).start()
        stop = threading.Event()
        traffic = threading.Thread(target=keep_fetching, args=(lab, stop), daemon=True)
        try:
            agent.wait_states({"wan1": "online", "wan2": "online"}, timeout=30)
            traffic.start()
            prefix = ["ip", "netns", "exec", lab.router]
            with HarnessServer(work / "etc", agent.socket, bundle, plugin_prefix=prefix) as server, \
                    cdp.Browser(work, width=1280, height=900) as browser:
                page = browser.open(server.view_url("netpath/overview") + "?poll=1")
                page.wait_for(READY)
                page.wait_for("+document.body.dataset.pollCount >= 20", timeout=60)
                lab.isp_blackhole(2)
                agent.wait_states({"wan2": "offline"}, timeout=30)
                time.sleep(3)
                lab.isp_blackhole(2, on=False)
                agent.wait_states({"wan2": "online"}, timeout=30)
                page.wait_for("+document.body.dataset.pollCount >= 55", timeout=90)
                print(f"wrote {page.screenshot(out / 'overview.png')}")

                for view in ("interfaces", "members", "policies", "rules"):
                    shoot(browser, server, view, out / f"{view}.png")

                def edit_wan1(page):
                    page.evaluate("document.querySelector('tr[data-sid=wan1] .cbi-button-edit').click()")
                    page.wait_for("document.body.classList.contains('modal-overlay-active')")

                shoot(browser, server, "interfaces", out / "interfaces-dialog.png", prepare=edit_wan1)

                def run_diagnostics(page):
                    page.evaluate("""(() => {
                        const set = (id, v) => { const el = document.getElementById(id); el.value = v;
                            for (const name of [ 'input', 'keyup', 'blur' ])
                                el.dispatchEvent(new Event(name, { bubbles: true })); };
                        set('netpath-explain-src', '192.168.10.2');
                        set('netpath-explain-dst', '203.0.113.10');
                        set('netpath-explain-dport', '443');
                        document.getElementById('netpath-explain-go').click();
                        document.getElementById('netpath-ping-interface').value = 'wan2';
                        set('netpath-ping-target', '203.0.113.10');
                        document.getElementById('netpath-ping-go').click();
                    })()""")
                    page.wait_for("!!(document.querySelector('#netpath-explain-result pre') && "
                                  "document.querySelector('#netpath-ping-result pre'))", timeout=30)

                shoot(browser, server, "diagnostics", out / "diagnostics.png", prepare=run_diagnostics)
        finally:
            stop.set()
            if traffic.is_alive():
                traffic.join(10)
            agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
