"""The brokers the events tests run against, behind one face: a private server
(tests/servers.py) and a client that reads the service's stream back, publishes into it,
and reports a consumer's acknowledgements. NATS JetStream (nats-py), Redis Streams
(redis-py) and RabbitMQ (pika; a RabbitMQ exchange keeps nothing, so the tests bind a
queue of their own, the tap, that receives every event and is read without consuming)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from tests.conftest import unavailable
from tests.servers import NatsServer, RabbitMQServer, RedisServer

# The rendered variant of each broker (tests/conftest.py).
VARIANTS = {"nats": "events", "redis": "events-redis", "rabbitmq": "events-rabbitmq"}


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


class Broker:
    """A running broker and the service's stream on it (slug: the service's slug)."""

    kind: str
    server: Any

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


class _RabbitMQSubscription(Subscription):
    """A queue of its own (exclusive: gone with the connection) bound for every event."""

    def __init__(self, broker: RabbitMQ, on_event):
        self.stopped = threading.Event()
        ready = threading.Event()
        failed: list[BaseException] = []

        def read() -> None:
            try:
                with broker._connect() as conn:
                    ch = conn.channel()
                    q = ch.queue_declare("", exclusive=True).method.queue
                    ch.queue_bind(q, broker.exchange, "#")
                    ch.basic_consume(q, lambda _ch, _m, _p, body: on_event(json.loads(body), time.monotonic()),
                                     auto_ack=True)
                    ready.set()
                    while not self.stopped.is_set():
                        conn.process_data_events(time_limit=0.1)
            except BaseException as err:  # reported to the test by the constructor
                failed.append(err)
                ready.set()

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()
        ready.wait(timeout=30)
        if failed:
            raise failed[0]

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


def make(kind: str, slug: str) -> Broker:
    try:
        return {"nats": Nats, "redis": Redis, "rabbitmq": RabbitMQ}[kind](slug)
    except FileNotFoundError as err:
        unavailable(str(err))
        raise
