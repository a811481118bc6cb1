"""Read and write UCI files (/etc/config/*) the way openwrt/uci does.

The parser mirrors libuci's `file.c` step by step rather than using a tokenizer of
its own, because OpenWrt configs in the wild rely on its corner cases: quoting by
quote type, backslash-newline, `#` ending an unquoted argument, the `;` command
separator (which silently drops the rest of the line after an unquoted piece),
empty `option` values being no-ops, and `cfgNNxxxx` names for anonymous sections.

Strict mode is what `uci` does by default: the first error aborts the load.
Non-strict mode is what OpenWrt's shell loader (`uci -S`, used by mwan3) does: the
rest of the failing line is skipped, the last opened section stays current, and
the error is kept in `UciPackage.warnings`.

Line numbers are 1-based and point at the line where the offending command word
starts (for a value spanning several lines, its first line).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "UciError", "UciOption", "UciSection", "UciPackage",
    "parse", "load", "quote", "export",
]

# C isspace() in the "C" locale; Python's str.isspace() also knows Unicode spaces.
_WHITESPACE = " \t\n\v\f\r"
_UNQUOTED_RUN = re.compile(r"[^'\"#;\\ \t\n\v\f\r]+")
_DOUBLE_QUOTED_RUN = re.compile(r'[^"\\]+')
_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
_PACKAGE_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")
_TYPE = re.compile(r"[\x21-\x7e]+\Z")
# A type needs quotes on export only if it holds a character the parser treats specially.
_TYPE_NEEDS_QUOTES = re.compile(r"['\"\\#;]")

# The statements nearly every line of a real config is, on one physical line with nothing
# libuci treats specially: `option`/`list` NAME VALUE and `config` TYPE [NAME] (each value
# unquoted, or in quotes that hold no backslash), blank and comment lines. They take a
# shortcut to the same effects; every other line goes through the libuci-faithful parser.
_PLAIN_VALUE = r"""(?:'([^'\n\0]*)'|"([^"\\\n\0]*)"|([^'"#;\\\s\0]+))"""
_FAST_OPTION = re.compile(r"[ \t]*(option|o|list|l)[ \t]+([A-Za-z0-9_]+)[ \t]+" + _PLAIN_VALUE + r"[ \t]*\n?\Z")
_FAST_CONFIG = re.compile(r"[ \t]*(?:config|c)[ \t]+" + _PLAIN_VALUE
                          + r"""(?:[ \t]+(?:'([A-Za-z0-9_]*)'|"([A-Za-z0-9_]*)"|([A-Za-z0-9_]+)))?[ \t]*\n?\Z""")
_FAST_NOTHING = re.compile(r"[ \t]*(?:#[^\0]*)?\n?\Z")

def _given(pieces, absent=None):
    """The one alternative of a _PLAIN_VALUE (or name) group that matched."""
    return next((piece for piece in pieces if piece is not None), absent)


_COMMANDS = {
    "package": "package", "p": "package",
    "config": "config", "c": "config",
    "option": "option", "o": "option",
    "list": "list", "l": "list",
}


class UciError(Exception):
    """A UCI syntax error, located by file and 1-based line."""

    def __init__(self, filename: str, line: int, message: str):
        super().__init__(filename, line, message)
        self.filename = filename
        self.line = line
        self.message = message

    def __str__(self):
        return f"{self.filename}:{self.line}: {self.message}"


@dataclass
class UciOption:
    name: str
    value: "str | list[str]"  # list for `list`, str for `option`
    is_list: bool
    line: int = field(default=0, compare=False)  # last statement that set/extended it
    item_lines: list = field(default_factory=list, compare=False)  # `list`: line of each item


@dataclass
class UciSection:
    type: str
    name: str  # cfgNNxxxx for anonymous sections
    anonymous: bool
    line: int = field(default=0, compare=False)  # the (first) `config` statement
    options: dict = field(default_factory=dict)  # name -> UciOption, insertion order
    reopened: list = field(default_factory=list, compare=False)  # lines of later `config` of this name


@dataclass
class UciPackage:
    filename: str
    sections: list  # UciSection in file order
    warnings: list = field(default_factory=list)  # UciError, non-strict mode only

    def get(self, name):
        """The section called `name` (the first one, as uci looks it up), or None."""
        for section in self.sections:
            if section.name == name:
                return section
        return None

    def by_type(self, type):
        return [section for section in self.sections if section.type == type]


class _SyntaxError(Exception):
    """Raised inside the parser; turned into UciError with file and line."""


def _djb2(text):
    # uci hashes `char`, which is signed on most targets; types are ASCII anyway.
    value = 5381
    for byte in text.encode("utf-8", "surrogateescape"):
        value = (value * 33 + (byte - 256 if byte > 127 else byte)) & 0xFFFFFFFF
    return value & 0x7FFFFFFF


def _anonymous_name(ordinal, section_type):
    # list.c uci_fixup_section: computed at creation, before any option exists.
    return "cfg%02x%04x" % (ordinal, _djb2(section_type) % 65536)


class _Parser:
    """One pass over a file; state names follow libuci's parse context."""

    def __init__(self, text, filename, strict):
        parts = text.split("\n")  # only \n ends a line (fgets), unlike str.splitlines
        self.lines = [part + "\n" for part in parts[:-1]]
        if parts[-1]:
            self.lines.append(parts[-1])
        self.filename = filename
        self.strict = strict
        self.lines_read = 0
        self.buf = ""
        self.filled = 0
        self.pos = 0
        self.line_offsets = []  # buffer offset where each physical line starts
        self.line_numbers = []
        self.statement_line = 0
        self.section = None
        self.sections = []
        self.by_name = {}
        self.section_count = 0
        self.warnings = []

    # -- input -----------------------------------------------------------------

    def read_line(self, offset):
        """Append the next physical line at `offset` (uci_getln); False at EOF."""
        if self.lines_read >= len(self.lines):
            self.buf = self.buf[:offset]
            return False
        line = self.lines[self.lines_read]
        self.lines_read += 1
        self.line_offsets.append(offset)
        self.line_numbers.append(self.lines_read)
        if "\0" in line:
            raise _SyntaxError("NUL character in line")
        self.buf = self.buf[:offset] + line
        self.filled = len(self.buf)
        return True

    def line_at(self, offset):
        return self.line_numbers[bisect_right(self.line_offsets, offset) - 1]

    def char(self, offset=None):
        offset = self.pos if offset is None else offset
        return self.buf[offset] if offset < len(self.buf) else "\0"

    def end_line_here(self):
        """libuci writes a NUL at the cursor, which ends the rest of the line."""
        self.buf = self.buf[:self.pos]

    def skip_whitespace(self):
        while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
            self.pos += 1

    # -- arguments (parse_str and friends) -------------------------------------

    def backslash(self):
        """Skip a backslash; True if the next character is taken literally."""
        self.pos += 1
        c = self.char()
        if c in "\0\n" or (c == "\r" and self.char(self.pos + 1) == "\n"
                           and self.char(self.pos + 2) == "\0"):
            self.read_line(self.pos)  # backslash-newline joins lines
            return False
        return True

    def single_quoted(self, out):
        self.pos += 1
        while True:
            end = self.buf.find("'", self.pos)
            if end >= 0:
                out.append(self.buf[self.pos:end])
                self.pos = end + 1
                return
            out.append(self.buf[self.pos:])
            self.pos = len(self.buf)
            if not self.read_line(self.pos):
                raise _SyntaxError("EOF with unterminated '")

    def double_quoted(self, out):
        self.pos += 1
        while True:
            c = self.char()
            if c == '"':
                self.pos += 1
                return
            if c == "\0":
                if not self.read_line(self.pos):
                    raise _SyntaxError('EOF with unterminated "')
                continue
            if c == "\\":
                if not self.backslash():
                    continue
                out.append(self.char())
                self.pos += 1
                continue
            run = _DOUBLE_QUOTED_RUN.match(self.buf, self.pos)
            out.append(run.group())
            self.pos = run.end()

    def argument(self):
        """One argument: quoted and unquoted pieces up to unquoted whitespace."""
        start = self.pos
        out = []
        at_separator = False
        while True:
            c = self.char()
            if c == "'":
                self.single_quoted(out)
            elif c == '"':
                self.double_quoted(out)
            elif c == "#":
                self.end_line_here()
                break
            elif c == "\0":
                break
            elif c == ";":
                at_separator = True
                break
            elif c == "\\":
                if self.backslash():
                    out.append(self.char())
                    self.pos += 1
            else:
                run = _UNQUOTED_RUN.match(self.buf, self.pos)
                out.append(run.group())
                self.pos = run.end()
            c = self.char()
            if c == "\0" or c in _WHITESPACE:
                break
        value = "".join(out)
        if at_separator:
            # libuci terminates the value in place; if nothing was removed from
            # an unquoted argument, that NUL lands on the `;` and the rest of the
            # line is lost (`option x a;b` gives x='a').
            if start + len(value) == self.pos:
                self.end_line_here()
        elif self.char() != "\0":
            self.pos += 1
        return value

    def next_argument(self, required=False, validate=None):
        self.skip_whitespace()
        if self.char() == ";":
            self.pos += 1
            value = ""
        else:
            value = self.argument()
        if not value:
            if required:
                raise _SyntaxError("insufficient arguments")
            return ""
        if validate is not None and not validate.match(value):
            raise _SyntaxError("invalid character in name field")
        return value

    def expect_end(self):
        self.skip_whitespace()
        if self.next_argument():
            self.problem("too many arguments", "extra arguments ignored")

    def problem(self, message, recovery):
        """An error in strict mode; in non-strict mode uci carries on silently."""
        if self.strict:
            raise _SyntaxError(message)
        self.warnings.append(UciError(self.filename, self.statement_line,
                                      f"{message} ({recovery})"))

    # -- commands --------------------------------------------------------------

    def parse_line(self):
        self.skip_whitespace()
        while True:
            # strtok(" \t"): only space and tab end the command word, so a
            # keyword directly followed by the newline is not a keyword.
            begin = self.pos
            while begin < len(self.buf) and self.buf[begin] in " \t":
                begin += 1
            if begin >= len(self.buf):
                return
            end = begin
            while end < len(self.buf) and self.buf[end] not in " \t":
                end += 1
            word = self.buf[begin:end]
            self.statement_line = self.line_at(begin)
            if word[0] == "#":
                return
            command = _COMMANDS.get(word)
            if command is None:
                raise _SyntaxError("invalid command")
            if command in ("option", "list") and self.section is None:
                raise _SyntaxError("option/list command found before the first section")
            if end + 1 > self.filled:
                what = "option" if command == "list" else command
                raise _SyntaxError(f"{what} without name")
            self.pos = end + 1
            if command == "package":
                # Loading one file: the package name is the file name.
                self.next_argument(required=True, validate=_PACKAGE_NAME)
                self.expect_end()
            elif command == "config":
                self.parse_config()
            else:
                self.parse_option(command == "list")

    def parse_config(self):
        section_type = self.next_argument(required=True)
        if not _TYPE.match(section_type):
            raise _SyntaxError("invalid character in type field")
        name = self.next_argument(validate=_NAME)
        self.expect_end()
        self.open_section(section_type, name)

    def open_section(self, section_type, name):
        section = self.by_name.get(name) if name else None
        if section is None:
            self.section_count += 1
            anonymous = not name
            if anonymous:
                name = _anonymous_name(self.section_count, section_type)
            section = UciSection(section_type, name, anonymous, self.statement_line)
            self.sections.append(section)
            self.by_name.setdefault(name, section)
        else:
            section.reopened.append(self.statement_line)
        if section.type != section_type:
            self.problem("section of different type overwrites prior section with same name",
                         f"type of '{name}' changed from '{section.type}' to '{section_type}'")
            section.type = section_type
        self.section = section

    def parse_option(self, is_list):
        name = self.next_argument(required=True, validate=_NAME)
        value = self.next_argument()
        self.expect_end()
        self.set_option(name, value, is_list)

    def set_option(self, name, value, is_list):
        options = self.section.options
        old = options.get(name)
        line = self.statement_line
        if is_list:
            if old is not None and old.is_list:
                old.value.append(value)
                old.line = line
                old.item_lines.append(line)
                return
            items = [value] if old is None else [old.value, value]
            new = UciOption(name, items, True, line,
                            [line] if old is None else [old.line, line])
        else:
            if not value:
                return  # uci_set with an empty value is a no-op while parsing
            if old is not None and not old.is_list and old.value == value:
                old.line = line
                return
            new = UciOption(name, value, False, line)
        # uci frees the old option and appends the new one: it moves to the end.
        options.pop(name, None)
        options[name] = new

    def plain_statement(self):
        """The shortcut for a plain one-line statement (see _FAST_OPTION); False if the line
        is anything else, read or not."""
        line = self.lines[self.lines_read]
        if found := _FAST_OPTION.match(line):
            if self.section is None:
                return False  # the full parser says what is wrong
            command, name, *value = found.groups()
            self.lines_read += 1
            self.set_option(name, _given(value), command in ("list", "l"))
        elif found := _FAST_CONFIG.match(line):
            *section_type, single, double, bare = found.groups()
            section_type = _given(section_type)
            if not section_type or not _TYPE.match(section_type):
                return False
            self.lines_read += 1
            self.open_section(section_type, _given((single, double, bare), ""))
        elif _FAST_NOTHING.match(line):
            self.lines_read += 1
        else:
            return False
        return True

    def run(self):
        while self.lines_read < len(self.lines):
            self.pos = 0
            self.buf = ""
            self.line_offsets = []
            self.line_numbers = []
            self.statement_line = self.lines_read + 1
            try:
                if self.plain_statement():
                    continue
                self.read_line(0)
                self.parse_line()
            except _SyntaxError as error:
                located = UciError(self.filename, self.statement_line, str(error))
                if self.strict:
                    raise located from None
                self.warnings.append(located)
        return UciPackage(self.filename, self.sections, self.warnings)


def parse(text: str, filename: str = "<uci>", strict: bool = True) -> UciPackage:
    """Parse UCI text. Strict mode raises UciError; non-strict skips bad lines."""
    return _Parser(text, filename, strict).run()


def load(path, strict: bool = True) -> UciPackage:
    """Read and parse a UCI file; undecodable bytes survive as surrogates."""
    text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    return parse(text, str(path), strict)


def quote(value: str) -> str:
    """Single-quote a value the way `uci export` does."""
    return "'" + value.replace("'", "'\\''") + "'"


def _check_exportable(section):
    if not _TYPE.match(section.type):
        raise ValueError(f"section type {section.type!r}: use printable ASCII without spaces")
    if not section.anonymous and not _NAME.match(section.name):
        raise ValueError(f"section name {section.name!r}: use only A-Z, a-z, 0-9 and _")
    for option in section.options.values():
        if not _NAME.match(option.name):
            raise ValueError(f"section '{section.name}' option name {option.name!r}: "
                             "use only A-Z, a-z, 0-9 and _")
        values = option.value if option.is_list else [option.value]
        if any("\0" in value for value in values):
            raise ValueError(f"section '{section.name}' option '{option.name}': NUL in value")


def export(sections, package: "str | None" = None) -> str:
    """Render sections as `uci export` text (the layout `uci commit` writes).

    Anonymous sections are written without a name, so they get their cfgNNxxxx
    names back when the text is parsed again in the same order. Types are bare
    like uci writes them, and quoted only if they contain a character the
    parser would treat specially (uci itself would write them unparseable).
    """
    out = []
    if package is not None:
        if not _PACKAGE_NAME.match(package):
            raise ValueError(f"package name {package!r}: use only A-Z, a-z, 0-9, _ and -")
        out.append(f"package {package}\n")
    for section in sections:
        _check_exportable(section)
        section_type = section.type
        if _TYPE_NEEDS_QUOTES.search(section_type):
            section_type = quote(section_type)
        header = f"\nconfig {section_type}"
        if not section.anonymous:
            header += " " + quote(section.name)
        out.append(header + "\n")
        for option in section.options.values():
            if option.is_list:
                for item in option.value:
                    out.append(f"\tlist {option.name} {quote(item)}\n")
            else:
                out.append(f"\toption {option.name} {quote(option.value)}\n")
    out.append("\n")
    return "".join(out)
