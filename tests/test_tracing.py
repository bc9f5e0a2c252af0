"""Tracing, end to end: the built binary exports OTLP to a real receiver in the pytest process
(tests/otlp.py), over OTLP/HTTP and OTLP/gRPC, and its logs name the trace.

The contract: tracing is on only when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is
set and OTEL_SDK_DISABLED is not true; the standard OTEL_* variables are honoured; a REST or
gRPC create is one trace (SERVER root, INTERNAL service span, CLIENT database spans); an
incoming traceparent is continued; log lines carry trace_id and span_id; SIGTERM flushes."""

from __future__ import annotations

import os
import re
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LAYER_VARIANTS, STANDARDS, slug_of
from tests.otlp import OTLPReceiver, describe, otlp  # noqa: F401 (otlp is a fixture)
from tests.test_smoke import (  # noqa: F401 (binaries is a fixture)
    GRPCClient, Service, base_env, binaries, call, fresh_database, fresh_mariadb_database,
)

pytestmark = [pytest.mark.go, pytest.mark.slow]

RESOURCE, PLURAL = "item", "items"
SERVICE_OP = "Items"  # the service span's prefix: "<Plural>.Create"
COLLECTION = f"/api/v1/{PLURAL}"
DB_SYSTEM = {"sqlite": {"sqlite"}, "postgresql": {"postgresql"}, "mariadb": {"mysql", "mariadb"}}


@pytest.fixture(autouse=True)
def _no_otel_from_the_outside(monkeypatch):
    """The binary's environment starts from the test process's: no OTEL_* may leak in."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


# ------------------------------------------------------------------ helpers
def traced_env(tmp_path: Path, endpoint: str | None, protocol: str = "http/protobuf", **extra: str) -> dict[str, str]:
    env = base_env(DB_TYPE="sqlite", DATABASE_URL=f"file:{tmp_path}/trace.db", GRPC_ADDR="127.0.0.1:0")
    if endpoint is not None:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                   OTEL_TRACES_SAMPLER="parentbased_always_on", OTEL_BSP_SCHEDULE_DELAY="100")
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


@contextmanager
def running(binary: Path, env: dict[str, str]):
    svc = Service(binary, env)
    try:
        yield svc.wait_listening().wait_ready()
    finally:
        svc.stop()


def stop_cleanly(svc: Service) -> None:
    code = svc.stop()
    assert code == 0, f"exit {code}:\n" + "".join(svc.raw[-40:])


def new_traceparent(sampled: bool = True) -> tuple[str, str, str]:
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}", trace_id, span_id


def in_trace(spans: list[dict], trace_id: str) -> list[dict]:
    return [s for s in spans if s["trace_id"] == trace_id]


def below(spans: list[dict], parent: dict) -> list[dict]:
    """Every descendant of parent among spans (of one trace)."""
    out, frontier = [], {parent["span_id"]}
    while frontier:
        kids = [s for s in spans if s["parent_span_id"] in frontier]
        out += kids
        frontier = {s["span_id"] for s in kids}
    return out


def roots_named(spans: list[dict], name: str, parent: str = "") -> list[dict]:
    return [s for s in spans if s["kind"] == "SERVER" and s["name"] == name and s["parent_span_id"] == parent]


def db_system(span: dict) -> Any:
    return span["attributes"].get("db.system.name", span["attributes"].get("db.system"))


def db_statement(span: dict) -> str:
    return str(span["attributes"].get("db.query.text", span["attributes"].get("db.statement", "")))


def db_spans(spans: list[dict], engine: str) -> list[dict]:
    return [s for s in spans if s["kind"] == "CLIENT" and db_system(s) in DB_SYSTEM[engine] and db_statement(s)]


class Tree:
    """One request's trace: the SERVER root, the service span below it, the database spans below that."""

    def __init__(self, spans: list[dict], root: dict, op: str, engine: str):
        self.root = root
        self.spans = in_trace(spans, root["trace_id"])
        under_root = below(self.spans, root)
        services = [s for s in under_root if s["name"] == f"{SERVICE_OP}.{op}"]
        self.service = services[0] if services else None
        self.db = db_spans(below(self.spans, self.service), engine) if self.service else []

    @property
    def complete(self) -> bool:
        return self.service is not None and bool(self.db)


def wait_tree(otlp: OTLPReceiver, root_name: str, op: str, engine: str = "sqlite", parent: str = "",
              timeout: float = 15) -> Tree:
    """Wait for the trace of one request: a SERVER span root_name (with parent_span_id parent),
    the service span <Plural>.<op> below it and database CLIENT spans below that."""
    def found(spans: list[dict]) -> Tree | None:
        for root in roots_named(spans, root_name, parent):
            tree = Tree(spans, root, op, engine)
            if tree.complete:
                return tree
        return None

    what = (f"a trace with a SERVER span {root_name!r} (parent {parent or 'none'}), the INTERNAL span "
            f"'{SERVICE_OP}.{op}' below it and {engine} CLIENT spans (db.system.name or db.system, "
            f"db.query.text or db.statement) below that")
    spans = otlp.wait_for(lambda spans: found(spans) is not None, timeout, what)
    tree = found(spans)
    assert tree is not None
    return tree


def check_tree(tree: Tree, op: str, engine: str, statement: str | None) -> None:
    spans = tree.spans
    text = describe(spans)
    assert [s for s in spans if s["parent_span_id"] not in {x["span_id"] for x in spans}] == [tree.root], \
        "one trace with one root (the SERVER span), every other span below it:\n" + text
    assert tree.service is not None and tree.service["kind"] == "INTERNAL", text
    assert tree.service["name"] == f"{SERVICE_OP}.{op}", text
    for span in tree.db:
        assert span["kind"] == "CLIENT", text
    if statement:
        assert any(re.search(statement, db_statement(s), re.I) for s in tree.db), \
            f"no database span's statement matches {statement!r}:\n{text}"


def check_logs(svc: Service, request_id: str, tree: Tree) -> None:
    """Every application log line of the request names its trace and a span of it."""
    lines = [line for line in svc.lines if line.get("request_id") == request_id and line.get("log") != "audit"]
    assert lines, f"no log line with request_id {request_id!r}:\n" + "".join(svc.raw[-40:])
    span_ids = {s["span_id"] for s in tree.spans}
    for line in lines:
        assert line.get("trace_id") == tree.root["trace_id"], f"trace_id missing or wrong in {line}"
        assert re.fullmatch(r"[0-9a-f]{16}", str(line.get("span_id", ""))), f"span_id missing or not hex in {line}"
        assert line["span_id"] in span_ids, f"span_id {line['span_id']} is not a span of the trace:\n{describe(tree.spans)}"


def sampler_ratio() -> float:
    """The default sampler's ratio, from the standards data."""
    return float(STANDARDS["tracing"]["sample_ratio"])


# ------------------------------------------------------------------ REST
def test_rest_requests_are_traced_server_service_database(projects, binaries, otlp, tmp_path):
    binary = binaries["default"]
    with running(binary, traced_env(tmp_path, otlp.endpoint)) as svc:
        otlp.clear()
        status, _, created = call("POST", svc.api + COLLECTION, {"name": "traced"},
                                  {"X-Request-ID": "trace-create", "Idempotency-Key": "trace-1"})
        assert status == 201, created
        create = wait_tree(otlp, f"POST {COLLECTION}", "Create")
        check_tree(create, "Create", "sqlite", r"\binsert\b")
        attrs = create.root["attributes"]
        assert attrs.get("http.request.method") == "POST", attrs
        assert attrs.get("http.route") == COLLECTION, attrs
        assert attrs.get("http.response.status_code") == 201, attrs
        resource = create.root["resource"]
        assert resource.get("service.name") == slug_of(projects["default"]), resource
        check_logs(svc, "trace-create", create)

        status, _, _ = call("GET", f"{svc.api}{COLLECTION}/{created['id']}", headers={"X-Request-ID": "trace-get"})
        assert status == 200
        get = wait_tree(otlp, f"GET {COLLECTION}/{{id}}", "Get")
        check_tree(get, "Get", "sqlite", r"\bselect\b")
        assert get.root["trace_id"] != create.root["trace_id"], "each request is its own trace"
        assert get.root["attributes"].get("http.route") == f"{COLLECTION}/{{id}}", get.root["attributes"]
        assert get.root["attributes"].get("http.response.status_code") == 200, get.root["attributes"]
        check_logs(svc, "trace-get", get)
        stop_cleanly(svc)


def test_an_incoming_traceparent_is_continued(binaries, otlp, tmp_path):
    traceparent, trace_id, caller = new_traceparent()
    with running(binaries["default"], traced_env(tmp_path, otlp.endpoint)) as svc:
        status, _, _ = call("POST", svc.api + COLLECTION, {"name": "continued"},
                            {"traceparent": traceparent, "X-Request-ID": "trace-parent"})
        assert status == 201
        tree = wait_tree(otlp, f"POST {COLLECTION}", "Create", parent=caller)
        assert tree.root["trace_id"] == trace_id, describe(tree.spans)
        check_tree(tree, "Create", "sqlite", r"\binsert\b")
        check_logs(svc, "trace-parent", tree)
        stop_cleanly(svc)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mariadb"])
@pytest.mark.parametrize("layer", list(LAYER_VARIANTS))
def test_database_spans_name_the_engine(binaries, otlp, tmp_path, layer, engine, postgres_dsn, mariadb_dsn):
    """Every data layer on every engine: the statements are spans below the service's."""
    if engine == "sqlite":
        dsn = f"file:{tmp_path}/{layer}.db"
    else:
        dsn = fresh_database(postgres_dsn) if engine == "postgresql" else fresh_mariadb_database(mariadb_dsn)
    env = traced_env(tmp_path, otlp.endpoint, DB_TYPE=engine, DATABASE_URL=dsn)
    with running(binaries[LAYER_VARIANTS[layer]], env) as svc:
        status, _, _ = call("POST", svc.api + COLLECTION, {"name": "engine"}, {"X-Request-ID": f"trace-{engine}"})
        assert status == 201
        tree = wait_tree(otlp, f"POST {COLLECTION}", "Create", engine=engine)
        check_tree(tree, "Create", engine, r"\binsert\b")
        check_logs(svc, f"trace-{engine}", tree)
        stop_cleanly(svc)


# ------------------------------------------------------------------ gRPC
def test_grpc_calls_are_traced_and_continue_the_callers_trace(binaries, otlp, tmp_path):
    traceparent, trace_id, caller = new_traceparent()
    with running(binaries["chi-grpc"], traced_env(tmp_path, otlp.endpoint)) as svc:
        client = GRPCClient(svc.grpc, RESOURCE)
        try:
            method = f"{client.service.full_name}/Create{RESOURCE.capitalize()}"
            client.call(f"Create{RESOURCE.capitalize()}", name="traced",
                        metadata=[("x-request-id", "trace-grpc"), ("traceparent", traceparent)])
            tree = wait_tree(otlp, method, "Create", parent=caller)
            assert tree.root["trace_id"] == trace_id, describe(tree.spans)
            check_tree(tree, "Create", "sqlite", r"\binsert\b")
            attrs = tree.root["attributes"]
            assert "grpc" in (attrs.get("rpc.system.name"), attrs.get("rpc.system")), attrs
            check_logs(svc, "trace-grpc", tree)

            # Without a caller's trace: a new trace, rooted at the SERVER span.
            client.call(f"Create{RESOURCE.capitalize()}", name="fresh", metadata=[("x-request-id", "trace-grpc-2")])
            fresh = wait_tree(otlp, method, "Create")
            assert fresh.root["trace_id"] != trace_id
            check_logs(svc, "trace-grpc-2", fresh)
        finally:
            client.close()
        stop_cleanly(svc)


# ------------------------------------------------------------------ exporter settings
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_both_otlp_protocols_carry_the_configured_headers(binaries, otlp, tmp_path, protocol):
    endpoint = otlp.grpc_endpoint if protocol == "grpc" else otlp.endpoint
    env = traced_env(tmp_path, endpoint, protocol, OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer x,x-tenant=t1")
    with running(binaries["default"], env) as svc:
        assert call("POST", svc.api + COLLECTION, {"name": protocol})[0] == 201
        tree = wait_tree(otlp, f"POST {COLLECTION}", "Create")
        check_tree(tree, "Create", "sqlite", None)
        stop_cleanly(svc)
    transport = "grpc" if protocol == "grpc" else "http"
    requests = otlp.requests()
    assert requests and all(r["transport"] == transport and r["status"] == 200 for r in requests), requests
    for r in requests:
        assert r["headers"].get("authorization") == "Bearer x", r["headers"]
        assert r["headers"].get("x-tenant") == "t1", r["headers"]


def test_the_traces_endpoint_alone_turns_tracing_on(binaries, otlp, tmp_path):
    env = traced_env(tmp_path, None, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp.traces_endpoint,
                     OTEL_TRACES_SAMPLER="parentbased_always_on", OTEL_BSP_SCHEDULE_DELAY="100")
    with running(binaries["default"], env) as svc:
        assert call("POST", svc.api + COLLECTION, {"name": "signal endpoint"})[0] == 201
        wait_tree(otlp, f"POST {COLLECTION}", "Create")
        stop_cleanly(svc)
    assert {r["path"] for r in otlp.requests()} == {"/v1/traces"}


def test_service_name_and_resource_attributes_are_honoured(binaries, otlp, tmp_path):
    env = traced_env(tmp_path, otlp.endpoint, OTEL_SERVICE_NAME="orders-edge",
                     OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=staging,team.name=platform")
    with running(binaries["default"], env) as svc:
        assert call("POST", svc.api + COLLECTION, {"name": "resource"})[0] == 201
        tree = wait_tree(otlp, f"POST {COLLECTION}", "Create")
        stop_cleanly(svc)
    for span in tree.spans:
        resource = span["resource"]
        assert resource.get("service.name") == "orders-edge", resource
        assert resource.get("deployment.environment.name") == "staging", resource
        assert resource.get("team.name") == "platform", resource


def test_sigterm_flushes_spans_a_long_batch_delay_still_holds(binaries, otlp, tmp_path):
    env = traced_env(tmp_path, otlp.endpoint, OTEL_BSP_SCHEDULE_DELAY="60000")
    svc = Service(binaries["default"], env)
    try:
        svc.wait_listening().wait_ready()
        otlp.clear()
        assert call("POST", svc.api + COLLECTION, {"name": "flushed"}, {"X-Request-ID": "trace-flush"})[0] == 201
        time.sleep(0.2)
        assert not roots_named(otlp.spans(), f"POST {COLLECTION}"), "exported before the 60 s batch delay"
    finally:
        stop_cleanly(svc)
    # The process has exited: what it flushed is here already.
    tree = wait_tree(otlp, f"POST {COLLECTION}", "Create", timeout=2)
    check_tree(tree, "Create", "sqlite", r"\binsert\b")
    check_logs(svc, "trace-flush", tree)


# ------------------------------------------------------------------ off
OTEL_NOISE = re.compile(r"otel|opentelemetry|trac|export", re.I)


def quiet_about_tracing(svc: Service) -> None:
    for line in svc.lines:
        level = str(line.get("level", "")).upper()
        if level.startswith(("WARN", "ERROR")):
            assert not OTEL_NOISE.search(str(line)), f"a {level} line about tracing while it is off: {line}"
    for raw in svc.raw:
        if not raw.lstrip().startswith("{"):
            assert not OTEL_NOISE.search(raw), f"a non-JSON line about tracing while it is off: {raw!r}"


def exercise_briefly(api: str) -> None:
    status, _, created = call("POST", api + COLLECTION, {"name": "untraced"}, {"traceparent": new_traceparent()[0]})
    assert status == 201, created
    assert call("GET", f"{api}{COLLECTION}/{created['id']}")[0] == 200
    assert call("GET", api + COLLECTION)[0] == 200


def test_without_an_endpoint_nothing_is_exported_and_nothing_complains(binaries, tmp_path):
    """No endpoint: no exporter. A receiver listens on OTLP's default ports where it can, to
    catch an exporter that falls back to them."""
    try:
        receiver = OTLPReceiver(4318, 4317)
    except OSError:
        receiver = OTLPReceiver()
    with receiver:
        with running(binaries["default"], traced_env(tmp_path, None)) as svc:
            exercise_briefly(svc.api)
            stop_cleanly(svc)
        time.sleep(0.5)
        assert receiver.requests() == [], receiver.requests()
    quiet_about_tracing(svc)


def test_sdk_disabled_wins_over_an_endpoint(binaries, otlp, tmp_path):
    env = traced_env(tmp_path, otlp.endpoint, OTEL_SDK_DISABLED="true")
    with running(binaries["default"], env) as svc:
        exercise_briefly(svc.api)
        stop_cleanly(svc)
    time.sleep(0.5)
    assert otlp.requests() == [], otlp.requests()
    quiet_about_tracing(svc)


# ------------------------------------------------------------------ sampling
def test_an_explicit_sampler_is_honoured(binaries, otlp, tmp_path):
    env = traced_env(tmp_path, otlp.endpoint, OTEL_TRACES_SAMPLER="always_off")
    with running(binaries["default"], env) as svc:
        exercise_briefly(svc.api)  # a sampled caller's trace too: always_off ignores parents
        stop_cleanly(svc)
    assert otlp.spans() == [], describe(otlp.spans())

    otlp.clear()
    env = traced_env(tmp_path, otlp.endpoint, OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="1.0")
    with running(binaries["default"], env) as svc:
        exercise_briefly(svc.api)
        stop_cleanly(svc)
    assert roots_named(otlp.spans(), f"GET {COLLECTION}"), describe(otlp.spans())


def test_the_default_sampler_follows_the_parent_and_samples_the_standard_ratio(binaries, otlp, tmp_path):
    ratio = sampler_ratio()
    assert 0 < ratio <= 1, ratio
    env = traced_env(tmp_path, otlp.endpoint)
    del env["OTEL_TRACES_SAMPLER"]
    n = 200
    with running(binaries["default"], env) as svc:
        otlp.clear()
        sampled, sampled_trace, _ = new_traceparent(sampled=True)
        unsampled, unsampled_trace, _ = new_traceparent(sampled=False)
        assert call("GET", svc.api + COLLECTION, headers={"traceparent": sampled})[0] == 200
        assert call("GET", svc.api + COLLECTION, headers={"traceparent": unsampled})[0] == 200
        for _ in range(n):
            assert call("GET", svc.api + COLLECTION)[0] == 200
        stop_cleanly(svc)
    spans = otlp.spans()
    assert in_trace(spans, sampled_trace), "a sampled caller's trace is always kept (parent-based)"
    assert not in_trace(spans, unsampled_trace), "an unsampled caller's trace is never kept (parent-based)"
    roots = roots_named(spans, f"GET {COLLECTION}")
    kept = len({s["trace_id"] for s in roots})
    mean, sd = n * ratio, (n * ratio * (1 - ratio)) ** 0.5
    assert mean - 5 * sd - 1 <= kept <= mean + 5 * sd + 1, f"{kept} of {n} new traces kept, want about {mean:.0f} (ratio {ratio})"
