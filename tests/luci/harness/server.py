"""A tiny LuCI stand-in server on 127.0.0.1 for running luci-app-netpath's views headless.

    with HarnessServer(config_dir=tmp, socket=SOCK, bundle=DIR) as server:
        url = server.view_url("netpath/overview")

It serves
- `/luci-static/resources/...`: the app's files (luci/htdocs/...) first, then the harness's
  runtime (runtime/: luci.js, form.js, ... the parts of LuCI the views use);
- `/view/<path>`: an HTML page that boots the runtime and instantiates `view.<path>`;
- `POST /ubus/`: ubus over JSON-RPC like uhttpd-mod-ubus, backed by real parts:
  `luci.netpath` calls run the real rpcd plugin (`luci.netpath call METHOD`, arguments on
  stdin, as rpcd does; methods not in its `list` answer "method not found"), and `uci`
  calls read and write a real UCI file in `config_dir` with netpath.compiler.uci. Changes
  are staged (like rpcd's /tmp/.uci) until `uci apply`, which writes the file.
- Access control from the app's real acl.d file: a session holds ACL groups with read or
  write permission; a call outside them gets ubus status 6 (permission denied).
"""

from __future__ import annotations

import copy
import json
import mimetypes
import os
import re
import subprocess
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from netpath.compiler import uci

HARNESS_DIR = Path(__file__).resolve().parent
RUNTIME_DIR = HARNESS_DIR / "runtime"
REPO = HARNESS_DIR.parents[2]
APP_DIR = REPO / "luci"
APP_RESOURCES = APP_DIR / "htdocs" / "luci-static" / "resources"
PLUGIN = APP_DIR / "root" / "usr" / "libexec" / "rpcd" / "luci.netpath"
ACL_FILE = APP_DIR / "root" / "usr" / "share" / "rpcd" / "acl.d" / "luci-app-netpath.json"
PLUGIN_TIMEOUT = 60.0

UBUS_OK, UBUS_INVALID_ARGUMENT, UBUS_METHOD_NOT_FOUND, UBUS_NOT_FOUND, UBUS_NO_DATA, \
    UBUS_PERMISSION_DENIED = 0, 2, 3, 4, 5, 6
OPTION_NAME = re.compile(r"[A-Za-z0-9_]+\Z")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>NetPath – {view}</title>
<link rel="stylesheet" href="/harness/harness.css">
<script src="/luci-static/resources/luci.js"></script>
</head>
<body>
<header><span class="brand">OpenWrt</span> <span class="menu">{menu}</span></header>
<div id="maincontent" class="container"><div id="view"></div></div>
<script>
boot({env});
L.require('ui').then(function() {{ return L.require({module}); }}).catch(function(err) {{ L.error(err); }});
</script>
</body>
</html>
"""

MENU = [("netpath/overview", "Overview"), ("netpath/interfaces", "Interfaces"),
        ("netpath/members", "Members"), ("netpath/policies", "Policies"),
        ("netpath/rules", "Rules"), ("netpath/diagnostics", "Diagnostics")]


class Acl:
    """What a session may call, from the app's acl.d JSON: {group: "read"|"write"}."""

    def __init__(self, grants: dict):
        acl = json.loads(ACL_FILE.read_text())
        self.ubus: dict = {}
        self.uci_read: set = set()
        self.uci_write: set = set()
        for group, level in grants.items():
            levels = ("read",) if level == "read" else ("read", "write")
            for part in levels:
                scope = acl[group].get(part, {})
                for obj, methods in scope.get("ubus", {}).items():
                    self.ubus.setdefault(obj, set()).update(methods)
                (self.uci_write if part == "write" else self.uci_read).update(scope.get("uci", []))

    def allows_ubus(self, obj: str, method: str) -> bool:
        return method in self.ubus.get(obj, set())

    def allows_uci(self, config: str, write: bool) -> bool:
        return config in (self.uci_write if write else self.uci_read | self.uci_write)


class UciStore:
    """UCI packages in a directory, with changes staged until apply (rpcd's delta files)."""

    def __init__(self, config_dir: Path):
        self.config_dir = Path(config_dir)
        self.staged: dict = {}
        self.lock = threading.Lock()

    def _package(self, config: str) -> uci.UciPackage:
        if config not in self.staged:
            path = self.config_dir / config
            self.staged[config] = uci.load(path) if path.exists() else uci.UciPackage(str(path), [])
        return self.staged[config]

    def get(self, config: str) -> dict:
        values = {}
        for index, section in enumerate(self._package(config).sections):
            entry = {".name": section.name, ".type": section.type, ".anonymous": section.anonymous,
                     ".index": index}
            for option in section.options.values():
                entry[option.name] = list(option.value) if option.is_list else option.value
            values[section.name] = entry
        return {"values": values}

    @staticmethod
    def _set_options(section: uci.UciSection, values: dict) -> None:
        for name, value in values.items():
            if not OPTION_NAME.match(name):
                raise ValueError(f"bad option name {name!r}")
            if isinstance(value, list):
                items = [str(v) for v in value if str(v) != ""]
                if items:
                    section.options.pop(name, None)
                    section.options[name] = uci.UciOption(name, items, True)
                else:
                    section.options.pop(name, None)
            elif value is None or str(value) == "":
                section.options.pop(name, None)
            else:
                text = ("1" if value else "0") if isinstance(value, bool) else str(value)
                old = section.options.get(name)
                if old is not None and not old.is_list:
                    old.value = text
                else:
                    section.options.pop(name, None)
                    section.options[name] = uci.UciOption(name, text, False)

    def set(self, config: str, section_name: str, values: dict) -> dict:
        section = self._package(config).get(section_name)
        if section is None:
            raise LookupError(section_name)
        self._set_options(section, values or {})
        return {}

    def add(self, config: str, type_: str, name, values) -> dict:
        package = self._package(config)
        if name:
            if not OPTION_NAME.match(name):
                raise ValueError(f"bad section name {name!r}")
            if package.get(name) is not None:
                raise ValueError(f"section {name!r} exists")
            section = uci.UciSection(type_, name, False)
        else:
            section = uci.UciSection(type_, f"cfg{len(package.sections) + 1:02x}{sum(type_.encode()) % 65536:04x}", True)
        package.sections.append(section)
        self._set_options(section, values or {})
        return {"section": section.name}

    def delete(self, config: str, section_name: str, options) -> dict:
        package = self._package(config)
        section = package.get(section_name)
        if section is None:
            raise LookupError(section_name)
        if options:
            for name in options:
                section.options.pop(name, None)
        else:
            package.sections.remove(section)
        return {}

    def order(self, config: str, names: list) -> dict:
        package = self._package(config)
        rank = {name: i for i, name in enumerate(names)}
        package.sections.sort(key=lambda s: rank.get(s.name, len(rank)))
        return {}

    def changes(self) -> dict:
        out = {}
        for config, package in self.staged.items():
            path = self.config_dir / config
            current = path.read_text() if path.exists() else ""
            if uci.export(package.sections) != current:
                out[config] = [["changed"]]
        return {"changes": out}

    def apply(self) -> dict:
        """Commit every staged package whose text differs from its file (atomic rename)."""
        for config, package in self.staged.items():
            path = self.config_dir / config
            text = uci.export(package.sections)
            if path.exists() and path.read_text() == text:
                continue
            tmp = path.with_name(f".{config}.uci-harness")
            tmp.write_text(text)
            os.replace(tmp, path)
        self.staged.clear()
        return {}


class HarnessServer:
    def __init__(self, config_dir, socket: str, bundle, acl: "dict | None" = None,
                 plugin_prefix: "list | None" = None, pollinterval: float = 5, readonly: bool = False):
        self.uci = UciStore(config_dir)
        self.socket = str(socket)
        self.bundle = str(bundle)
        self.acl = Acl(acl or {"luci-app-netpath": "write", "luci-app-netpath-status": "write"})
        self.plugin_prefix = list(plugin_prefix or [])
        self.pollinterval = pollinterval
        self.readonly = readonly
        self.calls: list = []  # (object, method, args, status): what the views asked
        self.plugin_methods = self._plugin_list()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="luci-harness", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "HarnessServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def view_url(self, view: str) -> str:
        return f"{self.base_url}/view/{view}"

    # -- the rpcd plugin ---------------------------------------------------------------------

    def _plugin_env(self) -> dict:
        return {**os.environ, "NETPATH_SOCKET": self.socket, "NETPATH_BUNDLE": self.bundle,
                "NETPATH_PYTHON": sys.executable}

    def _plugin_list(self) -> dict:
        proc = subprocess.run([*self.plugin_prefix, "busybox", "sh", str(PLUGIN), "list"],
                              capture_output=True, text=True, timeout=PLUGIN_TIMEOUT,
                              env=self._plugin_env(), stdin=subprocess.DEVNULL)
        return json.loads(proc.stdout)

    def call_plugin(self, method: str, args: dict):
        if method not in self.plugin_methods:
            return [UBUS_METHOD_NOT_FOUND]
        proc = subprocess.run([*self.plugin_prefix, "busybox", "sh", str(PLUGIN), "call", method],
                              input=json.dumps({**args, "ubus_rpc_session": "harness"}),
                              capture_output=True, text=True, timeout=PLUGIN_TIMEOUT, env=self._plugin_env())
        try:
            reply = json.loads(proc.stdout)
        except ValueError:
            return [UBUS_NO_DATA]
        return [UBUS_OK, reply] if isinstance(reply, dict) else [UBUS_INVALID_ARGUMENT]

    # -- ubus --------------------------------------------------------------------------------

    def ubus_call(self, obj: str, method: str, args: dict):
        if obj == "session" and method == "access":
            return [UBUS_OK, {"access": True}]
        if obj == "luci.netpath":
            if not self.acl.allows_ubus(obj, method):
                return [UBUS_PERMISSION_DENIED]
            return self.call_plugin(method, args)
        if obj == "uci":
            return self.uci_call(method, args)
        return [UBUS_NOT_FOUND]

    def uci_call(self, method: str, args: dict):
        store = self.uci
        config = args.get("config")
        writes = method in ("set", "add", "delete", "order")
        if method in ("get",) + ("set", "add", "delete", "order"):
            if not isinstance(config, str) or not self.acl.allows_uci(config, writes):
                return [UBUS_PERMISSION_DENIED]
        with store.lock:
            try:
                if method == "get":
                    return [UBUS_OK, store.get(config)]
                if method == "set":
                    return [UBUS_OK, store.set(config, args["section"], args.get("values") or {})]
                if method == "add":
                    return [UBUS_OK, store.add(config, args["type"], args.get("name"), args.get("values"))]
                if method == "delete":
                    options = args.get("options") or ([args["option"]] if args.get("option") else None)
                    return [UBUS_OK, store.delete(config, args["section"], options)]
                if method == "order":
                    return [UBUS_OK, store.order(config, args.get("sections") or [])]
                if method == "changes":
                    return [UBUS_OK, store.changes()]
                if method == "apply":
                    if not any(self.acl.allows_uci(c, True) for c in store.staged):
                        return [UBUS_PERMISSION_DENIED] if store.staged else [UBUS_OK, {}]
                    return [UBUS_OK, store.apply()]
                if method == "revert":
                    store.staged.pop(config, None)
                    return [UBUS_OK, {}]
            except LookupError:
                return [UBUS_NOT_FOUND]
            except (KeyError, ValueError, TypeError):
                return [UBUS_INVALID_ARGUMENT]
        return [UBUS_METHOD_NOT_FOUND]

    # -- HTTP --------------------------------------------------------------------------------

    def page(self, view: str, query: dict) -> str:
        env = {"resource": "/luci-static/resources", "ubuspath": "/ubus/", "sessionid": "harness",
               "pollinterval": float(query.get("poll", [self.pollinterval])[0]),
               "readonly": self.readonly, "requestpath": view.split("/")}
        menu = " ".join(f'<a href="/view/{path}"{" class=active" if path == view else ""}>{title}</a>'
                        for path, title in MENU)
        return PAGE.format(view=view, env=json.dumps(env), module=json.dumps("view." + view.replace("/", ".")),
                           menu=menu)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the tests read results, not access logs
                pass

            def _send(self, status, body: bytes, content_type: str):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urlparse(self.path)
                path = url.path
                if path.startswith("/view/"):
                    view = path[len("/view/"):]
                    if not re.fullmatch(r"[a-z0-9_]+(/[a-z0-9_]+)*", view):
                        return self._send(HTTPStatus.NOT_FOUND, b"no such view", "text/plain")
                    body = server.page(view, parse_qs(url.query)).encode()
                    return self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")
                if path == "/harness/harness.css":
                    return self._file(RUNTIME_DIR / "harness.css")
                prefix = "/luci-static/resources/"
                if path.startswith(prefix):
                    rel = path[len(prefix):]
                    for root in (APP_RESOURCES, RUNTIME_DIR):
                        candidate = (root / rel).resolve()
                        if candidate.is_file() and root.resolve() in candidate.parents:
                            return self._file(candidate)
                return self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

            def _file(self, path: Path):
                kind = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
                if path.suffix == ".js":
                    kind = "application/javascript"
                self._send(HTTPStatus.OK, path.read_bytes(), kind + "; charset=utf-8")

            def do_POST(self):
                if urlparse(self.path).path != "/ubus/":
                    return self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    message = json.loads(self.rfile.read(length))
                    sid, obj, method, args = message["params"]
                    result = server.ubus_call(obj, method, args if isinstance(args, dict) else {})
                    reply = {"jsonrpc": "2.0", "id": message.get("id"), "result": result}
                except (ValueError, KeyError, TypeError):
                    reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
                    result = None
                if result is not None:
                    server.calls.append((obj, method, args, result[0]))
                self._send(HTTPStatus.OK, json.dumps(reply).encode(), "application/json")

        return Handler
