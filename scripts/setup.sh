#!/bin/sh
# Set up NetPath on a fresh Debian machine (as root): system packages, a virtual
# environment in .venv, and NetPath with its test extras. Safe to run again.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="nftables python3-nftables python3-venv python3-dev iproute2 conntrack iputils-ping \
shellcheck busybox socat util-linux procps ca-certificates nodejs chromium fonts-dejavu-core prometheus \
iperf3 gcc libc6-dev"
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# The monitoring tests start their own Prometheus inside a lab namespace: the package's
	# service must not start on the host (policy-rc.d answers "not now" while installing).
	guard=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && guard=1
	fi
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
	[ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
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
