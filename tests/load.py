"""Load tooling shared by the fault tests: a bounded open-loop HTTP generator, a readiness
poller, a round-robin test proxy that follows readiness, and a sampler of the service's
runtime metrics. Every loop is bounded in count and time; all traffic stays on loopback.

    load = OpenLoop(api, duration=20, writes_per_s=40, reads_per_s=20).start()
    results = load.wait()          # one Result per request, in the order sent
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# The client timeout of every request: far beyond any deadline the tests give the service,
# so a hang shows as a latency, not as a client giving up early.
CLIENT_TIMEOUT_S = 6.0


@dataclass
class Result:
    kind: str  # "write", "read" or "list"
    sent: float  # time.monotonic() when the request was sent
    latency: float
    status: int | None  # None: no answer within the client's timeout, or the connection failed
    retry_after: bool
    created: str = ""  # the ID of a 201
    error: str = ""  # why there was no answer


def spread(counts: dict[str, int]) -> list[str]:
    """One second of ticks: each kind count times, interleaved evenly."""
    ticks = [((k + 0.5) / n, kind) for kind, n in counts.items() if n > 0 for k in range(n)]
    return [kind for _, kind in sorted(ticks)]


class Schedule:
    """Bounded open-loop scheduling: a scheduler thread hands requests of each kind, at fixed
    rates (`spread`) for a fixed time, whatever the answers, to a bounded pool of sender
    threads. Subclasses send one request in `_send(kind, i)` and `record` what came back;
    `wait` returns the records in the order sent (each has a `sent` time)."""

    def __init__(self, rates: dict[str, int], duration: float, senders: int):
        self.duration = duration
        self.plan = spread(rates)
        self.interval = 1.0 / len(self.plan)
        self.count = int(duration * len(self.plan))
        self.records: list = []
        self.acked: list[str] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=senders)
        self._thread = threading.Thread(target=self._schedule, daemon=True)

    def start(self):
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
        raise NotImplementedError

    def target(self) -> str:
        """An acknowledged ID to read, or "" before the first one."""
        with self._lock:
            return random.choice(self.acked) if self.acked else ""

    def record(self, rec, created: str = "") -> None:
        with self._lock:
            self.records.append(rec)
            if created:
                self.acked.append(created)

    def wait(self) -> list:
        self._thread.join(timeout=self.duration + 30)
        self._pool.shutdown(wait=True)
        with self._lock:
            return sorted(self.records, key=lambda r: r.sent)


class OpenLoop(Schedule):
    """A bounded open-loop HTTP generator: writes (creates), reads (get by ID of an
    acknowledged create) and lists, one connection per request. Every request has a client
    timeout; every answer is recorded (`Result`)."""

    def __init__(self, api: str, duration: float, writes_per_s: int, reads_per_s: int, senders: int = 48,
                 lists_per_s: int = 0, timeout: float = CLIENT_TIMEOUT_S, label: str = "outage"):
        super().__init__({"write": writes_per_s, "read": reads_per_s, "list": lists_per_s}, duration, senders)
        self.base = urlsplit(api)
        self.timeout = timeout
        self.label = label

    @property
    def results(self) -> list[Result]:
        return self.records

    def _send(self, kind: str, i: int) -> None:
        target = self.target() if kind == "read" else ""
        if kind == "read" and not target:
            kind = "write"
        if kind == "write":
            method, path, body = "POST", "/api/v1/items", json.dumps({"name": f"{self.label} {i}"})
        elif kind == "read":
            method, path, body = "GET", f"/api/v1/items/{target}", None
        else:
            method, path, body = "GET", "/api/v1/items?limit=20", None
        sent = time.monotonic()
        status, retry_after, created, error = None, False, "", ""
        conn = http.client.HTTPConnection(self.base.hostname, self.base.port, timeout=self.timeout)
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
        self.record(Result(kind, sent, time.monotonic() - sent, status, retry_after, created, error), created)


def get(addr: str, path: str, timeout: float = 5) -> tuple[int | None, bytes]:
    """One GET on a fresh connection to host:port: (status, body), or (None, b"") when it fails."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


class Poller:
    """Calls `sample()` every `every_s` seconds on a thread until stopped, or until limit_s
    has passed: (time.monotonic(), value) pairs. A sample that raises RuntimeError is kept
    in `errors` instead."""

    def __init__(self, every_s: float, limit_s: float):
        self.every = every_s
        self.samples: list[tuple[float, object]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit_s
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def sample(self) -> object:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            t = time.monotonic()
            try:
                self.samples.append((t, self.sample()))
            except RuntimeError as err:
                self.errors.append(str(err))
            self._stop.wait(self.every)

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(timeout=10)
        return list(self.samples)


class ReadinessPoller(Poller):
    """/readyz every 50 ms until stopped (bounded by a deadline): (time, status) pairs."""

    def __init__(self, api: str, limit_s: float):
        super().__init__(0.05, limit_s)
        self.api = urlsplit(api)
        self.start()

    def sample(self) -> int | None:
        return get(self.api.netloc, "/readyz")[0]


HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "content-length"}


class Proxy:
    """A small load balancer for tests: round robin over the backends (host:port) whose
    /readyz answered 200 at the last poll (every poll_every seconds). A request whose
    connection to a backend is refused is sent to the next ready one (it never reached a
    service); a request that reached a backend is never retried: if that backend does not
    answer, the client gets a 502 (counted in failed). Bounded: at most limit_s of polling."""

    def __init__(self, backends: list[str], poll_every: float = 0.05, limit_s: float = 600):
        self.backends = list(backends)
        self.ready = {b: False for b in self.backends}
        self.poll_every = poll_every
        self.served = {b: 0 for b in self.backends}
        self.refused = 0  # connections refused, sent on to another backend
        self.failed: list[str] = []  # requests that reached a backend and got no answer
        self.unrouted = 0  # requests with no ready backend for 5 s
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit_s
        self._pollers = [threading.Thread(target=self._poll, args=(b,), daemon=True) for b in self.backends]
        for t in self._pollers:
            t.start()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._forward(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._serve = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._serve.start()

    def _poll(self, backend: str) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            status, _ = get(backend, "/readyz", timeout=2)
            self.ready[backend] = status == 200
            self._stop.wait(self.poll_every)

    def _pick(self) -> str | None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._lock:
                for _ in range(len(self.backends)):
                    b = self.backends[self._next % len(self.backends)]
                    self._next += 1
                    if self.ready[b]:
                        return b
            time.sleep(0.01)
        return None

    def _forward(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in req.headers.items() if k.lower() not in HOP_BY_HOP}
        for _ in range(10):
            backend = self._pick()
            if backend is None:
                with self._lock:
                    self.unrouted += 1
                return self._reply(req, 503, [("Retry-After", "1")], b"no ready backend")
            host, port = backend.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.connect()
            except ConnectionRefusedError:
                conn.close()
                self.ready[backend] = False  # until its next readiness poll says otherwise
                with self._lock:
                    self.refused += 1
                continue
            try:
                conn.request(req.command, req.path, body=body or None, headers=headers)
                res = conn.getresponse()
                data = res.read()
            except (OSError, http.client.HTTPException) as err:
                with self._lock:
                    self.failed.append(f"{backend} {req.command} {req.path}: {err!r}")
                return self._reply(req, 502, [], b"backend failed")
            finally:
                conn.close()
            with self._lock:
                self.served[backend] += 1
            return self._reply(req, res.status, [(k, v) for k, v in res.getheaders() if k.lower() not in HOP_BY_HOP], data)
        with self._lock:
            self.unrouted += 1
        self._reply(req, 503, [("Retry-After", "1")], b"every backend refused")

    @staticmethod
    def _reply(req: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        req.send_response(status)
        for k, v in headers:
            req.send_header(k, v)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Connection", "close")
        req.end_headers()
        req.wfile.write(body)
        req.close_connection = True

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        for t in self._pollers:
            t.join(timeout=5)


def scrape(metrics_url: str, names: tuple[str, ...]) -> dict[str, float]:
    """The values of unlabelled samples named names from a Prometheus text endpoint."""
    status, body = get(urlsplit(metrics_url).netloc, "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    values: dict[str, float] = {}
    for line in body.decode().splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            values[name] = float(value)
    return values


class MetricsSampler(Poller):
    """Scrapes the named runtime metrics every every_s seconds until stopped (bounded)."""

    def __init__(self, metrics_url: str, names: tuple[str, ...], every_s: float = 3.0, limit_s: float = 600):
        super().__init__(every_s, limit_s)
        self.url, self.names = metrics_url, names
        self.start()

    def sample(self) -> dict[str, float]:
        return scrape(self.url, self.names)
