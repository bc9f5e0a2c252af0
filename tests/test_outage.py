"""A database outage under load, from outside: the built binary takes creates and reads at a
fixed rate while its database server (a private instance, tests/servers.py) is stopped for
10 s and started again. PostgreSQL, and a single MariaDB server.

The bar (issue 13): readiness turns 503 within 2 s of the stop; while the database is down
every API answer is 503 with Retry-After, never a 500 and never slower than the request
deadline plus a small margin; within 5 s of the database answering again writes are 201
and readiness 200, with no restart of the service; every acknowledged (201) write is in the
database afterwards. The figures are printed (pytest -s) for the closing note.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from tests.conftest import unavailable
from tests.load import OpenLoop, ReadinessPoller, Result  # noqa: F401  (Result: their answers)
from tests.servers import MariaDBServer, PostgresServer
from tests.test_smoke import Service, base_env, binaries  # noqa: F401  (binaries is a fixture)

pytestmark = [pytest.mark.go, pytest.mark.slow, pytest.mark.postgres]

WRITES_PER_S = 40
READS_PER_S = 20
HEALTHY_S = 3.0
OUTAGE_S = 10.0
AFTER_S = 8.0
# The request deadline the service runs with, and what a client may wait beyond it
# (scheduling on a busy 2-core CI machine, the client's own overhead).
REQUEST_TIMEOUT_S = 1.0
MARGIN_S = 1.0
READY_503_WITHIN_S = 2.0
RECOVER_WITHIN_S = 5.0
ENV = {"REQUEST_TIMEOUT": f"{REQUEST_TIMEOUT_S:g}s", "DB_STATEMENT_TIMEOUT": "750ms"}


def private_server(engine: str):
    try:
        return PostgresServer() if engine == "postgresql" else MariaDBServer()
    except FileNotFoundError as err:
        unavailable(str(err))
        raise


@pytest.mark.parametrize("how", ["stop", "crash"])
@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_database_outage_under_load(binaries, engine, how):
    """stop: the server shuts down normally (it ends the sessions first); crash: it quits at
    once (PostgreSQL's immediate shutdown, mariadbd killed), cutting statements mid-flight."""
    db = "outage_" + uuid.uuid4().hex[:8]
    with private_server(engine) as server:
        dsn = server.create_database(db)
        svc = Service(binaries["default"], base_env(DB_TYPE=engine, DATABASE_URL=dsn, **ENV))
        try:
            svc.wait_listening().wait_ready()
            pid = svc.proc.pid
            duration = HEALTHY_S + OUTAGE_S + AFTER_S
            ready = ReadinessPoller(svc.api, duration + 10)
            load = OpenLoop(svc.api, duration, WRITES_PER_S, READS_PER_S).start()
            time.sleep(max(0.0, load.t0 + HEALTHY_S - time.monotonic()))
            t_stop = time.monotonic()
            server.stop(crash=how == "crash")
            t_down = time.monotonic()
            time.sleep(max(0.0, t_stop + OUTAGE_S - time.monotonic()))
            t_start = time.monotonic()
            server.start()
            t_up = time.monotonic()  # the server answers again
            results = load.wait()
            samples = ready.stop()
            assert svc.proc.poll() is None and svc.proc.pid == pid, "the service exited"
        finally:
            svc.stop()
        if engine == "postgresql":
            stored = set(server.sql("SELECT id FROM items", db).split())
        else:
            stored = set(server.root_sql(f"SELECT id FROM {db}.items").split())

    acked = {r.created for r in results if r.status == 201}
    lost = acked - stored
    by_status = Counter(r.status for r in results)
    outage = [r for r in results if r.sent >= t_down and r.sent + r.latency <= t_start]
    healthy = [r for r in results if r.sent + r.latency < t_stop]
    first_503 = next((t for t, s in samples if t >= t_stop and s == 503), None)
    ready_again = next((t for t, s in samples if t >= t_up and s == 200), None)
    first_ack = next((r.sent + r.latency for r in results if r.sent >= t_up and r.status == 201), None)
    recovered = max(ready_again, first_ack) if ready_again and first_ack else None
    slowest = max(r.latency for r in results)
    figures = (
        f"\n{engine} {how} ({t_start - t_stop:.1f} s down, stop took {t_down - t_stop:.2f} s, start {t_up - t_start:.2f} s): "
        f"sent {len(results)} ({sum(r.kind == 'write' for r in results)} creates, {sum(r.kind == 'read' for r in results)} reads), "
        f"acknowledged creates {len(acked)}, answers by status {dict(sorted(by_status.items(), key=str))}, "
        f"during the outage {dict(Counter(r.status for r in outage))} of {len(outage)}, writes lost {len(lost)}, "
        f"readiness 503 after {(first_503 - t_stop) if first_503 else float('nan'):.2f} s, "
        f"recovered (201 and /readyz 200) {(recovered - t_up) if recovered else float('nan'):.2f} s after the database answered, "
        f"slowest answer {slowest:.2f} s"
    )
    print(figures)
    log = "".join(svc.raw[-30:])

    assert healthy and {r.status for r in healthy} <= {200, 201}, f"{[r for r in healthy if r.status not in (200, 201)][:5]} {figures}"
    assert by_status[None] == 0, f"requests without an answer: {[r for r in results if r.status is None][:5]} {figures}"
    assert set(by_status) <= {200, 201, 503}, f"answers other than 200, 201, 503: {figures}\n{log}"
    assert all(r.retry_after for r in results if r.status == 503), "a 503 without Retry-After"
    assert slowest <= REQUEST_TIMEOUT_S + MARGIN_S, figures
    assert len(outage) > OUTAGE_S * (WRITES_PER_S + READS_PER_S) / 2, f"too few requests during the outage: {figures}"
    assert {r.status for r in outage} == {503}, figures
    assert first_503 is not None and first_503 - t_stop <= READY_503_WITHIN_S, figures
    assert recovered is not None and recovered - t_up <= RECOVER_WITHIN_S, figures
    settled = [r for r in results if r.kind == "write" and r.sent >= recovered + 1]
    assert settled and {r.status for r in settled} == {201}, figures
    assert not lost, f"acknowledged writes missing from the database: {sorted(lost)[:5]} {figures}"
