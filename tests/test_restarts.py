"""Restarts and sustained load, from outside the built binary (issue 13).

- A rolling restart of two instances (one PostgreSQL database) behind a small test proxy
  that follows readiness (tests/load.py Proxy), under open-loop creates, reads and lists:
  each instance in turn gets SIGTERM with the production drain delay (the rendered default,
  not the 0 s of `make run`), exits 0 and starts again. No request fails. (SIGTERM to one
  instance under keep-alive load, with clients that ignore readiness too, is
  tests/test_edge.py::test_sigterm_under_load_fails_no_request_that_reached_the_service.)
- A 2-minute soak at a fixed rate on SQLite and PostgreSQL at once: no error, and no growth
  of goroutines, open file descriptors or heap beyond the bounds below.
- gRPC while a private PostgreSQL is stopped for 5 s under gRPC load: UNAVAILABLE (never
  INTERNAL or UNKNOWN), health NOT_SERVING, recovery without a restart, no acknowledged
  create lost.

The figures are printed (pytest -s) for the closing note.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

from tests.conftest import STANDARDS, unavailable
from tests.load import MetricsSampler, OpenLoop, Poller, Proxy, Result, Schedule
from tests.servers import PostgresServer, free_port
from tests.test_smoke import GRPCClient, Service, base_env, binaries, fresh_database  # noqa: F401 (binaries is a fixture)

pytestmark = [pytest.mark.go, pytest.mark.slow]

# One client address for all the load: the per-client rate limit is not under test here.
UNLIMITED = {"RATE_LIMIT_RPS": "1000000", "RATE_LIMIT_BURST": "1000000"}
DRAIN_S = STANDARDS["sizing"]["drain_delay_ms"] / 1000


def production_drain_env(**extra: str) -> dict[str, str]:
    """base_env less its SHUTDOWN_DRAIN_DELAY=0s: the service runs with its rendered default."""
    env = base_env(**UNLIMITED, **extra)
    del env["SHUTDOWN_DRAIN_DELAY"]
    return env


def summary(results: list[Result]) -> str:
    by_kind = Counter(r.kind for r in results)
    by_status = Counter(r.status for r in results)
    slowest = max((r.latency for r in results), default=0.0)
    return (f"sent {len(results)} ({dict(by_kind)}), answers by status {dict(sorted(by_status.items(), key=str))}, "
            f"acknowledged creates {sum(r.status == 201 for r in results)}, slowest {slowest:.2f} s")


def failures(results: list[Result]) -> list[Result]:
    want = {"write": 201, "read": 200, "list": 200}
    return [r for r in results if r.status != want[r.kind]]


# ------------------------------------------------------------------ rolling restart
@pytest.mark.postgres
def test_rolling_restart_behind_a_proxy_fails_no_request(binaries, postgres_dsn):
    dsn = fresh_database(postgres_dsn)
    ports = {"A": free_port(), "B": free_port()}

    def start(name: str) -> Service:
        env = production_drain_env(DB_TYPE="postgresql", DATABASE_URL=dsn, HTTP_ADDR=f"127.0.0.1:{ports[name]}")
        return Service(binaries["default"], env).wait_listening().wait_ready()

    instances = {"A": start("A"), "B": start("B")}
    proxy = Proxy([f"127.0.0.1:{p}" for p in ports.values()])
    events: list[str] = []
    exits: list[int] = []
    try:
        duration = 2 + 2 * (DRAIN_S + 4) + 3
        load = OpenLoop(proxy.url, duration, writes_per_s=30, reads_per_s=30, lists_per_s=10, label="rolling").start()
        time.sleep(2)
        for name in ("A", "B"):
            svc = instances[name]
            served_before = proxy.served[f"127.0.0.1:{ports[name]}"]
            t = time.monotonic()
            code = svc.stop()
            drained = [line for line in svc.lines if line.get("msg") == "shutting down: readiness is now failing"]
            exits.append(code)
            assert code == 0, "".join(svc.raw[-30:])
            assert drained and drained[0]["drain_delay"] == DRAIN_S * 1e9, drained  # slog: nanoseconds
            stopped = time.monotonic()
            instances[name] = start(name)
            events.append(f"{name}: exit {code} {stopped - t:.1f} s after SIGTERM (drain {drained[0]['drain_delay'] / 1e9:g} s), "
                          f"served {proxy.served[f'127.0.0.1:{ports[name]}'] - served_before} while leaving, "
                          f"ready again {time.monotonic() - stopped:.1f} s later")
        restarted = time.monotonic()
        results = load.wait()
        assert restarted < load.t0 + duration - 1, "the restarts outlasted the load"
        after = {b: n for b, n in proxy.served.items()}
    finally:
        proxy.close()
        for svc in instances.values():
            exits.append(svc.stop())

    figures = (f"\nrolling restart: {summary(results)}; proxy: served {after}, connections refused and sent on "
               f"{proxy.refused}, failed after reaching a backend {len(proxy.failed)}, unrouted {proxy.unrouted}; "
               + "; ".join(events))
    print(figures)
    assert len(results) >= duration * 70 * 0.95, figures
    assert not failures(results), f"{failures(results)[:5]} {proxy.failed[:5]} {figures}"
    assert not proxy.failed and proxy.unrouted == 0, figures
    assert exits == [0, 0, 0, 0], exits
    assert all(n > 100 for n in after.values()), figures


# ------------------------------------------------------------------ soak
SOAK_S = 120.0
SOAK_RATE = {"writes_per_s": 40, "reads_per_s": 80, "lists_per_s": 30}  # 150 requests/s per instance
RUNTIME = ("go_goroutines", "process_open_fds", "go_memstats_heap_inuse_bytes")
# Last third's median against the first third's: absolute for counts, a factor for the heap.
GROWTH = {"go_goroutines": ("+", 20), "process_open_fds": ("+", 20), "go_memstats_heap_inuse_bytes": ("x", 1.5)}


@pytest.mark.postgres
def test_two_minute_soak_on_sqlite_and_postgresql(binaries, postgres_dsn, tmp_path):
    engines = {"sqlite": f"file:{tmp_path}/soak.db", "postgresql": fresh_database(postgres_dsn)}
    services = {e: Service(binaries["default"], base_env(DB_TYPE=e, DATABASE_URL=url, **UNLIMITED)) for e, url in engines.items()}
    try:
        for svc in services.values():
            svc.wait_listening().wait_ready()
        samplers = {e: MetricsSampler(svc.metrics, RUNTIME, every_s=3.0, limit_s=SOAK_S + 60) for e, svc in services.items()}
        loads = {e: OpenLoop(svc.api, SOAK_S, label="soak", **SOAK_RATE).start() for e, svc in services.items()}
        results = {e: load.wait() for e, load in loads.items()}
        samples = {e: s.stop() for e, s in samplers.items()}
        errors = {e: s.errors for e, s in samplers.items()}
        for e, svc in services.items():
            assert svc.proc.poll() is None, f"{e}: the service exited\n" + "".join(svc.raw[-30:])
    finally:
        codes = {e: svc.stop() for e, svc in services.items()}

    report, problems = [], []
    for e in engines:
        rs, ss = results[e], samples[e]
        third = len(ss) // 3
        line = [f"\nsoak {e} ({SOAK_S:g} s): {summary(rs)}; {len(ss)} samples"]
        for name in RUNTIME:
            values = [v[name] for _, v in ss if name in v]
            first, last = statistics.median(values[:third]), statistics.median(values[-third:])
            kind, bound = GROWTH[name]
            ok = last <= first + bound if kind == "+" else last <= first * bound
            line.append(f"{name} first third {first:g}, last third {last:g}, max {max(values):g} (bound {kind}{bound:g})")
            if not ok:
                problems.append(f"{e} {name}: {first:g} -> {last:g}")
        report.append("; ".join(line))
        bad = failures(rs)
        if bad:
            problems.append(f"{e}: {len(bad)} failed, e.g. {bad[:3]}")
        if len(rs) < SOAK_S * 150 * 0.95:
            problems.append(f"{e}: only {len(rs)} requests sent")
        if errors[e] or len(ss) < 30:
            problems.append(f"{e}: scrapes failed {errors[e][:3]}, {len(ss)} samples")
    print("".join(report))
    assert codes == {"sqlite": 0, "postgresql": 0}, codes
    assert not problems, f"{problems} {''.join(report)}"


# ------------------------------------------------------------------ gRPC during a database outage
@dataclass
class Call:
    kind: str  # "create" or "get"
    sent: float
    latency: float
    code: str
    created: str = ""


class GRPCLoad(Schedule):
    """Bounded open-loop gRPC load: CreateItem and GetItem (of an acknowledged create) at
    fixed rates for a fixed time, through one channel and a bounded pool of senders."""

    def __init__(self, client: GRPCClient, duration: float, creates_per_s: int, gets_per_s: int):
        super().__init__({"create": creates_per_s, "get": gets_per_s}, duration, senders=32)
        self.client = client

    def _send(self, kind: str, i: int) -> None:
        target = self.target() if kind == "get" else ""
        if kind == "get" and not target:
            kind = "create"
        sent = time.monotonic()
        code, created = "OK", ""
        try:
            if kind == "create":
                res, _ = self.client.call("CreateItem", name=f"grpc outage {i}")
                created = res.item.id
            else:
                self.client.call("GetItem", id=target)
        except self.client.grpc.RpcError as err:
            code = err.code().name
        self.record(Call(kind, sent, time.monotonic() - sent, code, created), created)


class HealthPoller(Poller):
    """grpc.health.v1 Check every 50 ms on one channel until stopped (bounded)."""

    def __init__(self, addr: str, limit_s: float):
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        super().__init__(0.05, limit_s)
        self.channel = grpc.insecure_channel(addr)
        self.stub = health_pb2_grpc.HealthStub(self.channel)
        self.request, self.names, self.grpc = health_pb2.HealthCheckRequest(), health_pb2.HealthCheckResponse.ServingStatus, grpc
        self.start()

    def sample(self) -> str:
        try:
            return self.names.Name(self.stub.Check(self.request, timeout=2).status)
        except self.grpc.RpcError as err:
            return "error: " + err.code().name

    def stop(self) -> list:
        samples = super().stop()
        self.channel.close()
        return samples


GRPC_TIMEOUT_S = 1.0
GRPC_OUTAGE_S = 5.0


@pytest.mark.postgres
def test_grpc_during_a_postgresql_outage(binaries):
    try:
        server = PostgresServer()
    except FileNotFoundError as err:
        unavailable(str(err))
        raise
    db = "grpc_outage_" + uuid.uuid4().hex[:8]
    with server:
        dsn = server.create_database(db)
        svc = Service(binaries["grpc"], base_env(DB_TYPE="postgresql", DATABASE_URL=dsn, GRPC_ADDR="127.0.0.1:0",
                                                 REQUEST_TIMEOUT=f"{GRPC_TIMEOUT_S:g}s", DB_STATEMENT_TIMEOUT="750ms", **UNLIMITED))
        client = None
        try:
            svc.wait_listening().wait_ready()
            pid = svc.proc.pid
            client = GRPCClient(svc.grpc, "item")
            duration = 3 + GRPC_OUTAGE_S + 7
            health = HealthPoller(svc.grpc, duration + 10)
            load = GRPCLoad(client, duration, creates_per_s=30, gets_per_s=20).start()
            time.sleep(max(0.0, load.t0 + 3 - time.monotonic()))
            t_stop = time.monotonic()
            server.stop()
            t_down = time.monotonic()
            time.sleep(max(0.0, t_stop + GRPC_OUTAGE_S - time.monotonic()))
            t_start = time.monotonic()
            server.start()
            t_up = time.monotonic()
            calls = load.wait()
            samples = health.stop()
            assert svc.proc.poll() is None and svc.proc.pid == pid, "the service exited"
        finally:
            if client:
                client.close()
            code = svc.stop()
        stored = set(server.sql("SELECT id FROM items", db).split())

    acked = {c.created for c in calls if c.code == "OK" and c.created}
    lost = acked - stored
    by_code = Counter(c.code for c in calls)
    outage = [c for c in calls if c.sent >= t_down and c.sent + c.latency <= t_start]
    healthy = [c for c in calls if c.sent + c.latency < t_stop]
    not_serving = next((t for t, s in samples if t >= t_stop and s == "NOT_SERVING"), None)
    serving = next((t for t, s in samples if t >= t_up and s == "SERVING"), None)
    first_ok = next((c.sent + c.latency for c in calls if c.sent >= t_up and c.kind == "create" and c.code == "OK"), None)
    recovered = max(serving, first_ok) if serving and first_ok else None
    slowest = max(c.latency for c in calls)
    nan = float("nan")
    figures = (
        f"\ngRPC, PostgreSQL stopped {t_start - t_stop:.1f} s: sent {len(calls)} ({dict(Counter(c.kind for c in calls))}), "
        f"acknowledged creates {len(acked)}, codes {dict(by_code)}, during the outage {dict(Counter(c.code for c in outage))} "
        f"of {len(outage)}, writes lost {len(lost)}, health NOT_SERVING after {(not_serving - t_stop) if not_serving else nan:.2f} s, "
        f"recovered (OK create and SERVING) {(recovered - t_up) if recovered else nan:.2f} s after the database answered, "
        f"health states seen {sorted({s for _, s in samples})}, slowest call {slowest:.2f} s"
    )
    print(figures)
    log = "".join(svc.raw[-30:])

    assert code == 0, log
    assert healthy and {c.code for c in healthy} == {"OK"}, figures
    assert set(by_code) <= {"OK", "UNAVAILABLE"}, f"{figures}\n{log}"
    assert len(outage) > GRPC_OUTAGE_S * 50 / 2, f"too few calls during the outage: {figures}"
    assert {c.code for c in outage} == {"UNAVAILABLE"}, figures
    assert slowest <= GRPC_TIMEOUT_S + 1.0, figures
    assert not_serving is not None and not_serving - t_stop <= 2.0, figures
    assert recovered is not None and recovered - t_up <= 5.0, figures
    settled = [c for c in calls if c.sent >= recovered + 1]
    assert settled and {c.code for c in settled} == {"OK"}, figures
    assert not lost, f"acknowledged creates missing from the database: {sorted(lost)[:5]} {figures}"

