"""Text input and idempotency keys, attacked from outside: the built binary of a rendered
service, on SQLite and on the real PostgreSQL and MariaDB servers, over REST and gRPC.

- Text that is not text (NUL and other control characters, invalid UTF-8, a lone
  surrogate) and blank names are a 400 naming the field (gRPC: INVALID_ARGUMENT), on every
  engine and data layer, and nothing is stored.
- 50 concurrent creates with one Idempotency-Key make one row per subject (two JWT
  subjects, two rows).
- With IDEMPOTENCY_TTL=1s a key reused after 2 s makes a new item, and the sweep deletes
  the expired records.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import LAYER_VARIANTS
from tests.test_smoke import (  # noqa: F401  (binaries is a fixture)
    GRPCClient,
    Service,
    base_env,
    binaries,
    call,
    fresh_database,
    fresh_mariadb_database,
)

pytestmark = [pytest.mark.go, pytest.mark.slow]

ITEMS = "/api/v1/items"
# High enough that 50 concurrent requests from one caller are never rate limited.
NO_RATE_LIMIT = {"RATE_LIMIT_RPS": "100000", "RATE_LIMIT_BURST": "100000"}
JWT_SECRET = "a-test-secret-of-at-least-32-bytes!"


# ------------------------------------------------------------------ helpers
def database(engine: str, tmp_path: Path, postgres_dsn: str | None, mariadb_dsn: str | None) -> str:
    """DATABASE_URL of a fresh database on engine."""
    if engine == "sqlite":
        return f"file:{tmp_path}/test.db"
    if engine == "postgresql":
        return fresh_database(postgres_dsn)
    return fresh_mariadb_database(mariadb_dsn)


def count_rows(engine: str, url: str, table: str) -> int:
    """Rows in table, read by the engine's own client (not through the service)."""
    query = f"SELECT count(*) FROM {table}"
    if engine == "sqlite":
        with sqlite3.connect(url.removeprefix("file:")) as conn:
            return conn.execute(query).fetchone()[0]
    if engine == "postgresql":
        out = subprocess.run(["psql", url, "-tAc", query], check=True, capture_output=True, text=True, timeout=30)
        return int(out.stdout.strip())
    u = urlsplit(url)
    out = subprocess.run(["mariadb", "-h", u.hostname, "-P", str(u.port), "-u", u.username, f"-p{u.password}",
                          "-N", "-D", u.path.lstrip("/"), "-e", query], check=True, capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip())


def boot(binary: Path, engine: str, url: str, **env: str) -> Service:
    svc = Service(binary, base_env(DB_TYPE=engine, DATABASE_URL=url, GRPC_ADDR="127.0.0.1:0", **NO_RATE_LIMIT, **env))
    return svc.wait_listening().wait_ready()


def post_raw(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    """POST body exactly as given (call() would encode it as UTF-8)."""
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def hs256(claims: dict, secret: str = JWT_SECRET) -> str:
    """An HS256 JWT, signed here with the standard library alone."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def token(subject: str) -> str:
    now = int(time.time())
    return hs256({"sub": subject, "scope": "items:write", "iat": now, "exp": now + 600})


# Bodies exactly as a client sends them, and the field each must be refused for.
BAD_TEXT = {
    "NUL": (b'{"name": "a\\u0000b"}', "name", "U+0000"),
    "invalid UTF-8 bytes": (b'{"name": "caf\xe9 \xff\xfe"}', "name", "valid UTF-8"),
    "lone surrogate": (b'{"name": "a\\ud800b"}', "name", "valid UTF-8"),
    "whitespace-only name": (b'{"name": " \\t\\n\\u00a0 "}', "name", "must not be blank"),
    "empty name": (b'{"name": ""}', "name", "is required"),
    "control character": (b'{"name": "ok", "description": "bell\\u0007"}', "description", "U+0007"),
    "escape sequence": (b'{"name": "red\\u001b[31m"}', "name", "U+001B"),
    "C1 control": (b'{"name": "a\\u009bb"}', "name", "U+009B"),
}


# ------------------------------------------------------------------ text input, REST
TEXT_TARGETS = [
    pytest.param("default", "sqlite", id="sqlc-sqlite"),
    pytest.param("default", "postgresql", id="sqlc-postgresql", marks=pytest.mark.postgres),
    pytest.param("default", "mariadb", id="sqlc-mariadb", marks=pytest.mark.postgres),
    pytest.param(LAYER_VARIANTS["gorm"], "postgresql", id="gorm-postgresql", marks=pytest.mark.postgres),
    pytest.param(LAYER_VARIANTS["sqlx"], "mariadb", id="sqlx-mariadb", marks=pytest.mark.postgres),
]


@pytest.fixture
def server_dsns(request):
    """(TEST_POSTGRES_DSN, TEST_MARIADB_DSN) for an engine: a case asks only for its own
    server's, so the SQLite cases need neither."""
    def get(engine: str) -> tuple[str | None, str | None]:
        if engine == "postgresql":
            return request.getfixturevalue("postgres_dsn"), None
        if engine == "mariadb":
            return None, request.getfixturevalue("mariadb_dsn")
        return None, None
    return get


@pytest.mark.parametrize(("variant", "engine"), TEXT_TARGETS)
def test_text_that_is_not_text_is_a_400_naming_the_field(binaries, variant, engine, tmp_path, server_dsns):
    url = database(engine, tmp_path, *server_dsns(engine))
    svc = boot(binaries[variant], engine, url)
    try:
        items = svc.api + ITEMS
        for case, (body, field, problem) in BAD_TEXT.items():
            status, res = post_raw(items, body)
            assert status == 400, (case, status, res)
            assert res["error"]["code"] == "invalid", (case, res)
            assert problem in res["error"].get("fields", {}).get(field, ""), (case, res)
        # So is an idempotency key: keys differing only in invalid bytes must not collide.
        status, res = post_raw(items, b'{"name": "ok"}', {"Idempotency-Key": "k\xff"})
        assert status == 400 and "valid UTF-8" in res["error"]["fields"]["Idempotency-Key"], res
        # The update path validates the same way.
        status, _, created = call("POST", items, {"name": "fine", "description": "tabs\tand\r\nline breaks are text"})
        assert status == 201, created
        status, _, res = call("PUT", f"{items}/{created['id']}", '{"name": "x\\u0000", "version": 1}')
        assert status == 400 and "U+0000" in res["error"]["fields"]["name"], res
        # Every script is text.
        status, _, other = call("POST", items, {"name": "Zoë 名前 🙂", "description": "ünïcödé"})
        assert status == 201 and other["name"] == "Zoë 名前 🙂", other
        assert svc.proc.poll() is None
    finally:
        assert svc.stop() == 0
    assert not [line for line in svc.lines if line.get("level") == "ERROR"], "a refused input was logged as a server error"
    assert count_rows(engine, url, "items") == 2, "a refused input was stored"


# ------------------------------------------------------------------ text input, gRPC
def protobuf_string(field: int, raw: bytes) -> bytes:
    """One length-delimited field on the wire, bytes as given (no UTF-8 check)."""
    length, out = len(raw), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([field << 3 | 2]) + bytes(out) + raw


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_text_that_is_not_text_is_invalid_argument_over_grpc(binaries, engine, tmp_path, server_dsns):
    url = database(engine, tmp_path, *server_dsns(engine))
    svc = boot(binaries["grpc"], engine, url)
    client = GRPCClient(svc.grpc, "item")
    try:
        import grpc

        method = client.service.FindMethodByName("CreateItem")
        response = client.message_factory.GetMessageClass(method.output_type)
        send_raw = client.channel.unary_unary(f"/{client.service.full_name}/CreateItem",
                                              request_serializer=lambda raw: raw, response_deserializer=response.FromString)
        cases = {
            # Strings protobuf itself refuses (invalid UTF-8): sent as raw bytes.
            "invalid UTF-8 bytes": (protobuf_string(1, b"caf\xe9"), "name", "valid UTF-8"),
            "lone surrogate": (protobuf_string(1, b"a\xed\xa0\x80b"), "name", "valid UTF-8"),
            "invalid description": (protobuf_string(1, b"ok") + protobuf_string(2, b"\xff"), "description", "valid UTF-8"),
            # Valid UTF-8 the service refuses.
            "NUL": (protobuf_string(1, b"a\x00b"), "name", "U+0000"),
            "whitespace-only name": (protobuf_string(1, b" \t "), "name", "must not be blank"),
            "control character": (protobuf_string(1, b"ok") + protobuf_string(2, b"bell\x07"), "description", "U+0007"),
        }
        for case, (raw, field, problem) in cases.items():
            with pytest.raises(grpc.RpcError) as err:
                send_raw(raw, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, err.value.code(), err.value.details())
            assert f"{field} " in err.value.details() and problem in err.value.details(), (case, err.value.details())
        # The client library's own messages take the same path.
        assert client.code("CreateItem", name="a\x00b") == "INVALID_ARGUMENT"
        created, _ = client.call("CreateItem", name="fine", description="ünïcödé\n")
        assert created.item.name == "fine"
    finally:
        client.close()
        assert svc.stop() == 0
    assert count_rows(engine, url, "items") == 1


# ------------------------------------------------------------------ idempotency
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), pytest.param("mariadb", marks=pytest.mark.postgres)]


def concurrent_creates(url: str, bodies_and_headers: list[tuple[dict, dict]]) -> list[tuple[int, dict]]:
    """All requests at once (a barrier releases them together)."""
    barrier = threading.Barrier(len(bodies_and_headers))

    def one(args):
        body, headers = args
        barrier.wait(timeout=30)
        status, _, res = call("POST", url, body, headers)
        return status, res

    with ThreadPoolExecutor(len(bodies_and_headers)) as pool:
        return list(pool.map(one, bodies_and_headers))


@pytest.mark.parametrize("engine", ENGINES)
def test_fifty_concurrent_creates_with_one_key_make_one_row_per_subject(binaries, engine, tmp_path, server_dsns):
    url = database(engine, tmp_path, *server_dsns(engine))
    svc = boot(binaries["default"], engine, url, JWT_SECRET=JWT_SECRET)
    try:
        items = svc.api + ITEMS
        alice, bob = token("alice"), token("bob")
        key = "order-" + uuid.uuid4().hex
        body = {"name": "once", "description": "one key"}

        # One subject: one row, every answer names it, exactly one 201.
        results = concurrent_creates(items, [(body, {"Idempotency-Key": key, "Authorization": f"Bearer {alice}"})] * 50)
        statuses = sorted(status for status, _ in results)
        assert set(statuses) <= {200, 201} and statuses.count(201) == 1, statuses
        assert len({res["id"] for _, res in results}) == 1
        assert count_rows(engine, url, "items") == 1

        # Two subjects, the same key, at once: one row each, never the other's item.
        results = concurrent_creates(items, [(body, {"Idempotency-Key": key, "Authorization": f"Bearer {who}"})
                                             for who in (alice, bob) * 25])
        assert all(status in (200, 201) for status, _ in results), results
        ids = {res["id"] for _, res in results}
        assert len(ids) == 2, ids
        assert count_rows(engine, url, "items") == 2
        assert count_rows(engine, url, "idempotency_keys") == 2
    finally:
        assert svc.stop() == 0


EXPIRY_TARGETS = [
    pytest.param("default", "sqlite", id="sqlc-sqlite"),
    pytest.param("default", "postgresql", id="sqlc-postgresql", marks=pytest.mark.postgres),
    pytest.param("default", "mariadb", id="sqlc-mariadb", marks=pytest.mark.postgres),
    pytest.param(LAYER_VARIANTS["gorm"], "mariadb", id="gorm-mariadb", marks=pytest.mark.postgres),
    pytest.param(LAYER_VARIANTS["sqlx"], "postgresql", id="sqlx-postgresql", marks=pytest.mark.postgres),
]


@pytest.mark.parametrize(("variant", "engine"), EXPIRY_TARGETS)
def test_expired_keys_make_new_items_and_are_swept(binaries, variant, engine, tmp_path, server_dsns):
    url = database(engine, tmp_path, *server_dsns(engine))
    svc = boot(binaries[variant], engine, url, IDEMPOTENCY_TTL="1s", IDEMPOTENCY_SWEEP_INTERVAL="300ms")
    try:
        items = svc.api + ITEMS
        body, key = {"name": "expiring"}, {"Idempotency-Key": "k-" + uuid.uuid4().hex}
        status, _, first = call("POST", items, body, key)
        assert status == 201, first
        status, _, again = call("POST", items, body, key)
        assert status == 200 and again["id"] == first["id"], again

        time.sleep(2)  # the record expires; the sweep may or may not have run yet
        status, _, later = call("POST", items, body, key)
        assert status == 201 and later["id"] != first["id"], later
        status, _, replay = call("POST", items, body, key)
        assert status == 200 and replay["id"] == later["id"], replay

        # Nothing reuses the key now: the sweep deletes its record.
        deadline = time.monotonic() + 10
        while count_rows(engine, url, "idempotency_keys") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count_rows(engine, url, "idempotency_keys") == 0
        assert count_rows(engine, url, "items") == 2, "the sweep deletes records, never items"
        swept = [line for line in svc.lines if line.get("msg") == "expired idempotency records deleted"]
        assert swept and all(line["deleted"] >= 1 for line in swept), svc.raw[-20:]
    finally:
        assert svc.stop() == 0
    failures = [line for line in svc.lines if line.get("level") == "ERROR" or line.get("msg") == "deleting expired idempotency records"]
    assert not failures, failures


def test_the_default_ttl_is_the_standard(binaries, tmp_path):
    """IDEMPOTENCY_TTL defaults to the standards' number (the startup log shows it)."""
    from tests.conftest import STANDARDS

    svc = boot(binaries["default"], "sqlite", f"file:{tmp_path}/ttl.db")
    try:
        starting = next(line for line in svc.lines if line.get("msg") == "starting")
    finally:
        assert svc.stop() == 0
    hours = STANDARDS["sizing"]["idempotency_ttl_hours"]
    assert starting["config"]["idempotency_ttl"] == hours * 3600 * 10**9, starting["config"]  # slog's JSON: nanoseconds
