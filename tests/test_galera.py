"""The default service on a real three-node MariaDB Galera cluster (tests/servers.py,
GaleraCluster: galera-4 from Debian, loopback ports), from outside: two instances of the
built binary, instance A on node 1 and instance B on node 2, as in production with one
node per instance.

1. Conflicting updates: both instances update the same rows at once with If-Match:
   certification failures happen and are retried (db_transaction_retries_total > 0), the
   losers answer 409, never 500, and every acknowledged update is on all three nodes.
2. Node 3, which neither instance uses, is killed and restarted (IST) under load: no
   request fails.
3. Node 1, instance A's, is killed: A's readiness turns 503, its requests answer 503 with
   Retry-After, B carries on; no acknowledged write is lost; once node 1 has rejoined, A is
   ready and takes writes again without a restart. A node desynced by an operator is
   reported by readiness with its state.
4. Read-your-writes: a create and at once a read on the same instance, 500 times, while
   the other instance writes on its node: no miss.

One cluster and one pair of instances serve the whole module. The figures are printed
(pytest -s) for the closing note.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.conftest import unavailable
from tests.load import OpenLoop, ReadinessPoller
from tests.servers import GaleraCluster
from tests.test_smoke import Service, base_env, binaries, call  # noqa: F401  (binaries is a fixture)

pytestmark = [pytest.mark.go, pytest.mark.slow]

DB = "galera_" + uuid.uuid4().hex[:8]
# A node that dies is suspected and evicted by the others within about 3 s (the cluster's
# evs timeouts); until then commits on the surviving nodes wait. The request deadline, the
# statement timeout and the HTTP write timeout are above that, so a node loss slows
# requests instead of failing them (the README says the same for production, where the
# default detection takes 5 s or more).
ENV = {"REQUEST_TIMEOUT": "6s", "DB_STATEMENT_TIMEOUT": "5s", "HTTP_READ_TIMEOUT": "7s", "HTTP_WRITE_TIMEOUT": "7s"}
READY_503_WITHIN_S = 2.0
RECOVER_WITHIN_S = 5.0
# Group membership lines of the nodes' logs, shown when a request failed.
VIEWS = r"view\(|[Pp]rimary|NON_PRIM|suspect|declaring|inactive"


@dataclass
class Galera:
    cluster: GaleraCluster
    a: Service  # on node 1
    b: Service  # on node 2


@pytest.fixture(scope="module")
def galera(binaries):
    binary = binaries["default"]
    try:
        cluster = GaleraCluster(3)
    except FileNotFoundError as err:
        unavailable(str(err))
        raise
    t0 = time.monotonic()
    with cluster:
        print(f"\ngalera: three nodes synced in {time.monotonic() - t0:.1f} s")
        cluster.create_database(DB)
        # One at a time: A applies the migrations, B finds them applied.
        a = Service(binary, base_env(DB_TYPE="mariadb", DATABASE_URL=cluster.url(1, DB), **ENV))
        try:
            a.wait_listening().wait_ready()
            b = Service(binary, base_env(DB_TYPE="mariadb", DATABASE_URL=cluster.url(2, DB), **ENV))
            try:
                b.wait_listening().wait_ready()
                yield Galera(cluster, a, b)
            finally:
                b.stop()
        finally:
            a.stop()


@pytest.fixture
def g(galera):
    """The module's cluster, every node up and synced when a test starts and ends."""
    galera.cluster.heal()
    yield galera
    galera.cluster.heal()


def retries(svc: Service) -> float:
    """db_transaction_retries_total from the instance's /metrics."""
    _, _, body = _get(svc.metrics, "/metrics")
    m = re.search(r'^db_transaction_retries_total\{db_type="mariadb"\} (\S+)$', body.decode(), re.M)
    assert m, "db_transaction_retries_total is not exported"
    return float(m.group(1))


def log_errors(*services: Service, limit: int = 8) -> str:
    """The services' last error log lines (why a 500 was answered)."""
    lines = [line for svc in services for line in svc.raw if '"level":"ERROR"' in line]
    return "".join(lines[-limit:])


def _get(base: str, path: str) -> tuple[int | None, dict, bytes]:
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    except (OSError, http.client.HTTPException):
        return None, {}, b""
    finally:
        conn.close()


def rows_on(cluster: GaleraCluster, node: int) -> dict[str, tuple[str, int]]:
    """id -> (name, version) of every item on a node, read causally (wsrep_sync_wait)."""
    out = cluster.root_sql(node, f"SET SESSION wsrep_sync_wait=1; SELECT id, name, version FROM {DB}.items")
    rows = {}
    for line in out.splitlines():
        id_, name, version = line.split("\t")
        rows[id_] = (name, int(version))
    return rows


class ReadinessReasons:
    """/readyz bodies every 50 ms until stopped: the distinct database checks reported."""

    def __init__(self, api: str, limit_s: float):
        self.api, self.limit = api, limit_s
        self.seen: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            status, _, body = _get(self.api, "/readyz")
            if status == 503:
                try:
                    self.seen[json.loads(body)["checks"]["database"]] += 1
                except (ValueError, KeyError, TypeError):
                    self.seen[body.decode(errors="replace")[:120]] += 1
            self._stop.wait(0.05)

    def stop(self) -> Counter[str]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.seen


CONFLICT_ROWS = 3
CONFLICT_PAIRS_PER_S = 15
CONFLICT_S = 6.0


def test_conflicting_updates_are_retried_and_never_500(g):
    """Each tick reads a row's version on A, then sends the same If-Match update to A (node 1)
    and B (node 2) at once: one wins, the other is a certification failure or a stale
    version, retried by the store and answered 409. Every 200 must carry a version of its
    own: two 200s with the same version mean an acknowledged update was lost, as happened
    when MariaDB dropped a conflict's 1213 under the prepared-statement protocol (the
    store now sends statements as text, interpolateParams)."""
    ids = []
    for n in range(CONFLICT_ROWS):
        status, _, created = call("POST", g.a.api + "/api/v1/items", {"name": f"hot {n}"})
        assert status == 201, created
        ids.append(created["id"])
    before = retries(g.a) + retries(g.b)
    results: list[tuple[str, str, str, int | None, dict | None, bool]] = []
    lock = threading.Lock()

    def put(svc: Service, who: str, id_: str, version: int, name: str) -> None:
        status, headers, body = call("PUT", f"{svc.api}/api/v1/items/{id_}", {"name": name}, {"If-Match": f'"{version}"'})
        with lock:
            results.append((who, id_, name, status, body, bool(headers.get("Retry-After"))))

    def tick(i: int) -> None:
        id_ = ids[i % CONFLICT_ROWS]
        status, _, got = call("GET", f"{g.a.api}/api/v1/items/{id_}")
        if status != 200:
            with lock:
                results.append(("get", id_, "", status, got, False))
            return
        threads = [threading.Thread(target=put, args=(svc, who, id_, got["version"], f"{who}{i}"))
                   for svc, who in ((g.a, "a"), (g.b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    count = int(CONFLICT_S * CONFLICT_PAIRS_PER_S)
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(count):
            time.sleep(max(0.0, t0 + i / CONFLICT_PAIRS_PER_S - time.monotonic()))
            pool.submit(tick, i)
    retried = retries(g.a) + retries(g.b) - before
    by_status = Counter(r[3] for r in results)
    acked = [r for r in results if r[3] == 200]
    nodes = {n: rows_on(g.cluster, n) for n in (1, 2, 3)}
    lost, dup = [], []
    for id_ in ids:
        mine = sorted((r for r in acked if r[1] == id_), key=lambda r: r[4]["version"])
        versions = [r[4]["version"] for r in mine]
        dup += [(id_, r[0], r[2], r[4]["version"]) for r in mine if versions.count(r[4]["version"]) > 1]
        want = (mine[-1][2], 1 + len(mine)) if mine else None
        for n, rows in nodes.items():
            if want and rows.get(id_) != want:
                lost.append((n, id_, rows.get(id_), want))
    print(f"\ngalera conflicts: {len(results)} updates sent ({count} pairs on {CONFLICT_ROWS} rows at {CONFLICT_PAIRS_PER_S}/s), "
          f"answers {dict(sorted(by_status.items(), key=str))}, certification/deadlock retries {retried:g}, "
          f"acknowledged updates missing on a node {len(lost)}, acknowledged with a version already acknowledged {len(dup)}")
    assert not dup, f"two acknowledged updates with the same version (one of them is lost): {dup[:6]}"
    assert set(by_status) <= {200, 409}, f"answers other than 200 and 409: {[r for r in results if r[3] not in (200, 409)][:5]}"
    assert by_status[200] > 0 and by_status[409] > 0
    assert retried > 0, "no certification failure was retried: the load did not conflict"
    assert not lost, f"acknowledged updates not on every node (node, id, found, want): {lost[:5]}"


def test_losing_a_node_no_instance_uses_fails_no_request(g):
    """Node 3 is killed 2 s into the load and started again 3 s later (it rejoins by IST);
    both instances keep taking creates and reads."""
    duration = 14.0
    load_a = OpenLoop(g.a.api, duration, 20, 10).start()
    load_b = OpenLoop(g.b.api, duration, 20, 10).start()
    time.sleep(2.0)
    t_kill = time.monotonic()
    g.cluster.kill(3)
    time.sleep(3.0)
    t_start = time.monotonic()
    g.cluster.start(3)
    rejoin = time.monotonic() - t_start
    results = load_a.wait() + load_b.wait()
    nodes = {n: set(rows_on(g.cluster, n)) for n in (1, 2, 3)}
    acked = {r.created for r in results if r.status == 201}
    lost = {n: len(acked - ids) for n, ids in nodes.items()}
    by_status = Counter(r.status for r in results)
    slowest = max(r.latency for r in results)
    around = [r.latency for r in results if t_kill <= r.sent <= t_kill + 4]
    print(f"\ngalera node 3 killed and restarted: sent {len(results)}, acknowledged creates {len(acked)}, "
          f"answers {dict(sorted(by_status.items(), key=str))}, rejoined ({g.cluster.last_transfer}, synced) in {rejoin:.1f} s, "
          f"slowest answer {slowest:.2f} s (during the eviction {max(around, default=0):.2f} s), writes lost per node {lost}")
    assert by_status[None] == 0, [r for r in results if r.status is None][:5]
    assert set(by_status) <= {200, 201}, f"{[r for r in results if r.status not in (200, 201)][:3]}\n{log_errors(g.a, g.b)}\n{g.cluster.log_grep(VIEWS)}"
    assert not any(lost.values())


def test_losing_an_instances_node(g):
    """Node 1 (instance A's) is killed 2 s into the load and started 6 s later. A answers
    503 + Retry-After meanwhile and becomes ready again on its own; B is unaffected."""
    duration = 24.0
    ready = ReadinessPoller(g.a.api, duration + 10)
    reasons = ReadinessReasons(g.a.api, duration + 10)
    pid = g.a.proc.pid
    load_a = OpenLoop(g.a.api, duration, 20, 10).start()
    load_b = OpenLoop(g.b.api, duration, 20, 10).start()
    time.sleep(2.0)
    t_kill = time.monotonic()
    g.cluster.kill(1)
    # Every create A acknowledged before its node died is on the two survivors.
    time.sleep(1.0)
    acked_before = {r.created for r in load_a.results if r.status == 201 and r.sent + r.latency < t_kill}
    lost_before = {n: len(acked_before - set(rows_on(g.cluster, n))) for n in (2, 3)}
    time.sleep(max(0.0, t_kill + 6.0 - time.monotonic()))
    t_start = time.monotonic()
    g.cluster.start(1)
    t_up = time.monotonic()  # node 1 synced
    res_a, res_b = load_a.wait(), load_b.wait()
    samples = ready.stop()
    seen = reasons.stop()
    assert g.a.proc.poll() is None and g.a.proc.pid == pid, "instance A exited"
    nodes = {n: set(rows_on(g.cluster, n)) for n in (1, 2, 3)}
    acked = {r.created for r in res_a + res_b if r.status == 201}
    lost = {n: len(acked - ids) for n, ids in nodes.items()}
    by_a, by_b = Counter(r.status for r in res_a), Counter(r.status for r in res_b)
    down = [r for r in res_a if r.sent >= t_kill + 0.5 and r.sent + r.latency <= t_start]
    first_503 = next((t for t, s in samples if t >= t_kill and s == 503), None)
    ready_again = next((t for t, s in samples if t >= t_up and s == 200), None)
    first_ack = next((r.sent + r.latency for r in res_a if r.sent >= t_up and r.status == 201), None)
    recovered = max(ready_again, first_ack) if ready_again and first_ack else None
    print(f"\ngalera node 1 (instance A's) killed for {t_start - t_kill:.1f} s, rejoined ({g.cluster.last_transfer}) in {t_up - t_start:.1f} s: "
          f"A sent {len(res_a)}, answers {dict(sorted(by_a.items(), key=str))} ({dict(Counter(r.status for r in down))} while down); "
          f"B sent {len(res_b)}, answers {dict(sorted(by_b.items(), key=str))}; acknowledged creates {len(acked)}, "
          f"lost per node {lost} (A's acknowledged before the kill missing on the survivors {lost_before}); "
          f"A's readiness 503 after {(first_503 - t_kill) if first_503 else float('nan'):.2f} s, "
          f"ready and writing {(recovered - t_up) if recovered else float('nan'):.2f} s after node 1 synced; "
          f"readiness said {dict(seen)}")
    assert by_a[None] == 0 and by_b[None] == 0, "requests without an answer"
    assert set(by_a) <= {200, 201, 503}, [r for r in res_a if r.status not in (200, 201, 503)][:5]
    assert all(r.retry_after for r in res_a if r.status == 503), "a 503 without Retry-After"
    assert down and {r.status for r in down} == {503}, Counter(r.status for r in down)
    assert set(by_b) <= {200, 201}, [r for r in res_b if r.status not in (200, 201)][:5]
    assert first_503 is not None and first_503 - t_kill <= READY_503_WITHIN_S
    assert recovered is not None and recovered - t_up <= RECOVER_WITHIN_S
    assert not any(lost_before.values()) and not any(lost.values())


def test_readiness_reports_a_desynced_node(g):
    """An operator desyncs node 2 (wsrep_desync=ON, as for a backup): B's readiness fails
    and says so with the node's state; resynced, B is ready again."""
    g.cluster.root_sql(2, "SET GLOBAL wsrep_desync=ON")
    try:
        deadline = time.monotonic() + 10
        while (status := _get(g.b.api, "/readyz"))[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        status, _, body = status
    finally:
        g.cluster.root_sql(2, "SET GLOBAL wsrep_desync=OFF")
    print(f"\ngalera desynced node 2: B's /readyz {status} {body.decode().strip()}")
    assert status == 503
    assert json.loads(body)["checks"]["database"] == \
        "galera node is not ready (wsrep_ready=ON, wsrep_local_state_comment=Donor/Desynced)"
    g.b.wait_ready(timeout=10)


RYW_ITERATIONS = 500


def test_read_your_writes(g):
    """500 times: create on A, then at once read it on A, while B writes on node 2. Also
    measured, not asserted: the same read on B (another node) right after A's create."""
    stop, other = threading.Event(), Counter()

    def write_on_b() -> None:
        while not stop.is_set():
            other[call("POST", g.b.api + "/api/v1/items", {"name": "other"})[0]] += 1
            stop.wait(0.05)

    writer = threading.Thread(target=write_on_b, daemon=True)
    writer.start()
    misses, cross_misses, failed = 0, 0, Counter()
    t0 = time.monotonic()
    try:
        for i in range(RYW_ITERATIONS):
            status, _, created = call("POST", g.a.api + "/api/v1/items", {"name": f"ryw {i}"})
            if status != 201:
                failed[status] += 1
                continue
            status, _, _ = call("GET", f"{g.a.api}/api/v1/items/{created['id']}")
            misses += status != 200
            if i % 5 == 0:
                status, _, _ = call("GET", f"{g.b.api}/api/v1/items/{created['id']}")
                cross_misses += status != 200
    finally:
        took = time.monotonic() - t0
        stop.set()
        writer.join(timeout=15)
    print(f"\ngalera read-your-writes: {RYW_ITERATIONS} create+read pairs on A in {took:.1f} s, misses {misses}, "
          f"failed creates {dict(failed)}; reads on B right after A's create: {cross_misses} misses of {RYW_ITERATIONS // 5}; "
          f"B meanwhile created {dict(other)}")
    assert not failed
    assert misses == 0
    assert set(other) == {201}
