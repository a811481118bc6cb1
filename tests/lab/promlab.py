"""A real Prometheus server inside a lab namespace, and the shipped Grafana dashboard drawn
from its answers (for tests/lab/test_monitoring.py and the README's screenshot).

    prom = Prometheus(lab, "router", workdir, targets=["127.0.0.1:9101"]).start()
    prom.query('netpath_interface_up{interface="wan1"}')   # the API's "result" list
    html = render_dashboard(load_dashboard(), prom, start, end)

Prometheus (Debian's `prometheus` package) listens on the namespace's loopback, keeps its
data in a directory under `workdir` and is stopped by `stop()` (or with the lab). It loads a
copy of monitoring/netpath.rules.yml whose `for:` durations are cut to seconds, so a lab
test waits seconds, not minutes, for an alert; promtool's unit tests cover the shipped file.
The API is asked from inside the namespace (`ip netns exec ... python -c`), as nothing of
the lab is reachable from the root namespace.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .netlab import stop_process

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "netpath.rules.yml"

# The shipped rules' `for:` durations and what the lab waits instead (scrapes every second).
LAB_FOR = {"1m": "3s", "30s": "2s", "5m": "4s"}
RATE_INTERVAL = "10s"  # Grafana's $__rate_interval for a 1 s scrape interval

_GET = """
import json, sys, urllib.parse, urllib.request
url = sys.argv[1] + "?" + urllib.parse.urlencode(json.loads(sys.argv[2]))
try:
    with urllib.request.urlopen(url, timeout=10) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stdout.write(e.read().decode())
"""


def find_prometheus() -> "str | None":
    return shutil.which("prometheus")


def lab_rules(text: str) -> str:
    """The shipped rules with every `for:` shortened for the lab (and nothing else changed)."""
    def shorter(match):
        return f"{match.group(1)}for: {LAB_FOR[match.group(2)]}"

    out, n = re.subn(r"^(\s+)for: (\S+)$", shorter, text, flags=re.M)
    if n == 0:
        raise ValueError("no `for:` in the rules")
    return out


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    def __init__(self, lab, ns: str, workdir: Path, targets: list, port: int = 9090):
        self.lab = lab
        self.ns = ns
        self.workdir = Path(workdir) / "prometheus"
        self.targets = list(targets)
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.process: "subprocess.Popen | None" = None

    def start(self, timeout: float = 30.0) -> "Prometheus":
        binary = find_prometheus()
        if binary is None:
            raise PrometheusError("prometheus is not installed (Debian: apt-get install prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "netpath.rules.yml").write_text(lab_rules(RULES.read_text()))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(self.workdir / "netpath.rules.yml")],
            "scrape_configs": [{"job_name": "netpath", "static_configs": [{"targets": self.targets}]}],
        }
        (self.workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self._log = open(self.workdir / "prometheus.log", "w")
        self.process = self.lab.popen(self.ns, [
            binary, f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d"], stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited {self.process.returncode}: {self.log()[-2000:]}")
            try:
                if self.api("/api/v1/status/runtimeinfo").get("status") == "success":
                    return self
            except PrometheusError:
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready within {timeout} s: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace=10)
        shutil.rmtree(self.workdir / "data", ignore_errors=True)

    # -- the HTTP API ------------------------------------------------------------------------

    def api(self, path: str, **params) -> dict:
        proc = self.lab.run(self.ns, [sys.executable, "-c", _GET, self.base + path, json.dumps(params)],
                            check=False, timeout=30)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise PrometheusError(f"{path}: no JSON answer: {proc.stdout[:200]} {proc.stderr[-500:]}") from None

    def _data(self, path: str, **params):
        reply = self.api(path, **params)
        if reply.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {reply.get('errorType')}: {reply.get('error')}")
        return reply["data"]

    def query(self, expr: str) -> list:
        return self._data("/api/v1/query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list:
        return self._data("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"]

    def alerts(self) -> list:
        return self._data("/api/v1/alerts")["alerts"]

    def wait_for(self, expr: str, timeout: float) -> list:
        """Poll the instant query `expr` until it returns a series; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise PrometheusError(f"no result for {expr!r} within {timeout} s")


# --- the dashboard --------------------------------------------------------------------------


def load_dashboard(path: Path = DASHBOARD) -> dict:
    return json.loads(Path(path).read_text())


def grafana_expr(expr: str) -> str:
    """A panel's query as Grafana sends it for "all routers" and a 1 s scrape interval."""
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace('"$instance"', '".*"')


def panel_queries(dashboard: dict) -> list:
    """[(panel title, refId, legendFormat, PromQL)] of every panel."""
    return [(p["title"], t["refId"], t.get("legendFormat", ""), grafana_expr(t["expr"]))
            for p in dashboard["panels"] for t in p.get("targets", ())]


def legend(template: str, labels: dict) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or \
        ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def run_queries(dashboard: dict, prom: Prometheus, start: float, end: float, step: float = 1.0) -> dict:
    """{(panel title, refId): [(legend, [(t, value)])]} for every query of the dashboard."""
    results = {}
    for title, ref, fmt, expr in panel_queries(dashboard):
        series = []
        for item in prom.query_range(expr, start, end, step):
            points = [(float(t), float(v)) for t, v in item["values"]]
            series.append((legend(fmt, item["metric"]), points))
        results[(title, ref)] = series
    return results


PALETTE = ("#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#b877d9", "#f2495c", "#37872d", "#8ab8ff",
           "#fade2a", "#c4162a")
CELL_W, CELL_H = 52, 30  # pixels per grid column and row (Grafana: 24 columns)


def _format(value: float, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value == 0:
        return "0"
    if unit == "s":
        if abs(value) < 1e-3:
            return f"{value * 1e6:.0f} µs"
        return f"{value * 1e3:.1f} ms" if abs(value) < 1 else f"{value:.1f} s"
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    if unit in ("bps", "bytes"):
        base = "b/s" if unit == "bps" else "B"
        for prefix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(value) >= size:
                return f"{value / size:.1f} {prefix}{base}"
        return f"{value:.0f} {base}"
    if unit == "ops":
        return f"{value:.2f}/s"
    return f"{value:.3g}"


def _timeseries_svg(series: list, unit: str, width: int, height: int, start: float, end: float,
                    bars: bool = False) -> str:
    pad_l, pad_b, pad_t = 64, 18, 6
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    values = [v for _, points in series for _, v in points if not math.isnan(v)]
    low, high = (min(values + [0.0]), max(values + [0.0])) if values else (0.0, 1.0)
    if high == low:
        high = low + 1
    span = end - start or 1

    def x(t):
        return pad_l + (t - start) / span * plot_w

    def y(v):
        return pad_t + (high - v) / (high - low) * plot_h

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        v = low + (high - low) * i / 4
        parts.append(f'<line x1="{pad_l}" x2="{pad_l + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#2c3235"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{html.escape(_format(v, unit))}</text>')
    ticks = max(2, min(5, plot_w // 110))  # time labels that fit side by side
    for i in range(ticks):
        t = start + span * i / (ticks - 1)
        anchor = "start" if i == 0 else "end" if i == ticks - 1 else "middle"
        parts.append(f'<text x="{x(t):.1f}" y="{height - 4}" text-anchor="{anchor}">'
                     f'{time.strftime("%H:%M:%S", time.gmtime(t))}</text>')
    for n, (_, points) in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        if bars:
            for t, v in points:
                if not math.isnan(v) and v != 0:
                    parts.append(f'<rect x="{x(t) - 1:.1f}" y="{min(y(v), y(0)):.1f}" width="3" '
                                 f'height="{abs(y(v) - y(0)):.1f}" fill="{color}"/>')
            continue
        runs, run, last = [], [], None
        for t, v in points:  # a gap (no sample, NaN) breaks the line, as Grafana draws it
            if math.isnan(v) or (last is not None and t - last > 2.5):
                if run:
                    runs.append(run)
                run = []
            if not math.isnan(v):
                run.append(f"{x(t):.1f},{y(v):.1f}")
            last = t
        runs.append(run)
        for run in runs:
            if run:
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{" ".join(run)}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _timeline_svg(series: list, mappings: dict, width: int, height: int, start: float, end: float) -> str:
    pad_l = 64
    rows = max(1, len(series))
    row_h = min(34, (height - 20) / rows)
    span = end - start or 1
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for n, (name, points) in enumerate(sorted(series)):
        top = 4 + n * row_h
        parts.append(f'<text x="{pad_l - 6}" y="{top + row_h / 2 + 4:.1f}" text-anchor="end">{html.escape(name)}</text>')
        for (t, v), following in zip(points, points[1:] + [(end, None)]):
            state = mappings.get(str(int(v)), {"text": str(v), "color": "#555"})
            x0 = pad_l + (t - start) / span * (width - pad_l - 8)
            x1 = pad_l + (min(following[0], t + 2) - start) / span * (width - pad_l - 8)
            parts.append(f'<rect x="{x0:.1f}" y="{top:.1f}" width="{max(x1 - x0, 0.5) + 0.6:.1f}" height="{row_h - 4:.1f}" '
                         f'fill="{state["color"]}"><title>{state["text"]}</title></rect>')
    legend_y = height - 4
    for i, (code, state) in enumerate(sorted(mappings.items(), reverse=True)):
        parts.append(f'<rect x="{pad_l + i * 110}" y="{legend_y - 9}" width="10" height="10" fill="{state["color"]}"/>'
                     f'<text x="{pad_l + i * 110 + 14}" y="{legend_y}">{state["text"]}</text>')
    parts.append("</svg>")
    return "".join(parts)


COLORS = {"green": "#73bf69", "orange": "#ff9830", "yellow": "#fade2a", "red": "#f2495c", "blue": "#5794f2"}


def render_dashboard(dashboard: dict, results: dict, start: float, end: float, subtitle: str = "") -> str:
    """The dashboard as one HTML page: each panel at its grid place, drawn as SVG."""
    blocks = []
    bottom = 0
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        left, top = grid["x"] * CELL_W, grid["y"] * CELL_H
        width, height = grid["w"] * CELL_W - 8, grid["h"] * CELL_H - 8
        bottom = max(bottom, top + height + 8)
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        unit = defaults.get("unit", "")
        series = [s for t in panel["targets"] for s in results[(panel["title"], t["refId"])]]
        body_h = height - 30
        if panel["type"] == "state-timeline":
            mappings = {code: {"text": m["text"], "color": COLORS.get(m["color"], m["color"])}
                        for code, m in defaults["mappings"][0]["options"].items()}
            body = _timeline_svg(series, mappings, width - 12, body_h, start, end)
        elif panel["type"] == "stat":
            items = []
            for name, points in series:
                last = next((v for _, v in reversed(points) if not math.isnan(v)), float("nan"))
                shown = name if panel["options"].get("textMode") == "name" else _format(last, unit)
                if panel["options"].get("textMode") == "name" and "uptime" in name:
                    shown = f"up {_format(last, 's')}"
                label = f'<div class="stat-name">{html.escape(name)}</div>' \
                    if panel["options"].get("textMode") == "value_and_name" else ""
                items.append(f'<div class="stat"><div class="stat-value">{html.escape(shown)}</div>{label}</div>')
            body = "".join(items)
        else:
            custom = defaults.get("custom", {})
            body = _timeseries_svg(series, unit, width - 12, body_h - 22, start, end,
                                   bars=custom.get("drawStyle") == "bars")
            body += '<div class="legend">' + "".join(
                f'<span><i style="background:{PALETTE[n % len(PALETTE)]}"></i>{html.escape(name)}</span>'
                for n, (name, _) in enumerate(series)) + "</div>"
        blocks.append(f'<div class="panel" style="left:{left}px;top:{top}px;width:{width}px;height:{height}px">'
                      f'<div class="title">{html.escape(panel["title"])}</div>{body}</div>')
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(dashboard["title"])}</title>
<style>
body {{ margin: 0; background: #111217; color: #ccccdc; font: 12px "DejaVu Sans", sans-serif; }}
header {{ padding: 10px 14px; font-size: 16px; }} header small {{ color: #8e8e8e; font-size: 12px; margin-left: 12px; }}
.grid {{ position: relative; margin: 0 10px; height: {bottom}px; }}
.panel {{ position: absolute; background: #181b1f; border: 1px solid #2c3235; border-radius: 3px; padding: 4px 6px; box-sizing: border-box; overflow: hidden; }}
.title {{ font-weight: bold; margin: 2px 0 6px; }}
svg text {{ fill: #9fa7b3; font-size: 10px; }}
.legend {{ font-size: 10px; white-space: nowrap; overflow: hidden; }} .legend span {{ margin-right: 12px; }}
.legend i {{ display: inline-block; width: 10px; height: 3px; margin: 0 4px 3px 0; }}
.stat {{ display: inline-block; margin: 4px 16px 0 4px; }} .stat-value {{ font-size: 22px; color: #73bf69; }}
.stat-name {{ color: #9fa7b3; }}
</style></head><body><header>{html.escape(dashboard["title"])}<small>{html.escape(subtitle)}</small></header>
<div class="grid">{"".join(blocks)}</div></body></html>
"""
