"""Property-based tests: random valid configs (interfaces, members, policies, rules within
the schema) all compile and load in the kernel; a valid config with one mutation always
fails cleanly: exit status 2, one line per problem naming the place, nothing written.

Kernel loads are batched: each example is a list of configs with distinct nft tables,
loaded as one transaction, to keep the run short.
"""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import json
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from netpath.agent import marks
from netpath.agent.policy import LAST_RESORTS, MODES
from netpath.compiler import bundle, check, cli, load, pipeline, uci

CONFIGS_PER_EXAMPLE = 5
# No shrinking: each example compiles several configs and loads them in the kernel, and
# hypothesis prints the failing batch as it is, which names the config that broke.
SETTINGS = settings(max_examples=5, deadline=None, derandomize=True,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
TARGETS = {"ipv4": ["8.8.8.8", "1.1.1.1", "9.9.9.9", "192.0.2.1"],
           "ipv6": ["2001:4860:4860::8888", "2001:db8::1", "2001:db8::53"]}
NETS = {"ipv4": ["192.0.2.0/24", "198.51.100.0/25", "203.0.113.7", "10.0.0.0/8", "192.168.1.0/24",
                 "10.0.0.7/255.0.0.255"],
        "ipv6": ["2001:db8::/32", "2001:db8:1::/64", "2001:db8::7"]}
MASKS = ["0x3F00", "0xFF00", "0x0F00", "0x7000000", "0xF0"]


@st.composite
def interfaces(draw):
    count = draw(st.integers(1, 5))
    chosen = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    out = {}
    for i, name in enumerate(chosen):
        family = draw(st.sampled_from(["ipv4", "ipv6"]))
        iface = {"ifname": draw(st.sampled_from([f"eth{i}", f"wan{i}", f"pppoe-w{i}", f"wwan{i}.5"])),
                 "family": family}
        if draw(st.booleans()):
            iface["gateway"] = "192.0.2.1" if family == "ipv4" else "2001:db8::1"
        if draw(st.integers(0, 5)) == 0:
            iface["enabled"] = False
        if draw(st.booleans()):
            iface["masquerade"] = True
        method = draw(st.sampled_from(["ping", "none", "dns"]))
        track = {"method": method}
        if method != "none":
            targets = draw(st.lists(st.sampled_from(TARGETS[family]), min_size=1, max_size=3, unique=True))
            track.update(targets=targets, reliability=draw(st.integers(1, len(targets))),
                         interval=draw(st.sampled_from([1, 5, 0.5, 60])))
        iface["track"] = track
        out[name] = iface
    return out


@st.composite
def configs(draw, table: str):
    ifaces = draw(interfaces())
    members = {}
    for name in ifaces:
        for k in range(draw(st.integers(1, 2))):
            members[f"{name}_m{k}"] = {"interface": name, "metric": draw(st.integers(1, 4)),
                                       "weight": draw(st.integers(1, 20))}
    policies = {}
    for p in range(draw(st.integers(1, 3))):
        by_iface = {}
        for member in draw(st.permutations(sorted(members))):
            by_iface.setdefault(members[member]["interface"], member)
        chosen = list(by_iface.values())[:draw(st.integers(1, 4))]
        policies[f"pol{p}"] = {"members": chosen, "mode": draw(st.sampled_from(MODES)),
                               "last_resort": draw(st.sampled_from(LAST_RESORTS))}
    rules = []
    for r in range(draw(st.integers(0, 4))):
        rule = {"name": f"rule{r}",
                "policy": draw(st.sampled_from(sorted(policies) + ["default", "blackhole"]))}
        family = draw(st.sampled_from(["any", "ipv4", "ipv6"]))
        if family != "any":
            rule["family"] = family
            if draw(st.booleans()):
                rule[draw(st.sampled_from(["src_ip", "dest_ip"]))] = draw(
                    st.lists(st.sampled_from(NETS[family]), min_size=1, max_size=2, unique=True))
            if draw(st.booleans()):
                rule[draw(st.sampled_from(["ipset", "src_ipset"]))] = draw(names)
        proto = draw(st.sampled_from(["all", "tcp", "udp", "icmp" if family != "ipv6" else "icmpv6", "47"]))
        rule["proto"] = proto
        if proto in ("all", "tcp", "udp") and draw(st.booleans()):
            rule["dest_port"] = draw(st.sampled_from(["443", "80,443", "1000-2000", "53 853"]))
        if rule["policy"].startswith("pol") and draw(st.integers(0, 3)) == 0:
            rule["sticky"] = True
            rule["timeout"] = draw(st.integers(1, 86400))
        rules.append(rule)
    mask = draw(st.sampled_from([m for m in MASKS if marks.max_interfaces(int(m, 16)) >= len(ifaces)]))
    # Tables base+1 .. base+ids stay clear of the kernel's 253-255 (validate refuses the rest).
    ids = marks.max_interfaces(int(mask, 16))
    bases = st.integers(255, 5000) if ids > 251 else st.integers(1, 252 - ids) | st.integers(255, 5000)
    return {"global": {"nft_table": table, "mark_mask": mask, "route_table_base": draw(bases)},
            "interfaces": ifaces, "members": members, "policies": policies, "rules": rules}


def to_uci(cfg: dict) -> str:
    """Write the nested config the way a person writes /etc/config/netpath."""
    from netpath.compiler.load import UCI_OPTION_OF_TRACK

    def opt(name, value):
        if isinstance(value, list):
            return "".join(f"\tlist {name} {uci.quote(str(v))}\n" for v in value)
        if isinstance(value, bool):
            value = int(value)
        return f"\toption {name} {uci.quote(str(value))}\n"

    out = ["config globals 'globals'\n" + "".join(opt(k, v) for k, v in cfg["global"].items())]
    for kind, key in (("interface", "interfaces"), ("member", "members"), ("policy", "policies")):
        for name, section in cfg[key].items():
            body = ""
            for k, v in section.items():
                if k == "track":
                    body += "".join(opt(UCI_OPTION_OF_TRACK[tk], tv) for tk, tv in v.items())
                else:
                    body += opt(k, v)
            out.append(f"config {kind} '{name}'\n{body}")
    for rule in cfg["rules"]:
        out.append(f"config rule '{rule['name']}'\n" +
                   "".join(opt(k, v) for k, v in rule.items() if k != "name"))
    return "\n".join(out)


def write_config(cfg: dict, directory: Path, stem: str, fmt: str) -> Path:
    path = directory / f"{stem}.{'uci' if fmt == 'uci' else 'yaml'}"
    path.write_text(to_uci(cfg) if fmt == "uci" else yaml.safe_dump(cfg, sort_keys=False))
    return path


def load_routes(files: dict) -> None:
    manifest = json.loads(files["manifest.json"])
    for family in ("ipv4", "ipv6"):
        text = "".join(files[r["file"]] for r in manifest["routes"] if r["family"] == family)
        proc = subprocess.run(check.unshare_argv() + ["ip", "-" + family[-1], "-batch", "-"], input=text,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


batches = st.lists(st.sampled_from(["uci", "yaml"]), min_size=CONFIGS_PER_EXAMPLE,
                   max_size=CONFIGS_PER_EXAMPLE).flatmap(
    lambda fmts: st.tuples(st.just(fmts), st.tuples(*[configs(f"np_prop_{i}") for i in range(len(fmts))])))


@pytest.mark.lab
@SETTINGS
@given(batches)
def test_valid_configs_compile_and_load_in_the_kernel(batch):
    fmts, cfgs = batch
    combined = {"ruleset.nft": ""}
    with tempfile.TemporaryDirectory(prefix="netpath-prop-") as tmp:
        for i, (fmt, cfg) in enumerate(zip(fmts, cfgs)):
            path = write_config(cfg, Path(tmp), f"c{i}", fmt)
            result = pipeline.build(str(path))
            again = pipeline.build(str(path))
            assert result.files == again.files  # deterministic
            assert {p.name for p in result.model.policies} == set(cfg["policies"])
            for policy in result.model.policies:
                assert len(policy.states) == 2 ** len(policy.members) or not policy.members
            combined["ruleset.nft"] += result.files["ruleset.nft"]
            for rel, text in result.files.items():
                if rel.startswith("states/"):
                    combined[f"states/c{i}/{rel[len('states/'):]}"] = text
            load_routes(result.files)
        check.check_files(combined)  # every ruleset and every state variant, one transaction


# --- one mutation each: always a clean failure ------------------------------------------------


def _first(mapping: dict) -> str:
    return next(iter(mapping))


def _interface_of_family(cfg, family):
    return next((n for n, i in cfg["interfaces"].items() if i["family"] == family), None)


def mutate(cfg: dict, kind: str) -> str:
    """Break `cfg` in one way; return the name of the section that is now wrong."""
    ifaces, members, policies = cfg["interfaces"], cfg["members"], cfg["policies"]
    if kind == "member_to_missing_interface":
        name = _first(members)
        members[name]["interface"] = "nosuch_iface"
    elif kind == "weight_zero":
        name = _first(members)
        members[name]["weight"] = 0
    elif kind == "metric_out_of_range":
        name = _first(members)
        members[name]["metric"] = 999
    elif kind == "policy_to_missing_member":
        name = _first(policies)
        policies[name]["members"].append("nosuch_member")
    elif kind == "rule_to_missing_policy":
        cfg["rules"].append({"name": "broken_rule", "policy": "nosuch_policy"})
        name = "broken_rule"
    elif kind == "duplicate_rule_name":
        cfg["rules"] += [{"name": "twice", "policy": "default"}, {"name": "twice", "policy": "default"}]
        name = "twice"
    elif kind == "unknown_option":
        name = _first(ifaces)
        ifaces[name]["ifnmae"] = "eth9"
    elif kind == "device_injection":
        name = _first(ifaces)
        ifaces[name]["ifname"] = 'eth0";flush'
    elif kind == "gateway_family":
        name = _first(ifaces)
        ifaces[name]["gateway"] = "2001:db8::1" if ifaces[name]["family"] == "ipv4" else "192.0.2.1"
    elif kind == "bad_prefix":
        cfg["rules"].append({"name": "bad_prefix", "policy": "default", "dest_ip": ["192.0.2.0/33"]})
        name = "bad_prefix"
    elif kind == "bad_port":
        cfg["rules"].append({"name": "bad_port", "policy": "default", "proto": "tcp", "dest_port": "0"})
        name = "bad_port"
    elif kind == "rule_family_mismatch":
        cfg["rules"].append({"name": "mismatch", "policy": "default", "family": "ipv6",
                             "src_ip": ["192.0.2.0/24"]})
        name = "mismatch"
    elif kind == "mode_typo":
        name = _first(policies)
        policies[name]["mode"] = "balance"
    elif kind == "mask_too_small":
        cfg["global"]["mark_mask"] = "0x3"
        name = "mark_mask"
    elif kind == "set_name_injection":
        cfg["rules"].append({"name": "setrule", "policy": "default", "ipset": "a}b"})
        name = "setrule"
    elif kind == "track_target_family":
        name = _first(ifaces)
        family = ifaces[name]["family"]
        ifaces[name]["track"] = {"method": "ping", "targets": ["2001:db8::1" if family == "ipv4" else "192.0.2.1"]}
    else:
        raise ValueError(kind)
    return name


MUTATIONS = ["member_to_missing_interface", "weight_zero", "metric_out_of_range",
             "policy_to_missing_member", "rule_to_missing_policy", "duplicate_rule_name",
             "unknown_option", "device_injection", "gateway_family", "bad_prefix", "bad_port",
             "rule_family_mismatch", "mode_typo", "mask_too_small", "set_name_injection",
             "track_target_family"]


@SETTINGS
@given(st.lists(st.tuples(configs("netpath"), st.sampled_from(MUTATIONS), st.sampled_from(["uci", "yaml"])),
                min_size=CONFIGS_PER_EXAMPLE, max_size=CONFIGS_PER_EXAMPLE))
def test_one_mutation_always_fails_cleanly(cases):
    with tempfile.TemporaryDirectory(prefix="netpath-prop-") as tmp:
        root = Path(tmp)
        out = root / "bundle"
        bundle.write(out, {"ruleset.nft": "previous\n", "manifest.json": "{}\n"})
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        for i, (cfg, kind, fmt) in enumerate(cases):
            place = mutate(cfg, kind)
            path = write_config(cfg, root, f"bad{i}", fmt)
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                status = cli.main(["compile", str(path), "-o", str(out), "--no-check"])
            lines = stderr.getvalue().splitlines()
            assert status == 2, (kind, stderr.getvalue())
            assert stdout.getvalue() == "" and lines, kind
            assert "Traceback" not in stderr.getvalue()
            for line in lines:
                assert line.startswith(f"{path}"), (kind, line)
                if fmt == "uci":
                    assert line[len(str(path))] == ":" and line[len(str(path)) + 1].isdigit(), (kind, line)
            assert any(place in line for line in lines), (kind, place, lines)
            assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
            assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []


# --- garbage: never a traceback, never a bundle the kernel refuses -----------------------------

GARBAGE = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

OPTION_NAMES = sorted({"ifname", "family", "gateway", "enabled", "masquerade", "flush_conntrack", "id",
                       "track", "interface", "metric", "weight", "members", "mode", "last_resort", "name",
                       "policy", "proto", "src_ip", "dest_ip", "src_port", "dest_port", "src_iface", "ipset",
                       "sticky", "timeout", "nft_table", "mark_mask", "route_table_base", "route_protocol",
                       "method", "targets", "interval", "reliability", "count", "up", "down", "http_url",
                       "track_method", "track_targets", "size", "max_ttl", "dns_query", "check_quality"})
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2 ** 80, 2 ** 80),
                    st.floats(), st.text(max_size=30),
                    st.sampled_from(["0.0.0.0", "::", "192.0.2.256", "224.0.0.1", "255.255.255.255",
                                     "١٢", "１", "1_0", "0x3F00", "counter", "table", "eth0", "wan",
                                     "8.8.8.8", "2001:db8::1", "ping", "none", "balanced", "253",
                                     "1e999", "nan", "-1", "", " ", "a\nb", "'", "\"", "#", ";"]))
keys = st.one_of(st.sampled_from(OPTION_NAMES), st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
                 st.text(max_size=10))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=12)
sections = st.dictionaries(st.one_of(st.sampled_from(["wan", "wanb", "m1", "p1"]), keys),
                           st.dictionaries(keys, values, max_size=6), max_size=3)
documents = st.fixed_dictionaries({}, optional={
    "global": st.dictionaries(keys, values, max_size=4), "interfaces": sections, "members": sections,
    "policies": sections, "rules": st.lists(st.dictionaries(keys, values, max_size=5), max_size=3),
    "junk": values})


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if value in (
            float("inf"), float("-inf")) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()
                               if v is not None) + "}"
    return json.dumps(str(value))


def to_toml_text(doc: dict) -> str:
    return "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in doc.items() if v is not None)


def to_uci_text(doc: dict) -> str:
    out = []
    for key, section in doc.items():
        if not isinstance(section, dict):
            continue
        kind = {"global": "globals", "interfaces": "interface", "members": "member",
                "policies": "policy", "rules": "rule"}.get(key, key)
        for name, options in (section.items() if key != "global" else [("globals", section)]):
            out.append(f"config {uci.quote(str(kind) or 'x')} {uci.quote(str(name))}")
            for option, value in (options.items() if isinstance(options, dict) else []):
                items = value if isinstance(value, list) else [value]
                word = "list" if isinstance(value, list) else "option"
                out += [f"\t{word} {option} {uci.quote(str(v))}" for v in items]
    return "\n".join(out) + "\n"


uci_lines = st.lists(st.one_of(
    st.builds(lambda k, a, b: f"{k} {a} {b}", st.sampled_from(["config", "option", "list", "package", "c", "o",
                                                               "l", "#", "", "bogus"]),
              st.one_of(st.sampled_from(["interface", "member", "policy", "rule", "globals", "ifname",
                                         "track_targets", "weight", "members"]), st.text(max_size=8)),
              st.one_of(st.text(max_size=12).map(uci.quote), st.text(max_size=12), scalars.map(str))),
    st.text(max_size=40)), max_size=25).map("\n".join)


def compiles_cleanly(tmp: Path, name: str, raw: bytes) -> None:
    """Compile `raw`: either a clean refusal (exit 2, bounded located lines, nothing written)
    or a bundle the kernel accepts. A traceback fails the test by itself."""
    config = tmp / name
    config.write_bytes(raw)
    out = tmp / "bundle"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(["compile", str(config), "-o", str(out), "--no-check"])
    errors = [l for l in stderr.getvalue().splitlines() if not l.startswith("warning: ")]
    if status == 0:
        files = bundle.read_tree(out)
        check.check_files(files)  # what we wrote, the kernel must take
        load_routes(files)
        bundle_dir = out
        for path in sorted(bundle_dir.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        bundle_dir.rmdir()
        return
    assert status == 2, (status, stderr.getvalue())
    assert stdout.getvalue() == "" and 1 <= len(errors) <= 51, stderr.getvalue()
    for line in errors:
        assert len(line) <= 400 and (line.startswith(str(config)) or line.startswith("... and ")), line
    assert not out.exists()


@GARBAGE
@given(st.binary(max_size=300), st.sampled_from(["uci", "toml", "yaml"]))
def test_random_bytes_never_crash_the_compiler(raw, fmt):
    with tempfile.TemporaryDirectory(prefix="netpath-garbage-") as tmp:
        compiles_cleanly(Path(tmp), f"c.{fmt}", raw)


@GARBAGE
@given(documents, st.sampled_from(["uci", "toml", "yaml"]))
def test_random_documents_never_crash_the_compiler(doc, fmt):
    if fmt == "yaml":
        text = yaml.safe_dump(doc, allow_unicode=True)
    elif fmt == "toml":
        text = to_toml_text(doc)
    else:
        text = to_uci_text(doc)
    with tempfile.TemporaryDirectory(prefix="netpath-garbage-") as tmp:
        compiles_cleanly(Path(tmp), f"c.{fmt}", text.encode("utf-8", "surrogatepass"))


@GARBAGE
@given(uci_lines)
def test_random_uci_lines_never_crash_the_compiler(text):
    with tempfile.TemporaryDirectory(prefix="netpath-garbage-") as tmp:
        compiles_cleanly(Path(tmp), "c.uci", text.encode("utf-8", "surrogatepass"))


@GARBAGE
@given(st.sampled_from(["global", "interfaces", "track", "members", "policies", "rules"]), keys, values,
       st.sampled_from(["uci", "toml", "yaml"]))
def test_one_random_value_in_a_valid_config_never_crashes_the_compiler(section, option, value, fmt):
    """Garbage that reaches validate: a working config with one option set to anything."""
    track = {"method": "ping", "targets": ["192.0.2.1"]}
    cfg = {"global": {"nft_table": "np_garbage"},
           "interfaces": {"wan": {"ifname": "eth0", "track": track}},
           "members": {"wan_m1": {"interface": "wan"}}, "policies": {"p": {"members": ["wan_m1"]}},
           "rules": [{"name": "r", "policy": "p"}]}
    target = {"global": cfg["global"], "track": track, "rules": cfg["rules"][0]}.get(section) \
        or next(iter(cfg[section].values()))
    target[option] = value
    if fmt == "yaml":
        text = yaml.safe_dump(cfg, allow_unicode=True)
    elif fmt == "toml":
        text = to_toml_text(cfg)
    else:
        flat = copy.deepcopy(cfg)
        wan = flat["interfaces"]["wan"]
        if isinstance(wan.get("track"), dict):  # UCI spells tracking flat on the interface
            wan.update({load.UCI_OPTION_OF_TRACK.get(k, k): v for k, v in wan.pop("track").items()})
        flat["rules"] = {r.get("name", "r") if isinstance(r.get("name"), str) else "r": r for r in flat["rules"]}
        text = to_uci_text(flat)
    with tempfile.TemporaryDirectory(prefix="netpath-garbage-") as tmp:
        compiles_cleanly(Path(tmp), f"c.{fmt}", text.encode("utf-8", "surrogatepass"))
