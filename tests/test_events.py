"""Events (issue 14): the transactional outbox, its relay and the example consumer, on the
built binary, from outside, on each broker: a private nats-server with JetStream, a
private redis-server, a private RabbitMQ node and a private Apache Kafka broker
(tests/servers.py); tests/brokers.py reads the stream (on RabbitMQ, a queue of the tests
bound for every event; on Kafka, the topic) back with each broker's Python client.

- 200 creates, then updates and deletes of some of them: exactly one event per change
  arrives, each resource's in version order, deduplicated by event ID (Nats-Msg-Id).
- The broker stopped for 10 s while creates go on: every create answers 201, the backlog
  metric rises, and once the broker is back every event arrives.

The example consumer (issue 14, step 2) reads the same stream back into the service:
- every event is processed once (the activity table counts each resource's changes), and
  the same events published again are skipped as duplicates (the inbox);
- poison messages become dead letters: at once when they do not decode, after the last
  attempt when their effect keeps failing; the good events around them are processed;
- SIGTERM in the middle of a backlog: the consumer stops fetching, finishes and acks what
  it holds, acks nothing unprocessed, and the next start processes the rest exactly once.
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import subprocess
import time
import uuid
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import brokers
from tests.brokers import Broker
from tests.conftest import PAIRWISE_VARIANTS, layer_of, run, slug_of
from tests.test_smoke import Service, base_env, binaries, call, fresh_database  # noqa: F401  (binaries is a fixture)

pytestmark = [pytest.mark.go, pytest.mark.slow]


def events_variant(layer: str) -> str:
    """A variant with events (any broker: the outbox and inbox are the store's) on that data
    layer and all four engines: the events variant (sqlc), else a row of the pairwise array
    (already built by the toolchain tests)."""
    if layer == "sqlc":
        return "events"
    for name, data in PAIRWISE_VARIANTS.items():
        if data.get("events", "none") != "none" and layer_of(name) == layer and len(data.get("databases", [])) == 4:
            return name
    pytest.fail(f"no pairwise row has events on {layer} over all four engines: add a variant")


@pytest.mark.postgres
@pytest.mark.parametrize("layer", ["sqlc", "gorm", "sqlx"])
def test_the_outbox_contract_on_every_engine(projects, layer, postgres_dsn, mariadb_dsn):
    """Each data layer x each engine, on the real PostgreSQL and MariaDB servers and SQLite:
    create, update and delete write their events in their transactions, failed changes none,
    a resource's events are claimed in version order, published ones are cleaned up; the
    inbox runs an event's effect once per consumer, a failed effect leaves no record, dead
    letters are stored once, processed records are cleaned up."""
    proc = run(["go", "test", "-count=1", "-v", "-run", "TestContract", "./internal/store/"],
               projects[events_variant(layer)], TEST_POSTGRES_DSN=postgres_dsn, TEST_MARIADB_DSN=mariadb_dsn)
    assert "SKIP" not in proc.stdout, proc.stdout
    for engine in ("postgresql", "mysql", "mariadb", "sqlite"):
        for case in ("each_change_writes_its_event_in_its_transaction,_a_failed_change_none",
                     "the_inbox_runs_an_event's_effect_once,_a_failed_effect_not_at_all"):
            assert f"--- PASS: TestContract/{engine}/{case} " in proc.stdout, (layer, engine, case)

CREATES = 200
DUPLICATES = 20
RELAY_ENV = {  # quick polling and a short backoff cap, so the test waits little
    "EVENTS_RELAY_POLL_INTERVAL": "50ms", "EVENTS_RELAY_BACKOFF_CAP": "1s", "EVENTS_METRICS_INTERVAL": "200ms",
    # Latency is not what this test measures: a loaded 2-core machine gets time.
    "REQUEST_TIMEOUT": "2s", "HTTP_WRITE_TIMEOUT": "3s", "DB_STATEMENT_TIMEOUT": "2s",
}
BROKERS = list(brokers.VARIANTS)


def wait_for_messages(broker: Broker, want: int, timeout: float = 60, duplicates: bool = False) -> list[dict]:
    """The stream's messages once it holds want events, each once (with duplicates, want
    distinct events: the first message of each)."""
    def read() -> list[dict]:
        got = broker.messages()
        if not duplicates:
            return got
        seen: set[str] = set()
        return [m for m in got if m["event"]["id"] not in seen and not seen.add(m["event"]["id"])]

    deadline = time.monotonic() + timeout
    got: list[dict] = []
    while time.monotonic() < deadline:
        got = read()
        if len(got) >= want:
            break
        time.sleep(0.25)
    assert len(got) == want, f"{len(got)} events in the stream, want {want}"
    time.sleep(1)  # nothing more arrives: no duplicates published late
    got = read()
    assert len(got) == want, f"{len(got)} events in the stream after a second, want {want}"
    return got


def metric(svc: Service, name: str) -> float:
    with urllib.request.urlopen(svc.metrics + "/metrics", timeout=10) as res:
        text = res.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m[1])


def labeled(svc: Service, name: str, **labels: str) -> float:
    """The value of the series of name with these labels (0 when it is not there)."""
    with urllib.request.urlopen(svc.metrics + "/metrics", timeout=10) as res:
        text = res.read().decode()
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m[1]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m[2])
    return 0.0


def wait_until(what: str, check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def query(url: str, sql: str) -> list[tuple]:
    """Rows of sql on the service's database: SQLite (file:...) or PostgreSQL (a DSN)."""
    if url.startswith("file:"):
        with sqlite3.connect(url.removeprefix("file:"), timeout=10) as db:
            return db.execute(sql).fetchall()
    out = subprocess.run(["psql", url, "-qAtF", "\t", "-c", sql], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    return [tuple(line.split("\t")) for line in out.splitlines() if line]


def check_events(broker: Broker, messages: list[dict]) -> dict[str, list[int]]:
    """Each message: the broker's envelope of its event, one message per event ID; returns
    each resource's versions in stream order."""
    ids = [m["event"]["id"] for m in messages]
    assert len(set(ids)) == len(ids), "an event arrived twice"
    versions: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        e = m["event"]
        broker.check_message(m)
        assert e["type"] in ("item.created", "item.updated", "item.deleted") and e["time"] and e["data"]
        versions[e["resource_id"]].append(e["version"])
    return versions


def start(binary, url: str, engine: str, broker: Broker, **env: str) -> Service:
    svc = Service(binary, base_env(DB_TYPE=engine, DATABASE_URL=url, EVENTS_BROKER_URL=broker.url,
                                   **{**RELAY_ENV, **env}))
    return svc.wait_listening().wait_ready()


def stop(svc: Service) -> None:
    """SIGTERM the service; it must exit 0 (the end of its output in the failure, a panic's too)."""
    rc = svc.stop()
    assert rc == 0, f"the service exited {rc}:\n" + "".join(svc.raw[-80:])


def database(engine: str, tmp_path, postgres_dsn: str | None) -> str:
    return f"file:{tmp_path}/events.db" if engine == "sqlite" else fresh_database(postgres_dsn)


def create(api: str, name: str) -> str:
    status, _, body = call("POST", api + "/api/v1/items", {"name": name})
    assert status == 201, (status, body)
    return body["id"]


@pytest.fixture(params=BROKERS)
def setup(request, projects, binaries):
    """(broker, binary, consumer name) of one broker's variant, the broker running."""
    variant = brokers.VARIANTS[request.param]
    slug = slug_of(projects[variant])
    broker = brokers.make(request.param, slug)
    consumer = f"{slug}-item-activity"
    with broker.server:
        broker.prepare(consumer)
        yield broker, binaries[variant], consumer


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_every_change_is_published_once_in_order_per_resource(setup, engine, request, tmp_path):
    broker, binary, consumer = setup
    dsn = request.getfixturevalue("postgres_dsn") if engine == "postgresql" else None
    url = database(engine, tmp_path, dsn)
    svc = start(binary, url, engine, broker)
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
        messages = wait_for_messages(broker, want)
        versions = check_events(broker, messages)
        assert set(versions) == set(ids)
        for item_id, seen in versions.items():
            expected = [1, 2, 3, 4] if item_id in deleted else [1, 2, 3] if item_id in changed else [1]
            assert seen == expected, (item_id, seen)
        assert metric(svc, "events_published_total") == want
        wait_until("the backlog is 0", lambda: metric(svc, "outbox_backlog_events") == 0, timeout=5)
        assert metric(svc, "events_publish_failures_total") == 0

        # The consumer: each event processed once; the same events published again (as a
        # relay would after a lost acknowledgement, under new message IDs) are duplicates.
        broker.publish([(m["type"], json.dumps(m["event"]).encode()) for m in messages[:DUPLICATES]])
        wait_until("every event is consumed", lambda: (
            labeled(svc, "events_consumed_total", consumer=consumer, result="processed") == want
            and labeled(svc, "events_consumed_total", consumer=consumer, result="duplicate") == DUPLICATES))
        activity = {row[0]: (int(row[1]), int(row[2]))
                    for row in query(url, "SELECT item_id, changes, last_version FROM item_activity")}
        assert activity == {item_id: (len(seen), max(seen)) for item_id, seen in versions.items()}
        assert int(query(url, "SELECT COUNT(*) FROM inbox")[0][0]) == want
        assert int(query(url, "SELECT COUNT(*) FROM dead_letters")[0][0]) == 0
        assert labeled(svc, "events_consume_failures_total", consumer=consumer) == 0
        wait_until("the consumer's lag is 0", lambda: labeled(svc, "events_consumer_lag_messages", consumer=consumer) == 0,
                   timeout=10)
        # RabbitMQ does not confirm acks: the last ones may still be on their way.
        wait_until("nothing is left unacknowledged", lambda: broker.unacknowledged(consumer) == 0, timeout=10)
    finally:
        stop(svc)


OUTAGE_S = 10.0
WRITES_PER_S = 10


def test_broker_outage_delays_events_never_requests(setup, tmp_path):
    """The broker stops for 10 s while creates go on: each create answers 201 (readiness
    stays 200), the backlog metric rises, and after the broker returns every event arrives,
    and the consumer, which lost the broker too, processes each of them."""
    broker, binary, consumer = setup
    svc = start(binary, database("sqlite", tmp_path, None), "sqlite", broker)
    try:
        before = [create(svc.api, f"before {i}") for i in range(20)]
        wait_for_messages(broker, len(before))
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
        messages = wait_for_messages(broker, len(before) + len(during), duplicates=not broker.no_late_duplicates)
        print(f"\n{broker.kind}: broker outage {OUTAGE_S:g} s: {len(during)} creates, every one 201; backlog peaked at "
              f"{max(backlog):g}; all delivered {time.monotonic() - t1 - 1:.1f} s after the broker returned")
        versions = check_events(broker, messages)
        assert set(versions) == set(before + during)
        assert metric(svc, "events_publish_retries_total") > 0
        wait_until("the consumer processed every event", lambda: labeled(
            svc, "events_consumed_total", consumer=consumer, result="processed") == len(before) + len(during))
    finally:
        stop(svc)


def event(resource_id: str, version: int, typ: str = "item.created") -> dict:
    return {"id": str(uuid.uuid4()), "type": typ, "resource_id": resource_id, "version": version,
            "time": "2026-12-07T12:00:00Z", "data": {"id": resource_id}}


MAX_ATTEMPTS = 3


@pytest.mark.postgres
def test_poison_messages_become_dead_letters(setup, postgres_dsn):
    """A message that is not an event is a dead letter at once; an event whose effect fails
    every time (its resource ID is not an item ID, which PostgreSQL's uuid column refuses)
    after MAX_ATTEMPTS deliveries, with backoff between them. The events around them are
    processed, and nothing is left unacknowledged."""
    broker, binary, consumer = setup
    url = database("postgresql", None, postgres_dsn)
    svc = start(binary, url, "postgresql", broker, EVENTS_CONSUMER_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
                EVENTS_CONSUMER_RETRY_BASE="100ms", EVENTS_CONSUMER_RETRY_CAP="300ms")
    try:
        good = [create(svc.api, "before")]
        wait_until("the first event is consumed",
                   lambda: labeled(svc, "events_consumed_total", consumer=consumer, result="processed") == 1)
        poison = event("not-an-item-id", 1)
        broker.publish([("item.created", b"{not json"), ("item.created", json.dumps(poison).encode())])
        good += [create(svc.api, f"after {i}") for i in range(5)]
        wait_until("both poison messages are dead letters",
                   lambda: labeled(svc, "events_dead_letters_total", consumer=consumer) == 2)
        wait_until("the good events are consumed",
                   lambda: labeled(svc, "events_consumed_total", consumer=consumer, result="processed") == len(good))
        rows = query(url, "SELECT message_id, subject, event_id, payload, error, attempts FROM dead_letters ORDER BY attempts")
        assert len(rows) == 2, rows
        undecodable, failing = rows
        assert undecodable[3] == "{not json" and undecodable[2] == "" and int(undecodable[5]) == 1
        assert "not an event" in undecodable[4]
        assert failing[2] == poison["id"] and json.loads(failing[3]) == poison and int(failing[5]) == MAX_ATTEMPTS
        assert labeled(svc, "events_consume_failures_total", consumer=consumer) == MAX_ATTEMPTS
        assert labeled(svc, "events_consume_retries_total", consumer=consumer) == MAX_ATTEMPTS - 1
        assert {r[0] for r in query(url, "SELECT item_id FROM item_activity")} == set(good)
        dead = [line for line in svc.lines if line.get("msg") == "events: message dead-lettered"]
        assert len(dead) == 2 and dead[1]["event_id"] == poison["id"] and dead[1]["attempts"] == MAX_ATTEMPTS
        wait_until("nothing is left unacknowledged", lambda: broker.unacknowledged(consumer) == 0, timeout=10)
    finally:
        stop(svc)


BACKLOG_RESOURCES, BACKLOG_VERSIONS = 300, 10


def test_sigterm_mid_stream_acks_nothing_unprocessed(setup, tmp_path):
    """3,000 events wait in the stream; the service starts and gets SIGTERM while consuming
    them. It stops fetching, finishes what is in progress and exits: every message the
    broker counts as acknowledged is in the inbox. The next start processes the rest, each
    event once, each resource's versions in order."""
    broker, binary, consumer = setup
    url = database("sqlite", tmp_path, None)
    resources = [str(uuid.uuid4()) for _ in range(BACKLOG_RESOURCES)]
    backlog = [event(r, v, "item.created" if v == 1 else "item.updated")
               for v in range(1, BACKLOG_VERSIONS + 1) for r in resources]
    # The service makes the stream; the consumer starts after the backlog is in it.
    svc = start(binary, url, "sqlite", broker, EVENTS_CONSUMER_ENABLED="false")
    create(svc.api, "makes the stream")
    wait_for_messages(broker, 1)
    stop(svc)
    broker.publish([(e["type"], json.dumps(e).encode()) for e in backlog])
    total = len(backlog) + 1

    svc = start(binary, url, "sqlite", broker)
    wait_until("a tenth of the backlog is processed", lambda: labeled(
        svc, "events_consumed_total", consumer=consumer, result="processed") >= total / 10, timeout=60)
    t0 = time.monotonic()
    stop(svc)
    stopped_in = time.monotonic() - t0
    assert sum(1 for line in svc.lines if line.get("msg") == "events: consumer drained") == 1, \
        "the consumer did not say it drained"
    processed = {r[0] for r in query(url, "SELECT event_id FROM inbox")}
    assert 0 < len(processed) < total, f"{len(processed)} of {total}: SIGTERM did not land mid-stream"
    acked = broker.acknowledged(consumer)
    assert set(acked) <= processed, f"{len(set(acked) - processed)} acknowledged events were never processed"

    svc = start(binary, url, "sqlite", broker)
    try:
        wait_until("the rest is processed", lambda: len(query(url, "SELECT event_id FROM inbox")) == total, timeout=120)
        second = labeled(svc, "events_consumed_total", consumer=consumer, result="processed")
        assert second == total - len(processed), (second, total, len(processed))
        duplicates = labeled(svc, "events_consumed_total", consumer=consumer, result="duplicate")
        if broker.per_message_acks:
            # What the first run processed it also acked: nothing comes again as a duplicate.
            assert duplicates == 0
        else:
            # Kafka commits an offset: what the first run processed after a record it gave back
            # (in the same partition) comes again, and exactly that is skipped by the inbox.
            assert duplicates == len(processed - set(acked)), (duplicates, len(processed), len(acked))
        rows = {r[0]: (r[1], r[2]) for r in query(url, "SELECT item_id, changes, last_version FROM item_activity")}
        assert all(rows[r] == (BACKLOG_VERSIONS, BACKLOG_VERSIONS) for r in resources)
        wait_until("nothing is left unacknowledged", lambda: broker.unacknowledged(consumer) == 0, timeout=10)
        print(f"\n{broker.kind}: SIGTERM after {len(processed)} of {total} events: stopped in {stopped_in:.2f} s, "
              f"{len(acked)} acknowledged; the next start processed the other {second:g}, {duplicates:g} duplicates skipped")
    finally:
        stop(svc)


LATENCY_CREATES, LATENCY_RATE = 300, 50
THROUGHPUT_CREATES, THROUGHPUT_CLIENTS = 2000, 8


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_publish_latency_and_throughput(setup, engine, request, tmp_path):
    """Measured, not asserted (pytest -s prints it): with the default relay settings, the
    time from a create's 201 to its event reaching a subscriber (creates paced at 50/s),
    and how fast events are published when creates come as fast as 8 clients can send
    them. The test checks only that every event arrived."""
    broker, binary, _ = setup
    dsn = request.getfixturevalue("postgres_dsn") if engine == "postgresql" else None
    # Generous deadlines: on 2 cores the broker (Kafka's JVM most of all) competes with the
    # service and SQLite's single writer for the burst; the test reports rates, never fails on them.
    env = {"REQUEST_TIMEOUT": "5s", "HTTP_WRITE_TIMEOUT": "6s", "DB_STATEMENT_TIMEOUT": "5s"}
    svc = Service(binary, base_env(DB_TYPE=engine, DATABASE_URL=database(engine, tmp_path, dsn),
                                   EVENTS_BROKER_URL=broker.url, **env))
    svc.wait_listening().wait_ready()
    create(svc.api, "makes the stream")
    wait_for_messages(broker, 1)
    received: dict[str, float] = {}

    def got(e: dict, at: float) -> None:
        if e["type"] == "item.created":
            received.setdefault(e["resource_id"], at)

    sub = broker.subscribe(got)
    try:
        done: dict[str, float] = {}
        t0 = time.monotonic()
        for i in range(LATENCY_CREATES):
            time.sleep(max(0.0, t0 + i / LATENCY_RATE - time.monotonic()))
            done[create(svc.api, f"latency {i}")] = time.monotonic()
        wait_until("every paced event arrived", lambda: all(i in received for i in done))
        lat = sorted((received[i] - t) * 1000 for i, t in done.items())

        def burst(n: int) -> list[str]:
            return [create(svc.api, f"burst {n} {i}") for i in range(THROUGHPUT_CREATES // THROUGHPUT_CLIENTS)]

        t1 = time.monotonic()
        with ThreadPoolExecutor(max_workers=THROUGHPUT_CLIENTS) as pool:
            ids = [i for chunk in pool.map(burst, range(THROUGHPUT_CLIENTS)) for i in chunk]
        t2 = time.monotonic()
        wait_until("every burst event arrived", lambda: all(i in received for i in ids), timeout=120)
        last = max(received[i] for i in ids)
        print(f"\n{broker.kind}/{engine}: create 201 -> event at a subscriber, {LATENCY_CREATES} creates at "
              f"{LATENCY_RATE}/s: p50 {statistics.median(lat):.1f} ms, p99 {lat[int(len(lat) * 0.99) - 1]:.1f} ms, "
              f"max {lat[-1]:.1f} ms; {len(ids)} creates from {THROUGHPUT_CLIENTS} clients: "
              f"{len(ids) / (t2 - t1):.0f} creates/s, {len(ids) / (last - t1):.0f} events/s published "
              f"(the last event {1000 * (last - t2):+.0f} ms from the last 201)")
    finally:
        sub.close()
        stop(svc)


def test_redis_that_lost_its_data_gets_the_group_back(projects, binaries, tmp_path):
    """A Redis restarted without its data (here: the stream deleted under the service) has
    no consumer group: the consumer makes it again and goes on with the new events."""
    variant = brokers.VARIANTS["redis"]
    slug = slug_of(projects[variant])
    broker = brokers.make("redis", slug)
    consumer = f"{slug}-item-activity"
    with broker.server:
        svc = start(binaries[variant], database("sqlite", tmp_path, None), "sqlite", broker)
        try:
            first = [create(svc.api, f"before {i}") for i in range(5)]
            wait_until("the first events are consumed", lambda: labeled(
                svc, "events_consumed_total", consumer=consumer, result="processed") == len(first))
            with broker._client() as r:
                assert r.delete(broker.stream) == 1
            later = [create(svc.api, f"after {i}") for i in range(5)]
            wait_until("the later events are consumed", lambda: labeled(
                svc, "events_consumed_total", consumer=consumer, result="processed") == len(first) + len(later))
            assert broker.unacknowledged(consumer) == 0
        finally:
            stop(svc)


def test_rabbitmq_keeps_events_no_queue_is_bound_for(projects, binaries, tmp_path):
    """An exchange keeps nothing: an event published while no queue is bound for it would
    be lost. The relay publishes mandatory messages, so RabbitMQ returns such an event and
    it waits in the outbox (the backlog metric shows it) until a queue is bound; then it is
    delivered, once."""
    variant = brokers.VARIANTS["rabbitmq"]
    slug = slug_of(projects[variant])
    broker = brokers.make("rabbitmq", slug)
    with broker.server:
        svc = start(binaries[variant], database("sqlite", tmp_path, None), "sqlite", broker,
                    EVENTS_CONSUMER_ENABLED="false", EVENTS_RELAY_BACKOFF_CAP="500ms")
        try:
            ids = [create(svc.api, f"unrouted {i}") for i in range(3)]
            wait_until("the relay has tried and failed", lambda: metric(svc, "events_publish_retries_total") >= 2)
            assert metric(svc, "outbox_backlog_events") == len(ids)
            broker.prepare(f"{slug}-item-activity")  # binds the tap (and the consumer's queue)
            messages = wait_for_messages(broker, len(ids))
            assert set(check_events(broker, messages)) == set(ids)
            wait_until("the backlog is empty", lambda: metric(svc, "outbox_backlog_events") == 0, timeout=10)
        finally:
            stop(svc)
