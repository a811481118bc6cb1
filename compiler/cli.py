"""`netpath`: the command line. It only sequences stages; each subcommand imports what
it needs, so `netpath status` on a router never loads the compiler's libraries.

Exit status: 0 success, 2 bad input (config, bundle, arguments), 1 failure of the system.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _report(lines) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def _build_checked(args, previous=None):
    """Build and (unless --no-check) let the kernel check; (result, None) or (None, exit status)."""
    from . import check, pipeline

    try:
        result = pipeline.build(args.config, args.format, previous=previous)
    except pipeline.CompileError as exc:
        _report(exc.lines)
        return None, 2
    _report(f"warning: {w}" for w in result.model.warnings)
    if not getattr(args, "no_check", False):
        try:
            check.check_files(result.files)
        except check.CheckFailed as exc:
            _report(exc.lines)
            return None, 1 if exc.system else 2
    return result, None


def _compile(args) -> int:
    from . import bundle

    out = Path(args.output)
    result, status = _build_checked(args, previous=out)
    if result is None:
        return status
    try:
        bundle.check_target(out)
    except bundle.OutputError as exc:
        _report([exc.line])
        return exc.status
    old = bundle.read_tree(out)
    changed = old != result.files
    if args.diff:
        sys.stdout.write(bundle.diff(old, result.files, str(out), "new"))
    m = result.model
    states = sum(len(p.states) for p in m.policies)
    if changed and not args.dry_run:
        try:
            bundle.write(out, result.files)
        except bundle.OutputError as exc:
            _report([exc.line])
            return exc.status
    verb = "would write" if args.dry_run else "wrote"
    print(f"{len(m.interfaces)} interfaces, {len(m.policies)} policies, {len(m.rules)} rules, "
          f"{states} state files: {verb} {out} ({'changed' if changed else 'unchanged'})")
    return 0


def _check(args) -> int:
    result, status = _build_checked(args)
    if result is None:
        return status
    states = sum(len(p.states) for p in result.model.policies)
    print(f"{args.config}: valid; the kernel accepted the ruleset and {states} state files")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netpath", description="NetPath multi-WAN: compile, apply, inspect.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("compile", help="compile a config into a bundle directory")
    c.add_argument("config")
    c.add_argument("-o", "--output", default="bundle", help="bundle directory (default: ./bundle)")
    c.add_argument("--format", choices=("uci", "toml", "yaml"), help="override the guess from the file name")
    c.add_argument("--diff", action="store_true", help="print a unified diff against the bundle in DIR")
    c.add_argument("--dry-run", action="store_true", help="write nothing")
    c.add_argument("--no-check", action="store_true", help="skip the kernel check (not recommended)")
    c.set_defaults(func=_compile)

    k = sub.add_parser("check", help="validate a config and let the kernel check the result")
    k.add_argument("config")
    k.add_argument("--format", choices=("uci", "toml", "yaml"))
    k.set_defaults(func=_check)

    for name, module in EXTRA_COMMANDS.items():
        module_name, function = module
        s = sub.add_parser(name, add_help=False, help=EXTRA_HELP.get(name))
        s.set_defaults(func=None, extra=(module_name, function))
    return p


# Subcommands that live in other modules; each parses its own arguments.
EXTRA_COMMANDS = {
    "apply": ("netpath.agent.apply", "main"),
    "explain": ("netpath.agent.explain", "main"),
    "import-mwan3": ("netpath.compiler.mwan3", "main"),
}
# Calls to the running agent: netpath.agent.client takes the subcommand as argv[0].
AGENT_COMMANDS = ("status", "interfaces", "policies", "rules", "enable", "disable", "reload",
                  "metrics", "history", "ifevent")
for _name in AGENT_COMMANDS:
    EXTRA_COMMANDS[_name] = ("netpath.agent.client", "main")
EXTRA_HELP = {
    "apply": "load a bundle on this host (or --remove NetPath's state)",
    "explain": "show where a packet goes and why",
    "import-mwan3": "convert an mwan3 config into a NetPath config",
    "status": "the running agent: uplinks and policies at a glance",
    "interfaces": "per uplink: state, since when, why, latency, loss, traffic",
    "policies": "per policy: alive members and the current spread",
    "rules": "per rule: packets and bytes counted by the kernel",
    "enable": "put an interface back into service (undoes disable)",
    "disable": "take an interface out of service, e.g. for maintenance",
    "reload": "make the running agent load its (recompiled) bundle",
    "metrics": "figures as JSON, or --prometheus",
    "history": "recent state changes with reasons",
    "ifevent": "tell the agent about a netifd hotplug event (OpenWrt)",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser().parse_known_args(argv)
    if args.func is None:
        import importlib

        module_name, function = args.extra
        module = importlib.import_module(module_name)
        if args.command in AGENT_COMMANDS:
            return getattr(module, function)([args.command] + rest, prog="netpath")
        return getattr(module, function)(rest, prog=f"netpath {args.command}")
    if rest:
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
