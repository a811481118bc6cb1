"""NetPath agent: applies a bundle, tracks uplinks, swaps pre-rendered state variants."""

# Equal to pyproject.toml's version (a test checks): `--version`, the status reply, dumps.
VERSION = "0.1.0"
