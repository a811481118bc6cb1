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
- Access control from the app's real acl.d file, as uhttpd-mod-ubus and rpcd apply it: a
  session holds ACL groups with read or write permission; a `luci.netpath` call outside them
  is a JSON-RPC error -32002 "Access denied" (rpc.js rejects it), a `uci` call on a config
  outside them ubus status 6; `session access` answers from the same grants. An expired
  session (`expire_session()`) is denied everything, as rpcd does.
- The page's read-only state as the ucode dispatcher sets it: `nodespec.readonly` and
  `satisfied` from the real menu.d entry's `depends.acl` against the session's grants.
- `uci changes` returns libuci-style deltas per config (`["set", sid, option, value]`, ...).
- Save & Apply like luci-base's admin/uci controller: `POST /cgi-bin/luci/admin/uci/apply_rollback`
  (form fields sid, token) writes the staged changes and arms a rollback; `.../confirm` with the
  returned token keeps them; without a confirm within `apply_rollback` seconds the files are
  restored. `apply_unchecked` writes without rollback.
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
MENU_FILE = APP_DIR / "root" / "usr" / "share" / "luci" / "menu.d" / "luci-app-netpath.json"
PLUGIN_TIMEOUT = 60.0

UBUS_OK, UBUS_INVALID_ARGUMENT, UBUS_METHOD_NOT_FOUND, UBUS_NOT_FOUND, UBUS_NO_DATA, \
    UBUS_PERMISSION_DENIED = 0, 2, 3, 4, 5, 6
OPTION_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
# JSON-RPC errors of uhttpd-mod-ubus: a reply {"error": ...} instead of {"result": [...]}.
ACCESS_DENIED = {"code": -32002, "message": "Access denied"}
OBJECT_NOT_FOUND = {"code": -32000, "message": "Object not found"}
TOKEN = "harness-csrf-token"

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
        self.grants = dict(grants)
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

    def access(self, scope: str, obj: str, function: str) -> bool:
        """rpcd `session access`: `write` implies `read`."""
        if scope == "uci":
            return self.allows_uci(obj, function == "write")
        if scope == "ubus":
            return self.allows_ubus(obj, function)
        if scope == "access-group":
            return self.grants.get(obj) == "write" or (function == "read" and obj in self.grants)
        return False

    def nodespec(self, view: str) -> dict:
        """What the dispatcher puts into L.env.nodespec for the menu entry of `view`: the entry
        (or the nearest parent) with `depends.acl`; readonly when a group is only readable."""
        menu = json.loads(MENU_FILE.read_text())
        candidates = [path for path, node in menu.items() if node.get("action", {}).get("path") == view]
        spec = {"satisfied": False, "readonly": True}
        for path in sorted(candidates, key=lambda p: not p.startswith("admin/network/")):
            parts, groups = path.split("/"), None
            while parts and groups is None:
                groups = menu.get("/".join(parts), {}).get("depends", {}).get("acl")
                parts = parts[:-1]
            groups = groups or []
            if all(g in self.grants for g in groups):
                return {"path": path, "satisfied": True,
                        "readonly": not all(self.grants[g] == "write" for g in groups)}
            spec = {"path": path, "satisfied": False, "readonly": True}
        return spec


class UciStore:
    """UCI packages in a directory, with changes staged until apply (rpcd's delta files)."""

    def __init__(self, config_dir: Path):
        self.config_dir = Path(config_dir)
        self.staged: dict = {}
        self.deltas: dict = {}  # config -> libuci deltas, in order, as `uci changes` lists them
        self.lock = threading.Lock()

    def _delta(self, config: str, *delta) -> None:
        self.deltas.setdefault(config, []).append(list(delta))

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

    def _set_options(self, config: str, section: uci.UciSection, values: dict) -> None:
        for name, value in values.items():
            if not OPTION_NAME.match(name):
                raise ValueError(f"bad option name {name!r}")
            if isinstance(value, list):
                items = [str(v) for v in value if str(v) != ""]
                # rpcd: a list replaces the option, one list-add per item
                if name in section.options:
                    self._delta(config, "remove", section.name, name)
                section.options.pop(name, None)
                if items:
                    section.options[name] = uci.UciOption(name, items, True)
                for item in items:
                    self._delta(config, "list-add", section.name, name, item)
            elif value is None or str(value) == "":
                if name in section.options:
                    self._delta(config, "remove", section.name, name)
                section.options.pop(name, None)
            else:
                text = ("1" if value else "0") if isinstance(value, bool) else str(value)
                self._delta(config, "set", section.name, name, text)
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
        self._set_options(config, section, values or {})
        return {}

    def add(self, config: str, type_: str, name, values) -> dict:
        package = self._package(config)
        if name:
            if not OPTION_NAME.match(name):
                raise ValueError(f"bad section name {name!r}")
            if package.get(name) is not None:
                raise ValueError(f"section {name!r} exists")
            section = uci.UciSection(type_, name, False)
            self._delta(config, "set", name, type_)
        else:
            section = uci.UciSection(type_, f"cfg{len(package.sections) + 1:02x}{sum(type_.encode()) % 65536:04x}", True)
            self._delta(config, "add", section.name, type_)
        package.sections.append(section)
        self._set_options(config, section, values or {})
        return {"section": section.name}

    def delete(self, config: str, section_name: str, options) -> dict:
        package = self._package(config)
        section = package.get(section_name)
        if section is None:
            raise LookupError(section_name)
        if options:
            for name in options:
                if section.options.pop(name, None) is not None:
                    self._delta(config, "remove", section_name, name)
        else:
            package.sections.remove(section)
            self._delta(config, "remove", section_name)
        return {}

    def order(self, config: str, names: list) -> dict:
        package = self._package(config)
        rank = {name: i for i, name in enumerate(names)}
        before = [s.name for s in package.sections]
        package.sections.sort(key=lambda s: rank.get(s.name, len(rank)))
        for index, section in enumerate(package.sections):
            if index >= len(before) or before[index] != section.name:
                self._delta(config, "order", section.name, index)
        return {}

    def changes(self, config: "str | None" = None) -> dict:
        if config:
            return {"changes": list(self.deltas.get(config, []))}
        return {"changes": {c: list(d) for c, d in self.deltas.items() if d}}

    def revert(self, config: str) -> None:
        self.staged.pop(config, None)
        self.deltas.pop(config, None)

    def apply(self) -> dict:
        """Commit every staged package whose text differs from its file (atomic rename)."""
        self.deltas.clear()
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
                 plugin_prefix: "list | None" = None, pollinterval: float = 5, apply_rollback: float = 30,
                 apply_holdoff: float = 0.5, apply_display: float = 1.0):
        self.uci = UciStore(config_dir)
        self.socket = str(socket)
        self.bundle = str(bundle)
        self.acl = Acl(acl or {"luci-app-netpath": "write", "luci-app-netpath-status": "write"})
        self.plugin_prefix = list(plugin_prefix or [])
        self.pollinterval = pollinterval
        self.apply_env = {"apply_rollback": apply_rollback, "apply_holdoff": apply_holdoff,
                          "apply_timeout": 5, "apply_display": apply_display}
        self.expired = False
        self.confirm_lost = False  # True: confirms never arrive (the browser lost the router)
        self.rollback: "dict | None" = None  # {"token", "files": {path: bytes | None}, "timer"}
        self.calls: list = []  # (object, method, args, status): what the views asked
        self.posts: list = []  # (path, form fields, HTTP status) of the admin/uci endpoints
        self.plugin_methods = self._plugin_list()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="luci-harness", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "HarnessServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.rollback:
            self.rollback["timer"].cancel()
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

    def expire_session(self) -> None:
        """From now on every call is denied, as rpcd does once a session timed out."""
        self.expired = True

    def ubus_call(self, obj: str, method: str, args: dict):
        """The `result` list of a call, or a JSON-RPC error object (a dict)."""
        if self.expired:
            return ACCESS_DENIED
        if obj == "session" and method == "access":
            if args.get("scope") and args.get("object") and args.get("function"):
                return [UBUS_OK, {"access": self.acl.access(args["scope"], args["object"], args["function"])}]
            return [UBUS_OK, {"access-group": {g: ["read"] + (["write"] if lvl == "write" else [])
                                               for g, lvl in self.acl.grants.items()}}]
        if obj == "luci.netpath":
            if not self.acl.allows_ubus(obj, method):
                return ACCESS_DENIED
            return self.call_plugin(method, args)
        if obj == "uci":
            return self.uci_call(method, args)
        return OBJECT_NOT_FOUND

    # -- Save & Apply (luci-base's admin/uci controller) --------------------------------------

    def apply_rollback(self, checked: bool) -> tuple:
        with self.uci.lock:
            if self.rollback:
                return HTTPStatus.CONFLICT, {"error": "an apply is pending confirmation"}
            if not any(self.acl.allows_uci(c, True) for c in self.uci.staged):
                return HTTPStatus.FORBIDDEN, {"error": "no changes you may apply"}
            backup = {}
            for config in self.uci.staged:
                path = self.uci.config_dir / config
                backup[path] = path.read_bytes() if path.exists() else None
            self.uci.apply()
            if not checked:
                return HTTPStatus.OK, {}
            token = os.urandom(8).hex()
            timer = threading.Timer(self.apply_env["apply_rollback"], self._roll_back, [token])
            timer.daemon = True
            self.rollback = {"token": token, "files": backup, "timer": timer}
            timer.start()
            return HTTPStatus.OK, {"token": token}

    def _roll_back(self, token: str) -> None:
        with self.uci.lock:
            if not self.rollback or self.rollback["token"] != token:
                return
            for path, data in self.rollback["files"].items():
                if data is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(data)
            self.rollback = None

    def confirm(self, token: str) -> int:
        if self.confirm_lost:
            return HTTPStatus.SERVICE_UNAVAILABLE
        with self.uci.lock:
            if not self.rollback or self.rollback["token"] != token:
                return HTTPStatus.FORBIDDEN
            self.rollback["timer"].cancel()
            self.rollback = None
            return HTTPStatus.NO_CONTENT

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
                    return [UBUS_OK, store.changes(config)]
                if method == "apply":
                    if not any(self.acl.allows_uci(c, True) for c in store.staged):
                        return [UBUS_PERMISSION_DENIED] if store.staged else [UBUS_OK, {}]
                    return [UBUS_OK, store.apply()]
                if method == "revert":
                    store.revert(config)
                    return [UBUS_OK, {}]
            except LookupError:
                return [UBUS_NOT_FOUND]
            except (KeyError, ValueError, TypeError):
                return [UBUS_INVALID_ARGUMENT]
        return [UBUS_METHOD_NOT_FOUND]

    # -- HTTP --------------------------------------------------------------------------------

    def page(self, view: str, query: dict) -> str:
        nodespec = self.acl.nodespec(view)
        env = {"resource": "/luci-static/resources", "ubuspath": "/ubus/", "sessionid": "harness",
               "token": TOKEN, "scriptname": "/cgi-bin/luci",
               "pollinterval": float(query.get("poll", [self.pollinterval])[0]),
               "nodespec": nodespec, "requestpath": nodespec.get("path", view).split("/"),
               "dispatchpath": nodespec.get("path", view).split("/"), **self.apply_env}
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
                path = urlparse(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if path.startswith("/cgi-bin/luci/admin/uci/"):
                    fields = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                    fields.update({k: v[0] for k, v in parse_qs(body.decode()).items()})
                    return self._admin_uci(path.rsplit("/", 1)[1], fields)
                if path != "/ubus/":
                    return self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                try:
                    message = json.loads(body)
                    sid, obj, method, args = message["params"]
                    result = server.ubus_call(obj, method, args if isinstance(args, dict) else {})
                    key = "error" if isinstance(result, dict) else "result"
                    reply = {"jsonrpc": "2.0", "id": message.get("id"), key: result}
                except (ValueError, KeyError, TypeError):
                    reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
                    result = None
                if result is not None:
                    server.calls.append((obj, method, args, result["code"] if isinstance(result, dict) else result[0]))
                self._send(HTTPStatus.OK, json.dumps(reply).encode(), "application/json")

            def _admin_uci(self, action: str, fields: dict):
                # confirm carries the rollback token apply_rollback returned, the others the
                # session id and the page's CSRF token.
                if action == "confirm":
                    status, reply = server.confirm(fields.get("token", "")), None
                elif fields.get("sid") != "harness" or fields.get("token") != TOKEN or server.expired:
                    status, reply = HTTPStatus.FORBIDDEN, {"error": "session or token mismatch"}
                elif action in ("apply_rollback", "apply_unchecked"):
                    status, reply = server.apply_rollback(action == "apply_rollback")
                    if action == "apply_unchecked" and status == HTTPStatus.OK:
                        status, reply = HTTPStatus.NO_CONTENT, None
                else:
                    status, reply = HTTPStatus.NOT_FOUND, {"error": "no such action"}
                server.posts.append((action, fields, int(status)))
                if reply is None:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._send(status, json.dumps(reply).encode(), "application/json")

        return Handler
