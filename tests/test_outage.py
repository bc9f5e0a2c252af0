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

import http.client
import json
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.conftest import unavailable
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


@dataclass
class Result:
    kind: str  # "write" or "read"
    sent: float  # time.monotonic() when the request was sent
    latency: float
    status: int | None  # None: no answer within the client's timeout, or the connection failed
    retry_after: bool
    created: str = ""  # the ID of a 201
    error: str = ""  # why there was no answer


class OpenLoop:
    """A bounded open-loop generator: a scheduler thread sends writes and reads at fixed
    rates for a fixed time, whatever the answers, through a bounded pool of sender threads.
    Every request has a client timeout; every answer is recorded."""

    def __init__(self, api: str, duration: float, writes_per_s: int, reads_per_s: int, senders: int = 48):
        self.base = urlsplit(api)
        self.duration = duration
        per_s = writes_per_s + reads_per_s
        # Interleave: of every per_s ticks, reads_per_s are reads, spread out.
        self.plan = ["read" if (i * reads_per_s) % per_s < reads_per_s else "write" for i in range(per_s)]
        self.interval = 1.0 / per_s
        self.count = int(duration * per_s)
        self.results: list[Result] = []
        self.acked: list[str] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=senders)
        self._thread = threading.Thread(target=self._schedule, daemon=True)

    def start(self) -> "OpenLoop":
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def _schedule(self) -> None:
        for i in range(self.count):
            delay = self.t0 + i * self.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._pool.submit(self._send, self.plan[i % len(self.plan)], i)

    def _send(self, kind: str, i: int) -> None:
        with self._lock:
            target = random.choice(self.acked) if self.acked and kind == "read" else ""
        if kind == "read" and not target:
            kind = "write"
        if kind == "write":
            method, path, body = "POST", "/api/v1/items", json.dumps({"name": f"outage {i}"})
        else:
            method, path, body = "GET", f"/api/v1/items/{target}", None
        sent = time.monotonic()
        status, retry_after, created, error = None, False, "", ""
        conn = http.client.HTTPConnection(self.base.hostname, self.base.port, timeout=REQUEST_TIMEOUT_S + 5)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            res = conn.getresponse()
            raw = res.read()
            status, retry_after = res.status, bool(res.getheader("Retry-After"))
            if status == 201:
                created = json.loads(raw)["id"]
        except (OSError, http.client.HTTPException) as err:
            error = repr(err)
        finally:
            conn.close()
        r = Result(kind, sent, time.monotonic() - sent, status, retry_after, created, error)
        with self._lock:
            self.results.append(r)
            if created:
                self.acked.append(created)

    def wait(self) -> list[Result]:
        self._thread.join(timeout=self.duration + 30)
        self._pool.shutdown(wait=True)
        with self._lock:
            return sorted(self.results, key=lambda r: r.sent)


class ReadinessPoller:
    """/readyz every 50 ms until stopped (bounded by a deadline): (time, status) pairs."""

    def __init__(self, api: str, limit_s: float):
        self.api = urlsplit(api)
        self.limit = limit_s
        self.samples: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            conn = http.client.HTTPConnection(self.api.hostname, self.api.port, timeout=5)
            try:
                conn.request("GET", "/readyz")
                res = conn.getresponse()
                res.read()
                status = res.status
            except (OSError, http.client.HTTPException):
                status = None
            finally:
                conn.close()
            self.samples.append((t, status))
            self._stop.wait(0.05)

    def stop(self) -> list[tuple[float, int | None]]:
        self._stop.set()
        self._thread.join(timeout=10)
        return list(self.samples)


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
