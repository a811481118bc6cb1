"""Stage 6: let the kernel's own nftables parser judge the bundle.

The ruleset and every state variant are loaded, as one transaction, into a throw-away
network namespace (`unshare -n`, or `unshare -rn` without root), so nothing on the host
changes. A rejected line is mapped back to the config section named in its comment.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

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


def check_files(files: dict) -> None:
    """Load ruleset.nft and then every states/*.nft in one `nft -f` inside a new netns."""
    with tempfile.TemporaryDirectory(prefix="netpath-check-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        order = ["ruleset.nft"] + sorted(p for p in files if p.startswith("states/"))
        master = root / "check.nft"
        master.write_text("".join(f'include "{root / rel}"\n' for rel in order))
        try:
            proc = subprocess.run(unshare_argv() + ["nft", "-f", str(master)], capture_output=True,
                                  text=True, timeout=CHECK_TIMEOUT)
        except FileNotFoundError as exc:
            raise CheckFailed([f"cannot run the kernel check: {exc.filename} is not installed "
                               "(install nftables and util-linux)"], system=True) from None
        except subprocess.TimeoutExpired:
            raise CheckFailed([f"the kernel check took longer than {CHECK_TIMEOUT} s"], system=True) from None
        if proc.returncode != 0:
            cannot_run = "unshare:" in proc.stderr or "Operation not permitted" in proc.stderr
            raise CheckFailed(explain_nft_errors(proc.stderr, root, files), system=cannot_run)


def explain_nft_errors(stderr: str, root: Path, files: dict) -> list:
    """Turn nft's `file:line:col: Error: ...` into `file:line: <config section>: ...`."""
    lines = []
    for match in re.finditer(r"^(\S+?):(\d+):[\d-]+: Error: (.*)$", stderr, re.M):
        path, line, message = match.group(1), int(match.group(2)), match.group(3)
        try:
            rel = str(Path(path).relative_to(root))
        except ValueError:
            rel = path
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
