"""The brokers the events tests run against, behind one face: a private server
(tests/servers.py) and a client that reads the service's stream back, publishes into it,
and reports a consumer's acknowledgements. NATS JetStream (nats-py), Redis Streams
(redis-py) and RabbitMQ (pika; a RabbitMQ exchange keeps nothing, so the tests bind a
queue of their own, the tap, that receives every event and is read without consuming) and
Apache Kafka (confluent-kafka; the topic is read with no consumer group, the group's
committed offsets asked for)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import threading
import time
import uuid
from typing import Any

from tests.conftest import unavailable
from tests.servers import KafkaServer, NatsServer, RabbitMQServer, RedisServer

# The rendered variant of each broker (tests/conftest.py).
VARIANTS = {"nats": "events", "redis": "events-redis", "rabbitmq": "events-rabbitmq", "kafka": "events-kafka"}


def _nats():
    try:
        import nats
    except ImportError:
        unavailable("the NATS client for Python is not installed (pip install -e '.[test]')")
    return nats


def _redis():
    try:
        import redis
    except ImportError:
        unavailable("the Redis client for Python is not installed (pip install -e '.[test]')")
    return redis


def _pika():
    try:
        import pika
    except ImportError:
        unavailable("the RabbitMQ client for Python (pika) is not installed (pip install -e '.[test]')")
    return pika


def _kafka():
    try:
        import confluent_kafka
    except ImportError:
        unavailable("the Kafka client for Python (confluent-kafka) is not installed (pip install -e '.[test]')")
    return confluent_kafka


class Broker:
    """A running broker and the service's stream on it (slug: the service's slug)."""

    kind: str
    server: Any
    # The broker records each message's ack (NATS, Redis, RabbitMQ), not an offset (Kafka).
    per_message_acks = True
    # A publish the relay gave up on (the broker down) is never stored later as well. Kafka's
    # client keeps such a record and may deliver it when the broker returns, besides the
    # relay's retry: a duplicate in the topic, which the consumers' inbox skips.
    no_late_duplicates = True

    def __init__(self, slug: str):
        self.slug = slug

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.close()

    def prepare(self, consumer: str) -> None:
        """Called once the broker runs, before any service starts (RabbitMQ binds its queues)."""

    # What each broker implements.
    def messages(self) -> list[dict]:
        """Every message in the stream, oldest first: {"id", "type", "event", "meta"}."""
        raise NotImplementedError

    def check_message(self, m: dict) -> None:
        """The broker-specific envelope of one published event."""
        raise NotImplementedError

    def publish(self, items: list[tuple[str, bytes]]) -> None:
        """Add (type, data) messages to the stream as a producer other than the service."""
        raise NotImplementedError

    def unacknowledged(self, consumer: str) -> int:
        """Messages the consumer has not acknowledged: not yet delivered, or delivered and
        not acked."""
        raise NotImplementedError

    def acknowledged(self, consumer: str) -> list[str]:
        """Event IDs of messages the broker counts as acknowledged by the consumer (NATS: up
        to the ack floor; Redis: delivered and not pending)."""
        raise NotImplementedError

    def subscribe(self, on_event) -> "Subscription":
        """Call on_event(event, monotonic time) for each new message, from a thread."""
        raise NotImplementedError


class Subscription:
    def close(self) -> None:
        raise NotImplementedError


class _ThreadSubscription(Subscription):
    """A subscription read by a thread of its own: read(ready) listens, sets ready once new
    messages will reach it, and returns when self.stopped is set. The constructor returns
    once ready, or raises what read raised."""

    ready_timeout = 30.0

    def __init__(self) -> None:
        self.stopped = threading.Event()
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                self.read(ready)
            except BaseException as err:  # reported to the test by the constructor
                failed.append(err)
                ready.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(timeout=self.ready_timeout)
        if failed:
            raise failed[0]

    def read(self, ready: threading.Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


class Nats(Broker):
    kind = "nats"

    def __init__(self, slug: str):
        super().__init__(slug)
        self.server = NatsServer()
        self.stream = slug.upper().replace("-", "_") + "_EVENTS"

    def _run(self, work):
        nats = _nats()

        async def go():
            nc = await nats.connect(self.url)
            try:
                return await work(nc, nats)
            finally:
                await nc.close()

        return asyncio.run(go())

    def messages(self) -> list[dict]:
        async def read(nc, nats):
            js = nc.jetstream()
            try:
                info = await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                return []
            out = []
            if info.state.messages == 0:
                # A stream made a moment ago reports first and last sequence 0, and asking
                # for message 0 is a bad request: an empty stream has nothing to read.
                return out
            for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(self.stream, seq)
                except nats.js.errors.NotFoundError:
                    continue  # deleted from the middle of the stream
                e = json.loads(msg.data)
                out.append({"id": seq, "type": e.get("type"), "event": e,
                            "meta": {"subject": msg.subject, "headers": dict(msg.headers or {})}})
            return out

        return self._run(read)

    def check_message(self, m: dict) -> None:
        e = m["event"]
        assert m["meta"]["subject"] == f"{self.slug}.{e['type']}"
        assert m["meta"]["headers"].get("Nats-Msg-Id") == e["id"]

    def publish(self, items: list[tuple[str, bytes]]) -> None:
        async def send(nc, nats):
            js = nc.jetstream()
            for typ, data in items:
                await js.publish(f"{self.slug}.{typ}", data, headers={"Nats-Msg-Id": str(uuid.uuid4())})

        self._run(send)

    def _info(self, consumer: str):
        async def info(nc, nats):
            return await nc.jetstream().consumer_info(self.stream, consumer)

        return self._run(info)

    def unacknowledged(self, consumer: str) -> int:
        info = self._info(consumer)
        return info.num_ack_pending + info.num_pending

    def acknowledged(self, consumer: str) -> list[str]:
        floor = self._info(consumer).ack_floor.stream_seq
        return [m["event"]["id"] for m in self.messages() if m["id"] <= floor]

    def subscribe(self, on_event) -> Subscription:
        return _NatsSubscription(self.url, f"{self.slug}.>", on_event)


class _NatsSubscription(Subscription):
    def __init__(self, url: str, subject: str, on_event):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def start():
            self.nc = await _nats().connect(url)

            async def got(msg) -> None:
                on_event(json.loads(msg.data), time.monotonic())

            await self.nc.subscribe(subject, cb=got)
            await self.nc.flush()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.nc.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)


class Redis(Broker):
    kind = "redis"

    def __init__(self, slug: str):
        super().__init__(slug)
        self.server = RedisServer()
        self.stream = f"{slug}:events"

    def _client(self):
        return _redis().Redis.from_url(self.url, decode_responses=True)

    def messages(self) -> list[dict]:
        with self._client() as r:
            entries = r.xrange(self.stream)
        return [{"id": eid, "type": f.get("type"), "event": json.loads(f["event"]), "meta": f} for eid, f in entries]

    def check_message(self, m: dict) -> None:
        e = m["event"]
        assert m["meta"]["type"] == e["type"] and m["meta"]["id"] == e["id"]

    def publish(self, items: list[tuple[str, bytes]]) -> None:
        with self._client() as r:
            for typ, data in items:
                r.xadd(self.stream, {"type": typ, "id": str(uuid.uuid4()), "event": data})

    def _group(self, r, consumer: str) -> dict:
        for g in r.xinfo_groups(self.stream):
            if g["name"] == consumer:
                return g
        raise AssertionError(f"no consumer group {consumer}")

    def unacknowledged(self, consumer: str) -> int:
        with self._client() as r:
            g = self._group(r, consumer)
            return max(g.get("lag") or 0, 0) + g["pending"]

    def acknowledged(self, consumer: str) -> list[str]:
        with self._client() as r:
            last = self._group(r, consumer)["last-delivered-id"]
            pending = {p["message_id"] for p in r.xpending_range(self.stream, consumer, "-", "+", 100_000)}

        def key(eid: str) -> tuple[int, int]:
            ms, seq = eid.split("-")
            return int(ms), int(seq)

        return [m["event"]["id"] for m in self.messages() if key(m["id"]) <= key(last) and m["id"] not in pending]

    def subscribe(self, on_event) -> Subscription:
        return _RedisSubscription(self, on_event)


class _RedisSubscription(Subscription):
    def __init__(self, broker: Redis, on_event):
        self.stopped = threading.Event()
        with broker._client() as r:
            last = r.xinfo_stream(broker.stream)["last-generated-id"] if r.exists(broker.stream) else "0-0"

        def read() -> None:
            cursor = last
            with broker._client() as r:
                while not self.stopped.is_set():
                    for _, entries in r.xread({broker.stream: cursor}, block=200, count=1000) or []:
                        now = time.monotonic()
                        for eid, f in entries:
                            on_event(json.loads(f["event"]), now)
                            cursor = eid

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


class RabbitMQ(Broker):
    """The service's topic exchange <slug>.events. The tap is a durable classic queue bound
    to it for every routing key before any service starts; the consumer's quorum queue is
    declared then too, as the service declares it, so that events published while the
    consumer is off wait in it."""

    kind = "rabbitmq"

    def __init__(self, slug: str):
        super().__init__(slug)
        self.server = RabbitMQServer()
        self.exchange = f"{slug}.events"
        self.tap = f"{slug}-test-tap"

    def _connect(self):
        pika = _pika()
        return pika.BlockingConnection(pika.URLParameters(self.url))

    def prepare(self, consumer: str) -> None:
        with self._connect() as conn:
            ch = conn.channel()
            ch.exchange_declare(self.exchange, "topic", durable=True)
            ch.queue_declare(self.tap, durable=True)
            ch.queue_bind(self.tap, self.exchange, "#")
            ch.queue_declare(consumer, durable=True, arguments={"x-queue-type": "quorum"})
            ch.queue_bind(consumer, self.exchange, "#")

    def _peek(self, queue: str) -> list[tuple[Any, Any, bytes]]:
        """The messages ready in queue, oldest first, left in it: consumed without acks,
        given back when the connection closes (a classic queue puts them back in place)."""
        with self._connect() as conn:
            ch = conn.channel()
            want = ch.queue_declare(queue, passive=True).method.message_count
            got: list[tuple[Any, Any, bytes]] = []
            if want == 0:
                return got
            # Unlimited (0) is capped at 2,000 by a quorum queue: ask for all of them.
            ch.basic_qos(prefetch_count=min(want, 65535))
            ch.basic_consume(queue, lambda _ch, method, props, body: got.append((method, props, body)))
            deadline = time.monotonic() + 30
            while len(got) < want and time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.05)
            return got[:want]

    def messages(self) -> list[dict]:
        out = []
        for i, (method, props, body) in enumerate(self._peek(self.tap)):
            out.append({"id": i, "type": method.routing_key, "event": json.loads(body),
                        "meta": {"routing_key": method.routing_key, "message_id": props.message_id,
                                 "content_type": props.content_type, "delivery_mode": props.delivery_mode,
                                 "type": props.type, "headers": dict(props.headers or {})}})
        return out

    def check_message(self, m: dict) -> None:
        e, meta = m["event"], m["meta"]
        assert meta["routing_key"] == e["type"] and meta["type"] == e["type"] and meta["message_id"] == e["id"]
        assert meta["content_type"] == "application/json" and meta["delivery_mode"] == 2, meta

    def publish(self, items: list[tuple[str, bytes]]) -> None:
        pika = _pika()
        with self._connect() as conn:
            ch = conn.channel()
            ch.confirm_delivery()
            for typ, data in items:
                ch.basic_publish(self.exchange, typ, data, pika.BasicProperties(
                    message_id=str(uuid.uuid4()), content_type="application/json", delivery_mode=2), mandatory=True)

    def unacknowledged(self, consumer: str) -> int:
        # rabbitmqctl counts ready and unacknowledged messages alike ("messages").
        for line in self.server.ctl("list_queues", "name", "messages").splitlines():
            name, _, count = line.partition("\t")
            if name == consumer:
                return int(count)
        raise AssertionError(f"no queue {consumer}")

    def acknowledged(self, consumer: str) -> list[str]:
        """Events the tap holds and the consumer's queue no longer does: valid while no
        consumer holds messages of the queue (the service has exited)."""
        left = set()
        for _, _, body in self._peek(consumer):
            try:
                left.add(json.loads(body)["id"])
            except (ValueError, KeyError, TypeError):
                continue  # not an event (a poison message)
        return [m["event"]["id"] for m in self.messages() if m["event"]["id"] not in left]

    def subscribe(self, on_event) -> Subscription:
        return _RabbitMQSubscription(self, on_event)


class _RabbitMQSubscription(_ThreadSubscription):
    """A queue of its own (exclusive: gone with the connection) bound for every event."""

    def __init__(self, broker: RabbitMQ, on_event):
        self.broker, self.on_event = broker, on_event
        super().__init__()

    def read(self, ready: threading.Event) -> None:
        with self.broker._connect() as conn:
            ch = conn.channel()
            q = ch.queue_declare("", exclusive=True).method.queue
            ch.queue_bind(q, self.broker.exchange, "#")
            ch.basic_consume(q, lambda _ch, _m, _p, body: self.on_event(json.loads(body), time.monotonic()),
                             auto_ack=True)
            ready.set()
            while not self.stopped.is_set():
                conn.process_data_events(time_limit=0.1)


class Kafka(Broker):
    """The service's topic <slug>.events, which the service creates at its first publish:
    one record per event, keyed by its resource ID (a resource's events share a partition,
    in order), with the headers id, type and traceparent. The consumer is a consumer group
    named as the consumer; its committed offset in a partition is the next record it reads.
    The tests read the topic with no group: each partition assigned from its low to its high
    watermark, nothing committed."""

    kind = "kafka"
    per_message_acks = False
    no_late_duplicates = False

    def __init__(self, slug: str):
        super().__init__(slug)
        _kafka()
        self.server = KafkaServer()
        self.topic = f"{slug}.events"

    def _config(self, **extra: Any) -> dict:
        return {"bootstrap.servers": self.url, **extra}

    @contextlib.contextmanager
    def _consumer(self, group: str = ""):
        """A consumer that only reads what it is assigned, or asks for group's committed
        offsets: it never joins a group nor commits (a group ID is required all the same)."""
        c = _kafka().Consumer(self._config(**{"group.id": group or f"{self.slug}-test-reader",
                                              "enable.auto.commit": False, "enable.partition.eof": True}))
        try:
            yield c
        finally:
            c.close()

    def _partitions(self, c) -> list[int]:
        """The topic's partitions; [] while the service has not created it. Right after it
        is created its partitions have no leader for a moment: asked again."""
        kafka = _kafka()
        deadline = time.monotonic() + 30
        while True:
            t = c.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if t is None or (t.error and t.error.code() == kafka.KafkaError.UNKNOWN_TOPIC_OR_PART):
                return []
            if not t.error and all(p.leader >= 0 and not p.error for p in t.partitions.values()):
                return sorted(t.partitions)
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {self.topic}: {t.error or [p.error for p in t.partitions.values()]}")
            time.sleep(0.2)

    def _watermarks(self, c, parts: list[int]) -> dict[int, tuple[int, int]]:
        """Each partition's (low, high) watermarks. A topic made a moment ago may answer that
        its leader is not there yet (NOT_LEADER_FOR_PARTITION and the like): asked again."""
        kafka = _kafka()
        out: dict[int, tuple[int, int]] = {}
        deadline = time.monotonic() + 30
        for p in parts:
            while True:
                try:
                    out[p] = c.get_watermark_offsets(kafka.TopicPartition(self.topic, p), timeout=10)
                    break
                except kafka.KafkaException as err:
                    transient = err.args[0].retriable() or err.args[0].code() in (
                        kafka.KafkaError.NOT_LEADER_FOR_PARTITION, kafka.KafkaError.LEADER_NOT_AVAILABLE,
                        kafka.KafkaError.UNKNOWN_TOPIC_OR_PART, kafka.KafkaError._TIMED_OUT)
                    if not transient or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        return out

    def _records(self) -> list:
        """Every record in the topic (confluent_kafka Messages), each partition's in offset
        order, merged by timestamp; read up to the high watermarks as they were at the start."""
        kafka = _kafka()
        with self._consumer() as c:
            ends = {p: (lo, hi) for p, (lo, hi) in self._watermarks(c, self._partitions(c)).items() if hi > lo}
            c.assign([kafka.TopicPartition(self.topic, p, lo) for p, (lo, _) in ends.items()])
            got: dict[int, list] = {p: [] for p in ends}
            left = set(ends)
            deadline = time.monotonic() + 60
            while left:
                assert time.monotonic() < deadline, f"topic {self.topic}: partitions {sorted(left)} not read to the end"
                for msg in c.consume(num_messages=1000, timeout=0.05):
                    p, err = msg.partition(), msg.error()
                    if err and err.code() != kafka.KafkaError._PARTITION_EOF:
                        raise kafka.KafkaException(err)
                    if p not in left:
                        continue
                    if not err and msg.offset() < ends[p][1]:
                        got[p].append(msg)
                    # The end: the last offset, or the partition's end (past records a reader
                    # is not given, such as transaction markers).
                    if msg.offset() >= ends[p][1] - (0 if err else 1):
                        left.discard(p)
        return list(heapq.merge(*got.values(), key=lambda m: (m.timestamp()[1], m.partition())))

    def messages(self) -> list[dict]:
        out = []
        for r in self._records():
            headers = {k: v.decode() if v is not None else None for k, v in r.headers() or []}
            e = json.loads(r.value())
            out.append({"id": f"{r.partition()}:{r.offset()}", "type": headers.get("type") or e.get("type"), "event": e,
                        "meta": {"key": r.key().decode() if r.key() is not None else None, "headers": headers,
                                 "partition": r.partition(), "offset": r.offset()}})
        return out

    def check_message(self, m: dict) -> None:
        e, meta = m["event"], m["meta"]
        assert meta["key"] == e["resource_id"], meta
        assert meta["headers"].get("id") == e["id"] and meta["headers"].get("type") == e["type"], meta
        assert meta["headers"].get("traceparent") == (e.get("traceparent") or None), meta

    def publish(self, items: list[tuple[str, bytes]]) -> None:
        """Produced as the service does (keyed by the resource ID, when the data has one):
        idempotent, acknowledged by all in-sync replicas, partitioned by the Java client's
        murmur2 hash of the key, as franz-go's default partitioner does, so an event
        published again goes to the partition of its resource."""
        kafka = _kafka()
        with self._consumer() as c:
            assert self._partitions(c), f"no topic {self.topic}: the service creates it at its first publish"
        p = kafka.Producer(self._config(**{"enable.idempotence": True, "partitioner": "murmur2_random",
                                           "linger.ms": 5, "message.timeout.ms": 60000}))
        failed: list = []

        def delivered(err, _msg) -> None:
            if err:
                failed.append(err)

        for typ, data in items:
            p.produce(self.topic, value=data, key=_resource_id(data) or str(uuid.uuid4()),
                      headers=[("id", str(uuid.uuid4())), ("type", typ)], on_delivery=delivered)
            p.poll(0)
        left = p.flush(60)
        if left or failed:
            raise kafka.KafkaException(failed[0] if failed else f"{left} records not delivered")

    def _committed(self, c, parts: list[int]) -> dict[int, int]:
        """The committed offset of c's group in each partition (absent: none committed)."""
        kafka = _kafka()
        got = c.committed([kafka.TopicPartition(self.topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in got if tp.offset >= 0}

    def unacknowledged(self, consumer: str) -> int:
        with self._consumer(consumer) as c:
            parts = self._partitions(c)
            committed = self._committed(c, parts)
            return sum(max(hi - max(committed.get(p, lo), lo), 0) for p, (lo, hi) in self._watermarks(c, parts).items())

    def acknowledged(self, consumer: str) -> list[str]:
        with self._consumer(consumer) as c:
            committed = self._committed(c, self._partitions(c))
        out = []
        for r in self._records():
            if r.offset() < committed.get(r.partition(), 0):
                try:
                    out.append(json.loads(r.value())["id"])
                except (ValueError, KeyError, TypeError):
                    continue  # not an event (a poison message)
        return out

    def subscribe(self, on_event) -> Subscription:
        return _KafkaSubscription(self, on_event)


def _resource_id(data: bytes) -> str | None:
    """The resource ID of an event's JSON; None when data is not one."""
    try:
        rid = json.loads(data).get("resource_id")
    except (ValueError, AttributeError):
        return None
    return str(rid) if rid else None


class _KafkaSubscription(_ThreadSubscription):
    """A consumer of no group assigned every partition at its high watermark, read before
    subscribe() returns: it gets each record produced after that, and none before (a topic
    not created yet: read from its beginning once it is)."""

    ready_timeout = 60.0

    def __init__(self, broker: Kafka, on_event):
        self.broker, self.on_event = broker, on_event
        super().__init__()

    def _assign(self, c, at_end: bool) -> bool:
        kafka = _kafka()
        parts = self.broker._partitions(c)
        ends = self.broker._watermarks(c, parts) if at_end else {}
        c.assign([kafka.TopicPartition(self.broker.topic, p, ends[p][1] if at_end else kafka.OFFSET_BEGINNING)
                  for p in parts])
        return bool(parts)

    def read(self, ready: threading.Event) -> None:
        with self.broker._consumer() as c:
            assigned = self._assign(c, at_end=True)
            ready.set()
            while not self.stopped.is_set():
                if not assigned:
                    self.stopped.wait(0.2)
                    assigned = self._assign(c, at_end=False)
                    continue
                # poll, not consume(n): a batch consume waits out its timeout unless n records
                # come, which would add up to the timeout to each latency.
                msg = c.poll(0.1)
                if msg is not None and not msg.error():
                    self.on_event(json.loads(msg.value()), time.monotonic())


def make(kind: str, slug: str) -> Broker:
    try:
        return {"nats": Nats, "redis": Redis, "rabbitmq": RabbitMQ, "kafka": Kafka}[kind](slug)
    except FileNotFoundError as err:
        unavailable(str(err))
        raise
