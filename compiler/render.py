"""Stage 4: feed the frozen model to the Jinja templates; returns {relative path: text}.

The view handed to the templates holds only resolved data (lists to iterate, values to
print); every decision (what a state sends where, which chains exist) was made before.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from netpath.agent.model import Model
from netpath.agent.policy import alive_from_mask, decide

from . import nftrules, rulechains

GENERATOR = "NetPath 0.1.0"
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    """Built once per process: compiling the templates costs more than rendering them, and a
    fleet build (`netpath compile` of many configs) or the agent-side tests reuse it. The
    loader's auto_reload still notices an edited template file."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(nftrules.FILTERS)
    return env


def _sticky_view(model: Model):
    """Per sticky rule: its interfaces (the members of its policy) with set and chain names."""
    out = []
    for rule in model.rules:
        if not rule.sticky:
            continue
        policy = model.policy(rule.target)
        members = [model.interface(m.interface) for m in policy.members]
        out.append({"rule": rule, "interfaces": [i for i in members if i.family in rule.families]})
    return out


def state_view(model: Model, policy, mask: str) -> dict:
    members = policy.policy_members()
    alive = alive_from_mask(members, mask)
    decisions = [decide(policy.mode, policy.last_resort, members, alive, fam)
                 for fam in ("ipv4", "ipv6")]
    sticky = []
    for rule_name in policy.sticky_rules:
        rule = next(r for r in model.rules if r.name == rule_name)
        candidates = []
        for decision in decisions:
            if decision.family in rule.families and decision.kind != "last_resort":
                candidates += [model.interface(name) for name in decision.tier]
        recorded = [model.interface(m.interface) for m in policy.members
                    if m.family in rule.families]
        sticky.append({"rule": rule, "candidates": candidates, "recorded": recorded})
    return {"policy": policy, "mask": mask, "decisions": decisions, "sticky": sticky}


def render(model: Model, source_name: str) -> dict:
    env = environment()
    header = f"{GENERATOR} from {Path(source_name).name}"
    common = {"m": model, "header": header}
    files = {}
    view = dict(common,
                sticky=_sticky_view(model),
                rule_chains=rulechains.build(model),
                wan_devices=nftrules.device_set(model),
                masquerade=[i for i in model.interfaces if i.enabled and i.masquerade],
                enabled_interfaces=[i for i in model.interfaces if i.enabled],
                restore_marks=[i.mark for i in model.interfaces] + [model.special["default"]["mark"]])
    files["ruleset.nft"] = env.get_template("nft/ruleset.nft.j2").render(view)
    state = env.get_template("nft/state.nft.j2")
    for policy in model.policies:
        for mask, path in sorted(policy.states.items()):
            files[path] = state.render(dict(common, **state_view(model, policy, mask)))
    batch = env.get_template("routes/interface.batch.j2")
    for iface in model.interfaces:
        if iface.enabled:
            files[f"routes/{iface.name}.batch"] = batch.render(dict(common, iface=iface))
    glob = env.get_template("routes/global.batch.j2")
    for family in ("ipv4", "ipv6"):
        files[f"routes/global-{family}.batch"] = glob.render(dict(common, family=family))
    return files
