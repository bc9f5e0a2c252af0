"""How much of the generated service its own tests cover, with the database servers
present: every statement under internal/, per package and in total. The figure must stay
at or above the floor; the table is printed for the closing notes (pytest -s, or the
report file next to the rendered project)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.conftest import LAYER_VARIANTS, run
from tests.test_go import module_of

pytestmark = [pytest.mark.go, pytest.mark.slow, pytest.mark.postgres]

FLOOR = 80.0  # percent of statements under internal/


def coverage_by_package(profile: str, module: str) -> dict[str, tuple[int, int]]:
    """(covered, total) statements per package. With -coverpkg every test binary reports
    every block, so a block counts as covered when any binary ran it."""
    blocks: dict[tuple[str, str], tuple[int, bool]] = {}
    for line in profile.splitlines()[1:]:
        where, stmts, count = line.rsplit(" ", 2)
        path, _, span = where.partition(":")
        covered = blocks.get((path, span), (0, False))[1] or int(count) > 0
        blocks[(path, span)] = (int(stmts), covered)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (path, _), (stmts, covered) in blocks.items():
        pkg = path.removeprefix(module + "/").rsplit("/", 1)[0]
        out[pkg][1] += stmts
        out[pkg][0] += stmts if covered else 0
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


@pytest.mark.parametrize("layer", list(LAYER_VARIANTS))
def test_the_service_tests_cover_most_of_internal(projects, layer, postgres_dsn, mariadb_dsn, tmp_path):
    proj = projects[LAYER_VARIANTS[layer]]
    profile = tmp_path / "cover.out"
    run(["go", "test", "-count=1", "-coverpkg=./internal/...", f"-coverprofile={profile}", "./internal/..."], proj,
        timeout=900, TEST_POSTGRES_DSN=postgres_dsn, TEST_MARIADB_DSN=mariadb_dsn)
    by_pkg = coverage_by_package(profile.read_text(), module_of(proj))
    covered = sum(c for c, _ in by_pkg.values())
    total = sum(t for _, t in by_pkg.values())
    lines = [f"{pkg:45} {c:5}/{t:<5} {100 * c / t:5.1f}%" for pkg, (c, t) in by_pkg.items() if t]
    lines.append(f"{'internal/ (all)':45} {covered:5}/{total:<5} {100 * covered / total:5.1f}%")
    report = "\n".join(lines)
    (proj / "coverage-report.txt").write_text(report + "\n")
    print("\n" + report)
    assert 100 * covered / total >= FLOOR, f"coverage under {FLOOR}%:\n{report}"
