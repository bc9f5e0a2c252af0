"""A real OTLP trace receiver inside the pytest process, for the tracing tests.

It listens on loopback for OTLP/HTTP (POST /v1/traces, application/x-protobuf, plain or gzip)
and OTLP/gRPC (opentelemetry.proto.collector.trace.v1.TraceService/Export), decodes each
export with the opentelemetry-proto messages and keeps the spans as flat dicts:

    {"trace_id": hex, "span_id": hex, "parent_span_id": hex or "", "name": str,
     "kind": "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER" | "UNSPECIFIED",
     "attributes": {key: python value}, "resource": {key: python value},
     "scope": str, "status": {"code": "UNSET" | "OK" | "ERROR", "message": str},
     "start_ns": int, "end_ns": int, "transport": "http" | "grpc"}

Every export request is also recorded (transport, path, lower-cased headers, span count), so
a test can check OTEL_EXPORTER_OTLP_HEADERS.

    with OTLPReceiver() as otlp:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.endpoint        # http/protobuf
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.grpc_endpoint   # with PROTOCOL=grpc
        ...
        spans = otlp.wait_for(lambda spans: any(s["name"] == "x" for s in spans))

or the `otlp` fixture (import it into a test module: `from tests.otlp import otlp`).
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

PROTOBUF = "application/x-protobuf"
TRACES_PATH = "/v1/traces"


def any_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as the Python value it holds (None when empty)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, which)


def attributes(pairs) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def _enum_name(enum, number: int, prefix: str) -> str:
    try:
        return enum.Name(number).removeprefix(prefix)
    except ValueError:
        return str(number)


def flatten(request: trace_service_pb2.ExportTraceServiceRequest, transport: str) -> list[dict[str, Any]]:
    """The spans of one export request as flat dicts (see the module docstring)."""
    out = []
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append({
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": _enum_name(trace_pb2.Span.SpanKind, span.kind, "SPAN_KIND_"),
                    "attributes": attributes(span.attributes),
                    "resource": resource,
                    "scope": ss.scope.name,
                    "status": {
                        "code": _enum_name(trace_pb2.Status.StatusCode, span.status.code, "STATUS_CODE_"),
                        "message": span.status.message,
                    },
                    "events": [{"name": e.name, "attributes": attributes(e.attributes)} for e in span.events],
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "transport": transport,
                })
    return out


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: "OTLPReceiver"):
        self.receiver = receiver

    def Export(self, request, context):  # noqa: N802 (the gRPC method's name)
        headers = {k.lower(): v for k, v in context.invocation_metadata()}
        self.receiver._record("grpc", "/opentelemetry.proto.collector.trace.v1.TraceService/Export", headers, request)
        return trace_service_pb2.ExportTraceServiceResponse()


def _handler(receiver: "OTLPReceiver") -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as exporters expect

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: bytes = b"", ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path.split("?", 1)[0]
            if path != TRACES_PATH:
                receiver._reject("http", path, headers, 404)
                return self._answer(404, b"only /v1/traces is served here\n")
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype != PROTOBUF:
                receiver._reject("http", path, headers, 415)
                return self._answer(415, f"want {PROTOBUF}, got {ctype!r}\n".encode())
            try:
                encoding = headers.get("content-encoding", "").strip().lower()
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                elif encoding not in ("", "identity"):
                    receiver._reject("http", path, headers, 415)
                    return self._answer(415, f"unsupported Content-Encoding {encoding!r}\n".encode())
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
            except Exception as err:  # noqa: BLE001 (any decoding failure is the sender's)
                receiver._reject("http", path, headers, 400)
                return self._answer(400, f"cannot decode the export: {err}\n".encode())
            receiver._record("http", path, headers, request)
            self._answer(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString(), PROTOBUF)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(405, b"POST only\n")

    return Handler


class OTLPReceiver:
    """OTLP/HTTP and OTLP/gRPC trace receiver on 127.0.0.1, ports chosen by the system."""

    def __init__(self, http_port: int = 0, grpc_port: int = 0) -> None:
        """Ports 0 (the default) let the system choose; 4318 and 4317 are OTLP's defaults."""
        self._cond = threading.Condition()
        self._spans: list[dict[str, Any]] = []
        self._requests: list[dict[str, Any]] = []
        self._http = ThreadingHTTPServer(("127.0.0.1", http_port), _handler(self))
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                             name="otlp-http", daemon=True)
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._grpc)
        try:
            self.grpc_port = self._grpc.add_insecure_port(f"127.0.0.1:{grpc_port}")
        except RuntimeError:
            self.grpc_port = 0
        if not self.grpc_port:  # older grpcio answers 0 instead of raising
            self._http.server_close()
            raise OSError(f"cannot listen on 127.0.0.1:{grpc_port} for OTLP/gRPC")
        self.http_port = self._http.server_address[1]
        self._started = False

    # The endpoints to give an exporter (OTEL_EXPORTER_OTLP_ENDPOINT).
    @property
    def endpoint(self) -> str:
        """Base URL for OTLP/HTTP; the exporter appends /v1/traces."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def traces_endpoint(self) -> str:
        """Full URL for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is)."""
        return self.endpoint + TRACES_PATH

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def start(self) -> "OTLPReceiver":
        if not self._started:
            self._http_thread.start()
            self._grpc.start()
            self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._grpc.stop(grace=None)
            self._http.shutdown()
            self._started = False
        self._http.server_close()

    def __enter__(self) -> "OTLPReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Recording.
    def _record(self, transport: str, path: str, headers: dict[str, str], request) -> None:
        spans = flatten(request, transport)
        with self._cond:
            self._requests.append({"transport": transport, "path": path, "headers": headers,
                                   "status": 200, "spans": len(spans)})
            self._spans.extend(spans)
            self._cond.notify_all()

    def _reject(self, transport: str, path: str, headers: dict[str, str], status: int) -> None:
        with self._cond:
            self._requests.append({"transport": transport, "path": path, "headers": headers,
                                   "status": status, "spans": 0})
            self._cond.notify_all()

    # What the tests read.
    def spans(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._spans)

    def requests(self) -> list[dict[str, Any]]:
        """Every export request received: transport, path, headers (lower-cased keys), status, spans."""
        with self._cond:
            return [dict(r) for r in self._requests]

    def clear(self) -> None:
        with self._cond:
            self._spans.clear()
            self._requests.clear()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 10,
                 what: str = "the expected spans") -> list[dict[str, Any]]:
        """Wait until predicate(spans) is truthy and return the spans; fail the test with what
        arrived when it stays false for timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                spans = list(self._spans)
                if predicate(spans):
                    return spans
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        pytest.fail(f"the OTLP receiver did not get {what} within {timeout} s; it got:\n"
                    + describe(spans) + f"\nrequests: {self.requests()}")

    def wait_for_spans(self, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        return self.wait_for(lambda spans: len(spans) >= count, timeout, f"{count} spans")


def describe(spans: list[dict[str, Any]]) -> str:
    """A readable tree of spans (for failure messages)."""
    if not spans:
        return "  (no spans)"
    by_parent: dict[str, list[dict[str, Any]]] = {}
    ids = {s["span_id"] for s in spans}
    for s in spans:
        parent = s["parent_span_id"] if s["parent_span_id"] in ids else ""
        by_parent.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in sorted(by_parent.get(parent, []), key=lambda s: s["start_ns"]):
            lines.append(f"{'  ' * (depth + 1)}{s['kind']} {s['name']!r} trace={s['trace_id']} "
                         f"span={s['span_id']} parent={s['parent_span_id'] or '-'} {s['attributes']}")
            walk(s["span_id"], depth + 1)

    walk("", 0)
    return "\n".join(lines)


@pytest.fixture
def otlp():
    """A running OTLPReceiver, stopped after the test."""
    with OTLPReceiver() as receiver:
        yield receiver
