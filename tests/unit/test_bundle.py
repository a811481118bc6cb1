"""agent/bundle.py: a bundle read once stays the bundle the agent runs, and what it refuses.

Bundles come from the real compiler (`netpath compile`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netpath.agent import bundle as bundle_mod

REPO = Path(__file__).resolve().parents[2]
NETPATH = str(Path(sys.executable).parent / "netpath")


def compile_to(example: str, out: Path) -> Path:
    subprocess.run([NETPATH, "compile", str(REPO / "examples" / example), "-o", str(out), "--no-check"],
                   check=True, capture_output=True, timeout=120)
    return out


def test_a_recompile_into_the_directory_leaves_the_bundle_read_before_intact(tmp_path):
    out = compile_to("dual_wan_failover.toml", tmp_path / "bundle")
    b = bundle_mod.read(out)
    on_disk = {(p.name, mask): (out / rel).read_text() for p in b.model.policies for mask, rel in p.states.items()}
    ruleset = (out / b.manifest["ruleset"]).read_text()
    compile_to("three_wan_balanced.toml", out)  # another config: other policies, other state files
    assert bundle_mod.read(out).digest != b.digest
    for (policy, mask), text in on_disk.items():
        assert b.state_text(policy, mask) == text
    assert b.text(b.manifest["ruleset"]) == ruleset


def _edited(out: Path, edit) -> Path:
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    edit(manifest)
    manifest_path.write_text(json.dumps(manifest))
    return out


def _interface(manifest, name="wan") -> dict:
    return next(i for i in manifest["model"]["interfaces"] if i["name"] == name)


HAND_EDITS = {  # what the agent would write into nft text or `ip -batch` lines itself
    "table": lambda m: m["model"].update(table="netpath\ndelete table inet fw4"),
    "route_protocol": lambda m: m["model"].update(route_protocol="93\nrule flush"),
    ".device": lambda m: _interface(m).update(device="eth0 table 254"),
    ".gateway": lambda m: _interface(m).update(gateway="192.0.2.1 dev lo\nroute flush table main"),
    ".table": lambda m: _interface(m).update(table="1001\nroute flush table main"),
    "kernel's table 'main'": lambda m: _interface(m).update(table=254),
    "nft keyword": lambda m: m["model"].update(table="counter"),
    "zone id": lambda m: _interface(m).update(gateway="fe80::1%eth0 onlink\nroute flush table main"),
    "interfaces['wan\\n'].name": lambda m: _interface(m).update(name="wan\n"),
    "policies": lambda m: m["model"]["policies"][0].update(name="p; x"),
    "rules": lambda m: m["model"]["rules"][0].update(name="r x"),
}


@pytest.mark.parametrize("field", list(HAND_EDITS))
def test_a_hand_edited_model_that_would_inject_text_is_refused_naming_the_field(tmp_path, field):
    out = compile_to("dual_wan_failover.toml", tmp_path / "bundle")
    _edited(out, HAND_EDITS[field])
    with pytest.raises(bundle_mod.BundleError) as refused:
        bundle_mod.read(out)
    message = str(refused.value)
    wanted = {"zone id": ".gateway"}.get(field, field)
    assert wanted in message, message
    assert "recompile" in message


UNLISTED = {  # a file the agent would load although no sha256 in the manifest covers it
    "ruleset": lambda m: m.update(ruleset="extra.nft"),
    "routes file": lambda m: m["routes"][0].update(file="extra.batch"),
    "state file": lambda m: m["model"]["policies"][0]["states"].update(
        {mask: "extra.nft" for mask in m["model"]["policies"][0]["states"]}),
}


@pytest.mark.parametrize("kind", list(UNLISTED))
def test_every_file_the_agent_loads_must_be_listed_with_its_sha256(tmp_path, kind):
    out = compile_to("dual_wan_failover.toml", tmp_path / "bundle")
    (out / "extra.nft").write_text("flush ruleset\n")
    (out / "extra.batch").write_text("rule flush\n")
    _edited(out, UNLISTED[kind])
    with pytest.raises(bundle_mod.BundleError) as refused:
        bundle_mod.read(out)
    assert f"{kind} 'extra." in str(refused.value) and "not listed" in str(refused.value), refused.value
