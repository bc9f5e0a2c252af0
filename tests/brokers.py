"""The brokers the events tests run against, behind one face: a private server
(tests/servers.py) and a client that reads the service's stream back, publishes into it,
and reports a consumer's acknowledgements. NATS JetStream (nats-py) and Redis Streams
(redis-py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from tests.conftest import unavailable
from tests.servers import NatsServer, RedisServer

# The rendered variant of each broker (tests/conftest.py).
VARIANTS = {"nats": "events", "redis": "events-redis"}


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
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(self.stream, seq)
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


def make(kind: str, slug: str) -> Broker:
    try:
        return {"nats": Nats, "redis": Redis}[kind](slug)
    except FileNotFoundError as err:
        unavailable(str(err))
        raise
