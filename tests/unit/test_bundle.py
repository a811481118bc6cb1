"""agent/bundle.py: a bundle read once stays the bundle the agent runs, and what it refuses.

Bundles come from the real compiler (`netpath compile`)."""

from __future__ import annotations

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
