"""Database faults, from outside: the built binary under load while its database turns
read-only or loses its connections, then comes back.

The bar on every engine and data layer: a write the database cannot take is a 503 with
Retry-After (gRPC: UNAVAILABLE), never a 500; readiness (/readyz and gRPC health) fails
while the database refuses writes; every request gets an answer; and within seconds of the
fault ending writes succeed again and readiness passes (broken connections are not kept).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import LAYER_VARIANTS, VARIANTS
from tests.test_smoke import (  # noqa: F401  (binaries is a fixture)
    GRPCClient,
    Service,
    base_env,
    binaries,
    call,
    fresh_database,
    fresh_mariadb_database,
    grpc_health,
)

pytestmark = [pytest.mark.go, pytest.mark.slow]

# How long the service may take to notice a fault, and to recover once it ends.
NOTICE_S = 10
RECOVER_S = 10
# A request timeout well above the load's needs: a slow shared CI machine must not turn
# into 503s that look like the fault's.
ENV = {"REQUEST_TIMEOUT": "3s", "HTTP_WRITE_TIMEOUT": "4s", "DB_STATEMENT_TIMEOUT": "2s", "GRPC_ADDR": "127.0.0.1:0"}


class Load:
    """Clients in threads against the running service: mostly writes, some reads. Every
    answer is recorded with the phase the test had set when the request was sent."""

    def __init__(self, api: str, resource: str = "item", workers: int = 4):
        from extensions.decisions import plural

        self.items = f"{api}/api/v1/{plural(resource)}"
        self.phase = "healthy"
        self.results: list[tuple[str, float, str, int | None, bool]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def request(self, kind: str, tag: str = "") -> int | None:
        """One request, recorded; returns its status (None: no answer)."""
        phase = self.phase
        try:
            if kind == "write":
                status, headers, _ = call("POST", self.items, {"name": f"load {tag}"})
            else:
                status, headers, _ = call("GET", self.items + "?limit=5")
        except OSError:  # a read timeout: the service did not answer
            status, headers = None, {}
        with self._lock:
            self.results.append((phase, time.monotonic(), kind, status, bool(headers.get("Retry-After"))))
        return status

    def _run(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            self.request("read" if n % 4 == 0 else "write", f"{worker}-{n}")
            time.sleep(0.005)

    def burst(self, n: int = 24) -> Counter:
        """n concurrent writes at once: more than the pool holds, so it opens connections."""
        out: list[int | None] = []
        threads = [threading.Thread(target=lambda i=i: out.append(self.request("write", f"burst-{i}"))) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return Counter(out)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def statuses(self, phase: str, kind: str = "write", since: float = 0.0) -> Counter:
        with self._lock:
            return Counter(s for p, t, k, s, _ in self.results if p == phase and k == kind and t >= since)

    def last_writes(self, n: int) -> list[int | None]:
        with self._lock:
            return [s for _, _, k, s, _ in self.results if k == "write"][-n:]

    def check_answers(self) -> None:
        """Every request got an answer, none was a 500, and every 503 said when to retry."""
        with self._lock:
            results = list(self.results)
        by_status = Counter(s for _, _, _, s, _ in results)
        assert by_status[None] == 0, f"requests without an answer: {by_status}"
        assert not [s for s in by_status if s and s >= 500 and s != 503], f"server errors other than 503: {by_status}"
        assert all(retry for _, _, _, s, retry in results if s == 503), "a 503 without Retry-After"

    def summary(self) -> str:
        with self._lock:
            phases = dict.fromkeys(p for p, *_ in self.results)
        return "; ".join(f"{p}: writes {dict(self.statuses(p))} reads {dict(self.statuses(p, 'read'))}" for p in phases)


def readiness(svc: Service) -> int | None:
    """503 unless every readiness report the service has (/readyz, gRPC health) passes, 200
    when all do; None while they disagree (gRPC health follows on a timer)."""
    reports = set()
    if svc.api:
        reports.add(call("GET", svc.api + "/readyz")[0])
    if svc.grpc:
        reports.add({"SERVING": 200, "NOT_SERVING": 503}.get(grpc_health(svc.grpc)))
    return reports.pop() if len(reports) == 1 else None


def wait_for(what: str, check, timeout: float, svc: Service) -> float:
    """Poll check until it is true; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout} s:\n" + "".join(svc.raw[-40:]))


def fault_cycle(svc: Service, load: Load, inject, restore, *, all_refused: bool, grpc_resource: str = "") -> str:
    """Run the load through healthy -> fault -> recovered and check each phase. all_refused:
    once readiness fails, every write must be refused (a server that refuses all sessions);
    otherwise (SQLite, whose open connections keep writing) a burst that needs new
    connections must see refusals. Returns a line of numbers for the report."""
    time.sleep(1)
    healthy = load.statuses("healthy")
    assert healthy and set(healthy) == {201}, f"before the fault: {healthy}"

    load.phase = "fault"
    t_fault = time.monotonic()
    inject()

    def refusing() -> bool:  # (cutting sessions may first show as "unreachable")
        return readiness(svc) == 503 and (not svc.api or call("GET", svc.api + "/readyz")[2]["checks"]["database"] == "refuses writes")

    noticed = wait_for('readiness failing with "refuses writes"', refusing, NOTICE_S, svc)
    t_refusing = time.monotonic()
    burst = load.burst()
    time.sleep(1)
    refused = load.statuses("fault", since=t_refusing)
    assert refused[503] > 0, f"no write was refused during the fault: {refused}, burst {burst}"
    if all_refused:
        assert set(refused) == {503}, f"writes during the fault: {refused}"
    else:
        assert set(refused) <= {201, 503}, f"writes during the fault: {refused}"
    if grpc_resource:
        # Concurrent, like the burst: on SQLite only new connections are refused.
        client = GRPCClient(svc.grpc, grpc_resource)
        answers: list[str] = []  # list.append is atomic
        create = lambda: answers.append(client.code(f"Create{grpc_resource.capitalize()}", name="grpc"))  # noqa: E731
        threads = [threading.Thread(target=create) for _ in range(24)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            client.close()
        codes = Counter(answers)
        assert set(codes) <= {"OK", "UNAVAILABLE"} and codes["UNAVAILABLE"], codes

    load.phase = "recovering"
    restore()
    t_restored = time.monotonic()

    def recovered() -> bool:
        last = load.last_writes(20)
        return readiness(svc) == 200 and len(last) == 20 and set(last) == {201}

    took = wait_for("recovery (readiness 200 and 20 writes in a row)", recovered, RECOVER_S, svc)
    load.phase = "recovered"
    burst = load.burst()  # the pool grows again: new connections and every kept one must write
    time.sleep(2)
    after = load.statuses("recovered")
    assert after and set(after) == {201}, f"writes after recovery: {after} (burst {burst})"
    load.stop()
    load.check_answers()
    return (f"noticed in {noticed:.1f} s, recovered {took:.1f} s after the fault ended "
            f"(fault lasted {t_restored - t_fault:.1f} s); {load.summary()}")


# --- SQLite: the database's directory and files made read-only ------------------------

NOBODY = 65534  # nobody / nogroup on Debian


@pytest.fixture
def unprivileged_dir():
    """A directory the service, run as nobody when the test is root (root ignores file
    permissions), can write until the test makes it read-only."""
    base = Path(tempfile.mkdtemp(prefix="cgs-faults-", dir="/tmp"))
    base.chmod(0o755)
    db_dir = base / "db"
    db_dir.mkdir()
    if os.geteuid() == 0:
        os.chown(db_dir, NOBODY, NOBODY)
    yield base, db_dir
    db_dir.chmod(0o755)
    shutil.rmtree(base, ignore_errors=True)


def unprivileged(binary: Path, base: Path, env: dict[str, str]) -> Service:
    """The service binary, as nobody when the test runs as root."""
    if os.geteuid() != 0:
        return Service(binary, env)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the service as nobody"
    copy = base / binary.name  # the test's own temporary directories are root's alone
    shutil.copy(binary, copy)
    copy.chmod(0o755)
    return Service(Path(setpriv), env, (f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", str(copy)))


def set_mode(db_dir: Path, dir_mode: int, file_mode: int) -> None:
    db_dir.chmod(dir_mode)
    for f in db_dir.iterdir():
        f.chmod(file_mode)


@pytest.mark.parametrize("variant", ["default", "chi-grpc", "gorm", "sqlx"])
def test_sqlite_directory_made_read_only(binaries, variant, unprivileged_dir):
    """SQLite's directory and files turn read-only under load, then writable again. Open
    connections may keep writing; new ones cannot, and the pool must not keep them."""
    base, db_dir = unprivileged_dir
    resource = VARIANTS[variant].get("resource", "item")
    svc = unprivileged(binaries[variant], base,
                       base_env(DB_TYPE="sqlite", DATABASE_URL=f"file:{db_dir}/app.db", **ENV))
    svc.wait_listening().wait_ready()
    load = Load(svc.api, resource)
    try:
        report = fault_cycle(svc, load,
                             inject=lambda: set_mode(db_dir, 0o555, 0o444),
                             restore=lambda: set_mode(db_dir, 0o755, 0o644),
                             all_refused=False, grpc_resource=resource if svc.grpc else "")
    finally:
        load.stop()
        assert svc.stop() == 0
    print(f"\nsqlite/{variant}: {report}")


# --- PostgreSQL: the database made read-only, sessions terminated ----------------------

def psql(admin_dsn: str, sql: str) -> str:
    return subprocess.run(["psql", admin_dsn, "-qAtc", sql], check=True, capture_output=True, text=True,
                          timeout=30).stdout


def terminate_postgres_sessions(admin_dsn: str, db: str) -> None:
    psql(admin_dsn, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()")


@pytest.mark.postgres
@pytest.mark.parametrize("layer", ["sqlc", "gorm"])
def test_postgresql_database_made_read_only(binaries, layer, postgres_dsn):
    """The database turns read-only (default_transaction_read_only, as on a standby) and the
    service's sessions are cut, so the new ones are read-only; then writes are allowed again,
    without cutting the sessions: the read-only ones must not stay in the pool."""
    dsn = fresh_database(postgres_dsn)
    db = dsn.rsplit("/", 1)[1].split("?")[0]
    svc = Service(binaries[LAYER_VARIANTS[layer]], base_env(DB_TYPE="postgresql", DATABASE_URL=dsn, **ENV))
    svc.wait_listening().wait_ready()
    load = Load(svc.api)

    def inject():
        psql(postgres_dsn, f"ALTER DATABASE {db} SET default_transaction_read_only = on")
        terminate_postgres_sessions(postgres_dsn, db)

    try:
        report = fault_cycle(svc, load, inject=inject,
                             restore=lambda: psql(postgres_dsn, f"ALTER DATABASE {db} RESET default_transaction_read_only"),
                             all_refused=True)
    finally:
        load.stop()
        psql(postgres_dsn, f"ALTER DATABASE {db} RESET default_transaction_read_only")
        assert svc.stop() == 0
    print(f"\npostgresql/{layer}: {report}")


@pytest.mark.postgres
@pytest.mark.parametrize(("engine", "layer"), [("postgresql", "sqlc"), ("postgresql", "sqlx"),
                                                ("mariadb", "sqlc"), ("mariadb", "gorm")])
def test_connections_cut_under_load(binaries, engine, layer, postgres_dsn, mariadb_dsn):
    """The server ends the service's sessions again and again under load (an administrator,
    a proxy or a failover): requests caught in flight are 503 or succeed, none is a 500, and
    once it stops, every write succeeds on new connections."""
    user = ""
    if engine == "postgresql":
        dsn = fresh_database(postgres_dsn)
        db = dsn.rsplit("/", 1)[1].split("?")[0]
        cut = lambda: terminate_postgres_sessions(postgres_dsn, db)  # noqa: E731
    else:
        dsn, user, _ = mariadb_service_user(mariadb_dsn)
        cut = lambda: kill_mariadb_sessions(mariadb_dsn, user)  # noqa: E731
    svc = Service(binaries[LAYER_VARIANTS[layer]], base_env(DB_TYPE=engine, DATABASE_URL=dsn, **ENV))
    svc.wait_listening().wait_ready()
    load = Load(svc.api, workers=6)
    try:
        time.sleep(1)
        load.phase = "cutting"
        for _ in range(8):
            cut()
            time.sleep(0.3)
        load.phase = "recovering"
        took = wait_for("20 writes in a row", lambda: set(load.last_writes(20)) == {201}, RECOVER_S, svc)
        load.phase = "recovered"
        burst = load.burst()
        time.sleep(2)
        assert set(load.statuses("recovered")) == {201}, f"{load.summary()} (burst {burst})"
        assert readiness(svc) == 200
        load.stop()
        load.check_answers()
        assert set(load.statuses("cutting")) <= {201, 503}, load.summary()
    finally:
        load.stop()
        assert svc.stop() == 0
        if user:
            mariadb(mariadb_dsn, f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
    print(f"\n{engine}/{layer} sessions cut 8 times: recovered in {took:.1f} s; {load.summary()}")


# --- MariaDB: the server made read-only ------------------------------------------------

def mariadb_cli(admin_dsn: str) -> list[str]:
    m = re.match(r"(?P<user>[^:]+):(?P<pw>[^@]*)@tcp\((?P<host>[^:)]+):(?P<port>\d+)\)/", admin_dsn)
    assert m, admin_dsn
    return ["mariadb", "-h", m["host"], "-P", m["port"], "-u", m["user"], f"-p{m['pw']}", "-N", "-B", "-e"]


def mariadb(admin_dsn: str, sql: str) -> str:
    return subprocess.run([*mariadb_cli(admin_dsn), sql], check=True, capture_output=True, text=True, timeout=30).stdout


def mariadb_service_user(admin_dsn: str) -> tuple[str, str, str]:
    """A fresh database and a user with rights on it alone: no SUPER or READ ONLY ADMIN, so
    read_only applies to it (the suite's admin user has them). Returns (DSN, user, db)."""
    admin_url = fresh_mariadb_database(admin_dsn)
    db = admin_url.rsplit("/", 1)[1]
    user, password = "svc_" + uuid.uuid4().hex[:8], "svc-" + uuid.uuid4().hex[:12]
    mariadb(admin_dsn, f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; "
                       f"GRANT ALL PRIVILEGES ON {db}.* TO '{user}'@'127.0.0.1'")
    host = re.search(r"@([^/]+)/", admin_url)[1]
    return f"mariadb://{user}:{password}@{host}/{db}", user, db


def kill_mariadb_sessions(admin_dsn: str, user: str) -> None:
    ids = mariadb(admin_dsn, f"SELECT id FROM information_schema.processlist WHERE user = '{user}'").split()
    for i in ids:
        subprocess.run([*mariadb_cli(admin_dsn), f"KILL CONNECTION {i}"], capture_output=True, timeout=30)


@pytest.mark.postgres
@pytest.mark.parametrize("layer", ["sqlc", "sqlx"])
def test_mariadb_server_made_read_only(binaries, layer, mariadb_dsn):
    """SET GLOBAL read_only=ON under load, then OFF. It is server-wide: the suite's admin
    user is exempt (READ ONLY ADMIN), so only this test's service user is refused."""
    dsn, user, _ = mariadb_service_user(mariadb_dsn)
    svc = Service(binaries[LAYER_VARIANTS[layer]], base_env(DB_TYPE="mariadb", DATABASE_URL=dsn, **ENV))
    svc.wait_listening().wait_ready()
    load = Load(svc.api)
    try:
        report = fault_cycle(svc, load,
                             inject=lambda: mariadb(mariadb_dsn, "SET GLOBAL read_only = ON"),
                             restore=lambda: mariadb(mariadb_dsn, "SET GLOBAL read_only = OFF"),
                             all_refused=True)
    finally:
        load.stop()
        mariadb(mariadb_dsn, "SET GLOBAL read_only = OFF")
        assert svc.stop() == 0
        mariadb(mariadb_dsn, f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
    print(f"\nmariadb/{layer}: {report}")
