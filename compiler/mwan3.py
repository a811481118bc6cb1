"""`netpath import-mwan3`: turn an mwan3 config into a NetPath config that behaves the same.

The stages, one module each:
  mwan3_read     reads the file as mwan3 does (non-strict UCI, config_get semantics) and
                 accounts for every option: converted, or reported in a Note
  mwan3_convert  sections -> NetPath tree (load's shape) and notes; globals, members and
                 policies there, interfaces in mwan3_track, rules in mwan3_rule
  mwan3_diff     where NetPath will still behave differently, and why (--explain-diff)
  emit           the tree as UCI, TOML or YAML text
Every option of every mwan3 version (reference: shared mwan3.md §1) is either converted
or reported in a note that names the section and option and says what NetPath does
instead; nothing is dropped without a note.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import emit, load, mwan3_read, validate
from .mwan3_convert import Converter
from .mwan3_diff import detection_seconds, differences
from .mwan3_read import Note, safe_name

__all__ = ["Conversion", "Note", "convert_file", "convert_text", "detection_seconds", "differences",
           "header", "main", "render", "safe_name"]

DEFAULT_PATH = "/etc/config/mwan3"


@dataclass
class Conversion:
    tree: dict  # NetPath config tree (load's shape, native values)
    notes: list  # of Note, in file order
    differences: list  # of str: where NetPath behaves differently for this config
    handled: dict = field(default_factory=dict)  # (section, option) -> "converted" | "reported"
    source_name: str = ""


def convert_text(text: str, filename: str = "mwan3") -> Conversion:
    package = mwan3_read.parse(text, filename)
    conv = Converter(package)
    tree = conv.run()
    return Conversion(tree=tree, notes=conv.notes, differences=differences(conv),
                      handled=conv.handled, source_name=filename)


def convert_file(path) -> Conversion:
    # A byte that is not UTF-8 becomes visible text (`\xff`): it reaches notes and the
    # written config as such, never as an unencodable surrogate.
    text = Path(path).read_bytes().decode("utf-8", "backslashreplace")
    return convert_text(text, str(path))


def header(conv: Conversion) -> list:
    name = Path(conv.source_name).name
    lines = [f"NetPath config converted from the mwan3 config '{name}' by netpath import-mwan3.",
             "`netpath import-mwan3 --explain-diff` lists where NetPath behaves differently."]
    if conv.notes:
        lines.append("Conversion notes:")
        lines.extend(f"  {note.format(name)}" for note in conv.notes)
    return lines


def render(conv: Conversion, fmt: str = "uci") -> str:
    return emit.render(conv.tree, fmt, header(conv))


def _write_atomic(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv, prog="netpath import-mwan3") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Convert an mwan3 config into an equivalent "
                                "NetPath config (UCI by default, ready for /etc/config/netpath).")
    p.add_argument("config", nargs="?", default=DEFAULT_PATH, help=f"mwan3 config (default {DEFAULT_PATH})")
    p.add_argument("-o", "--output", help="write the NetPath config here (default: standard output)")
    p.add_argument("--format", choices=emit.FORMATS, help="output syntax (default: from the -o suffix, else uci)")
    p.add_argument("--explain-diff", action="store_true",
                   help="list where NetPath will behave differently from mwan3 for this config")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the conversion notes")
    args = p.parse_args(argv)
    try:
        conv = convert_file(args.config)
    except OSError as exc:
        print(f"{prog}: cannot read {args.config}: {exc.strerror}", file=sys.stderr)
        return 2
    fmt = args.format or (load.guess_format(args.output) if args.output else "uci")
    text = render(conv, fmt)
    # The converter promises a config NetPath accepts; check it with NetPath's own stages.
    try:
        validate.validate(load.loads(text.encode(), args.output or "<converted>", fmt))
    except (load.LoadError, validate.ConfigErrors) as exc:
        print(f"{prog}: the converted config does not pass NetPath's checks (please report this):",
              file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        return 1
    if not args.quiet:
        for note in conv.notes:
            print(f"note: {note.format(args.config)}", file=sys.stderr)
    if args.explain_diff:
        print(f"Where NetPath will behave differently from mwan3 for {args.config}:")
        for line in conv.differences:
            print(f"* {line}")
    if args.output:
        try:
            _write_atomic(Path(args.output), text)
        except OSError as exc:
            print(f"{prog}: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"{prog}: wrote {args.output} ({len(conv.tree['interfaces'])} interfaces, "
              f"{len(conv.tree['policies'])} policies, {len(conv.tree['rules'])} rules, "
              f"{len(conv.notes)} notes)", file=sys.stderr)
    elif not args.explain_diff:
        sys.stdout.write(text)
    return 0
