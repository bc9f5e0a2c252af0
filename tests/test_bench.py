"""The generated store benchmark (get-by-id, the hot read path) on every engine, run in one
`go test` process, reported as ratios to SQLite. Nothing here asserts a time: the test
checks that every benchmark ran and prints the ratios (pytest -s, or the CI log)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run

pytestmark = [pytest.mark.go, pytest.mark.slow, pytest.mark.postgres]

LINE = re.compile(r"^BenchmarkGet\S*\s+\d+\s+([\d.]+) ns/op\s+(\d+) B/op\s+(\d+) allocs/op", re.M)


def test_get_by_id_benchmark_per_engine(projects, postgres_dsn, mariadb_dsn):
    proj = projects["default"]
    results = {}
    for engine, pkg in (("sqlite", "sqlite"), ("postgresql", "postgres"), ("mariadb", "mysql")):
        proc = run(["go", "test", "-run=^$", "-bench=^BenchmarkGet$", "-benchtime=3000x", "-count=1", f"./internal/store/{pkg}/"],
                   proj, TEST_POSTGRES_DSN=postgres_dsn, TEST_MARIADB_DSN=mariadb_dsn)
        m = LINE.search(proc.stdout)
        assert m, f"{engine}: no benchmark result in\n{proc.stdout}"
        results[engine] = (float(m[1]), int(m[2]), int(m[3]))
    base = results["sqlite"][0]
    report = ["get-by-id (sqlc), ns/op and ratio to SQLite in the same run:"]
    report += [f"  {e:10s} {ns:10.0f} ns/op  x{ns / base:5.2f}  {b} B/op  {a} allocs/op" for e, (ns, b, a) in results.items()]
    print("\n".join(report))
