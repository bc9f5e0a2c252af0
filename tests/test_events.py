"""Events (issue 14, step 1): the transactional outbox and its relay to NATS JetStream, on
the built binary, from outside. A private nats-server with JetStream (tests/servers.py)
receives the events; the test reads the stream back with a NATS client (nats-py).

- 200 creates, then updates and deletes of some of them: exactly one event per change
  arrives, each resource's in version order, deduplicated by event ID (Nats-Msg-Id).
- The broker stopped for 10 s while creates go on: every create answers 201, the backlog
  metric rises, and once the broker is back every event arrives.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import PAIRWISE_VARIANTS, layer_of, run, slug_of, unavailable
from tests.servers import NatsServer
from tests.test_smoke import Service, base_env, binaries, call, fresh_database  # noqa: F401  (binaries is a fixture)

pytestmark = [pytest.mark.go, pytest.mark.slow]


def events_variant(layer: str) -> str:
    """A variant with events on that data layer and all four engines: the events variant
    (sqlc), else a row of the pairwise array (already built by the toolchain tests)."""
    if layer == "sqlc":
        return "events"
    for name, data in PAIRWISE_VARIANTS.items():
        if data.get("events") == "nats" and layer_of(name) == layer and len(data.get("databases", [])) == 4:
            return name
    pytest.fail(f"no pairwise row has events on {layer} over all four engines: add a variant")


@pytest.mark.postgres
@pytest.mark.parametrize("layer", ["sqlc", "gorm", "sqlx"])
def test_the_outbox_contract_on_every_engine(projects, layer, postgres_dsn, mariadb_dsn):
    """Each data layer x each engine, on the real PostgreSQL and MariaDB servers and SQLite:
    create, update and delete write their events in their transactions, failed changes none,
    a resource's events are claimed in version order, published ones are cleaned up."""
    proc = run(["go", "test", "-count=1", "-v", "-run", "TestContract", "./internal/store/"],
               projects[events_variant(layer)], TEST_POSTGRES_DSN=postgres_dsn, TEST_MARIADB_DSN=mariadb_dsn)
    assert "SKIP" not in proc.stdout, proc.stdout
    for engine in ("postgresql", "mysql", "mariadb", "sqlite"):
        case = "each_change_writes_its_event_in_its_transaction,_a_failed_change_none"
        assert f"--- PASS: TestContract/{engine}/{case} " in proc.stdout, (layer, engine)

VARIANT = "events"
CREATES = 200
RELAY_ENV = {  # quick polling and a short backoff cap, so the test waits little
    "EVENTS_RELAY_POLL_INTERVAL": "50ms", "EVENTS_RELAY_BACKOFF_CAP": "1s", "EVENTS_METRICS_INTERVAL": "200ms",
    # Latency is not what this test measures: a loaded 2-core machine gets time.
    "REQUEST_TIMEOUT": "2s", "HTTP_WRITE_TIMEOUT": "3s", "DB_STATEMENT_TIMEOUT": "2s",
}


def nats_client():
    try:
        import nats  # noqa: F401
    except ImportError:
        unavailable("the NATS client for Python is not installed (pip install -e '.[test]')")
    import nats

    return nats


def stream_messages(url: str, stream: str) -> list[dict]:
    """Every message of the stream, in stream order: subject, headers and the event."""
    nats = nats_client()

    async def read() -> list[dict]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                return []
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append({"subject": msg.subject, "headers": dict(msg.headers or {}), "event": json.loads(msg.data)})
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def wait_for_messages(url: str, stream: str, want: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    got: list[dict] = []
    while time.monotonic() < deadline:
        got = stream_messages(url, stream)
        if len(got) >= want:
            break
        time.sleep(0.25)
    assert len(got) == want, f"{len(got)} events in the stream, want {want}"
    time.sleep(1)  # nothing more arrives: no duplicates published late
    got = stream_messages(url, stream)
    assert len(got) == want, f"{len(got)} events in the stream after a second, want {want}"
    return got


def metric(svc: Service, name: str) -> float:
    with urllib.request.urlopen(svc.metrics + "/metrics", timeout=10) as res:
        text = res.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m[1])


def check_events(messages: list[dict], slug: str) -> dict[str, list[int]]:
    """Each message: the subject of its type, Nats-Msg-Id = event ID, one message per ID;
    returns each resource's versions in stream order."""
    ids = [m["event"]["id"] for m in messages]
    assert len(set(ids)) == len(ids), "an event arrived twice"
    versions: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        e = m["event"]
        assert m["subject"] == f"{slug}.{e['type']}"
        assert m["headers"].get("Nats-Msg-Id") == e["id"]
        assert e["type"] in ("item.created", "item.updated", "item.deleted") and e["time"] and e["data"]
        versions[e["resource_id"]].append(e["version"])
    return versions


def start(binary, tmp_path, engine: str, broker: NatsServer, postgres_dsn: str | None) -> Service:
    url = f"file:{tmp_path}/events.db" if engine == "sqlite" else fresh_database(postgres_dsn)
    svc = Service(binary, base_env(DB_TYPE=engine, DATABASE_URL=url, EVENTS_BROKER_URL=broker.url, **RELAY_ENV))
    return svc.wait_listening().wait_ready()


def create(api: str, name: str) -> str:
    status, _, body = call("POST", api + "/api/v1/items", {"name": name})
    assert status == 201, (status, body)
    return body["id"]


@pytest.fixture
def broker():
    try:
        server = NatsServer()
    except FileNotFoundError as err:
        unavailable(str(err))
    with server:
        yield server


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_every_change_is_published_once_in_order_per_resource(binaries, projects, broker, engine, request, tmp_path):
    dsn = request.getfixturevalue("postgres_dsn") if engine == "postgresql" else None
    slug = slug_of(projects[VARIANT])
    stream = slug.upper().replace("-", "_") + "_EVENTS"
    svc = start(binaries[VARIANT], tmp_path, engine, broker, dsn)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            ids = list(pool.map(lambda i: create(svc.api, f"event {i}"), range(CREATES)))
        # Some resources change again: two updates each, and half of them are deleted.
        changed, deleted = ids[:20], ids[:10]
        for item_id in changed:
            for version in (1, 2):
                status, _, body = call("PUT", f"{svc.api}/api/v1/items/{item_id}", {"name": f"v{version + 1}"},
                                       {"If-Match": f'"{version}"'})
                assert status == 200, body
        for item_id in deleted:
            assert call("DELETE", f"{svc.api}/api/v1/items/{item_id}")[0] == 204
        want = CREATES + 2 * len(changed) + len(deleted)
        messages = wait_for_messages(broker.url, stream, want)
        versions = check_events(messages, slug)
        assert set(versions) == set(ids)
        for item_id, seen in versions.items():
            expected = [1, 2, 3, 4] if item_id in deleted else [1, 2, 3] if item_id in changed else [1]
            assert seen == expected, (item_id, seen)
        assert metric(svc, "events_published_total") == want
        deadline = time.monotonic() + 5
        while metric(svc, "outbox_backlog_events") != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert metric(svc, "outbox_backlog_events") == 0
        assert metric(svc, "events_publish_failures_total") == 0
    finally:
        assert svc.stop() == 0


OUTAGE_S = 10.0
WRITES_PER_S = 10


def test_broker_outage_delays_events_never_requests(binaries, projects, broker, tmp_path):
    """The broker stops for 10 s while creates go on: each create answers 201 (readiness
    stays 200), the backlog metric rises, and after the broker returns every event arrives."""
    slug = slug_of(projects[VARIANT])
    stream = slug.upper().replace("-", "_") + "_EVENTS"
    svc = start(binaries[VARIANT], tmp_path, "sqlite", broker, None)
    try:
        before = [create(svc.api, f"before {i}") for i in range(20)]
        wait_for_messages(broker.url, stream, len(before))
        broker.stop()
        during, backlog = [], []
        t0 = time.monotonic()
        while time.monotonic() - t0 < OUTAGE_S:
            during.append(create(svc.api, f"during {len(during)}"))
            assert call("GET", svc.api + "/readyz")[0] == 200
            backlog.append(metric(svc, "outbox_backlog_events"))
            time.sleep(1 / WRITES_PER_S)
        assert max(backlog) >= len(during) * 0.8, f"backlog never rose: {backlog}"
        assert metric(svc, "outbox_oldest_pending_age_seconds") > 0
        broker.start()
        t1 = time.monotonic()
        messages = wait_for_messages(broker.url, stream, len(before) + len(during))
        print(f"\nbroker outage {OUTAGE_S:g} s: {len(during)} creates, every one 201; backlog peaked at {max(backlog):g}; "
              f"all delivered {time.monotonic() - t1 - 1:.1f} s after the broker returned")
        versions = check_events(messages, slug)
        assert set(versions) == set(before + during)
        assert metric(svc, "events_publish_retries_total") > 0
    finally:
        assert svc.stop() == 0
