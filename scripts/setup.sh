#!/bin/sh
# Set up NetPath on a fresh Debian machine (as root): system packages, a virtual
# environment in .venv, and NetPath with its test extras. Safe to run again.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="nftables python3-nftables python3-venv python3-dev iproute2 conntrack iputils-ping \
shellcheck busybox socat util-linux procps ca-certificates nodejs chromium fonts-dejavu-core"
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# npm (for linting the LuCI views) ships inside some nodejs builds; Debian's own nodejs
# needs the separate package, which would conflict with the others.
if ! command -v npm >/dev/null 2>&1; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

# Debian's python3, so the libnftables binding (python3-nftables) is importable.
if [ ! -x .venv/bin/python ]; then
	/usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "${NETPATH_EDITABLE:-1}" = 1 ]; then
	.venv/bin/python -m pip install -q -e ".[test]"
else
	.venv/bin/python -m pip install -q ".[test]"
fi
echo "NetPath is installed in $(pwd)/.venv ($(.venv/bin/netpath --help >/dev/null && echo ok))"
