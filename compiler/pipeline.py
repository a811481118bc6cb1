"""The compiler's stages in order: load -> validate -> resolve -> render (-> write, check).

`build` does everything that touches nothing; the CLI adds `check` and `write`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from netpath.agent.model import Model

from . import bundle, devices, load, render, resolve, validate


MAX_LINE = 400  # characters: values are clipped where quoted; this is the last guard


class CompileError(Exception):
    """Bad input: carries one ready-to-print line per problem, the first
    validate.MAX_PROBLEMS of them and then a count of the rest."""

    def __init__(self, lines):
        lines = [load.clip(line, MAX_LINE) for line in lines]
        if len(lines) > validate.MAX_PROBLEMS:
            rest = len(lines) - validate.MAX_PROBLEMS
            lines = lines[:validate.MAX_PROBLEMS] + [f"... and {rest} more problems"]
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class Build:
    model: Model
    files: dict  # relative path -> text, manifest.json included
    source: load.Source


def build(path: str, fmt: "str | None" = None, previous: "Path | None" = None,
          map_devices: bool = True) -> Build:
    """`map_devices`: ask netifd (ubus, on OpenWrt only) for the devices of logical interfaces."""
    try:
        source = load.load(path, fmt)
        checked = validate.validate(source)
    except (load.LoadError, validate.ConfigErrors) as exc:
        raise CompileError(exc.lines) from None
    previous_ids = bundle.previous_ids(previous) if previous else {}
    mapped, incoming, notes = devices.map_logical(checked) if map_devices else ({}, {}, [])
    model = resolve.resolve(checked, source.locator, previous_ids, source.digest, mapped, incoming)
    if notes:
        model = replace(model, warnings=model.warnings + tuple(notes))
    files = render.render(model, path)
    files["manifest.json"] = bundle.manifest_text(model, files, path)
    return Build(model=model, files=files, source=source)
