"""Shared pytest setup for NetPath's tests.

Imports: this file puts the `tests/` directory on sys.path, so any test can write
`from lab import netlab` (the namespace lab lives in tests/lab/, a package). `tests/` itself
is deliberately not a package.

Lab tests: tests marked `@pytest.mark.lab` need root and `ip netns`; without them they are
skipped for the whole session with the reason. The fixtures below hand out a built
`netlab.Lab` and always destroy it, also when the test or the build fails:

- `lab`: a fresh lab per test.
- `lab_module`: one lab shared by the tests of a module (cheaper; tests must undo what they break).

Both build `Lab(wans=2, ipv6=True)` unless told otherwise, either per module with
`LAB_OPTIONS = {"wans": 3}` or per test with
`@pytest.mark.parametrize("lab", [{"wans": 3}], indirect=True)`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from lab import netlab  # noqa: E402


def lab_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, nft)"
    if shutil.which("ip") is None:
        return "lab tests need iproute2 (`ip` not found)"
    try:
        subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        return f"lab tests need `ip netns`: {error}"
    return None


def pytest_collection_modifyitems(config, items):
    lab_items = [item for item in items if item.get_closest_marker("lab")]
    if not lab_items:
        return
    reason = lab_unavailable_reason()
    if reason:
        for item in lab_items:
            item.add_marker(pytest.mark.skip(reason=reason))


def _lab_options(request) -> dict:
    options = dict(getattr(request.module, "LAB_OPTIONS", {}))
    options.update(getattr(request, "param", None) or {})
    return options


def _built_lab(request):
    lab = netlab.Lab(**_lab_options(request))
    request.addfinalizer(lab.destroy)  # registered before build: a failed build is torn down too
    return lab.build()


@pytest.fixture
def lab(request):
    yield _built_lab(request)


@pytest.fixture(scope="module")
def lab_module(request):
    yield _built_lab(request)
