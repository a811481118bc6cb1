"""Stage 6: let the kernel's own nftables parser judge the bundle.

The ruleset and every state variant are loaded, as one transaction of one `nft -f -` run,
into a throw-away network namespace (`unshare -n`, or `unshare -rn` without root), so
nothing on the host changes; several bundles share one namespace and one run (check_many). A rejected line is mapped back to the config section named in its comment.
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess

CHECK_TIMEOUT = 120


class CheckFailed(Exception):
    """`system` is True when the check could not run at all (exit 1), False when the kernel
    rejected what the config produced (bad input, exit 2)."""

    def __init__(self, lines, system: bool = False):
        super().__init__("\n".join(lines))
        self.lines = list(lines)
        self.system = system


def unshare_argv() -> list:
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


def _load_order(files: dict) -> list:
    return ["ruleset.nft"] + sorted(p for p in files if p.startswith("states/"))


def _line(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _run_nft(text: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(unshare_argv() + ["nft", "-f", "-"], input=text, capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT)
    except FileNotFoundError as exc:
        raise CheckFailed([f"cannot run the kernel check: {exc.filename} is not installed "
                           "(install nftables and util-linux)"], system=True) from None
    except subprocess.TimeoutExpired:
        raise CheckFailed([f"the kernel check took longer than {CHECK_TIMEOUT} s"], system=True) from None


def _cannot_run(stderr: str) -> bool:
    return "unshare:" in stderr or "Operation not permitted" in stderr


# A transaction's cost per state file grows with the transaction (nftables 1.0.6, 2 cores:
# 0.3 ms each for 256, 1.2 ms each for 4,096), so a large bundle's variants are checked in
# runs of this many, each after its own copy of the ruleset.
STATES_PER_RUN = 512


def check_files(files: dict) -> None:
    """Load ruleset.nft and then every states/*.nft as one transaction, in one `nft -f -`
    run inside a new netns (no temporary files: a 10-member policy has 1,024); more than
    STATES_PER_RUN variants take several runs."""
    order = _load_order(files)
    states = order[1:]
    for start in range(0, max(len(states), 1), STATES_PER_RUN):
        run = order[:1] + states[start:start + STATES_PER_RUN]
        proc = _run_nft("".join(_line(files[rel]) for rel in run))
        if proc.returncode != 0:
            raise CheckFailed(explain_nft_errors(proc.stderr, files, run), system=_cannot_run(proc.stderr))


# A kernel transaction that creates and deletes many tables grows slower than linearly
# (200 small bundles: 10 s in one run, 0.7 s in runs of 16), so batches are bounded.
BATCH_BUNDLES = 16
BATCH_BYTES = 256 * 1024


def check_many(bundles: list) -> list:
    """Check several bundles, `[(files, nft table), ...]`, a batch of them per `unshare` and
    `nft -f -` run: each bundle's table is created, filled with its ruleset and variants,
    then deleted, all in one transaction. Returns one CheckFailed or None per bundle; only
    when the kernel refuses a batch is each of its bundles checked alone, to say which."""
    results, batch, size = [], [], 0
    for item in bundles:
        text = "".join(_line(item[0][rel]) for rel in _load_order(item[0]))
        if batch and (len(batch) >= BATCH_BUNDLES or size + len(text) > BATCH_BYTES):
            results += _check_batch(batch)
            batch, size = [], 0
        batch.append((item, text))
        size += len(text)
    return results + _check_batch(batch)


def _check_batch(batch: list) -> list:
    if not batch:
        return []
    if len(batch) == 1:
        try:
            check_files(batch[0][0][0])
            return [None]
        except CheckFailed as exc:
            return [exc]
    proc = _run_nft("".join(f"{text}delete table inet {table}\n" for (_, table), text in batch))
    if proc.returncode == 0:
        return [None] * len(batch)
    if _cannot_run(proc.stderr):
        return [CheckFailed(explain_nft_errors(proc.stderr, {}, []), system=True)] * len(batch)
    return [_check_batch([one])[0] for one in batch]


def explain_nft_errors(stderr: str, files: dict, order: list) -> list:
    """Turn nft's `/dev/stdin:line:col: Error: ...` into `file:line (<config section>): ...`:
    the input was the files in `order`, one after the other."""
    starts, first = [], 1
    for rel in order:
        starts.append((first, rel))
        first += _line(files[rel]).count("\n")
    lines = []
    for match in re.finditer(r"^(\S+?):(\d+):[\d-]+: Error: (.*)$", stderr, re.M):
        number, message = int(match.group(2)), match.group(3)
        index = bisect.bisect_right([s for s, _ in starts], number) - 1
        if index < 0:
            lines.append(f"line {number}: the kernel rejected: {message}")
            continue
        begin, rel = starts[index]
        line = number - begin + 1
        text = files.get(rel, "").splitlines()
        source = text[line - 1] if 0 < line <= len(text) else ""
        section = re.search(r'comment "([^"]*)"', source)
        where = f" ({section.group(1)})" if section else ""
        lines.append(f"{rel}:{line}{where}: the kernel rejected: {message}")
    if not lines:
        detail = stderr.strip().splitlines()
        if detail and "Operation not permitted" in stderr:
            detail.append("the check needs root or unprivileged user namespaces")
        lines = ["the kernel rejected the ruleset: " + (" / ".join(detail) or "no detail")]
    return lines
