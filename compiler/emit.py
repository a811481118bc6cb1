"""Write a NetPath config tree as UCI, TOML or YAML text: the reverse of `load`.

The tree has load's shape ({"globals", "interfaces", "members", "policies", "rules"},
tracking settings under each interface's "track") with native values (bool, int, float,
str, lists). Each writer keeps the tree's order, so the same tree gives the same bytes.
UCI goes through uci.export, which quotes every value the way `uci export` does
(`'it'\\''s'`); the other two are spelled so that load reads back exactly these values.
`header` lines become comments at the top of the file.
"""

from __future__ import annotations

import json

from . import uci
from .load import FORMATS, KIND_OF_KEY, UCI_OPTION_OF_TRACK

NAMED_SECTIONS = ("interfaces", "members", "policies")  # tables of named sections, in this order


def render(tree: dict, fmt: str, header: "list[str] | None" = None) -> str:
    writer = {"uci": to_uci, "toml": to_toml, "yaml": to_yaml}.get(fmt)
    if writer is None:
        raise ValueError(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    return writer(tree, header or [])


def _comment_block(header: list) -> str:
    lines = []
    for line in header:
        for part in str(line).splitlines() or [""]:
            lines.append(f"# {part}".rstrip())
    return "\n".join(lines) + ("\n" if lines else "")


# --- UCI ------------------------------------------------------------------------------------


def uci_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)  # exact: load reads back the same float
    return str(value)


def _uci_section(kind: str, name: str, values: dict) -> uci.UciSection:
    section = uci.UciSection(kind, name, anonymous=False)
    flat = []
    for key, value in values.items():
        if key == "track" and kind == "interface":
            flat.extend((UCI_OPTION_OF_TRACK[k], v) for k, v in value.items())
        elif key != "name":
            flat.append((key, value))
    for key, value in flat:
        if isinstance(value, list):
            section.options[key] = uci.UciOption(key, [uci_value(v) for v in value], True)
        else:
            section.options[key] = uci.UciOption(key, uci_value(value), False)
    return section


def to_uci(tree: dict, header: list) -> str:
    sections = []
    if tree.get("globals"):
        sections.append(_uci_section("globals", "globals", tree["globals"]))
    for key in NAMED_SECTIONS:
        for name, values in tree.get(key, {}).items():
            sections.append(_uci_section(KIND_OF_KEY[key], name, values))
    for rule in tree.get("rules", []):
        sections.append(_uci_section("rule", rule["name"], rule))
    return _comment_block(header) + uci.export(sections)


# --- TOML -----------------------------------------------------------------------------------


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    # A JSON string is a valid TOML basic string (TOML knows \uXXXX and the short escapes).
    return json.dumps(str(value))


def _toml_table(title: str, values: dict, out: list):
    out.append(f"\n[{title}]")
    nested = []
    for key, value in values.items():
        if isinstance(value, dict):
            nested.append((key, value))
            continue
        out.append(f"{key} = {toml_value(value)}")
    for key, value in nested:
        _toml_table(f"{title}.{key}", value, out)


def to_toml(tree: dict, header: list) -> str:
    out: list = []
    if tree.get("globals"):
        _toml_table("global", tree["globals"], out)
    for key in NAMED_SECTIONS:
        for name, values in tree.get(key, {}).items():
            _toml_table(f"{key}.{name}", values, out)
    for rule in tree.get("rules", []):
        out.append("\n[[rules]]")
        out.extend(f"{k} = {toml_value(v)}" for k, v in rule.items())
    return _comment_block(header) + "\n".join(out).lstrip("\n") + "\n"


# --- YAML -----------------------------------------------------------------------------------


def to_yaml(tree: dict, header: list) -> str:
    import yaml

    data: dict = {}
    if tree.get("globals"):
        data["global"] = tree["globals"]
    for key in NAMED_SECTIONS:
        data[key] = tree.get(key, {})
    data["rules"] = tree.get("rules", [])
    # Plain dicts keep their order with sort_keys=False; safe_dump quotes every string
    # that YAML would otherwise read as another type ('1', 'yes', '0x3F00', 'on').
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True,
                          width=1000)
    return _comment_block(header) + body
