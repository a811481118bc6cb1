"""Load nft text as one transaction: in-process through libnftables when the `nftables`
binding is importable (one long-lived context: a delta costs under a millisecond), else
`nft -f -`. Either way the kernel applies all of it or none of it."""

from __future__ import annotations

import json
import subprocess

NFT_TIMEOUT = 30


class NftError(Exception):
    pass


class Nft:
    def __init__(self, prefer_library: bool = True):
        self._ctx = None
        if prefer_library:
            try:
                import nftables  # the libnftables binding (python3-nftables)

                ctx = nftables.Nftables()
                ctx.set_json_output(False)
                ctx.set_handle_output(False)
                self._ctx = ctx
            except (ImportError, OSError):
                self._ctx = None

    @property
    def backend(self) -> str:
        return "libnftables" if self._ctx is not None else "nft"

    def load(self, text: str, diagnose: bool = True) -> None:
        """Apply `text` as one transaction or raise NftError with nft's message.

        diagnose=False: with libnftables, raise its own message at once; the caller runs
        `diagnose()` where a child process may block (the agent: in a worker thread)."""
        if self._ctx is not None:
            rc, _out, err = self._ctx.cmd(text)
            if rc != 0:
                message = err.strip() or f"libnftables returned {rc}"
                raise NftError(self.diagnose(text, message) if diagnose else message)
            return
        try:
            proc = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True,
                                  timeout=NFT_TIMEOUT)
        except FileNotFoundError:
            raise NftError("nft is not installed") from None
        except subprocess.TimeoutExpired:
            raise NftError(f"nft did not finish within {NFT_TIMEOUT} s") from None
        if proc.returncode != 0:
            raise NftError(proc.stderr.strip() or f"nft exited with {proc.returncode}")

    def diagnose(self, text: str, message: str) -> str:
        """The best account of why `text` was refused, given the loader's `message`.

        libnftables places kernel-side errors on the wrong line of a buffer; the nft binary
        in check mode (changes nothing) names the exact line. Runs a process: blocks."""
        if self._ctx is None:
            return message
        return self._check_detail(text) or message

    @staticmethod
    def _check_detail(text: str) -> str:
        try:
            proc = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True,
                                  timeout=NFT_TIMEOUT)
        except (OSError, subprocess.SubprocessError):
            return ""
        return proc.stderr.strip() if proc.returncode != 0 else ""

    def list_json(self, what: str, structure: bool = False) -> dict:
        """`nft -j list <what>` as a dict; {} when the object does not exist.

        structure=True: without set elements and counter values (`nft -j -t -s`): what the
        agent loaded, not what traffic and other programs put in it since."""
        if self._ctx is not None:
            self._ctx.set_json_output(True)
            if structure:
                self._ctx.set_terse_output(True)
                self._ctx.set_stateless_output(True)
            try:
                rc, out, _err = self._ctx.cmd(f"list {what}")
            finally:
                self._ctx.set_json_output(False)
                if structure:
                    self._ctx.set_terse_output(False)
                    self._ctx.set_stateless_output(False)
            return json.loads(out) if rc == 0 and out else {}
        flags = ["-t", "-s"] if structure else []
        proc = subprocess.run(["nft", "-j", *flags, "list", *what.split()], capture_output=True, text=True,
                              timeout=NFT_TIMEOUT)
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout else {}

    def table_exists(self, table: str) -> bool:
        return bool(self.list_json(f"table inet {table}"))
