"""Attack the built service from outside: authentication that fails closed (HS256, JWKS
with rotation, read scopes), gRPC interceptors, hardening headers, CORS, 405 Allow, the
audit stream, rate limits behind trusted proxies and slow request bodies."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests import jwt_helpers as jwt
from tests.conftest import go_env
from tests.test_smoke import GRPCClient, Service, base_env, binaries, binary, call  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.go, pytest.mark.slow]

ITEMS = "/api/v1/items"
WRITE, READ = "items:write", "items:read"


def bearer(token: str, scheme: str = "Bearer") -> dict:
    return {"Authorization": f"{scheme} {token}"}


def start(binary: Path, tmp_path: Path, **env: str) -> Service:
    env.setdefault("DB_TYPE", "sqlite")
    env.setdefault("DATABASE_URL", f"file:{tmp_path}/sec.db")
    return Service(binary, base_env(**env)).wait_listening().wait_ready()


@pytest.mark.parametrize("variant", ["default", "grpc"])
def test_production_refuses_to_start_without_authentication(binaries, variant, tmp_path):
    import subprocess

    for app_env in (None, "production", "staging"):
        env = base_env(DB_TYPE="sqlite", DATABASE_URL=f"file:{tmp_path}/x.db", GRPC_ADDR="127.0.0.1:0")
        env.pop("APP_ENV")
        if app_env:
            env["APP_ENV"] = app_env
        proc = subprocess.run([str(binaries[variant])], env=go_env(**env), capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0, proc.stdout
        assert "authentication is required" in proc.stdout + proc.stderr
    # With a secret, production starts.
    svc = Service(binaries[variant], base_env(APP_ENV="production", JWT_SECRET=jwt.SECRET, DB_TYPE="sqlite",
                                              DATABASE_URL=f"file:{tmp_path}/y.db", GRPC_ADDR="127.0.0.1:0"))
    try:
        svc.wait_listening().wait_ready()
        if variant == "grpc":  # reflection is off outside development unless asked for
            import grpc
            from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

            with grpc.insecure_channel(svc.grpc) as channel:
                with pytest.raises(grpc.RpcError) as err:
                    list(ProtoReflectionDescriptorDatabase(channel).get_services())
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        assert svc.stop() == 0


def test_hs256_scopes_and_the_bearer_scheme(binary, tmp_path):
    svc = start(binary, tmp_path, APP_ENV="production", JWT_SECRET=jwt.SECRET)
    try:
        api = svc.api + ITEMS
        body = {"name": "a"}
        assert call("POST", api, body)[0] == 401
        status, headers, err = call("POST", api, body, bearer("garbage"))
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer") and err["error"]["code"] == "unauthorized"
        assert call("POST", api, body, bearer(jwt.hs256(jwt.claims("a", WRITE, ttl=-60))))[0] == 401
        assert call("POST", api, body, bearer(jwt.hs256(jwt.claims("a", WRITE), secret="x" * 32)))[0] == 401
        assert call("POST", api, body, bearer(jwt.hs256(jwt.claims("a", READ))))[0] == 403
        for scheme in ("Bearer", "bearer", "BEARER"):
            assert call("POST", api, body, bearer(jwt.hs256(jwt.claims("a", WRITE)), scheme))[0] == 201, scheme
        assert call("GET", api)[0] == 200  # reads open by default
    finally:
        assert svc.stop() == 0


def test_reads_can_be_protected(binary, tmp_path):
    svc = start(binary, tmp_path, APP_ENV="production", JWT_SECRET=jwt.SECRET, AUTH_PROTECT_READS="true")
    try:
        api = svc.api + ITEMS
        assert call("GET", api)[0] == 401
        assert call("GET", api, headers=bearer(jwt.hs256(jwt.claims("a", WRITE))))[0] == 403
        assert call("GET", api, headers=bearer(jwt.hs256(jwt.claims("a", READ))))[0] == 200
        assert call("GET", svc.api + "/readyz")[0] == 200  # probes need no token
    finally:
        assert svc.stop() == 0


def test_jwks_keys_rotate_without_a_restart(binary, tmp_path):
    idp = jwt.JWKSServer()
    old, new = jwt.new_rsa(), jwt.new_ec()
    idp.set(jwt.jwk(old, "2026-old"))
    svc = start(binary, tmp_path, APP_ENV="production", JWT_JWKS_URL=idp.url, JWT_JWKS_REFRESH="1s", JWT_ISSUER="https://idp")
    try:
        api = svc.api + ITEMS
        rs = jwt.rs256(old, "2026-old", jwt.claims("svc-a", WRITE, iss="https://idp"))
        assert call("POST", api, {"name": "rs"}, bearer(rs))[0] == 201
        assert call("POST", api, {"name": "rs"}, bearer(jwt.rs256(old, "2026-old", jwt.claims("a", WRITE, iss="other"))))[0] == 401
        # HS256 is not accepted without JWT_SECRET, whatever it is signed with.
        assert call("POST", api, {"name": "hs"}, bearer(jwt.hs256(jwt.claims("a", WRITE, iss="https://idp"))))[0] == 401
        # The identity provider rotates to a new EC key and drops the old one.
        idp.set(jwt.jwk(new, "2026-new"))
        es = jwt.es256(new, "2026-new", jwt.claims("svc-b", WRITE, iss="https://idp"))
        assert call("POST", api, {"name": "es"}, bearer(es))[0] == 201
        deadline = time.monotonic() + 10
        while call("POST", api, {"name": "rs"}, bearer(rs))[0] != 401:
            assert time.monotonic() < deadline, "a key dropped from the JWKS still verifies tokens"
            time.sleep(0.2)
        # Tokens naming keys that never existed are refused at once (no waiting on refreshes).
        t0 = time.monotonic()
        for i in range(5):
            forged = jwt.rs256(jwt.new_rsa(), f"made-up-{i}", jwt.claims("x", WRITE, iss="https://idp"))
            assert call("POST", api, {"name": "x"}, bearer(forged))[0] == 401
        assert time.monotonic() - t0 < 5
    finally:
        assert svc.stop() == 0
        idp.close()


def test_grpc_interceptors_authenticate_limit_and_audit(binaries, tmp_path):
    import grpc

    audit = tmp_path / "audit.log"
    svc = start(binaries["grpc"], tmp_path, APP_ENV="production", JWT_SECRET=jwt.SECRET, GRPC_ADDR="127.0.0.1:0",
                GRPC_REFLECTION="true", AUDIT_LOG=str(audit), RATE_LIMIT_RPS="1", RATE_LIMIT_BURST="3")
    client = GRPCClient(svc.grpc, "item")
    try:
        def code(method, token=None, **fields):
            md = [("authorization", f"bearer {token}")] if token else []
            try:
                client.call(method, metadata=md, **fields)
            except grpc.RpcError as err:
                return err.code().name, dict(err.trailing_metadata() or ()), dict(err.initial_metadata() or ())
            return "OK", {}, {}

        assert code("CreateItem", name="a")[0] == "UNAUTHENTICATED"
        assert code("CreateItem", "nonsense", name="a")[0] == "UNAUTHENTICATED"
        assert code("CreateItem", jwt.hs256(jwt.claims("bob", READ)), name="a")[0] == "PERMISSION_DENIED"
        assert code("CreateItem", jwt.hs256(jwt.claims("alice", WRITE)), name="a")[0] == "OK"
        # alice spent 1 of her 3; an anonymous reader has its own bucket, by address.
        alice = jwt.hs256(jwt.claims("alice", READ))
        assert [code("ListItems", alice)[0] for _ in range(2)] == ["OK", "OK"]
        limited, trailers, headers = code("ListItems", alice)
        assert limited == "RESOURCE_EXHAUSTED"
        assert "grpc-status-details-bin" in trailers and int(headers["retry-after"]) >= 1
        assert code("ListItems")[0] == "OK"
    finally:
        client.close()
        assert svc.stop() == 0
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["subject"], r["outcome"], r["status"]) for r in records] == [
        ("anonymous", "denied", "Unauthenticated"), ("anonymous", "denied", "Unauthenticated"),
        ("anonymous", "denied", "PermissionDenied"), ("alice", "success", "OK")]
    assert all(r["transport"] == "grpc" and r["request_id"] and r["action"] == "items.create" for r in records)


def test_hardening_headers_cors_and_allow(binary, tmp_path):
    svc = start(binary, tmp_path, CORS_ALLOWED_ORIGINS="https://app.example.com,https://admin.example.com")
    try:
        api = svc.api + ITEMS
        for status, headers, _ in (call("GET", api), call("GET", api + "/not-a-uuid"), call("GET", svc.api + "/nope")):
            assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
            assert headers["Content-Security-Policy"].startswith("default-src 'none'")
            assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
            assert "Strict-Transport-Security" not in headers  # plain HTTP
        status, headers, body = call("PATCH", api)
        assert status == 405 and headers["Allow"] == "GET, POST" and body["error"]["code"] == "method_not_allowed"
        pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
               "Access-Control-Request-Headers": "authorization,if-match"}
        status, headers, _ = call("OPTIONS", api + "/x", headers=pre)
        assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert "PUT" in headers["Access-Control-Allow-Methods"]
        status, headers, _ = call("OPTIONS", api, headers={**pre, "Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in headers
    finally:
        assert svc.stop() == 0


def test_cors_wildcard_with_credentials_is_refused(binary, tmp_path):
    import subprocess

    env = base_env(DB_TYPE="sqlite", DATABASE_URL=f"file:{tmp_path}/x.db", CORS_ALLOWED_ORIGINS="*", CORS_ALLOW_CREDENTIALS="true")
    proc = subprocess.run([str(binary)], env=go_env(**env), capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "CORS_ALLOW_CREDENTIALS cannot be used with CORS_ALLOWED_ORIGINS=*" in proc.stdout + proc.stderr


def test_audit_stream_is_separate_and_holds_no_secrets(binary, tmp_path):
    audit = tmp_path / "audit.log"
    svc = start(binary, tmp_path, APP_ENV="production", JWT_SECRET=jwt.SECRET, AUDIT_LOG=str(audit))
    token = jwt.hs256(jwt.claims("alice", WRITE))
    try:
        api = svc.api + ITEMS
        status, headers, item = call("POST", api, {"name": "top-secret-name"}, {**bearer(token), "X-Request-ID": "audit-1"})
        assert status == 201
        assert call("PUT", f"{api}/{item['id']}", {"name": "b", "version": 1}, bearer(token))[0] == 200
        assert call("DELETE", f"{api}/{item['id']}", headers=bearer(jwt.hs256(jwt.claims("mallory", READ))))[0] == 403
        assert call("DELETE", f"{api}/{item['id']}", headers=bearer(token))[0] == 204
        assert call("GET", api)[0] == 200
    finally:
        assert svc.stop() == 0
    text = audit.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["action"], r["subject"], r["outcome"], r["status"]) for r in records] == [
        ("items.create", "alice", "success", "201"), ("items.update", "alice", "success", "200"),
        ("items.delete", "anonymous", "denied", "403"), ("items.delete", "alice", "success", "204")]
    assert records[0]["request_id"] == "audit-1" and all(r["resource"] == f"items/{item['id']}" for r in records if r["outcome"] == "success")
    assert "top-secret-name" not in text and token not in text and jwt.SECRET not in text
    assert not any(line.get("msg") == "audit" for line in svc.lines)  # not in the application log


def test_rate_limit_keys_behind_trusted_proxies(binary, tmp_path):
    svc = start(binary, tmp_path, RATE_LIMIT_RPS="0.01", RATE_LIMIT_BURST="1", TRUSTED_PROXIES="127.0.0.0/8")
    try:
        api = svc.api + ITEMS
        # Behind the (trusted) ingress on loopback, each forwarded client has its own bucket.
        assert call("GET", api, headers={"X-Forwarded-For": "198.51.100.1"})[0] == 200
        assert call("GET", api, headers={"X-Forwarded-For": "198.51.100.2"})[0] == 200
        status, headers, _ = call("GET", api, headers={"X-Forwarded-For": "198.51.100.1"})
        assert status == 429 and int(headers["Retry-After"]) >= 1
        # A client cannot pick a bucket by writing its own header before the proxy's entry.
        assert call("GET", api, headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.1"})[0] == 429
    finally:
        assert svc.stop() == 0
    untrusted = start(binary, tmp_path, RATE_LIMIT_RPS="0.01", RATE_LIMIT_BURST="1", DATABASE_URL=f"file:{tmp_path}/u.db")
    try:
        api = untrusted.api + ITEMS
        assert call("GET", api, headers={"X-Forwarded-For": "198.51.100.1"})[0] == 200
        assert call("GET", api, headers={"X-Forwarded-For": "198.51.100.2"})[0] == 429  # the header is ignored
    finally:
        assert untrusted.stop() == 0


def raw_post(base: str, parts: list[bytes], pause: float) -> int:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    body = b"".join(parts)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST " + ITEMS.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause)
            try:
                s.sendall(part)
            except OSError:
                break
        return int(s.makefile("rb").readline().split()[1])


def test_slow_bodies_get_their_own_limit(binary, tmp_path):
    svc = start(binary, tmp_path, REQUEST_TIMEOUT="250ms", HTTP_BODY_READ_TIMEOUT="1s")
    try:
        # A body in two parts 0.4 s apart: slower than the request deadline, inside the body limit.
        assert raw_post(svc.api, [b'{"name":', b'"slow"}'], 0.4) == 201
        # Slower than the body limit: 408, never a 503 blaming the database.
        assert raw_post(svc.api, [b'{"name":', b'"late"}'], 1.5) == 408
    finally:
        assert svc.stop() == 0
