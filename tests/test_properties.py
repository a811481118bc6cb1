"""Property-based tests: random valid configs (interfaces, members, policies, rules within
the schema) all compile and load in the kernel; a valid config with one mutation always
fails cleanly: exit status 2, one line per problem naming the place, nothing written.

Kernel loads are batched: each example is a list of configs with distinct nft tables,
loaded as one transaction, to keep the run short.
"""

from __future__ import annotations

import contextlib
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
from netpath.compiler import bundle, check, cli, pipeline, uci

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
