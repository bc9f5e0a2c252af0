"""The test-side OTLP receiver (tests/otlp.py): hand-built exports over OTLP/HTTP (plain and
gzip) and OTLP/gRPC are decoded into the flat span dicts the tracing tests read."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.otlp import OTLPReceiver, describe, otlp  # noqa: F401 (otlp is a fixture)

pytestmark = pytest.mark.fast

TRACE = bytes(range(1, 17))
ROOT_SPAN = bytes.fromhex("1111111111111111")
CHILD_SPAN = bytes.fromhex("2222222222222222")
CALLER_SPAN = bytes.fromhex("00f067aa0ba902b7")


def kv(key: str, value) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=av(value))


def av(value) -> common_pb2.AnyValue:
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return common_pb2.AnyValue(bytes_value=value)
    if isinstance(value, list):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[av(v) for v in value]))
    if isinstance(value, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=[kv(k, v) for k, v in value.items()]))
    return common_pb2.AnyValue(string_value=value)


def export_request(service: str = "svc") -> trace_service_pb2.ExportTraceServiceRequest:
    root = trace_pb2.Span(
        trace_id=TRACE, span_id=ROOT_SPAN, parent_span_id=CALLER_SPAN, name="POST /api/v1/items",
        kind=trace_pb2.Span.SPAN_KIND_SERVER, start_time_unix_nano=1_000, end_time_unix_nano=5_000,
        attributes=[kv("http.request.method", "POST"), kv("http.route", "/api/v1/items"),
                    kv("http.response.status_code", 201), kv("sampled", True), kv("ratio", 0.25),
                    kv("tags", ["a", "b"]), kv("nested", {"k": 1})],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_UNSET),
    )
    child = trace_pb2.Span(
        trace_id=TRACE, span_id=CHILD_SPAN, parent_span_id=ROOT_SPAN, name="INSERT items",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT, start_time_unix_nano=2_000, end_time_unix_nano=3_000,
        attributes=[kv("db.system.name", "sqlite"), kv("db.query.text", "INSERT INTO items VALUES (?)")],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom"),
        events=[trace_pb2.Span.Event(name="exception", attributes=[kv("exception.message", "boom")])],
    )
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource_pb2.Resource(attributes=[kv("service.name", service), kv("deployment.environment", "test")]),
        scope_spans=[trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name="example/scope"),
                                          spans=[root, child])],
    )])


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.read(), res.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def check_decoded(spans: list[dict], service: str, transport: str) -> None:
    assert len(spans) == 2, describe(spans)
    root, child = sorted(spans, key=lambda s: s["start_ns"])
    assert root == {
        "trace_id": TRACE.hex(), "span_id": ROOT_SPAN.hex(), "parent_span_id": CALLER_SPAN.hex(),
        "name": "POST /api/v1/items", "kind": "SERVER",
        "attributes": {"http.request.method": "POST", "http.route": "/api/v1/items",
                       "http.response.status_code": 201, "sampled": True, "ratio": 0.25,
                       "tags": ["a", "b"], "nested": {"k": 1}},
        "resource": {"service.name": service, "deployment.environment": "test"},
        "scope": "example/scope", "status": {"code": "UNSET", "message": ""}, "events": [],
        "start_ns": 1_000, "end_ns": 5_000, "transport": transport,
    }
    assert child["kind"] == "CLIENT" and child["parent_span_id"] == ROOT_SPAN.hex()
    assert child["attributes"] == {"db.system.name": "sqlite", "db.query.text": "INSERT INTO items VALUES (?)"}
    assert child["status"] == {"code": "ERROR", "message": "boom"}
    assert child["events"] == [{"name": "exception", "attributes": {"exception.message": "boom"}}]
    # The tree printer names both, the child under the root.
    text = describe(spans)
    assert text.index("'POST /api/v1/items'") < text.index("'INSERT items'")


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_http_export_is_decoded(otlp, compress):
    body = export_request("http-svc").SerializeToString()
    headers = {"Content-Type": "application/x-protobuf", "Authorization": "Bearer x"}
    if compress:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    status, answer, ctype = post(otlp.traces_endpoint, body, headers)
    assert status == 200 and ctype == "application/x-protobuf"
    trace_service_pb2.ExportTraceServiceResponse.FromString(answer)  # a valid (empty) response
    check_decoded(otlp.wait_for_spans(2, timeout=5), "http-svc", "http")
    [request] = otlp.requests()
    assert request["transport"] == "http" and request["path"] == "/v1/traces" and request["spans"] == 2
    assert request["headers"]["authorization"] == "Bearer x"


def test_grpc_export_is_decoded(otlp):
    assert otlp.grpc_endpoint.startswith("http://127.0.0.1:")
    with grpc.insecure_channel(otlp.grpc_endpoint.removeprefix("http://")) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        res = stub.Export(export_request("grpc-svc"), timeout=10, metadata=[("authorization", "Bearer y")],
                          compression=grpc.Compression.Gzip)
    assert isinstance(res, trace_service_pb2.ExportTraceServiceResponse)
    check_decoded(otlp.wait_for_spans(2, timeout=5), "grpc-svc", "grpc")
    [request] = otlp.requests()
    assert request["transport"] == "grpc" and request["headers"]["authorization"] == "Bearer y"


def test_bad_exports_are_refused_and_recorded(otlp):
    good = export_request().SerializeToString()
    assert post(otlp.traces_endpoint, good, {"Content-Type": "application/json"})[0] == 415
    assert post(otlp.traces_endpoint, b"\xff\xff\xff", {"Content-Type": "application/x-protobuf"})[0] == 400
    assert post(otlp.endpoint + "/v1/metrics", good, {"Content-Type": "application/x-protobuf"})[0] == 404
    assert otlp.spans() == []
    assert [r["status"] for r in otlp.requests()] == [415, 400, 404]


def test_wait_for_fails_with_what_arrived_and_clear_forgets(otlp):
    post(otlp.traces_endpoint, export_request().SerializeToString(), {"Content-Type": "application/x-protobuf"})
    otlp.wait_for_spans(2, timeout=5)
    with pytest.raises(pytest.fail.Exception, match="'INSERT items'"):
        otlp.wait_for(lambda spans: any(s["name"] == "never" for s in spans), timeout=0.3)
    otlp.clear()
    assert otlp.spans() == [] and otlp.requests() == []


def test_context_manager_starts_and_stops():
    with OTLPReceiver() as receiver:
        status, _, _ = post(receiver.traces_endpoint, export_request().SerializeToString(),
                            {"Content-Type": "application/x-protobuf"})
        assert status == 200 and len(receiver.spans()) == 2
        url = receiver.traces_endpoint
    with pytest.raises(OSError):
        urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=2)
