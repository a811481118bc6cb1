"""The shapes of the names that reach nft text, `ip -batch` lines and the control socket.

The compiler validates a config against these patterns; the agent checks a bundle's manifest
and the names a request carries against the same ones. `\\Z`, not `$`: `$` also matches
before a trailing newline, and a newline in a name would start a new nft statement.

Standard library only (the agent imports it on routers).
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")  # interfaces, members, policies, rules, sets
TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}\Z")  # the nft table
DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")  # a kernel network device (IFNAMSIZ)
