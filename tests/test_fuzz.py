"""Run every fuzz target of the default service for a bounded time. A crash found is a
failing test, with the failing input's file named in the output (testdata/fuzz/...)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import run

pytestmark = [pytest.mark.go, pytest.mark.slow]

# Seconds of fuzzing per target; CI's budget, or more locally with FUZZ_SECONDS=60.
FUZZ_SECONDS = int(os.environ.get("FUZZ_SECONDS", "8"))

TARGETS = [
    ("./internal/httpapi", "FuzzDecode"),
    ("./internal/httpapi", "FuzzExpectedVersion"),
    ("./internal/httpapi", "FuzzRequestID"),
    ("./internal/httpapi", "FuzzAPI"),
    ("./internal/service", "FuzzCursor"),
    ("./internal/auth", "FuzzAuthorize"),
]


@pytest.mark.parametrize(("package", "target"), TARGETS, ids=[t for _, t in TARGETS])
def test_fuzz_target(projects, package, target):
    proc = run(["go", "test", "-run=^$", f"-fuzz=^{target}$", f"-fuzztime={FUZZ_SECONDS}s", "-parallel=2", package],
               projects["default"], timeout=600, check=False)
    assert proc.returncode == 0, f"{target} found a failing input:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"


def test_every_fuzz_target_is_run(projects):
    """A fuzz target added to the service without a line here fails this test."""
    found = set()
    for path in projects["default"].rglob("*_test.go"):
        for line in path.read_text().splitlines():
            if line.startswith("func Fuzz"):
                found.add(line.split("(")[0].removeprefix("func "))
    assert found == {t for _, t in TARGETS}
