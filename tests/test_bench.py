"""The generated store benchmark (get-by-id, the hot read path) for every data layer on
every engine, reported as ratios to the sqlc path on the same engine and to SQLite, all
from one run of this script. Nothing here asserts a time: the test checks that all twelve
benchmarks ran and prints the table (pytest -s, or the CI log)."""

from __future__ import annotations

import re
import statistics

import pytest

from tests.conftest import LAYER_VARIANTS, run

pytestmark = [pytest.mark.go, pytest.mark.slow, pytest.mark.postgres]

LINE = re.compile(r"^BenchmarkGet/(\w+)\S*\s+\d+\s+([\d.]+) ns/op\s+(\d+) B/op\s+(\d+) allocs/op", re.M)
ENGINES = ("sqlite", "postgresql", "mysql", "mariadb")
RUNS = 3


def test_get_by_id_benchmark_per_data_layer_and_engine(projects, postgres_dsn, mariadb_dsn):
    results: dict[str, dict[str, tuple[float, int, int]]] = {}
    for layer, variant in LAYER_VARIANTS.items():
        # Three runs of a second each per benchmark; the median damps loopback noise.
        proc = run(["go", "test", "-run=^$", "-bench=^BenchmarkGet$", "-benchtime=1s", f"-count={RUNS}", "./internal/store/"],
                   projects[variant], TEST_POSTGRES_DSN=postgres_dsn, TEST_MARIADB_DSN=mariadb_dsn)
        runs: dict[str, list[tuple[float, int, int]]] = {}
        for m in LINE.finditer(proc.stdout):
            runs.setdefault(m[1], []).append((float(m[2]), int(m[3]), int(m[4])))
        assert all(len(r) == RUNS for r in runs.values()), proc.stdout
        results[layer] = {e: (statistics.median(ns for ns, _, _ in r), r[0][1], r[0][2]) for e, r in runs.items()}
        assert set(results[layer]) == set(ENGINES), f"{layer}: benchmarks ran for {sorted(results[layer])}\n{proc.stdout}"
    report = [f"get-by-id, median ns/op of {RUNS} runs; ratio to sqlc on the same engine; ratio to the same layer on SQLite:"]
    for engine in ENGINES:
        for layer in LAYER_VARIANTS:
            ns, b, a = results[layer][engine]
            report.append(f"  {engine:10s} {layer:5s} {ns:10.0f} ns/op  x{ns / results['sqlc'][engine][0]:5.2f} vs sqlc"
                          f"  x{ns / results[layer]['sqlite'][0]:5.2f} vs SQLite  {b} B/op  {a} allocs/op")
    print("\n".join(report))


PATH_LINE = re.compile(r"^Benchmark(\w+)-\d+\s+\d+\s+([\d.]+) ns/op\s+(\d+) B/op\s+(\d+) allocs/op", re.M)


@pytest.mark.parametrize("variant", ["default", "gin"])
def test_request_path_benchmarks(projects, variant):
    """The generated request-path benchmarks (every middleware on, SQLite) run on chi and gin;
    the test prints ns/op, B/op and allocs/op (a few thousand iterations: a smoke run, not a
    measurement)."""
    proc = run(["go", "test", "-run=^$", "-bench=.", "-benchmem", "-benchtime=500x", "./internal/httpapi/"], projects[variant])
    got = {m[1]: (float(m[2]), int(m[3]), int(m[4])) for m in PATH_LINE.finditer(proc.stdout)}
    assert {"Livez", "GetItem", "CreateItem", "ListItems"} <= set(got), proc.stdout
    assert all(allocs > 0 for _, _, allocs in got.values())
    print(f"\n{variant} request path (500 iterations each):")
    for name, (ns, b, a) in sorted(got.items()):
        print(f"  {name:12s} {ns:10.0f} ns/op  {b:6d} B/op  {a:4d} allocs/op")
