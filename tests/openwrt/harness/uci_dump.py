"""Print a UCI file as the shell statements OpenWrt's config_load evaluates.

OpenWrt's /lib/functions.sh loads a config by evaluating `uci -n export` output:
`config TYPE 'NAME'`, `option NAME 'VALUE'` and `list NAME 'VALUE'` lines, each a call
of the shell function of that name. This prints the same statements for the harness's
config_load, with NetPath's own UCI parser reading the file (strict, like libuci), and
every section named, anonymous ones by their cfgNNxxxx name as with `-n`.

usage: python uci_dump.py FILE      (exit 1 with the parser's message on a broken file)
"""

import sys

from netpath.compiler import uci


def main(path):
    try:
        package = uci.load(path)
    except FileNotFoundError:
        return 0  # like uci: a missing package loads as empty
    except uci.UciError as error:
        print(error, file=sys.stderr)
        return 1
    for section in package.sections:
        print(f"config {uci.quote(section.type)} {uci.quote(section.name)}")
        for option in section.options.values():
            values = option.value if option.is_list else [option.value]
            verb = "list" if option.is_list else "option"
            for value in values:
                print(f"\t{verb} {option.name} {uci.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
