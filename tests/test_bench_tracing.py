"""What tracing costs: the default service's CPU per request with tracing off (no endpoint:
nothing installed) and on at the default sampling ratio (an OTLP endpoint in this process),
same binary, same load, reported as ratios to the off runs of this script. The load is a
fixed rate of GETs by ID (server span, service span, statement spans) from vegeta, built
from source at the version the standards pin; the CPU is the service process's own (user +
system, from /proc), so the load generator and the receiver do not count. Runs alternate
(off, on, off, on, ...) so machine drift falls on both.

Nothing here asserts a time: the test checks every request succeeded, that spans arrived
when on and none when off, and prints the table (pytest -s, or the CI log)."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from tests.conftest import STANDARDS, go_tool, run
from tests.otlp import OTLPReceiver
from tests.test_smoke import Service, base_env, binaries, call  # noqa: F401 (binaries is a fixture)

pytestmark = [pytest.mark.go, pytest.mark.slow]

RATE, SECONDS, ROUNDS = 800, 4, 3
MODES = {
    "off": {},
    f"on, default ratio {STANDARDS['tracing']['sample_ratio']}": {},
    "on, every request sampled": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def one_run(binary: Path, vegeta: Path, tmp_path: Path, env: dict[str, str], name: str) -> float:
    """CPU microseconds per request of one fixed-rate attack, and the spans exported."""
    svc = Service(binary, base_env(DB_TYPE="sqlite", DATABASE_URL=f"file:{tmp_path}/{name}.db",
                                   RATE_LIMIT_RPS="1000000", RATE_LIMIT_BURST="1000000", **env))
    try:
        svc.wait_listening().wait_ready()
        status, _, created = call("POST", svc.api + "/api/v1/items", {"name": "bench"})
        assert status == 201, created
        targets = tmp_path / f"{name}.targets"
        targets.write_text(f"GET {svc.api}/api/v1/items/{created['id']}\n")
        results = tmp_path / f"{name}.bin"
        before = cpu_seconds(svc.proc.pid)
        run([str(vegeta), "attack", f"-rate={RATE}/s", f"-duration={SECONDS}s", f"-targets={targets}",
             f"-output={results}"], tmp_path, timeout=120)
        used = cpu_seconds(svc.proc.pid) - before
        report = json.loads(run([str(vegeta), "report", "-type=json", str(results)], tmp_path).stdout)
        assert set(report["status_codes"]) == {"200"} and report["requests"] >= 0.95 * RATE * SECONDS, report
    finally:
        assert svc.stop() == 0, "".join(svc.raw[-20:])
    return used / report["requests"] * 1e6


def test_cpu_per_request_with_tracing_off_and_on(binaries, tmp_path):
    binary, vegeta = binaries["default"], go_tool("vegeta")
    receiver = OTLPReceiver().start()
    try:
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        spans: dict[str, int] = {m: 0 for m in MODES}
        for r in range(ROUNDS):
            for i, (mode, extra) in enumerate(MODES.items()):
                receiver.clear()
                env = dict(extra)
                if mode != "off":
                    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="200")
                us = one_run(binary, vegeta, tmp_path, env, f"r{r}m{i}")
                cpu[mode].append(us)
                spans[mode] += len(receiver.spans())
    finally:
        receiver.stop()
    assert spans["off"] == 0, "spans were exported with tracing off"
    for mode in MODES:
        if mode != "off":
            assert spans[mode] > 0, f"no spans arrived with tracing {mode}"
    base = statistics.median(cpu["off"])
    lines = [f"CPU per request (service process, user+system), GET by ID at {RATE}/s for {SECONDS} s on SQLite, "
             f"median of {ROUNDS} alternating runs; ratio to tracing off:"]
    for mode, runs in cpu.items():
        med = statistics.median(runs)
        lines.append(f"  tracing {mode:32s} {med:8.1f} us/request  x{med / base:5.2f}   "
                     f"(runs: {', '.join(f'{u:.1f}' for u in runs)}; spans exported: {spans[mode]})")
    print("\n".join(lines))
