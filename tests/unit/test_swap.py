"""agent/swap.py: which state files a change loads, and reading the loaded variant back.

Bundles come from the real compiler; the read-back is proven against a real kernel in a
throw-away network namespace (`unshare -n`): every variant is loaded, listed by nft and must
be recognised again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netpath.agent import bundle as bundle_mod
from netpath.agent import swap
from netpath.agent.apply import masks_for

REPO = Path(__file__).resolve().parents[2]
NETPATH = str(Path(sys.executable).parent / "netpath")


def compiled(tmp_path, example: str):
    out = tmp_path / Path(example).stem
    subprocess.run([NETPATH, "compile", str(REPO / "examples" / example), "-o", str(out)], check=True,
                   capture_output=True, timeout=120)
    return bundle_mod.read(out)


@pytest.fixture(scope="module")
def three_wan(tmp_path_factory):
    return compiled(tmp_path_factory.mktemp("b"), "three_wan_balanced.toml")


@pytest.fixture(scope="module")
def failover(tmp_path_factory):
    return compiled(tmp_path_factory.mktemp("b"), "dual_wan_failover.toml")


def test_a_change_loads_only_the_policies_whose_mask_changed(failover):
    model = failover.model
    everything = masks_for(model, {"wan", "wanb"})
    without_wanb = masks_for(model, {"wan"})
    changed = swap.changed_policies(everything, without_wanb)
    assert changed == sorted(p for p in everything if everything[p] != without_wanb[p])
    text = swap.transaction(failover, everything, without_wanb)
    for name in changed:
        assert failover.state_text(name, without_wanb[name]).strip() in text
    for name in set(everything) - set(changed):
        assert f"policy_{name}" not in text
    assert swap.transaction(failover, everything, everything) == ""


def test_every_rule_of_a_variant_is_in_its_signature(three_wan):
    for policy in three_wan.model.policies:
        for mask, rel in policy.states.items():
            text = three_wan.text(rel)
            signature = swap.variant_signature(text)
            rules = [line for line in text.splitlines() if line.startswith("add rule ")]
            assert sum(len(c) for c in signature.values()) == len(rules)
            assert f"policy_{policy.name}" in signature


def test_alive_from_kernel_refuses_contradictions(failover):
    model = failover.model
    nothing = {p.name: set() for p in model.policies}
    assert swap.alive_from_kernel(model, nothing, {"wan"}) is None
    # wan_wanb says wanb is dead, wanb_only says it is alive: no alive-set explains both
    contradiction = {"wan_wanb": {"10"}, "wanb_only": {"1"}}
    assert swap.alive_from_kernel(model, contradiction, set()) is None


READBACK = textwrap.dedent("""
    import itertools, json, sys
    from netpath.agent import bundle as bundle_mod, swap
    from netpath.agent.apply import masks_for, transaction
    from netpath.agent.nft import Nft
    b = bundle_mod.read(sys.argv[1])
    nft = Nft()
    names = [i.name for i in b.model.interfaces if i.enabled]
    out = []
    for n in range(len(names) + 1):
        for alive in itertools.combinations(names, n):
            masks = masks_for(b.model, set(alive))
            live = nft.list_json(f"table inet {b.model.table}")
            nft.load(transaction(b, masks, {}, live))
            found = swap.loaded_variants(b, nft.list_json(f"table inet {b.model.table}"))
            out.append({"alive": list(alive), "masks": masks, "found": {p: sorted(m) for p, m in found.items()}})
    print(json.dumps(out))
""")


def _body(b, policy: str, mask: str) -> str:
    return b.state_text(policy, mask).split("\n", 1)[1]  # without the header naming the mask


@pytest.mark.lab
@pytest.mark.parametrize("example", ["three_wan_balanced.toml", "dual_wan_failover.toml", "all_modes.uci"])
def test_each_loaded_state_is_taken_over_from_the_kernel(tmp_path, example):
    """For every alive-set: load its variants into a kernel, read them back, and the alive-set
    the agent derives loads exactly the same rules (no flap on restart)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare")
    b = compiled(tmp_path, example)
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", READBACK, str(b.directory)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    model = b.model
    for case in json.loads(proc.stdout):
        found = {p: set(m) for p, m in case["found"].items()}
        for policy, mask in case["masks"].items():
            assert mask in found[policy], case
            for other in found[policy]:  # recognised alongside: only if the rules are the same
                assert _body(b, policy, other) == _body(b, policy, mask)
        # whatever the guess for interfaces the kernel says nothing about, the rules stay
        for guess in (set(), {i.name for i in model.interfaces}):
            alive = swap.alive_from_kernel(model, found, guess)
            assert alive is not None, case
            for policy, mask in masks_for(model, alive).items():
                assert _body(b, policy, mask) == _body(b, policy, case["masks"][policy]), case
