"""luci-app-netpath's views in headless Chromium, on the harness in tests/luci/harness/: the
views are the real files, rpc calls run the real rpcd plugin, and the forms read and write a
real UCI file. Needs Debian's `chromium` (skipped with the reason when it is missing).

- every view renders what the config and the plugin say, without script errors;
- changing a member's weight and pressing Save & Apply writes the UCI file, and
  `netpath check` accepts the written file; an out-of-range weight writes nothing;
- adding a member through the dialog, and the dialog's cross-field checks;
- the explain form answers what the plugin answers;
- ACLs from the real acl.d file: a status-only session cannot read the config;
- lab (root): the overview shows the real agent's uplink states and charts, follows an
  uplink that fails, and its Disable button reaches the agent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness import cdp, labagent
from harness.server import ACCESS_DENIED, HarnessServer
from netpath.compiler import uci

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLE = REPO / "examples" / "three_wan_balanced.uci"
VIEWS = ["overview", "interfaces", "members", "policies", "rules", "diagnostics"]
READY = "document.body.dataset.viewReady == '1'"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if cdp.find_chromium() is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    with cdp.Browser(tmp_path_factory.mktemp("chromium")) as running:
        yield running


@pytest.fixture
def make_site(tmp_path):
    """make_site(**server options): the three-WAN example as /etc/config/netpath, its
    bundle, no agent, and a harness server (all stopped afterwards)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(EXAMPLE, etc / "netpath")
    bundle = labagent.compile_bundle(etc / "netpath", tmp_path / "bundle", check=False)
    started = []

    def make(**options):
        server = HarnessServer(etc, tmp_path / "no-agent.sock", bundle, **options).start()
        server.config = etc / "netpath"
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def site(make_site):
    return make_site()


def open_view(browser, server, view, **query) -> cdp.Page:
    url = server.view_url(f"netpath/{view}")
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    page = browser.open(url)
    page.wait_for(READY + " || (window.__harness_errors || []).length > 0")
    assert page.errors() == []
    return page


def sections(path, kind) -> list:
    return [s.name for s in uci.load(path).by_type(kind)]


def option(path, section, name):
    found = uci.load(path).get(section).options.get(name)
    return None if found is None else found.value


def set_field(page, element_id, value, within="") -> bool:
    """Type into a field as a person would; True if the field shows as invalid. `within`:
    a CSS selector for where to look (the dialog repeats the ids of the grid's fields)."""
    selector = f'{within} [id="{element_id}"]'.strip()
    return page.evaluate(f"""(() => {{
        const el = document.querySelector({json.dumps(selector)});
        el.value = {json.dumps(value)};
        for (const name of [ 'input', 'keyup', 'change', 'blur' ])
            el.dispatchEvent(new Event(name, {{ bubbles: true }}));
        return el.classList.contains('cbi-input-invalid');
    }})()""")


def wait_reloaded(page, timeout: float = 20) -> None:
    """After Save & Apply LuCI reloads the page (apply_display seconds after the confirm);
    mark the page with `window.__before_reload = true` before applying."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if page.evaluate("!window.__before_reload && document.body.dataset.viewReady == '1'"):
                return
        except (cdp.BrowserError, cdp.JsError):
            pass  # the old document is going away
        time.sleep(0.1)
    raise AssertionError("the page did not reload after Save & Apply")


def click(page, selector) -> None:
    page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


def uci_writes(server) -> list:
    return [(method, args.get("section")) for obj, method, args, _ in server.calls
            if obj == "uci" and method not in ("get", "changes")]


# -- every view ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,view", [("interface", "interfaces"), ("member", "members"),
                                       ("policy", "policies"), ("rule", "rules")])
def test_each_form_lists_the_sections_of_the_uci_file_in_order(browser, site, kind, view):
    page = open_view(browser, site, view)
    rows = page.evaluate("Array.from(document.querySelectorAll('tr.cbi-section-table-row')).map(r => r.dataset.sid)")
    assert rows == sections(site.config, kind)


def test_the_grid_shows_the_files_values(browser, site):
    page = open_view(browser, site, "members")
    for member in sections(site.config, "member"):
        for name in ("metric", "weight"):
            shown = page.evaluate(f"document.getElementById('widget.cbid.netpath.{member}.{name}').value")
            assert shown == option(site.config, member, name)
    rules = open_view(browser, site, "rules")
    policy_cells = rules.evaluate(
        "Array.from(document.querySelectorAll('tr.cbi-section-table-row td[data-name=policy]')).map(td => td.textContent)")
    assert policy_cells[0] == option(site.config, "https", "policy")


def test_overview_without_an_agent_says_so(browser, site):
    page = open_view(browser, site, "overview")
    banner = page.evaluate("document.getElementById('netpath-banner').textContent")
    assert "NetPath is not running" in banner and "no-agent.sock" in banner
    assert page.evaluate("document.querySelectorAll('.netpath-uplink').length") == 0


def test_diagnostics_shows_the_bundles_ruleset(browser, site):
    page = open_view(browser, site, "diagnostics")
    shown = page.evaluate("document.getElementById('netpath-ruleset-text').textContent")
    assert shown == (Path(site.bundle) / "ruleset.nft").read_text()
    interfaces = page.evaluate("Array.from(document.querySelectorAll('#netpath-ping-interface option')).map(o => o.value)")
    assert interfaces == sections(site.config, "interface")


def test_explain_in_the_browser_answers_what_the_plugin_answers(browser, site):
    page = open_view(browser, site, "diagnostics")
    set_field(page, "netpath-explain-dst", "198.51.100.7")
    set_field(page, "netpath-explain-dport", "443")
    click(page, "#netpath-explain-go")
    shown = page.wait_for("(document.querySelector('#netpath-explain-result pre') || {}).textContent")
    direct = site.call_plugin("explain", {"src": "192.168.1.10", "dst": "198.51.100.7", "proto": "tcp",
                                          "dport": 443, "iif": ""})
    assert direct[0] == 0 and shown == direct[1]["text"]
    assert "rule https: match" in shown


def test_ping_refuses_a_target_that_is_not_an_address_without_calling(browser, site):
    page = open_view(browser, site, "diagnostics")
    assert set_field(page, "netpath-ping-target", "203.0.113.10; reboot") is True
    click(page, "#netpath-ping-go")
    message = page.wait_for("document.getElementById('netpath-ping-result').textContent")
    assert "expecting an IP address" in message
    assert not [c for c in site.calls if c[1] == "ping"]


# -- writing the config -------------------------------------------------------------------------

def test_changing_a_weight_writes_the_uci_file_and_netpath_check_passes(browser, site):
    before = uci.load(site.config)
    old = option(site.config, "wanb_w2", "weight")
    page = open_view(browser, site, "members")
    assert set_field(page, "widget.cbid.netpath.wanb_w2.weight", "7") is False
    page.evaluate("window.__before_reload = true")
    click(page, ".cbi-page-actions .cbi-button-apply")
    page.wait_for("document.body.dataset.applied == '1'")

    after = uci.load(site.config)
    assert old != "7" and option(site.config, "wanb_w2", "weight") == "7"
    # nothing else changed: same sections, same options, same values
    changed = [(s.name, o.name) for s, t in zip(before.sections, after.sections)
               for o in s.options.values() if t.options[o.name].value != o.value]
    assert changed == [("wanb_w2", "weight")]
    assert [(s.type, s.name, list(s.options)) for s in before.sections] == \
        [(s.type, s.name, list(s.options)) for s in after.sections]

    check = subprocess.run([labagent.NETPATH, "check", str(site.config), "--format", "uci"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    # and after the reload that follows an apply, the grid shows what the file holds
    wait_reloaded(page)
    assert page.evaluate("document.getElementById('widget.cbid.netpath.wanb_w2.weight').value") == "7"


def test_an_out_of_range_weight_is_refused_and_nothing_is_written(browser, site):
    before = site.config.read_bytes()
    page = open_view(browser, site, "members")
    assert set_field(page, "widget.cbid.netpath.wan_w3.weight", "5000") is True
    click(page, ".cbi-page-actions .cbi-button-apply")
    error = page.wait_for("document.body.classList.contains('modal-overlay-active') && "
                          "document.querySelector('.save-error').textContent")
    assert "Weight" in error and "1 to 1000" in error
    assert site.config.read_bytes() == before
    assert uci_writes(site) == []
    assert page.evaluate("document.body.dataset.applied") is None


def test_a_member_added_in_the_dialog_lands_in_the_file(browser, site):
    page = open_view(browser, site, "members")
    page.evaluate("document.querySelector('.cbi-section-create-name').value = 'wanc_w5'")
    click(page, ".cbi-section-create .cbi-button-add")
    page.wait_for("document.body.classList.contains('modal-overlay-active')")
    page.evaluate("""(() => {
        const select = document.querySelector('.cbi-modal select[id="widget.cbid.netpath.wanc_w5.interface"]');
        select.value = 'wanc';
        select.dispatchEvent(new Event('change', { bubbles: true }));
    })()""")
    assert set_field(page, "widget.cbid.netpath.wanc_w5.weight", "5", within="#modal_overlay") is False
    click(page, "#modal_overlay .cbi-button-positive")
    page.wait_for("!document.body.classList.contains('modal-overlay-active')")
    click(page, ".cbi-page-actions .cbi-button-apply")
    page.wait_for("document.body.dataset.applied == '1'")
    assert sections(site.config, "member")[-1] == "wanc_w5"
    assert option(site.config, "wanc_w5", "interface") == "wanc"
    assert option(site.config, "wanc_w5", "weight") == "5"
    assert option(site.config, "wanc_w5", "metric") is None  # default left to the compiler


def test_a_section_name_the_compiler_would_refuse_is_not_added(browser, site):
    page = open_view(browser, site, "members")
    page.evaluate("document.querySelector('.cbi-section-create-name').value = '" + "m" * 33 + "'")
    click(page, ".cbi-section-create .cbi-button-add")
    note = page.wait_for("(document.querySelector('.alert-message.warning') || {}).textContent")
    assert "1-32 letters" in note
    assert not page.evaluate("document.body.classList.contains('modal-overlay-active')")


def test_the_interface_dialog_checks_fields_against_each_other(browser, site):
    page = open_view(browser, site, "interfaces")
    click(page, "tr[data-sid=wan] .cbi-button-edit")
    page.wait_for("document.body.classList.contains('modal-overlay-active')")
    assert set_field(page, "widget.cbid.netpath.wan.gateway", "2001:db8::1", within="#modal_overlay") is True  # the interface is ipv4
    assert set_field(page, "widget.cbid.netpath.wan.gateway", "192.0.2.1", within="#modal_overlay") is False
    assert set_field(page, "widget.cbid.netpath.wan.ifname", "eth1", within="#modal_overlay") is True  # wanb uses eth1 (ipv4)
    assert set_field(page, "widget.cbid.netpath.wan.ifname", "eth7", within="#modal_overlay") is False
    assert set_field(page, "widget.cbid.netpath.wan.reliability", "4", within="#modal_overlay") is True  # only 3 targets
    assert set_field(page, "widget.cbid.netpath.wan.reliability", "3", within="#modal_overlay") is False
    # the quality levels only show when quality checks are on
    hidden = "document.getElementById('cbi-netpath-wan-failure_latency').classList.contains('hidden')"
    assert page.evaluate(hidden) is True
    page.evaluate("""(() => { const box = document.querySelector('#modal_overlay [id="cbid.netpath.wan.check_quality"] input');
        box.checked = true; box.dispatchEvent(new Event('change', { bubbles: true })); })()""")
    assert page.evaluate(hidden) is False
    click(page, "#modal_overlay .right .btn:first-child")  # Dismiss
    assert uci_writes(site) == []


# -- access control -----------------------------------------------------------------------------

def test_a_status_only_session_sees_status_but_not_the_config(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(EXAMPLE, etc / "netpath")

    def server(grants):
        made = HarnessServer(etc, tmp_path / "none.sock", tmp_path / "none", acl=grants)
        made.httpd.server_close()  # only its ubus dispatch is used here, not HTTP
        return made

    watcher = server({"luci-app-netpath-status": "read"})
    assert watcher.ubus_call("luci.netpath", "status", {})[0] == 0
    for obj, method, args in [("luci.netpath", "explain", {}), ("luci.netpath", "ruleset", {}),
                              ("luci.netpath", "ping", {}), ("luci.netpath", "disable", {"interface": "wan"}),
                              ("uci", "get", {"config": "netpath"}),
                              ("uci", "set", {"config": "netpath", "section": "wan", "values": {"ifname": "x"}})]:
        # uhttpd-mod-ubus refuses an object/method outside the ACL with a JSON-RPC error;
        # rpcd's uci object refuses a config outside it with status 6.
        assert watcher.ubus_call(obj, method, args) == (ACCESS_DENIED if obj == "luci.netpath" else [6]), \
            (obj, method)
    reader = server({"luci-app-netpath": "read"})
    assert reader.ubus_call("uci", "get", {"config": "netpath"})[0] == 0
    assert reader.ubus_call("uci", "set", {"config": "netpath", "section": "wan", "values": {"ifname": "x"}}) == [6]
    assert reader.ubus_call("luci.netpath", "ping", {}) == ACCESS_DENIED
    assert reader.ubus_call("luci.netpath", "no_such_method", {}) == ACCESS_DENIED
    writer = server({"luci-app-netpath": "write"})
    assert writer.call_plugin("no_such_method", {}) == [3]
    assert (etc / "netpath").read_bytes() == EXAMPLE.read_bytes()


# -- as the real LuCI runtime does it (docs/luci.md, "The test harness") ---------------------------
#
# Each test below passed on the earlier harness whatever the views did: it granted every call
# (denials were an ordinary [6] reply), caught handler errors itself, took read-only from a
# flag of its own, applied through a plain `uci apply`, answered `uci changes` with a marker,
# gave the input the `cbid.` id and kept widgets out of reach of dom.content.

def notifications(page) -> str:
    return page.evaluate("Array.from(document.querySelectorAll('#maincontent > .alert-message')).map(n => n.textContent).join('|')")


def test_a_read_only_session_gets_no_write_controls(browser, make_site):
    """Read-only comes from the menu entry's ACL (nodespec) and `session access`: Ping is a
    write method and stays disabled (it used to be clickable and then hang on the denied
    call); forms are read-only and there is no Save & Apply to press."""
    site = make_site(acl={"luci-app-netpath": "read"})
    page = open_view(browser, site, "diagnostics")
    assert page.evaluate("L.hasViewPermission()") is False
    assert page.evaluate("document.getElementById('netpath-ping-go').disabled") is True
    assert page.evaluate("document.getElementById('netpath-explain-go').disabled") is False
    members = open_view(browser, site, "members")
    # the grid shows values, not inputs
    assert members.evaluate("document.getElementById('widget.cbid.netpath.wan_w3.weight')") is None
    assert members.evaluate("document.querySelector('tr[data-sid=wan_w3] td[data-name=weight]').textContent") == "3"
    assert members.evaluate("Array.from(document.querySelectorAll('.cbi-page-actions button')).every(b => b.disabled)")
    assert members.evaluate("document.querySelectorAll('.cbi-section-create').length") == 0
    assert ("session", "access", {"scope": "uci", "object": "netpath", "function": "write"}, 0) in site.calls
    writer = open_view(browser, make_site(), "diagnostics")
    assert writer.evaluate("document.getElementById('netpath-ping-go').disabled") is False


@pytest.mark.parametrize("button, setup", [
    ("#netpath-explain-go", 'set_field(page, "netpath-explain-dst", "198.51.100.7")'),
    ("#netpath-ping-go", 'set_field(page, "netpath-ping-target", "203.0.113.10")'),
    ("#netpath-ruleset-go", ""),
])
def test_every_diagnostics_action_shows_a_rejected_call(browser, site, button, setup):
    """A denied call rejects (JSON-RPC error -32002, here: the session expired after the page
    loaded) and createHandlerFn does not catch: the view must say what happened."""
    page = open_view(browser, site, "diagnostics")
    if setup:
        eval(setup)
    site.expire_session()
    click(page, button)
    shown = page.wait_for("document.querySelector('#maincontent > .alert-message.danger') && "
                          "document.querySelector('#maincontent > .alert-message.danger').textContent")
    assert "Access denied" in shown
    page.wait_for(f"!document.querySelector({json.dumps(button)}).disabled")
    assert page.errors() == []


def test_save_and_apply_goes_through_apply_rollback_and_confirm(browser, site):
    page = open_view(browser, site, "members")
    assert set_field(page, "widget.cbid.netpath.wan_w3.weight", "4") is False
    page.evaluate("window.__before_reload = true")
    click(page, ".cbi-page-actions .cbi-button-apply")
    page.wait_for("document.body.dataset.applied == '1'")
    assert [(action, status) for action, _, status in site.posts] == [("apply_rollback", 200), ("confirm", 204)]
    assert site.posts[0][1]["token"] == page.evaluate("L.env.token")
    assert site.rollback is None and option(site.config, "wan_w3", "weight") == "4"
    assert not [c for c in site.calls if c[:2] == ("uci", "apply")]
    wait_reloaded(page)
    assert page.evaluate("document.getElementById('widget.cbid.netpath.wan_w3.weight').value") == "4"


def test_an_apply_that_is_never_confirmed_is_rolled_back(browser, make_site):
    site = make_site(apply_rollback=2)
    site.confirm_lost = True
    before = site.config.read_bytes()
    page = open_view(browser, site, "members")
    set_field(page, "widget.cbid.netpath.wan_w3.weight", "4")
    click(page, ".cbi-page-actions .cbi-button-apply")
    shown = page.wait_for("(document.getElementById('applyreboot-status') || {}).textContent || ''", timeout=2) or ""
    page.wait_for("document.getElementById('applyreboot-status').textContent.includes('rolled back')", timeout=20)
    assert "Applying" in shown or "rolled back" in shown
    assert site.config.read_bytes() == before


def test_saving_a_dialog_writes_only_what_was_changed(browser, site):
    """`uci changes` lists what the session staged, as libuci deltas: editing one field of an
    interface and saving the dialog stages that field, not the defaults of the others."""
    page = open_view(browser, site, "interfaces")
    click(page, "tr[data-sid=wanc] .cbi-button-edit")
    page.wait_for("document.body.classList.contains('modal-overlay-active')")
    assert set_field(page, "widget.cbid.netpath.wanc.interval", "7", within="#modal_overlay") is False
    click(page, "#modal_overlay .cbi-button-positive")
    page.wait_for("!document.body.classList.contains('modal-overlay-active')")
    assert site.uci.changes("netpath") == {"changes": [["set", "wanc", "interval", "7"]]}
    assert page.errors() == []


def test_add_rule_puts_the_new_rule_above_the_catch_all_rule(browser, site):
    page = open_view(browser, site, "rules")
    page.evaluate("document.querySelector('.cbi-section-create-name').value = 'video'")
    click(page, ".cbi-section-create .cbi-button-add")
    page.wait_for("document.body.classList.contains('modal-overlay-active')")
    assert set_field(page, "widget.cbid.netpath.video.dest_port", "8080", within="#modal_overlay") is False
    page.evaluate("""(() => {
        const proto = document.querySelector('#modal_overlay [id="widget.cbid.netpath.video.proto"]');
        proto.value = 'tcp'; proto.dispatchEvent(new Event('change', { bubbles: true }));
        const policy = document.querySelector('#modal_overlay [id="widget.cbid.netpath.video.policy"]');
        policy.value = 'balanced'; policy.dispatchEvent(new Event('change', { bubbles: true }));
    })()""")
    click(page, "#modal_overlay .cbi-button-positive")
    page.wait_for("!document.body.classList.contains('modal-overlay-active')")
    rows = page.evaluate("Array.from(document.querySelectorAll('tr.cbi-section-table-row')).map(r => r.dataset.sid)")
    assert rows == ["https", "lan_printer_direct", "video", "default_rule"]
    click(page, ".cbi-page-actions .cbi-button-apply")
    page.wait_for("document.body.dataset.applied == '1'")
    assert sections(site.config, "rule") == ["https", "lan_printer_direct", "video", "default_rule"]
    assert option(site.config, "video", "family") is None and option(site.config, "video", "sticky") is None
    check = subprocess.run([labagent.NETPATH, "check", str(site.config), "--format", "uci"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "can never match" not in check.stderr, check.stderr


def test_a_cross_field_check_survives_the_dialogs_re_render(browser, site):
    """Saving re-renders the dialog: dom.content drops the widgets from the registry before
    the focused field loses focus, and its blur check then asks a sibling (family) that is
    gone; it must fall back to the stored value instead of throwing."""
    page = open_view(browser, site, "interfaces")
    click(page, "tr[data-sid=wan] .cbi-button-edit")
    page.wait_for("document.body.classList.contains('modal-overlay-active')")
    assert set_field(page, "widget.cbid.netpath.wan.gateway", "192.0.2.254", within="#modal_overlay") is False
    page.evaluate("document.querySelector('#modal_overlay [id=\"widget.cbid.netpath.wan.gateway\"]').focus()")
    click(page, "#modal_overlay .cbi-button-positive")
    page.wait_for("!document.body.classList.contains('modal-overlay-active')")
    assert page.errors() == []
    assert site.uci.changes("netpath") == {"changes": [["set", "wan", "gateway", "192.0.2.254"]]}


def test_widget_ids_are_lucis(browser, site):
    """The input is `widget.cbid.<config>.<section>.<option>`, `cbid....` its wrapper; a
    label points at the input."""
    page = open_view(browser, site, "members")
    assert page.evaluate("document.getElementById('cbid.netpath.wan_w3.weight').tagName") == "DIV"
    assert page.evaluate("document.getElementById('widget.cbid.netpath.wan_w3.weight').tagName") == "INPUT"
    click(page, "tr[data-sid=wan_w3] .cbi-button-edit")
    page.wait_for("document.body.classList.contains('modal-overlay-active')")
    labels = page.evaluate("Array.from(document.querySelectorAll('#modal_overlay label.cbi-value-title'))"
                           ".map(l => document.querySelector('#modal_overlay [id=\"' + l.htmlFor + '\"]').tagName)")
    assert labels and set(labels) <= {"INPUT", "SELECT"}


# -- the overview against a real agent ----------------------------------------------------------

@pytest.fixture(scope="module")
def lab_site(lab_module, tmp_path_factory):
    work = tmp_path_factory.mktemp("overview")
    lab_module.start_servers()
    config = labagent.write_lab_config(work / "etc")
    bundle = labagent.compile_bundle(config, work / "bundle")
    agent = labagent.LabAgent(lab_module, bundle, work).start()
    try:
        agent.wait_states({"wan1": "online", "wan2": "online"}, timeout=30)
        with HarnessServer(work / "etc", agent.socket, bundle) as server:
            yield server, agent
    finally:
        agent.stop()


def shown_states(page) -> dict:
    return page.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('.netpath-uplink'))"
                         ".map(c => [c.dataset.interface, c.dataset.state]))")


def wait_shown(page, agent, wanted: dict, timeout: float = 30) -> dict:
    agent.wait_states(wanted, timeout)
    page.wait_for("(() => { const s = " + json.dumps(wanted) + "; return Array.from(document.querySelectorAll("
                  "'.netpath-uplink')).filter(c => s[c.dataset.interface] == c.dataset.state).length == "
                  + str(len(wanted)) + "; })()", timeout=timeout)
    return shown_states(page)


@pytest.mark.lab
def test_overview_shows_the_labs_uplinks_and_charts(browser, lab_site):
    server, agent = lab_site
    page = open_view(browser, server, "overview", poll=1)
    page.wait_for("+document.body.dataset.pollCount >= 3")
    # A sample is one status snapshot (rewritten every 2 s), not one poll: three polls a second
    # apart may all read the same snapshot. Wait until the charts have their second sample.
    page.wait_for("(() => { const paths = document.querySelectorAll('.netpath-uplink svg path'); "
                  "return paths.length > 0 && Array.from(paths).every(p => /L/.test(p.getAttribute('d') || '')); })()")
    assert shown_states(page) == agent.states() == {"wan1": "online", "wan2": "online"}
    devices = page.evaluate("Array.from(document.querySelectorAll('.netpath-uplink .netpath-device')).map(e => e.textContent)")
    assert devices == ["wan1", "wan2"]
    # one latency line and two throughput lines per uplink, drawn through several samples
    lines = page.evaluate("Array.from(document.querySelectorAll('.netpath-uplink')).map(c => "
                          "Array.from(c.querySelectorAll('svg path')).map(p => p.getAttribute('class') + ' ' + "
                          "(p.getAttribute('d').match(/L/g) || []).length))")
    for card in lines:
        kinds = {entry.split()[1]: int(entry.split()[2]) for entry in card}
        assert set(kinds) == {"netpath-line-latency", "netpath-line-rx", "netpath-line-tx"}
        assert all(points >= 1 for points in kinds.values())
    latency = page.evaluate("document.querySelector('[data-interface=wan1] .netpath-legend-latency').textContent")
    assert latency.endswith(" ms")
    policy = page.evaluate("document.getElementById('netpath-policies').textContent")
    assert "balanced" in policy and "wan1 75%" in policy and "wan2 25%" in policy


@pytest.mark.lab
def test_overview_follows_an_uplink_that_fails_and_recovers(browser, lab_site):
    server, agent = lab_site
    page = open_view(browser, server, "overview", poll=1)
    agent.lab.isp_blackhole(1)
    try:
        assert wait_shown(page, agent, {"wan1": "offline", "wan2": "online"}) == {"wan1": "offline", "wan2": "online"}
        events = page.wait_for("(() => { const t = document.getElementById('netpath-history').textContent; "
                               "return t.includes('→ offline') && t; })()")
        assert "wan1" in events
    finally:
        agent.lab.isp_blackhole(1, on=False)
    assert wait_shown(page, agent, {"wan1": "online", "wan2": "online"}) == {"wan1": "online", "wan2": "online"}


@pytest.mark.lab
def test_the_disable_button_reaches_the_agent(browser, lab_site):
    server, agent = lab_site
    page = open_view(browser, server, "overview", poll=1)
    try:
        click(page, "[data-interface=wan2] button")
        assert wait_shown(page, agent, {"wan2": "disabled"})["wan2"] == "disabled"
        wan2 = next(i for i in agent.request("interfaces")["interfaces"] if i["name"] == "wan2")
        assert wan2["admin"] == "disabled"
        label = page.evaluate("document.querySelector('[data-interface=wan2] button').textContent")
        assert label == "Enable"
        click(page, "[data-interface=wan2] button")
        wait_shown(page, agent, {"wan2": "online"})
    finally:
        agent.request("enable", interface="wan2")


@pytest.mark.lab
def test_a_read_only_user_watches_without_buttons(browser, lab_site, tmp_path):
    server, agent = lab_site
    with HarnessServer(tmp_path, agent.socket, server.bundle, acl={"luci-app-netpath-status": "read"}) as watcher:
        page = open_view(browser, watcher, "overview")
        assert shown_states(page) == agent.states()
        assert page.evaluate("document.querySelectorAll('.netpath-uplink button').length") == 0
        assert page.evaluate("document.querySelectorAll('.cbi-page-actions button').length") == 0
        assert watcher.ubus_call("luci.netpath", "disable", {"interface": "wan1"}) == ACCESS_DENIED


@pytest.mark.lab
def test_a_rejected_disable_is_shown(browser, lab_site, tmp_path):
    server, agent = lab_site
    with HarnessServer(tmp_path, agent.socket, server.bundle) as site:
        page = open_view(browser, site, "overview")
        site.expire_session()
        click(page, "[data-interface=wan2] button")
        shown = page.wait_for("(document.querySelector('#maincontent > .alert-message.danger') || {}).textContent")
        assert "Access denied" in shown
        assert page.errors() == []
        assert next(i for i in agent.request("interfaces")["interfaces"] if i["name"] == "wan2")["admin"] != "disabled"
