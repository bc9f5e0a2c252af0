"""Smoke tests: boot the built binary of a rendered project, call it over HTTP, shut it
down with SIGTERM. And the generated PostgreSQL tests against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import GRPC_VARIANTS, LAYER_VARIANTS, REST_VARIANTS, VARIANTS, go_env, run, slug_of

pytestmark = [pytest.mark.go, pytest.mark.slow]


class Service:
    """The service binary running in a subprocess, with its JSON log lines collected."""

    def __init__(self, binary: Path, env: dict[str, str], args: tuple[str, ...] = ()):
        self.lines: list[dict] = []
        self.raw: list[str] = []
        self.proc = subprocess.Popen(
            [str(binary), *args], env=go_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.api = self.metrics = self.grpc = ""

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.raw.append(line)
            try:
                self.lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass

    def wait_listening(self, timeout: float = 30) -> "Service":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.get("msg") == "listening":
                    self.api = "http://" + line["http_addr"] if "http_addr" in line else ""
                    self.metrics = "http://" + line["metrics_addr"]
                    self.grpc = line.get("grpc_addr", "")
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail("the service did not start listening:\n" + "".join(self.raw))

    def wait_ready(self, want: int = 200, timeout: float = 30) -> "Service":
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            if self.api:
                status, _, _ = call("GET", self.api + "/readyz")
            else:
                status = 200 if grpc_health(self.grpc) == "SERVING" else 503
            if status == want:
                return self
            time.sleep(0.1)
        pytest.fail(f"readiness stayed {status}, want {want}:\n" + "".join(self.raw))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                pytest.fail("the service ignored SIGTERM for 30 s")
        time.sleep(0.1)
        return self.proc.returncode


def call(method: str, url: str, body: dict | str | None = None, headers: dict | None = None):
    data = None
    if body is not None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            raw = res.read()
            return res.status, res.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, err.headers, json.loads(raw) if raw else None
    except (urllib.error.URLError, ConnectionError):
        return None, {}, None


def build(project: Path, out_dir: Path) -> Path:
    slug = slug_of(project)
    out = out_dir / slug
    run(["go", "build", "-o", str(out), f"./cmd/{slug}"], project)
    return out


@pytest.fixture(scope="module")
def binaries(projects, tmp_path_factory):
    """The built binary of a variant, built once per module on first use."""
    class Lazy(dict):
        def __missing__(self, variant: str) -> Path:
            self[variant] = build(projects[variant], tmp_path_factory.mktemp(f"bin-{variant}"))
            return self[variant]

    return Lazy()


@pytest.fixture(scope="module")
def binary(binaries) -> Path:
    return binaries["default"]


def grpc_health(addr: str, service: str = "") -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(addr) as channel:
        try:
            res = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        except grpc.RpcError as err:
            return f"error: {err.code().name}"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(res.status)


class GRPCClient:
    """A real gRPC client that learns the API through server reflection."""

    def __init__(self, addr: str, resource: str):
        import grpc
        from google.protobuf import descriptor_pool, message_factory
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

        self.grpc = grpc
        self.channel = grpc.insecure_channel(addr)
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self.channel))
        names = [s for s in ProtoReflectionDescriptorDatabase(self.channel).get_services() if s.endswith(f".{resource.capitalize()}Service")]
        assert len(names) == 1, names
        self.service = pool.FindServiceByName(names[0])
        self.message_factory = message_factory
        # The descriptor pool (filled lazily over reflection) is not safe to use from several
        # threads at once: load tests call from many, and crashed the interpreter. Each
        # method's stub and request class are made once, under a lock.
        self._lock = threading.Lock()
        self._methods: dict[str, tuple] = {}

    def _method(self, method: str) -> tuple:
        with self._lock:
            if method not in self._methods:
                m = self.service.FindMethodByName(method)
                req_cls = self.message_factory.GetMessageClass(m.input_type)
                resp_cls = self.message_factory.GetMessageClass(m.output_type)
                stub = self.channel.unary_unary(f"/{self.service.full_name}/{m.name}",
                                                request_serializer=req_cls.SerializeToString,
                                                response_deserializer=resp_cls.FromString)
                self._methods[method] = (stub, req_cls)
            return self._methods[method]

    def call(self, method: str, metadata=(), **fields):
        stub, req_cls = self._method(method)
        return stub.with_call(req_cls(**fields), timeout=10, metadata=list(metadata))

    def code(self, method: str, **fields) -> str:
        try:
            self.call(method, **fields)
        except self.grpc.RpcError as err:
            return err.code().name
        return "OK"

    def close(self) -> None:
        self.channel.close()


def exercise_grpc(addr: str, resource: str = "item") -> None:
    """Every RPC and the main error codes, over a real connection."""
    from extensions.decisions import plural

    r, rs = resource.capitalize(), plural(resource)
    client = GRPCClient(addr, resource)
    try:
        created, call = client.call(f"Create{r}", metadata=[("x-request-id", "smoke-grpc")], name="smoke", idempotency_key="g1")
        assert ("x-request-id", "smoke-grpc") in call.initial_metadata()
        item = getattr(created, resource)
        again, _ = client.call(f"Create{r}", name="smoke", idempotency_key="g1")
        assert again.replayed and getattr(again, resource).id == item.id
        got, _ = client.call(f"Get{r}", id=item.id)
        assert got.name == "smoke" and got.version == 1
        page, _ = client.call(f"List{rs.capitalize()}", page_size=10)
        assert len(getattr(page, rs)) == 1
        upd, _ = client.call(f"Update{r}", id=item.id, name="renamed", version=1)
        assert upd.version == 2
        assert client.code(f"Update{r}", id=item.id, name="late", version=1) == "ABORTED"
        assert client.code(f"Create{r}") == "INVALID_ARGUMENT"
        assert client.code(f"Get{r}", id=str(uuid.uuid4())) == "NOT_FOUND"
        assert client.code(f"Delete{r}", id=item.id) == "OK"
        assert client.code(f"Get{r}", id=item.id) == "NOT_FOUND"
    finally:
        client.close()
    assert grpc_health(addr) == "SERVING"


def base_env(**extra: str) -> dict[str, str]:
    # Development: authentication may be off (tests that need it set JWT_SECRET). No drain
    # delay: nothing balances load in front of these tests (tests/test_edge.py tests it).
    return {"APP_ENV": "development", "HTTP_ADDR": "127.0.0.1:0", "METRICS_ADDR": "127.0.0.1:0",
            "SHUTDOWN_DRAIN_DELAY": "0s", **extra}


def exercise(api: str, resource: str = "item") -> None:
    """Every endpoint and the main error paths, over real HTTP."""
    from extensions.decisions import plural

    items = api + "/api/v1/" + plural(resource)
    status, headers, created = call("POST", items, {"name": "smoke"}, {"Idempotency-Key": "smoke-1", "X-Request-ID": "smoke-req"})
    assert status == 201, created
    assert headers.get("X-Request-ID") == "smoke-req"
    item_id = created["id"]
    status, headers, again = call("POST", items, {"name": "smoke"}, {"Idempotency-Key": "smoke-1"})
    assert status == 200 and again["id"] == item_id and headers.get("Idempotent-Replayed") == "true"
    assert call("POST", items, {"name": "other"}, {"Idempotency-Key": "smoke-1"})[0] == 409
    status, headers, got = call("GET", f"{items}/{item_id}")
    assert status == 200 and got["name"] == "smoke" and headers.get("ETag") == '"1"'
    status, _, page = call("GET", items + "?limit=1")
    assert status == 200 and len(page["data"]) == 1
    status, _, upd = call("PUT", f"{items}/{item_id}", {"name": "renamed"}, {"If-Match": '"1"'})
    assert status == 200 and upd["version"] == 2
    status, _, err = call("PUT", f"{items}/{item_id}", {"name": "late"}, {"If-Match": '"1"'})
    assert status == 409 and err["error"]["code"] == "conflict"
    status, _, err = call("POST", items, '{"name": ')
    assert status == 400 and err["error"]["code"] == "invalid"
    status, err = announce_oversized_body(items)
    assert status == 413 and err["error"]["code"] == "too_large"
    assert call("GET", f"{items}/{uuid.uuid4()}")[0] == 404
    assert call("DELETE", f"{items}/{item_id}")[0] == 204
    assert call("GET", f"{items}/{item_id}")[0] == 404
    assert call("GET", api + "/livez")[0] == 200


def announce_oversized_body(url: str) -> tuple[int, dict]:
    """Send only the headers of a 2 MiB body: the service must refuse it before reading."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("POST", parts.path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2 << 20))
        conn.endheaders()
        res = conn.getresponse()
        return res.status, json.loads(res.read())
    finally:
        conn.close()


def test_smoke_sqlite(binary, tmp_path):
    svc = Service(binary, base_env(DB_TYPE="sqlite", DATABASE_URL=f"file:{tmp_path}/smoke.db"))
    svc.wait_listening().wait_ready()
    exercise(svc.api)
    with urllib.request.urlopen(svc.metrics + "/metrics", timeout=10) as res:
        text = res.read().decode()
    assert 'http_requests_total{code="201",method="POST",route="/api/v1/items"} 1' in text
    assert "go_goroutines" in text and "process_resident_memory_bytes" in text

    # The container HEALTHCHECK: the binary's own -healthcheck flag, no curl.
    port = svc.api.rsplit(":", 1)[1]
    hc = subprocess.run([str(binary), "-healthcheck"], env=go_env(HTTP_ADDR=f":{port}", DATABASE_URL="unused"),
                        capture_output=True, text=True, timeout=30)
    assert hc.returncode == 0, hc.stderr

    assert svc.stop() == 0
    msgs = [line.get("msg") for line in svc.lines]
    assert msgs.index("shutting down: readiness is now failing") < msgs.index("stopped")
    assert all(line.get("request_id") for line in svc.lines if line.get("msg") == "request")

    hc = subprocess.run([str(binary), "-healthcheck"], env=go_env(HTTP_ADDR=f":{port}", DATABASE_URL="unused"),
                        capture_output=True, text=True, timeout=30)
    assert hc.returncode != 0


def test_bad_db_type_exits_with_the_accepted_values(binary):
    proc = subprocess.run([str(binary)], env=go_env(**base_env(DB_TYPE="oracle", DATABASE_URL="x")),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert 'DB_TYPE "oracle" is not supported by this build: use one of postgresql, mysql, mariadb, sqlite' in proc.stderr


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "default"])
def test_smoke_transport_variants(binaries, variant, tmp_path):
    """Every other variant, booted on SQLite and called for real."""
    binary = binaries[variant]
    resource = VARIANTS[variant].get("resource", "item")
    svc = Service(binary, base_env(DB_TYPE="sqlite", DATABASE_URL=f"file:{tmp_path}/smoke.db", GRPC_ADDR="127.0.0.1:0"))
    svc.wait_listening().wait_ready()
    if variant in REST_VARIANTS:
        assert svc.api
        exercise(svc.api, resource)
    else:
        assert not svc.api, "a gRPC-only service serves no REST API"
    if variant in GRPC_VARIANTS:
        assert svc.grpc
        exercise_grpc(svc.grpc, resource)
        hc_env = {"GRPC_ADDR": svc.grpc, "HTTP_ADDR": svc.api.removeprefix("http://") or ":0", "DATABASE_URL": "unused"}
        hc = subprocess.run([str(binary), "-healthcheck"], env=go_env(**hc_env), capture_output=True, text=True, timeout=30)
        assert hc.returncode == 0, hc.stderr
    else:
        assert not svc.grpc
    with urllib.request.urlopen(svc.metrics + "/metrics", timeout=10) as res:
        text = res.read().decode()
    if variant in GRPC_VARIANTS:
        assert "grpc_server_handled_total{code=\"Aborted\"" in text
    assert svc.stop() == 0
    msgs = [line.get("msg") for line in svc.lines]
    assert "stopped" in msgs


@pytest.mark.postgres
@pytest.mark.parametrize("layer", list(LAYER_VARIANTS))
@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_smoke_database_server(binaries, engine, layer, postgres_dsn, mariadb_dsn):
    """The binary of each data layer on each database server: ready, serving, metrics."""
    dsn = fresh_database(postgres_dsn) if engine == "postgresql" else fresh_mariadb_database(mariadb_dsn)
    svc = Service(binaries[LAYER_VARIANTS[layer]], base_env(DB_TYPE=engine, DATABASE_URL=dsn))
    svc.wait_listening().wait_ready()
    exercise(svc.api)
    with urllib.request.urlopen(svc.metrics + "/metrics", timeout=10) as res:
        text = res.read().decode()
    assert f'db_pool_max_open_connections{{db_type="{engine}"}}' in text
    assert svc.stop() == 0


@pytest.mark.postgres
@pytest.mark.parametrize(("engine", "layer"), [("postgresql", "sqlc"), ("mariadb", "sqlc"), ("mariadb", "gorm")])
def test_unreachable_database_is_not_ready_then_recovers(binaries, engine, layer, postgres_dsn, mariadb_dsn):
    """A database that is down at start-up: the process stays up, /livez 200, /readyz 503;
    when the database appears, migrations run and the service becomes ready."""
    import re
    import socket

    # A TCP forwarder we control stands in for the database's address.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    dsn = fresh_database(postgres_dsn) if engine == "postgresql" else fresh_mariadb_database(mariadb_dsn)
    m = re.search(r"@127\.0\.0\.1:(\d+)/", dsn)
    assert m, dsn
    target_port = int(m[1])
    down_dsn = dsn.replace(f"127.0.0.1:{target_port}/", f"127.0.0.1:{port}/")

    svc = Service(binaries[LAYER_VARIANTS[layer]], base_env(DB_TYPE=engine, DATABASE_URL=down_dsn))
    svc.wait_listening()
    time.sleep(1)
    assert svc.proc.poll() is None, "the service died while the database was down"
    assert call("GET", svc.api + "/livez")[0] == 200
    status, _, body = call("GET", svc.api + "/readyz")
    assert status == 503 and body["checks"]["database"] != "ok"

    forwarder = Forwarder(port, target_port)
    try:
        svc.wait_ready(timeout=30)
        exercise(svc.api)
    finally:
        assert svc.stop() == 0
        forwarder.close()


class Forwarder:
    """A loopback TCP proxy from one port to another (the database 'coming back')."""

    def __init__(self, listen_port: int, target_port: int):
        import socket

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen_port))
        self.sock.listen(64)
        self.target = target_port
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def fresh_database(admin_dsn: str) -> str:
    """Create a database for one test on the server and return its DSN."""
    name = "smoke_" + uuid.uuid4().hex[:8]
    subprocess.run(["psql", admin_dsn, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True, timeout=30)
    head, _, tail = admin_dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}?{tail}" if tail else f"{base}/{name}"


ENGINES = ("postgresql", "mysql", "mariadb", "sqlite")
CONTRACT = ("create_and_get", "duplicate_id_is_a_conflict", "missing_is_not_found",
            "idempotency_record_is_written_with_the_item,_once",
            "an_expired_idempotency_record_is_deleted,_a_live_one_kept",
            "expired_idempotency_records_are_swept_in_batches,_oldest_first", "update_checks_the_version",
            "delete", "list_pages_in_ID_order", "a_cancelled_context_is_unavailable,_not_internal")


@pytest.mark.postgres
@pytest.mark.parametrize("layer", list(LAYER_VARIANTS))
def test_every_engine_passes_the_store_contract_on_a_real_server(projects, layer, postgres_dsn, mariadb_dsn):
    """Each data layer x each engine: the generated store tests against PostgreSQL and
    MariaDB servers (the MySQL path runs on MariaDB; its SQL is held to MySQL 8 by the
    generated syntax tests) and SQLite, each in a fresh database. Nothing may skip."""
    proj = projects[LAYER_VARIANTS[layer]]
    proc = run(["go", "test", "-race", "-count=1", "-v", "./internal/store/..."],
               proj, CGO_ENABLED="1", TEST_POSTGRES_DSN=postgres_dsn, TEST_MARIADB_DSN=mariadb_dsn)
    assert "SKIP" not in proc.stdout, proc.stdout
    for engine in ENGINES:
        assert f"--- PASS: TestContract/{engine} " in proc.stdout, (layer, engine)
        assert f"--- PASS: TestIdempotencyRecordsExpire/{engine} " in proc.stdout, (layer, engine)
        for case in CONTRACT:
            assert f"--- PASS: TestContract/{engine}/{case} " in proc.stdout, (layer, engine, case)
    tests = ["TestWholeTransactionIsRetried", "TestRetriesDeadlocksAndGaleraConflicts", "TestDoesNotRetryOtherErrors",
             "TestStatsReportThePool", "TestQueriesUseOnlyMySQL8Syntax" if layer == "sqlc" else "TestStatementsUseOnlyMySQL8Syntax"]
    for test in tests:
        assert f"--- PASS: {test} " in proc.stdout, test


def fresh_mariadb_database(admin_dsn: str) -> str:
    """Create a database on the MariaDB server; return a mariadb:// URL for it."""
    import re

    m = re.match(r"(?P<user>[^:]+):(?P<pw>[^@]*)@tcp\((?P<addr>[^)]+)\)/", admin_dsn)
    assert m, admin_dsn
    name = "smoke_" + uuid.uuid4().hex[:8]
    host, port = m["addr"].rsplit(":", 1)
    subprocess.run(["mariadb", "-h", host, "-P", port, "-u", m["user"], f"-p{m['pw']}", "-e", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True, timeout=30)
    return f"mariadb://{m['user']}:{m['pw']}@{m['addr']}/{name}"
