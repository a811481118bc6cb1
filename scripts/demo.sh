#!/bin/sh
# Set everything up (as root, on Debian) and run NetPath on its built-in example inside
# a throw-away network-namespace lab.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
.venv/bin/python scripts/demo.py
