"""Headless Chromium driven over the Chrome DevTools Protocol on a pipe (no websocket,
no extra packages): `--remote-debugging-pipe` makes Chromium read NUL-terminated JSON
commands on fd 3 and write replies and events on fd 4.

    with Browser(workdir) as browser:
        page = browser.open(url)
        page.wait_for("document.body.dataset.viewReady == '1'", timeout=20)
        page.screenshot("shot.png")

Chromium runs with a fresh profile in `workdir`, no background networking, and a proxy
that goes nowhere, so a page can reach nothing but the loopback harness server.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
START_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0

# Runs in the child: put the pipe ends on fds 3 and 4, then become Chromium.
_EXEC_WITH_PIPES = ("import os, sys\n"
                    "os.dup2(int(sys.argv[1]), 3)\n"
                    "os.dup2(int(sys.argv[2]), 4)\n"
                    "os.execv(sys.argv[3], sys.argv[3:])\n")


class BrowserError(RuntimeError):
    pass


class JsError(BrowserError):
    """An exception thrown by the page while evaluating an expression."""


def find_chromium() -> "str | None":
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _high_fd(fd: int) -> int:
    """The same pipe end on an fd >= 10, so moving it to 3 or 4 cannot clobber the other."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    def __init__(self, workdir, width: int = 1280, height: int = 900):
        self.workdir = Path(workdir)
        self.width = width
        self.height = height
        self.process: "subprocess.Popen | None" = None
        self._next_id = 0
        self._buffer = b""
        self.events: list = []

    def start(self) -> "Browser":
        chromium = find_chromium()
        if chromium is None:
            raise BrowserError("Chromium is not installed (Debian: apt-get install chromium)")
        profile = self.workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        to_browser_r, to_browser_w = (_high_fd(fd) for fd in os.pipe())
        from_browser_r, from_browser_w = (_high_fd(fd) for fd in os.pipe())
        argv = [
            sys.executable, "-c", _EXEC_WITH_PIPES, str(to_browser_r), str(from_browser_w), chromium,
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-default-apps", "--disable-domain-reliability",
            "--disable-client-side-phishing-detection", "--no-pings", "--password-store=basic",
            "--proxy-server=http://127.0.0.1:9", "--hide-scrollbars", "--mute-audio",
            f"--user-data-dir={profile}", f"--window-size={self.width},{self.height}",
            "--remote-debugging-pipe", "about:blank",
        ]
        self._log = open(self.workdir / "chromium.log", "wb")
        self.process = subprocess.Popen(argv, pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=self._log)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = to_browser_w
        self._in = from_browser_r
        os.set_blocking(self._in, False)
        self.send("Browser.getVersion", timeout=START_TIMEOUT)
        return self

    def close(self) -> None:
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                try:
                    self.send("Browser.close", timeout=5)
                except BrowserError:
                    pass
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
        finally:
            for fd in (self._out, self._in):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._log.close()
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- protocol ------------------------------------------------------------------------------

    def send(self, method: str, params: "dict | None" = None, session: "str | None" = None,
             timeout: float = COMMAND_TIMEOUT) -> dict:
        self._next_id += 1
        ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read_messages(deadline):
                if reply.get("id") == ident:
                    if "error" in reply:
                        raise BrowserError(f"{method}: {reply['error'].get('message')}")
                    return reply.get("result", {})
                if "method" in reply:
                    self.events.append(reply)

    def _read_messages(self, deadline: float):
        while b"\0" not in self._buffer:
            if self.process.poll() is not None:
                raise BrowserError(f"Chromium exited ({self.process.returncode}); see {self.workdir / 'chromium.log'}")
            if time.monotonic() > deadline:
                raise BrowserError("Chromium did not answer in time")
            try:
                chunk = os.read(self._in, 1 << 20)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if not chunk:
                raise BrowserError("Chromium closed the debugging pipe")
            self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        return [json.loads(raw) for raw in complete if raw]

    def open(self, url: str) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        page.goto(url)
        return page


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser = browser
        self.session = session

    def call(self, method: str, params: "dict | None" = None, timeout: float = COMMAND_TIMEOUT) -> dict:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState == 'complete'", timeout=COMMAND_TIMEOUT)

    def evaluate(self, expression: str, timeout: float = COMMAND_TIMEOUT):
        """The JSON value of `expression` (promises are awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise JsError(f"{expression[:80]}: {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.1):
        """Poll until `expression` is truthy; its value, or BrowserError naming what was awaited."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                errors = self.evaluate("(window.__harness_errors || []).join('\\n')")
                raise BrowserError(f"timed out after {timeout:g} s waiting for: {expression}"
                                   + (f"\npage errors:\n{errors}" if errors else ""))
            time.sleep(interval)

    def errors(self) -> list:
        return self.evaluate("window.__harness_errors || []") or []

    def screenshot(self, path, full_page: bool = True) -> Path:
        params = {"format": "png"}
        if full_page:
            size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1})
        data = self.call("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path
