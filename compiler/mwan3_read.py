"""Read an mwan3 config the way mwan3 reads it, and account for every option in it.

mwan3's shell loader runs `uci -S` (non-strict: a bad line is skipped, the rest loads),
reads options through `config_get` (a `list` reads as its items joined by spaces), lists
through `config_list_foreach` (an `option` written where a list belongs is invisible) and
booleans through `config_get_bool` for the five options it reads that way. The Reader
below gives the converter exactly those readings, so NetPath sees the values mwan3 saw.

Every option of the file ends up "converted" or "reported" in `handled`, and everything the
user should know becomes a Note located in the file: the import's promise that nothing is
dropped without a note rests on this bookkeeping. The constants are mwan3's own vocabulary
across all its versions (reference: shared mwan3.md §1).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from . import uci, validate

# Options each mwan3 section type has had in any version (mwan3.md §1).
MWAN3_OPTIONS = {
    "globals": {"mmx_mask", "logging", "loglevel", "rt_table_lookup", "source_routing",
                "local_source", "rtmon_interval", "enabled"},
    "interface": {"enabled", "family", "track_ip", "track_method", "reliability", "count",
                  "timeout", "interval", "failure_interval", "recovery_interval",
                  "keep_failure_interval", "down", "up", "size", "max_ttl", "check_quality",
                  "failure_latency", "recovery_latency", "failure_loss", "recovery_loss",
                  "initial_state", "httping_ssl", "flush_conntrack", "online_metric"},
    "member": {"interface", "metric", "weight"},
    "policy": {"use_member", "last_resort"},
    "rule": {"use_policy", "family", "proto", "src_ip", "src_port", "dest_ip", "dest_port",
             "src_iface", "ipset", "sticky", "timeout", "logging"},
}
# Tracking options copied one to one (mwan3 name = NetPath's UCI name), with mwan3's default.
INT_TRACK = {"reliability": 1, "count": 1, "timeout": 4, "interval": 10, "down": 5, "up": 5,
             "size": 56, "max_ttl": 60, "failure_latency": 1000, "recovery_latency": 500,
             "failure_loss": 40, "recovery_loss": 10}
BOOL_TRACK = {"keep_failure_interval": False, "check_quality": False}
OPTIONAL_TRACK = ("failure_interval", "recovery_interval")  # default: interval, in both
MWAN3_BOOL_TRUE = ("1", "on", "true", "yes", "enabled")  # config_get_bool, case-sensitive
MWAN3_BOOL_FALSE = ("0", "off", "false", "no", "disabled")
MWAN3_NAME_LIMIT = 15  # policy and rule names (iptables chain names); longer ones are skipped
MWAN3_IFACE_SAFE = 13  # interface names: chain mwan3_iface_in_<name> must fit 28 characters
MWAN3_MAX_METRIC = 256


@dataclass(frozen=True)
class Note:
    """One thing the user should know about the conversion, located in the mwan3 file."""

    line: int
    where: str  # "interface 'wan' option 'track_ip'"
    text: str

    def format(self, filename: str) -> str:
        place = f"{filename}:{self.line}" if self.line else filename
        return f"{place}: {self.where}: {self.text}"


def parse(text: str, filename: str) -> uci.UciPackage:
    """The sections mwan3 sees: like `uci -S`, the rest of a line UCI cannot read is
    skipped (the error is kept in the package's warnings) and the file goes on loading."""
    return uci.parse(text, filename, strict=False)


def where(section, option: "str | None" = None) -> str:
    label = f"{section.type} '{section.name}'"
    return f"{label} option '{option}'" if option else label


def safe_name(name: str, limit: int = 32) -> str:
    """A NetPath name for `name`: itself when valid, else letters, digits and '_' only,
    cut to fit with a hash of the original appended so different names stay different."""
    if validate.NAME_RE.match(name) and len(name) <= limit:
        return name
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name) or "x"
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{clean[:limit - 9]}_{digest}"


class Reader:
    """Reads options as mwan3 does and records, per (section, option), whether it was
    converted or reported in a note."""

    def __init__(self):
        self.notes: list = []  # of Note
        self.handled: dict = {}  # (section, option) -> "converted" | "reported"

    def note(self, section, option, text, line=None):
        opt = section.options.get(option) if option else None
        line = line or (opt.line if opt else section.line)
        note = Note(line, where(section, option), text)
        if note not in self.notes:  # an option read twice is reported once
            self.notes.append(note)
        if option:
            self.handled[(section.name, option)] = "reported"

    def drop(self, section, text, option=None):
        """Leave a whole section out: one note on the section (at the line of the option
        that decided it), which accounts for every option in it."""
        opt = section.options.get(option) if option else None
        self.note(section, None, f"{text}; not converted", line=opt.line if opt else None)
        for name in section.options:
            self.handled[(section.name, name)] = "reported"

    def done(self, section, option):
        self.handled.setdefault((section.name, option), "converted")

    def get(self, section, option) -> "str | None":
        """config_get: the value, a list's items joined by spaces, None when unset or empty."""
        opt = section.options.get(option)
        if opt is None:
            return None
        if opt.is_list:
            value = " ".join(opt.value)
            self.note(section, option, f"written as a list; mwan3 reads it as the single value "
                                       f"{value!r} and so does this conversion (write it as 'option')")
        else:
            value = opt.value
        return value if value != "" else None

    def items(self, section, option) -> "tuple[list, bool]":
        """config_list_foreach: the items of a `list`; (words of the option, True) when
        the user wrote `option` instead, which mwan3 never reads."""
        opt = section.options.get(option)
        if opt is None:
            return [], False
        if opt.is_list:
            return [v for v in opt.value], False
        return opt.value.split(), True

    def boolean(self, section, option, default: bool) -> bool:
        value = self.get(section, option)
        self.done(section, option)
        if value is None:
            return default
        if value in MWAN3_BOOL_TRUE:
            return True
        if value in MWAN3_BOOL_FALSE:
            return False
        self.note(section, option, f"{value!r} is not a boolean mwan3 knows (1/0, yes/no, on/off, "
                                   f"true/false, enabled/disabled); mwan3 uses its default "
                                   f"{int(default)}, and so does NetPath")
        return default

    def integer(self, section, option, default: int, lo: int, hi: int) -> int:
        value = self.get(section, option)
        self.done(section, option)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            self.note(section, option, f"{value!r} is not a whole number; mwan3's shell tests fail "
                                       f"on it; NetPath uses mwan3's default {default}")
            return default
        if number < lo or number > hi:
            clamped = min(max(number, lo), hi)
            self.note(section, option, f"{number} is outside NetPath's range {lo}..{hi}; "
                                       f"NetPath uses {clamped}")
            return clamped
        return number
