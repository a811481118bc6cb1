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


def _build(config: str, args, previous=None, label: str = ""):
    """(result, None) or (None, exit status 2), the problems reported. `label` prefixes
    warnings (errors name their file already)."""
    from . import pipeline

    try:
        result = pipeline.build(config, args.format, previous=previous)
    except pipeline.CompileError as exc:
        _report(exc.lines)
        return None, 2
    _report(f"warning: {label}{w}" for w in result.model.warnings)
    return result, None


def _kernel_check(results: list, labels: "list | None" = None) -> list:
    """Exit status per result (None: accepted), one namespace and one nft run for all."""
    from . import check

    failures = check.check_many([(r.files, r.model.table) for r in results])
    statuses = []
    for failure, label in zip(failures, labels or [""] * len(results)):
        if failure is None:
            statuses.append(None)
            continue
        _report(f"{label}{line}" for line in failure.lines)
        statuses.append(1 if failure.system else 2)
    return statuses


CONFIG_SUFFIXES = (".uci", ".toml", ".yaml", ".yml")


def compile_jobs(configs: list, outputs: list) -> list:
    """[(config, output directory)] from the command line: `CONFIG [-o DIR]`, pairs
    `CONFIG -o DIR CONFIG -o DIR ...`, or `CONFIGDIR -o OUTDIR` (every config file in
    CONFIGDIR -> OUTDIR/<its name without the suffix>). Raises ValueError on a mismatch."""
    if len(configs) == 1 and Path(configs[0]).is_dir():
        if len(outputs) != 1:
            raise ValueError(f"{configs[0]} is a directory of configs: give one -o OUTDIR for their bundles")
        names = sorted(p for p in Path(configs[0]).iterdir() if p.is_file() and not p.name.startswith("."))
        jobs, seen = [], {}
        for path in names:
            stem = path.stem if path.suffix.lower() in CONFIG_SUFFIXES else path.name
            if stem in seen:
                raise ValueError(f"{seen[stem]} and {path} would both write {Path(outputs[0]) / stem}")
            seen[stem] = path
            jobs.append((str(path), Path(outputs[0]) / stem))
        if not jobs:
            raise ValueError(f"{configs[0]}: no config files in this directory")
        return jobs
    if len(configs) == 1 and len(outputs) <= 1:
        return [(configs[0], Path(outputs[0] if outputs else "bundle"))]
    if len(outputs) != len(configs):
        raise ValueError(f"{len(configs)} configs and {len(outputs)} -o: give each CONFIG its own -o DIR")
    outs = [Path(o).resolve() for o in outputs]
    if len(set(outs)) != len(outs):
        raise ValueError("two configs name the same -o DIR")
    return [(c, Path(o)) for c, o in zip(configs, outputs)]


def _compile(args) -> int:
    """Every job in one process: builds, then one kernel check for all, then the writes.
    A config that fails leaves its bundle as it was and does not stop the others; the exit
    status is the worst one (1 before 2 before 0)."""
    from . import bundle

    try:
        jobs = compile_jobs(args.config, args.output or [])
    except ValueError as exc:
        _report([f"netpath compile: {exc}"])
        return 2
    statuses, built = [], []
    for config, out in jobs:
        label = f"{config}: " if len(jobs) > 1 else ""
        result, status = _build(config, args, previous=out, label=label)
        if result is None:
            statuses.append(status)
            continue
        try:
            bundle.check_target(out)
        except bundle.OutputError as exc:
            _report([exc.line])
            statuses.append(exc.status)
            continue
        built.append((out, result, label))
    checked = [None] * len(built) if args.no_check else \
        _kernel_check([r for _, r, _ in built], [label for _, _, label in built])
    accepted = []
    for (out, result, _), status in zip(built, checked):
        if status is not None:
            statuses.append(status)
            continue
        old = bundle.read_tree(out)
        if args.diff:
            sys.stdout.write(bundle.diff(old, result.files, str(out), "new"))
        accepted.append((out, result, old != result.files))
    writes = [(out, r.files) for out, r, changed in accepted if changed and not args.dry_run]
    failed = dict(zip((out for out, _ in writes), bundle.write_many(writes)))
    for out, result, changed in accepted:
        if failed.get(out) is not None:
            _report([failed[out].line])
            statuses.append(failed[out].status)
            continue
        m = result.model
        states = sum(len(p.states) for p in m.policies)
        verb = "would write" if args.dry_run else "wrote"
        print(f"{len(m.interfaces)} interfaces, {len(m.policies)} policies, {len(m.rules)} rules, "
              f"{states} state files: {verb} {out} ({'changed' if changed else 'unchanged'})")
    failures = [s for s in statuses if s]
    return 1 if 1 in failures else (2 if failures else 0)


def _check(args) -> int:
    result, status = _build(args.config, args)
    if result is None:
        return status
    status = _kernel_check([result])[0]
    if status is not None:
        return status
    states = sum(len(p.states) for p in result.model.policies)
    print(f"{args.config}: valid; the kernel accepted the ruleset and {states} state files")
    return 0


def parser() -> argparse.ArgumentParser:
    from netpath.agent import VERSION

    p = argparse.ArgumentParser(prog="netpath", description="NetPath multi-WAN: compile, apply, inspect.")
    p.add_argument("--version", action="version", version=f"netpath {VERSION}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("compile", help="compile configs into bundle directories")
    c.add_argument("config", nargs="+", metavar="CONFIG",
                   help="a config; several, each with its own -o DIR; or a directory of configs")
    c.add_argument("-o", "--output", action="append", metavar="DIR",
                   help="bundle directory (default: ./bundle); with a directory of configs, the "
                        "directory of their bundles")
    c.add_argument("--format", choices=("uci", "toml", "yaml"), help="override the guess from the file name")
    c.add_argument("--diff", action="store_true", help="print a unified diff against the bundle in DIR")
    c.add_argument("--dry-run", action="store_true", help="write nothing")
    c.add_argument("--no-check", action="store_true", help="skip the kernel check (not recommended)")
    c.set_defaults(func=_compile)
    p.compile_parser = c

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
    "use": ("netpath.agent.use", "main"),
    "connected": ("netpath.agent.connected", "main"),
    "dump": ("netpath.agent.dump", "main"),
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
    "dump": "everything a bug report needs, as one text (no secrets)",
    "connected": "the networks that bypass the policies, per family",
    "use": "run a command whose connections all leave through one uplink (IFACE -- CMD)",
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
    if argv[:1] == ["use"]:  # before argparse, which would take CMD's own options for ours
        from netpath.agent import use

        return use.main(argv[1:])
    if argv[:1] == ["compile"]:
        # CONFIG -o DIR CONFIG -o DIR ...: positionals between options need the intermixed parse
        args, rest = parser().compile_parser.parse_known_intermixed_args(argv[1:])
        args.command = "compile"
    else:
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
