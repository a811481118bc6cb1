"""UCI reader/writer against openwrt/uci behaviour (reference/mwan3.md section 7)."""

import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from netpath.compiler.uci import (
    UciError, UciOption, UciSection, export, load, parse, quote,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mwan3"  # see its README.md

MWAN3_TYPES = {"globals", "interface", "member", "policy", "rule"}


def values(section):
    return {name: option.value for name, option in section.options.items()}


def reference_djb2_suffix(section_type):
    """djb2 as in list.c, written out independently of the module."""
    value = 5381
    for byte in section_type.encode():
        value = (value * 33 + byte) % 2**32
    return "%04x" % ((value & 0x7FFFFFFF) % 65536)


def error_of(text, strict=True):
    with pytest.raises(UciError) as caught:
        parse(text, "test.uci", strict=strict)
    return caught.value


# -- 7.6: tricky but valid, one file, strict --------------------------------------

TRICKY = """\
# comment at column 0
\t   # indented comment
config 'rule' "r1"                 # quoted type and name, trailing comment
\toption 'dest_port' "443"
\toption x 'it'\\''s'               # -> it's
\toption y "say \\"hi\\""            # -> say "hi"
\toption z abc\\ def                # -> abc def
\toption w 'single \\n no escape'   # -> single \\n no escape   (backslash kept)
\toption v "dq \\n backslash-n"     # -> dq n backslash-n      (backslash dropped, NOT a newline)
\toption m 'multi
line'                                  # -> value contains a newline
\toption j long\\
value                                  # -> longvalue (line continuation)
\toption k 'q'\\
'r'                                    # -> qr
\toption c 'a'"b"c                 # -> abc
\toption h a\\#b                    # -> a#b
\tlist l ''                        # -> list with one empty item
c rule b                           # abbreviated keywords
\to x 1
\tl y 2
config rule 123                    # numeric section name
\toption 9x 1                      # option name starting with a digit
config my-type.x 'n1'              # type may contain - and .
config rule                        # anonymous; exported as cfgNN92bd
"""


def test_tricky_block_parses_strictly_with_documented_values():
    package = parse(TRICKY, "tricky.uci")
    assert package.warnings == []
    assert [(s.type, s.name, s.anonymous) for s in package.sections] == [
        ("rule", "r1", False),
        ("rule", "b", False),
        ("rule", "123", False),
        ("my-type.x", "n1", False),
        ("rule", "cfg05" + reference_djb2_suffix("rule"), True),
    ]
    r1 = package.get("r1")
    assert values(r1) == {
        "dest_port": "443",
        "x": "it's",
        "y": 'say "hi"',
        "z": "abc def",
        "w": "single \\n no escape",
        "v": "dq n backslash-n",
        "m": "multi\nline",
        "j": "longvalue",
        "k": "qr",
        "c": "abc",
        "h": "a#b",
        "l": [""],
    }
    assert r1.options["l"].is_list and not r1.options["h"].is_list
    assert values(package.get("b")) == {"x": "1", "y": ["2"]}
    assert package.get("b").options["y"].is_list
    assert values(package.get("123")) == {"9x": "1"}
    assert package.get("n1").options == {}


def test_tricky_block_lines():
    package = parse(TRICKY)
    r1 = package.get("r1")
    assert r1.line == 3
    assert r1.options["dest_port"].line == 4
    assert r1.options["m"].line == 10  # first line of a multi-line value
    assert r1.options["j"].line == 12
    assert r1.options["c"].line == 16
    assert package.get("b").line == 19
    assert package.sections[-1].line == 25


def test_tricky_block_same_in_non_strict_mode():
    assert parse(TRICKY, strict=False).sections == parse(TRICKY).sections
    assert parse(TRICKY, strict=False).warnings == []


# -- 7.1: lexical details --------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ("option y a#b", "a"),
    ("option y 'a#b'", "a#b"),
    ('option y "a#b"', "a#b"),
    ("option y 'it'\\''s'", "it's"),
    ("option y 'a'\"b\"c", "abc"),
    ('option y "back\\\\slash"', "back\\slash"),
    ("option y a\\'b", "a'b"),
    ("option y 'ünïcödé ✓'", "ünïcödé ✓"),
    ("option y a\\;b", "a;b"),
])
def test_argument_quoting(line, expected):
    section = parse(f"config rule 'r'\n\t{line}\n").get("r")
    assert section.options["y"].value == expected


def test_comment_after_config_statement():
    package = parse("config rule 'a' # note\n\toption x 1 # another\n")
    assert values(package.get("a")) == {"x": "1"}


def test_semicolon_after_quoted_piece_separates_commands():
    package = parse("config rule 'a'; option x '1'; option y '2'\n")
    assert values(package.get("a")) == {"x": "1", "y": "2"}


def test_semicolon_after_unquoted_piece_drops_rest_of_line():
    package = parse("config rule 'a'\n\toption x a;b\n\toption z 3\n")
    assert values(package.get("a")) == {"x": "a", "z": "3"}
    package = parse("config rule a; option x '1'\n")
    assert values(package.get("a")) == {}


def test_semicolon_after_whitespace_separates_commands():
    package = parse("config rule 'a'\n\toption x a ; option y b\n")
    assert values(package.get("a")) == {"x": "a", "y": "b"}


def test_semicolon_after_escape_separates_commands():
    # The in-place terminator only hits the `;` when nothing was removed.
    package = parse("config rule 'a'\n\toption x a\\b; option y c\n")
    assert values(package.get("a")) == {"x": "ab", "y": "c"}


def test_crlf_line_endings_and_missing_final_newline():
    text = "config rule 'a'\r\n\toption x '1'\r\n\tlist l two\r\n\toption last 'end'"
    assert values(parse(text).get("a")) == {"x": "1", "l": ["two"], "last": "end"}


def test_crlf_backslash_continuation():
    package = parse("config rule 'a'\r\n\toption j long\\\r\nvalue\r\n")
    assert values(package.get("a")) == {"j": "longvalue"}


def test_continuation_followed_by_indentation_ends_the_argument():
    # Whitespace after the joined line ends the argument, leaving an extra one.
    error = error_of("config rule 'a'\n\toption j long\\\n  value\n")
    assert (error.line, error.message) == (2, "too many arguments")


def test_double_quoted_value_spanning_lines_keeps_newline():
    package = parse('config rule "a"\n\toption m "one\ntwo"\n')
    assert values(package.get("a")) == {"m": "one\ntwo"}


def test_only_newline_ends_lines():
    # Unicode line separators are part of values, not line breaks.
    package = parse("config rule 'a'\n\toption x 'p\u2028q\x85r'\n\toption y 2\n")
    assert values(package.get("a")) == {"x": "p\u2028q\x85r", "y": "2"}
    assert package.get("a").options["y"].line == 3


def test_package_lines_are_validated_and_ignored():
    package = parse("package mwan3\n\nconfig rule 'a'\np other-name\n\toption x 1\n")
    assert [s.name for s in package.sections] == ["a"]
    assert values(package.get("a")) == {"x": "1"}
    assert error_of("package bad.name\n").message == "invalid character in name field"


def test_blank_and_whitespace_only_lines_are_skipped():
    package = parse("\n   \n\t\nconfig rule 'a'\n \t \n\toption x 1\n\n")
    assert values(package.get("a")) == {"x": "1"}


def test_quoted_names_are_unquoted_before_validation():
    package = parse("config 'rule' \"r1\"\n\toption 'dest_port' \"443\"\n")
    assert values(package.get("r1")) == {"dest_port": "443"}


@pytest.mark.parametrize("name", ["wan_m1_w3", "123", "9x", "X_Y"])
def test_valid_names(name):
    package = parse(f"config rule '{name}'\n\toption {name} 1\n")
    assert values(package.get(name)) == {name: "1"}


# -- 7.7: invalid inputs ---------------------------------------------------------

PREFIX = "# header\nconfig rule 'ok'\n\toption a 1\n"  # errors below are on line 4


@pytest.mark.parametrize("bad, message", [
    ("config rule 'my-rule'", "invalid character in name field"),
    ("option bad-name 1", "invalid character in name field"),
    ("config rule 'ü'", "invalid character in name field"),
    ("config rule my.rule", "invalid character in name field"),
    ("Config policy 'x'", "invalid command"),
    ("config", "invalid command"),
    ("option", "invalid command"),
    ("list", "invalid command"),
    ("opt x 1", "invalid command"),
    ("config rule 'a' 'extra'", "too many arguments"),
    ("option x 1 2", "too many arguments"),
    ("config policy 'ok'", "section of different type overwrites prior section with same name"),
    ("config 'my type' 'b'", "invalid character in type field"),
    ("config 'ty\x01pe' 'b'", "invalid character in type field"),
    ("config 'typ\u00e9' 'b'", "invalid character in type field"),
    ("config '' 'b'", "insufficient arguments"),
    ("option '' 1", "insufficient arguments"),
    ("option x 'unterminated", "EOF with unterminated '"),
    ('option x "unterminated', 'EOF with unterminated "'),
])
def test_invalid_input_strict(bad, message):
    error = error_of(PREFIX + bad + "\n")
    assert error.message == message
    assert error.line == 4
    assert error.filename == "test.uci"
    assert str(error) == f"test.uci:4: {message}"


def test_option_before_first_section():
    for text in ("\n# c\noption x 1\nconfig rule 'a'\n", "list x 1\n"):
        error = error_of(text)
        assert error.message == "option/list command found before the first section"
        assert error.line == text.count("\n", 0, text.index("x 1")) + 1


def test_unterminated_quote_reports_the_statement_line():
    error = error_of("config rule 'a'\n\toption x 'open\nmore\n\n\toption y 2\n")
    assert (error.line, error.message) == (2, "EOF with unterminated '")


def test_error_in_second_command_of_a_line():
    error = error_of("config rule 'a'; option bad-name 1\n")
    assert (error.line, error.message) == (1, "invalid character in name field")


def test_command_starting_on_a_continued_line_reports_its_own_line():
    error = error_of("config rule 'a'\n\toption k 'q'\\\n'r'; option bad-name 1\n")
    assert (error.line, error.message) == (3, "invalid character in name field")


def test_keyword_at_end_of_file_without_newline():
    assert error_of("config rule 'a'\no").message == "option without name"
    assert error_of("c").message == "config without name"


def test_nul_character_is_an_error_not_a_crash():
    error = error_of("config rule 'a'\n\toption x 'a\0b'\n")
    assert error.line == 2


# -- 7.4: option vs list semantics -----------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ("option x 'one'\noption x 'two'", {"x": "two"}),
    ("option x 'one'\noption x ''", {"x": "one"}),
    ("option y", {}),
    ("option y ''", {}),
    ("list l 'a'\nlist l 'a'", {"l": ["a", "a"]}),
    ("list z ''", {"z": [""]}),
    ("list l", {"l": [""]}),
    ("option m 'str'\nlist m 'l1'", {"m": ["str", "l1"]}),
    ("list n 'l1'\nlist n 'l2'\noption n 'x'", {"n": "x"}),
    ("list n 'l1'\noption n ''", {"n": ["l1"]}),
])
def test_option_and_list_semantics(body, expected):
    for strict in (True, False):
        section = parse("config rule 'r'\n" + body + "\n", strict=strict).get("r")
        assert values(section) == expected
        for name, value in expected.items():
            assert section.options[name].is_list == isinstance(value, list)


def test_reopened_named_section_merges():
    text = ("config rule 'r'\n\toption a '1'\n\tlist l 'x'\n"
            "config policy 'p'\n"
            "config rule 'r'\n\toption a '2'\n\tlist l 'y'\n\toption b '3'\n")
    package = parse(text)
    assert [s.name for s in package.sections] == ["r", "p"]
    r = package.get("r")
    assert r.line == 1
    assert values(r) == {"a": "2", "l": ["x", "y"], "b": "3"}
    assert r.options["a"].line == 6
    assert r.options["l"].line == 7


def test_replaced_option_moves_to_the_end_like_uci():
    section = parse("config rule 'r'\n\toption a 1\n\toption b 2\n\toption a 3\n").get("r")
    assert list(section.options) == ["b", "a"]
    section = parse("config rule 'r'\n\toption a 1\n\toption b 2\n\toption a 1\n").get("r")
    assert list(section.options) == ["a", "b"]  # same value: untouched
    section = parse("config rule 'r'\n\toption a 1\n\toption b 2\n\tlist a 3\n").get("r")
    assert list(section.options) == ["b", "a"]
    section = parse("config rule 'r'\n\tlist a 1\n\toption b 2\n\tlist a 3\n").get("r")
    assert list(section.options) == ["a", "b"]  # appending keeps the place


def test_lossy_inputs_same_in_both_modes():
    text = "config rule 'r'\n\toption x a;b\n\toption y ''\n\toption z a#b\n"
    for strict in (True, False):
        package = parse(text, strict=strict)
        assert values(package.get("r")) == {"x": "a", "z": "a"}
        assert package.warnings == []


# -- 7.3: anonymous sections -----------------------------------------------------

def test_anonymous_names_follow_section_ordinal_and_type_hash():
    package = parse("config rule\nconfig rule ''\nconfig policy\n"
                    "config rule 'named'\nconfig rule\n")
    assert [s.name for s in package.sections] == [
        "cfg0192bd", "cfg0292bd", "cfg036ff5", "named", "cfg0592bd"]
    assert [s.anonymous for s in package.sections] == [True, True, True, False, True]


@pytest.mark.parametrize("section_type, suffix", [
    ("rule", "92bd"), ("policy", "6ff5"), ("interface", "6d96"), ("member", "6fdd")])
def test_observed_anonymous_suffixes(section_type, suffix):
    assert reference_djb2_suffix(section_type) == suffix
    package = parse(f"config {section_type}\n\toption a 1\n")
    assert package.sections[0].name == "cfg01" + suffix


def test_anonymous_name_ignores_options_and_reopened_sections():
    package = parse("config rule 'a'\nconfig rule 'a'\nconfig member\n\toption x 1\n")
    assert package.sections[1].name == "cfg02" + reference_djb2_suffix("member")


def test_ordinals_above_255_widen():
    package = parse("config rule\n" * 256)
    assert package.sections[-1].name == "cfg100" + reference_djb2_suffix("rule")


def test_section_without_options_exists():
    package = parse("config rule 'empty'\n")
    assert package.get("empty").options == {}
    assert package.get("missing") is None


def test_by_type_keeps_file_order():
    package = parse("config rule 'a'\nconfig policy 'p'\nconfig rule\nconfig rule 'b'\n")
    assert [s.name for s in package.by_type("rule")] == ["a", "cfg0392bd", "b"]
    assert package.by_type("member") == []


# -- 7.5: non-strict recovery ----------------------------------------------------

def test_non_strict_rejected_section_options_land_in_previous_section():
    text = "config rule 'first'\n    option x 1\nconfig rule 'bad-name'\n    option y 2\n"
    assert error_of(text).line == 3
    package = parse(text, "f.uci", strict=False)
    assert [s.name for s in package.sections] == ["first"]
    assert values(package.get("first")) == {"x": "1", "y": "2"}
    [warning] = package.warnings
    assert (warning.filename, warning.line, warning.message) == (
        "f.uci", 3, "invalid character in name field")


def test_non_strict_invalid_command_attaches_list_to_previous_section():
    text = ("config member 'm1'\n    option interface 'wan'\n"
            "Config policy 'wan_only'\n    list use_member 'm1'\n")
    assert error_of(text).message == "invalid command"
    package = parse(text, strict=False)
    assert [s.name for s in package.sections] == ["m1"]
    assert values(package.get("m1")) == {"interface": "wan", "use_member": ["m1"]}
    assert [(w.line, w.message) for w in package.warnings] == [(3, "invalid command")]


def test_non_strict_open_quote_swallows_rest_of_file():
    text = "config rule 'r1'\n    option w 'it\\'s'\n    option z 'later'\n"
    error = error_of(text)
    assert (error.line, error.message) == (2, "EOF with unterminated '")
    package = parse(text, strict=False)
    assert [(s.type, s.name) for s in package.sections] == [("rule", "r1")]
    assert values(package.get("r1")) == {}
    assert [(w.line, w.message) for w in package.warnings] == [
        (2, "EOF with unterminated '")]


def test_non_strict_type_change_merges():
    text = "config rule 'a'\n\toption x 1\nconfig policy 'a'\n\toption y 2\n"
    package = parse(text, strict=False)
    assert [(s.type, s.name) for s in package.sections] == [("policy", "a")]
    assert values(package.get("a")) == {"x": "1", "y": "2"}
    [warning] = package.warnings
    assert warning.line == 3
    assert warning.message.startswith(
        "section of different type overwrites prior section with same name")


def test_non_strict_extra_arguments_are_ignored():
    package = parse("config rule 'a' 'extra'\n\toption x 1 2\n", strict=False)
    assert values(package.get("a")) == {"x": "1"}
    assert [w.line for w in package.warnings] == [1, 2]
    assert all(w.message.startswith("too many arguments") for w in package.warnings)


def test_non_strict_keeps_commands_before_the_error_on_the_same_line():
    package = parse("config rule 'a'; option bad-name 1; option c 3\n\toption d 4\n",
                    strict=False)
    assert values(package.get("a")) == {"d": "4"}
    assert [w.line for w in package.warnings] == [1]


def test_non_strict_option_before_first_section_is_dropped():
    package = parse("option x 1\nconfig rule 'a'\n\toption y 2\n", strict=False)
    assert values(package.get("a")) == {"y": "2"}
    assert [(w.line, w.message) for w in package.warnings] == [
        (1, "option/list command found before the first section")]


def test_strict_mode_has_no_warnings():
    assert parse("config rule 'a'\n\toption x 1\n").warnings == []


# -- corpus ---------------------------------------------------------------------

FIXTURE_FILES = sorted(FIXTURES.glob("*.uci"))


def test_all_fixtures_present():
    assert len(FIXTURE_FILES) == 12


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name[:2])
def test_fixture_parses_strictly(path):
    package = load(path)
    config_lines = re.findall(r"^\s*config\s+\S+\s+'([^']*)'", path.read_text(), re.M)
    assert len(package.sections) == len(set(config_lines)) > 0
    assert {s.type for s in package.sections} <= MWAN3_TYPES
    assert all(not s.anonymous for s in package.sections)
    assert package.warnings == []
    assert package.filename == str(path)
    assert load(path, strict=False).sections == package.sections
    # export is a fixed point after one round
    again = parse(export(package.sections, "mwan3"))
    assert again.sections == package.sections


def test_upstream_default_config_content():
    package = load(FIXTURES / "01_openwrt_packages.uci")
    assert len(package.by_type("interface")) == 4
    assert len(package.by_type("member")) == 10
    assert len(package.by_type("policy")) == 5
    assert values(package.get("globals")) == {"mmx_mask": "0x3F00"}
    wan = package.get("wan")
    assert wan.options["track_ip"].is_list
    assert wan.options["track_ip"].value == [
        "1.0.0.1", "1.1.1.1", "208.67.222.222", "208.67.220.220"]
    assert wan.options["family"] == UciOption("family", "ipv4", False)


def test_space_indented_fixture():
    package = load(FIXTURES / "02_space_indented_ipset.uci")
    assert values(package.get("cable1"))["track_ip"] == ["192.0.2.53", "198.51.100.53"]


def test_load_keeps_undecodable_bytes(tmp_path):
    path = tmp_path / "raw"
    path.write_bytes(b"config rule 'a'\n\toption x '\xff\xfe'\n\toption bad-\xff 1\n")
    package = load(path, strict=False)
    assert values(package.get("a")) == {"x": "\udcff\udcfe"}
    assert [(w.filename, w.line) for w in package.warnings] == [(str(path), 3)]
    assert export(package.sections).encode("utf-8", "surrogateescape").count(b"\xff\xfe") == 1


# -- export ---------------------------------------------------------------------

def test_quote():
    assert quote("plain") == "'plain'"
    assert quote("it's") == "'it'\\''s'"
    assert quote("") == "''"


def test_export_layout_matches_uci_export():
    sections = [
        UciSection("globals", "globals", False, 1,
                   {"mmx_mask": UciOption("mmx_mask", "0x3F00", False, 2)}),
        UciSection("rule", "cfg0292bd", True, 3, {
            "proto": UciOption("proto", "tcp", False, 4),
            "dest_port": UciOption("dest_port", ["443", "it's"], True, 5),
        }),
    ]
    assert export(sections, "mwan3") == (
        "package mwan3\n"
        "\n"
        "config globals 'globals'\n"
        "\toption mmx_mask '0x3F00'\n"
        "\n"
        "config rule\n"
        "\toption proto 'tcp'\n"
        "\tlist dest_port '443'\n"
        "\tlist dest_port 'it'\\''s'\n"
        "\n"
    )
    assert export(sections).startswith("\nconfig globals 'globals'\n")


def test_export_quotes_types_only_when_needed():
    sections = [UciSection("we'ird#;", "a", False), UciSection("my-type.x", "b", False)]
    text = export(sections)
    assert "config my-type.x 'b'" in text
    assert parse(text).sections == sections


@pytest.mark.parametrize("section", [
    UciSection("rule", "bad-name", False),
    UciSection("my type", "a", False),
    UciSection("rule", "a", False, 0, {"bad-opt": UciOption("bad-opt", "1", False)}),
    UciSection("rule", "a", False, 0, {"x": UciOption("x", "a\0b", False)}),
])
def test_export_refuses_what_cannot_be_parsed_back(section):
    with pytest.raises(ValueError):
        export([section])


def test_export_refuses_bad_package_name():
    with pytest.raises(ValueError):
        export([], "bad name")


# -- round trip (property based) --------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True)
TYPES = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
TRICKY_CHARS = st.sampled_from(list("'\"\\#; \t\n\r") + ["\\\n", "'\\''", "\r\n"])
VALUE_CHARS = st.one_of(TRICKY_CHARS, st.characters(blacklist_characters="\0"))
ANY_VALUE = st.lists(VALUE_CHARS, max_size=20).map("".join)
OPTION_VALUES = ANY_VALUE.filter(bool)  # an empty option value is a no-op in uci
OPTIONS = st.dictionaries(
    NAMES,
    st.one_of(OPTION_VALUES.map(lambda v: (v, False)),
              st.lists(ANY_VALUE, min_size=1, max_size=4).map(lambda v: (v, True))),
    max_size=6,
)
SECTION_SPECS = st.lists(
    st.tuples(TYPES, st.one_of(st.none(), NAMES), OPTIONS), max_size=8,
).filter(lambda specs: len({n for _, n, _ in specs if n}) == sum(1 for _, n, _ in specs if n))


def build_sections(specs):
    sections = []
    for ordinal, (section_type, name, options) in enumerate(specs, start=1):
        anonymous = name is None
        if anonymous:
            name = "cfg%02x%s" % (ordinal, reference_djb2_suffix(section_type))
        sections.append(UciSection(section_type, name, anonymous, 0, {
            key: UciOption(key, value, is_list) for key, (value, is_list) in options.items()
        }))
    return sections


@settings(max_examples=300, deadline=None)
@given(SECTION_SPECS, st.one_of(st.none(), st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True)))
def test_parse_export_round_trip(specs, package_name):
    sections = build_sections(specs)
    # Anonymous names computed by the test could collide with a named section.
    names = [s.name for s in sections]
    if len(set(names)) != len(names):
        return
    text = export(sections, package_name)
    for strict in (True, False):
        package = parse(text, strict=strict)
        assert package.sections == sections
        assert package.warnings == []
    assert export(parse(text).sections, package_name) == text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TRICKY_CHARS, st.sampled_from(
    ["config ", "option ", "list ", "c ", "o x ", "l y ", "package p", "rule", "'a'", "\n"]),
    st.characters()), max_size=60).map("".join))
def test_arbitrary_text_gives_result_or_uci_error(text):
    try:
        parse(text)
    except UciError as error:
        assert error.line >= 1
    package = parse(text, strict=False)  # never raises
    for warning in package.warnings:
        assert 1 <= warning.line <= text.count("\n") + 1
    for section in package.sections:
        assert re.fullmatch(r"[A-Za-z0-9_]+", section.name)


# -- the shortcut for plain one-line statements gives what the libuci-faithful path gives --

def both_ways(text: str, strict: bool):
    """(sections, warnings, error) of a parse, with the shortcut and without it."""
    from netpath.compiler import uci

    results = []
    for shortcut in (True, False):
        parser = uci._Parser(text, "test.uci", strict)
        if not shortcut:
            parser.plain_statement = lambda: False
        try:
            package = parser.run()
        except UciError as error:
            results.append((None, None, (error.line, error.message)))
            continue
        results.append(([(s, s.line, s.reopened, [(o.line, o.item_lines) for o in s.options.values()])
                         for s in package.sections],
                        [(w.line, w.message) for w in package.warnings], None))
    return results


SHORTCUT_LINES = [
    "config interface 'wan'\n", "config 'interface' \"wan\"\n", "config rule\n", "c rule ''\n",
    "config rule 'r-1'\n", "config a;b\n", "config '' x\n", "config t\\x\n", "config ty\u00e9 n\n",
    "\toption ifname 'eth0'\n", "  o x \"1 2\"\n", "option x ''\n", "list y ''\n", "l y a\n",
    "option x a b\n", "option x 'a'b\n", "option x a # c\n", "option x 'a\\\n", "option x a\\\n",
    "option x \"a\\\"b\"\n", "option x a\r\n", "option x\n", "option 'x' y\n", "option x-y 1\n",
    "option x a\u00a0b\n", "list x 'a\0b'\n", "# c\n", "   #\n", "\n", " \t \n", "\v\n", "#\0\n",
    "options x y\n", "config\n", "config x y z\n", "package p\n", "option x 'a'\n",
]


@pytest.mark.parametrize("path", sorted([*FIXTURES.glob("*"), *(FIXTURES.parents[2] / "examples").glob("*.uci")]),
                         ids=lambda p: p.name)
def test_shortcut_matches_the_full_parser_on_examples_and_fixtures(path):
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    for strict in (True, False):
        with_shortcut, without = both_ways(text, strict)
        assert with_shortcut == without


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SHORTCUT_LINES), max_size=30).map("".join))
def test_shortcut_matches_the_full_parser_on_mixed_lines(text):
    for strict in (True, False):
        with_shortcut, without = both_ways(text, strict)
        assert with_shortcut == without


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TRICKY_CHARS, st.sampled_from(SHORTCUT_LINES), st.characters()), max_size=60).map("".join))
def test_shortcut_matches_the_full_parser_on_arbitrary_text(text):
    for strict in (True, False):
        with_shortcut, without = both_ways(text, strict)
        assert with_shortcut == without
