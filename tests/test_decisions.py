"""Unit tests of the decision engine and the answer validators, against the playbook tables
(boundaries included)."""

from __future__ import annotations

import math

import pytest

from extensions import decisions as d
from extensions import validators as v
from tests.conftest import STANDARDS as STD

pytestmark = pytest.mark.fast


# ---------------------------------------------------------------- Go or not
@pytest.mark.parametrize(
    ("rps", "p99", "pps", "cpu", "expected"),
    [
        (10_000, 10, 100_000, False, False),  # every boundary exactly: not justified
        (10_001, 10, 0, False, True),  # > 10,000 req/s
        (100, 9, 0, False, True),  # < 10 ms
        (100, 10, 100_001, False, True),  # > 100,000 packets/s
        (100, 10, 100_000, False, False),
        (100, 500, 0, True, True),  # CPU-bound
        (1, 60_000, 0, False, False),
    ],
)
def test_go_justified_thresholds(rps, p99, pps, cpu, expected):
    decision = d.go_justified(rps, p99, pps, cpu, STD)
    assert decision.choice is expected
    assert decision.reason


def test_go_justified_reasons_name_the_numbers():
    yes = d.go_justified(20_000, 5, 0, False, STD)
    assert "20,000 req/s > 10,000" in yes.reason and "5 ms < 10 ms" in yes.reason
    no = d.go_justified(500, 100, 0, False, STD)
    assert "not justified" in no.reason and "Flask" in no.reason


# ---------------------------------------------------------------- XDP tier
@pytest.mark.parametrize(
    ("pps", "tier"),
    [
        (0, "standard"),
        (99_999, "standard"),
        (100_000, "consider"),
        (500_000, "consider"),
        (500_001, "required"),
    ],
)
def test_xdp_tier(pps, tier):
    assert d.xdp_tier(pps, STD).choice == tier


# ---------------------------------------------------------------- transport, data layer
def test_transport():
    assert d.transport("external").choice == "rest"
    assert d.transport("internal").choice == "grpc"
    assert d.transport("both").choice == "rest+grpc"
    with pytest.raises(ValueError, match="exposure must be one of"):
        d.transport("public")


def test_router():
    assert d.router().choice == "chi"
    assert d.router(delivery_speed_first=True).choice == "gin"


def test_data_layer():
    assert d.data_layer("low").choice == "sqlc"
    assert d.data_layer("medium").choice == "sqlc"
    assert d.data_layer("high").choice == "gorm"
    with pytest.raises(ValueError, match="schema_churn"):
        d.data_layer("sometimes")


@pytest.mark.parametrize("layer", ["sqlc", "gorm", "sqlx"])
def test_data_layer_flags(layer):
    flags = d.data_layer_flags(layer)
    assert [k for k in ("sqlc", "gorm", "sqlx") if flags[k]] == [layer]


def test_data_layer_flags_refuse_unknown_values():
    with pytest.raises(ValueError, match="data_layer must be one of sqlc, gorm, sqlx"):
        d.data_layer_flags("ent")


def test_the_data_layer_answer_overrides_the_recommendation_and_picks_the_modules():
    answers = dict(peak_rps=20_000, p99_ms=50, packets_per_s=0, cpu_bound=False, exposure="external",
                   schema_churn="high", go_version="1.26", resource="item")
    assert d.plan(answers, STD)["data_layer"]["chosen"] == "gorm"  # the recommendation for high churn
    paths = lambda p: {m["path"] for m in p["modules"]}  # noqa: E731
    gorm = d.plan({**answers, "databases": ["mariadb", "sqlite"]}, STD)
    assert {"gorm.io/gorm", "gorm.io/driver/mysql", "gorm.io/driver/sqlite"} <= paths(gorm)
    assert "gorm.io/driver/postgres" not in paths(gorm) and "github.com/jmoiron/sqlx" not in paths(gorm)
    sqlx = d.plan({**answers, "data_layer": "sqlx"}, STD)
    assert sqlx["layer"] == {"sqlc": False, "gorm": False, "sqlx": True} and sqlx["data_layer"]["chosen"] == "sqlx"
    assert "github.com/jmoiron/sqlx" in paths(sqlx) and not any(p.startswith("gorm.io") for p in paths(sqlx))
    assert sqlx["computed"]["data_layer"] == "gorm" and sqlx["computed"]["data_layer_rendered"] == "sqlx"


def test_events_recommendation_follows_async_workflows():
    assert d.events(True).choice == "nats" and "asynchronous" in d.events(True).reason
    assert d.events(False).choice == "none" and "synchronous" in d.events(False).reason


def test_events_recommendation_is_kafka_from_the_standard_event_rate():
    threshold = STD["events"]["kafka_events_per_s"]
    assert d.events(True, threshold - 1, STD).choice == "nats"
    kafka = d.events(True, threshold, STD)
    assert kafka.choice == "kafka" and f"{threshold:,}" in kafka.reason and "partition" in kafka.reason
    assert d.events(False, threshold * 10, STD).choice == "none"  # no asynchronous workflows, no events
    with pytest.raises(ValueError, match="events_per_s must be at least 0"):
        d.events(True, -1, STD)
    answers = dict(peak_rps=80_000, p99_ms=50, packets_per_s=0, cpu_bound=False, exposure="external",
                   schema_churn="low", go_version="1.26", resource="item", async_workflows=True)
    assert d.plan({**answers, "events_per_s": threshold}, STD)["events"]["chosen"] == "kafka"
    assert d.plan(answers, STD)["events"]["chosen"] == "nats"


@pytest.mark.parametrize("broker", ["none", "nats", "redis", "rabbitmq", "kafka"])
def test_events_flags(broker):
    flags = d.events_flags(broker)
    assert flags["broker"] == broker and flags["events"] == (broker != "none") and flags["nats"] == (broker == "nats")
    assert flags["redis"] == (broker == "redis") and flags["rabbitmq"] == (broker == "rabbitmq")
    assert flags["kafka"] == (broker == "kafka")
    # What the broker's configuration has: a retention for the brokers that keep events, an
    # ack wait for those that redeliver what is not acked in time.
    assert flags["retention"] == (broker in ("nats", "redis", "kafka"))
    assert flags["ack_wait"] == (broker in ("nats", "redis"))


def test_events_flags_refuse_brokers_not_offered():
    with pytest.raises(ValueError, match="events must be one of none, nats, redis, rabbitmq, kafka"):
        d.events_flags("pulsar")


def test_the_events_answer_overrides_the_recommendation_and_picks_the_client():
    answers = dict(peak_rps=20_000, p99_ms=50, packets_per_s=0, cpu_bound=False, exposure="external",
                   schema_churn="low", go_version="1.26", resource="item")
    paths = lambda p: {m["path"] for m in p["modules"]}  # noqa: E731
    plain = d.plan(answers, STD)
    assert plain["events"]["chosen"] == "none" and not plain["flags"]["events"] and not plain["on"]["nats"]
    assert "github.com/nats-io/nats.go" not in paths(plain)
    recommended = d.plan({**answers, "async_workflows": True}, STD)
    assert recommended["events"]["chosen"] == "nats" and not recommended["events"]["overridden"]
    assert recommended["on"]["events"] and "github.com/nats-io/nats.go" in paths(recommended)
    chosen = d.plan({**answers, "events": "nats"}, STD)
    assert chosen["events"]["overridden"] and chosen["computed"]["events"] == "none"
    assert chosen["computed"]["events_rendered"] == "nats"
    redis = d.plan({**answers, "async_workflows": True, "events": "redis"}, STD)
    assert redis["events"]["overridden"] and redis["on"]["redis"] and not redis["on"]["nats"]
    assert "github.com/redis/go-redis/v9" in paths(redis) and "github.com/nats-io/nats.go" not in paths(redis)
    rabbit = d.plan({**answers, "async_workflows": True, "events": "rabbitmq"}, STD)
    assert rabbit["on"]["rabbitmq"] and not rabbit["on"]["nats"] and not rabbit["on"]["redis"]
    assert "github.com/rabbitmq/amqp091-go" in paths(rabbit) and "github.com/nats-io/nats.go" not in paths(rabbit)
    kafka = d.plan({**answers, "async_workflows": True, "events": "kafka"}, STD)
    assert kafka["on"]["kafka"] and {"github.com/twmb/franz-go", "github.com/twmb/franz-go/pkg/kadm"} <= paths(kafka)
    declined = d.plan({**answers, "async_workflows": True, "events": "none"}, STD)
    assert declined["events"]["overridden"] and not declined["flags"]["events"]


def test_module_when_names_known_flags_only():
    with pytest.raises(ValueError, match="unknown flags"):
        d.module_wanted({"path": "x", "when": ["gorm", "oracle"]}, {"gorm": True})
    assert d.module_wanted({"path": "x", "when": ["gorm", "postgresql"]}, {"gorm": True, "postgresql": True})
    assert not d.module_wanted({"path": "x", "when": ["gorm", "postgresql"]}, {"gorm": True, "postgresql": False})


# ---------------------------------------------------------------- sizing
def test_pool_size_is_littles_law_with_headroom():
    s = STD["sizing"]
    rps = 20_000
    instances = d.replicas(rps, STD).choice["min"]
    expected = math.ceil(rps / instances * s["db_queries_per_request"] * s["db_query_ms"] / 1000 * s["pool_headroom"])
    decision = d.pool_size(rps, STD)
    assert decision.choice == min(max(expected, s["pool_min"]), s["pool_max"])
    assert decision.numbers["replicas"] == instances
    assert "Little's law" in decision.reason
    # Fewer instances sharing the same peak need bigger pools.
    assert d.pool_size(rps, STD, instances=2).choice > decision.choice


def test_replicas_serve_the_peak_at_the_cpu_target():
    k = STD["kubernetes"]
    per_instance = k["instance_capacity_rps"] * k["hpa_cpu_utilization"]
    r = d.replicas(20_000, STD)
    assert r.choice["min"] == math.ceil(20_000 / per_instance)
    assert r.choice["max"] == math.ceil(20_000 * k["hpa_surge"] / per_instance)
    assert "20,000 req/s" in r.reason and f"{r.choice['max']}" in r.reason
    # A small peak still gets the standard's minimum, and the ceiling stays above it.
    low = d.replicas(1, STD)
    assert low.choice == {"min": k["replicas_min"], "max": k["replicas_min"] + 1} and "minimum" in low.reason
    huge = d.replicas(10_000_000, STD)
    assert huge.choice == {"min": k["replicas_max"], "max": k["replicas_max"]} and "capped" in huge.reason


def test_kubernetes_numbers_fit_the_shutdown_budget():
    budget = d.timeouts(50, STD).choice
    k = d.kubernetes({"min": 9, "max": 17}, 7, budget, STD)
    assert k.choice["grace_s"] * 1000 > budget["drain_delay_ms"] + budget["shutdown_ms"]
    assert k.choice["readiness_period_s"] * k.choice["readiness_failures"] * 1000 < budget["drain_delay_ms"]
    assert k.choice["gomemlimit"] == "460MiB" or k.choice["gomemlimit"].endswith("MiB")
    assert k.choice["connections_at_max"] == 7 * 17
    assert k.numbers["connections_over_default"] is (7 * 17 > STD["kubernetes"]["database_max_connections"])
    assert "pooler" in k.reason
    small = d.kubernetes({"min": 2, "max": 3}, 4, budget, STD)
    assert "within a default server's" in small.reason


def test_kubernetes_refuses_a_readiness_slower_than_the_drain():
    std = {**STD, "kubernetes": {**STD["kubernetes"], "readiness_period_s": 5, "readiness_failures": 3}}
    with pytest.raises(ValueError, match="readiness_period_s x readiness_failures"):
        d.kubernetes({"min": 2, "max": 3}, 4, d.timeouts(50, STD).choice, std)
    std = {**STD, "kubernetes": {**STD["kubernetes"], "memory_limit": "1G"}}
    with pytest.raises(ValueError, match="memory quantity"):
        d.kubernetes({"min": 2, "max": 3}, 4, d.timeouts(50, STD).choice, std)


def test_pool_size_clamps():
    s = STD["sizing"]
    assert d.pool_size(1, STD).choice == s["pool_min"]
    low = d.pool_size(1, STD)
    assert "clamped" in low.reason
    assert d.pool_size(10_000_000, STD).choice == s["pool_max"]


def test_timeouts_derive_from_p99():
    s = STD["sizing"]
    mid_p99 = (s["request_timeout_min_ms"] // s["request_timeout_p99_multiple"]) + 50
    t = d.timeouts(mid_p99, STD).choice
    assert t["request_ms"] == mid_p99 * s["request_timeout_p99_multiple"]
    assert t["read_ms"] == t["request_ms"] + s["io_allowance_ms"]
    assert t["write_ms"] == t["request_ms"] + s["io_allowance_ms"]
    assert t["db_statement_ms"] == t["request_ms"]
    assert d.timeouts(1, STD).choice["request_ms"] == s["request_timeout_min_ms"]
    assert "read/write timeouts" in d.timeouts(50, STD).reason
    assert "read/write" not in d.timeouts(50, STD, http=False).reason
    assert d.timeouts(60_000, STD).choice["request_ms"] == s["request_timeout_max_ms"]
    assert t["shutdown_ms"] < 30_000  # inside Kubernetes' default grace period
    # A call to another service gets a share of the request deadline, split over its tries.
    assert t["outbound_ms"] == int(t["request_ms"] * s["outbound_timeout_share"]) < t["request_ms"]
    assert t["outbound_attempt_ms"] == t["outbound_ms"] // s["outbound_retry_attempts"]
    assert f"{t['outbound_ms']} ms" in d.timeouts(mid_p99, STD).reason


def test_shutdown_drains_behind_a_load_balancer_within_the_grace_period():
    """Readiness fails long enough for Kubernetes to take the endpoint out before the
    listeners close, and drain + shutdown fit in the grace period; standards that do not
    fit are refused."""
    import copy

    t = d.timeouts(50, STD).choice
    assert t["drain_delay_ms"] >= 5000
    assert t["drain_delay_ms"] < t["shutdown_ms"]
    assert t["drain_delay_ms"] + t["shutdown_ms"] < STD["sizing"]["termination_grace_ms"] <= 30_000
    tight = copy.deepcopy(STD)
    tight["sizing"]["drain_delay_ms"] = tight["sizing"]["termination_grace_ms"] - tight["sizing"]["shutdown_timeout_ms"]
    with pytest.raises(ValueError, match="must be below termination_grace_ms"):
        d.timeouts(50, tight)


def test_rate_limit():
    s = STD["sizing"]
    r = d.rate_limit(20_000, STD).choice
    assert r["rps"] == math.ceil(20_000 * s["rate_limit_client_share"])
    assert r["burst"] == r["rps"] * s["rate_limit_burst_multiple"]
    assert d.rate_limit(1, STD).choice["rps"] == s["rate_limit_min_rps"]
    assert d.rate_limit(10_000_000, STD).choice["rps"] == s["rate_limit_max_rps"]


def test_go_version_only_supported_lines():
    assert d.go_version(STD["go"]["default"], STD).choice == STD["go"]["default"] + ".0"
    with pytest.raises(ValueError, match="go_version must be one of"):
        d.go_version("1.22", STD)


@pytest.mark.parametrize(
    ("noun", "plural"),
    [("item", "items"), ("category", "categories"), ("box", "boxes"), ("day", "days"), ("status", "statuses"), ("match", "matches")],
)
def test_plural(noun, plural):
    assert d.plural(noun) == plural


@pytest.mark.parametrize(
    ("noun", "phrase"),
    [("item", "an item"), ("category", "a category"), ("order", "an order"), ("user", "a user"),
     ("unit", "a unit"), ("umbrella", "an umbrella"), ("hour", "an hour"), ("host", "a host"),
     ("euro", "a euro"), ("invoice", "an invoice")],
)
def test_with_article(noun, phrase):
    assert d.with_article(noun) == phrase


def test_plan_has_every_decision():
    answers = dict(peak_rps=20_000, p99_ms=50, packets_per_s=0, cpu_bound=False, exposure="external",
                   schema_churn="low", go_version="1.26", resource="item")
    plan = d.plan(answers, STD)
    for key in ("go", "go_directive", "xdp", "transport", "router", "data_layer", "events", "pool", "timeouts", "rate_limit", "resource", "modules", "tools"):
        assert key in plan
    assert plan["resource"] == {"name": "item", "Name": "Item", "plural": "items", "Plural": "Items", "a_name": "an item"}
    # Modules follow the flags: the default is REST on chi (no gin, no gRPC), all databases.
    assert {m["path"] for m in plan["modules"]} == {
        m["path"] for m in STD["modules"].values() if m.get("when") in (None, "rest", "chi", "postgresql", "mysql_dialect", "sqlc")
    }
    assert plan["data_layer"]["chosen"] == "sqlc" and plan["layer"]["sqlc"]
    assert plan["db"]["types"] == ["postgresql", "mysql", "mariadb", "sqlite"] and plan["db"]["server"]
    assert not d.database_flags(["sqlite"])["server"] and d.database_flags(["mariadb", "sqlite"])["server"]
    assert plan["flags"] == {"rest": True, "grpc": False, "chi": True, "gin": False, "router": "chi",
                             "events": False, "nats": False, "redis": False, "rabbitmq": False,
                             "kafka": False, "broker": "none", "retention": False, "ack_wait": False}
    assert plan["codegen"] == {"sqlc": True, "protobuf": False, "any": True}
    assert not d.plan({**answers, "data_layer": "gorm"}, STD)["codegen"]["any"]


@pytest.mark.parametrize(
    ("transport", "router", "flags"),
    [
        ("rest", "gin", {"rest": True, "grpc": False, "chi": False, "gin": True, "router": "gin"}),
        ("grpc", "chi", {"rest": False, "grpc": True, "chi": False, "gin": False, "router": None}),
        ("rest+grpc", "chi", {"rest": True, "grpc": True, "chi": True, "gin": False, "router": "chi"}),
    ],
)
def test_transport_flags(transport, router, flags):
    assert d.transport_flags(transport, router) == flags


def test_transport_flags_refuse_unknown_values():
    with pytest.raises(ValueError, match="transport must be one of"):
        d.transport_flags("soap", "chi")
    with pytest.raises(ValueError, match="router must be one of"):
        d.transport_flags("rest", "echo")


def test_proto_package():
    assert d.proto_package("my-service") == "my_service"


def test_standards_pin_every_version():
    for spec in list(STD["modules"].values()) + list(STD["tools"].values()):
        assert spec["version"].startswith("v"), spec


# ---------------------------------------------------------------- validators
@pytest.mark.parametrize("good", ["billing-api", "svc", "a1", "orders-v2"])
def test_slug_ok(good):
    assert v.slug(good) == ""


@pytest.mark.parametrize("bad", ["Billing", "billing_api", "-x", "x-", "a--b", "1abc", "", "a b", "x" * 41])
def test_slug_bad(bad):
    assert "service_slug" in v.slug(bad)


@pytest.mark.parametrize("good", ["github.com/acme/billing-api", "example.com/x", "gitlab.example.org/a/b/c.v2", "go.acme.io/svc_x~1"])
def test_module_path_ok(good):
    assert v.module_path(good) == ""


@pytest.mark.parametrize(
    "bad",
    ["", "billing", "github.com/acme/", "/github.com/x", "github.com//x", "GitHub.com/x", "github.com/a b", "example.com/.hidden", "example.com/con", " example.com/x"],
)
def test_module_path_bad(bad):
    msg = v.module_path(bad)
    assert msg.startswith("module_path") and "Go module path" in msg


def test_int_range():
    assert v.int_range("peak_rps", 5, 1, 10) == ""
    assert "from 1 to 10" in v.int_range("peak_rps", 0, 1, 10)
    assert "peak_rps" in v.int_range("peak_rps", 11, 1, 10)
    assert "whole number" in v.int_range("peak_rps", "abc", 1, 10)
    assert "whole number" in v.int_range("peak_rps", True, 1, 10)


def test_resource():
    assert v.resource("item") == ""
    assert "Go keyword" in v.resource("type")
    assert "singular lower-case noun" in v.resource("Item")
    assert "singular lower-case noun" in v.resource("x")


def test_justification_and_text():
    assert "go_justification is required" in v.justification("")
    assert "go_justification is required" in v.justification("too short")
    assert v.justification("Our team only runs Go in production today.") == ""
    assert "one line" in v.text("description", "two\nlines", 100)
    assert "one line" in v.text("description", "ends a comment */", 100)
    assert "at most 5" in v.text("owner", "abcdefg", 5)


def test_database_flags():
    f = d.database_flags(["mariadb", "sqlite"])
    assert f["mysql_dialect"] and not f["postgresql"] and f["types"] == ["mariadb", "sqlite"]
    assert f["dialects"] == ["mysql", "sqlite"]
    assert f["default_type"] == "mariadb"
    assert f["names"] == "MariaDB and SQLite" and not f["mysql_and_mariadb"]
    assert d.database_flags(None)["names"] == "PostgreSQL, MySQL 8, MariaDB and SQLite"
    assert d.database_flags(["mysql", "mariadb", "sqlite"])["mysql_and_mariadb"]
    assert d.database_flags(["postgresql", "mysql", "sqlite"])["default_type"] == "postgresql"
    assert d.database_flags(None)["types"] == ["postgresql", "mysql", "mariadb", "sqlite"]
    with pytest.raises(ValueError, match="databases must be among"):
        d.database_flags(["oracle"])


def test_databases_validator():
    assert v.databases(["sqlite"]) == ""
    assert "must include sqlite" in v.databases(["postgresql"])
    assert "not supported" in v.databases(["oracle", "sqlite"])


def test_events_validator_names_the_question_and_the_choices():
    assert all(v.events(b) == "" for b in ("none", "nats", "redis", "rabbitmq", "kafka"))
    msg = v.events("pulsar")
    assert msg.startswith("events 'pulsar'") and "rabbitmq (RabbitMQ) or kafka (Apache Kafka)" in msg


DECISION_KEYS = {"recommended", "chosen", "overridden", "reason", "numbers"}


def test_every_decision_in_the_plan_has_one_shape():
    answers = dict(peak_rps=800, p99_ms=200, packets_per_s=0, cpu_bound=False, exposure="internal",
                   schema_churn="high", go_version="1.26", resource="item", transport="rest", router="gin",
                   data_layer="sqlx")
    plan = d.plan(answers, STD)
    for name in ("go", "xdp", "transport", "router", "data_layer", "pool", "timeouts", "rate_limit", "slo", "latency_buckets"):
        assert set(plan[name]) == DECISION_KEYS, name
    # The team's answers against the standard's recommendations.
    assert (plan["go"]["recommended"], plan["go"]["chosen"], plan["go"]["overridden"]) == ("flask", "go", True)
    assert (plan["transport"]["recommended"], plan["transport"]["chosen"], plan["transport"]["overridden"]) == ("grpc", "rest", True)
    assert (plan["router"]["recommended"], plan["router"]["chosen"]) == ("chi", "gin")
    assert (plan["data_layer"]["recommended"], plan["data_layer"]["chosen"]) == ("gorm", "sqlx")
    assert plan["pool"]["overridden"] is False and plan["pool"]["chosen"] == d.pool_size(800, STD).choice
    grpc = d.plan({**answers, "transport": "grpc"}, STD)
    assert grpc["router"]["chosen"] == "none" and grpc["computed"]["router_rendered"] == "none"


# ---------------------------------------------------------------- SLO and latency buckets
@pytest.mark.parametrize(("p99", "deadline"), [(50, 250), (1, 250), (200, 800), (2000, 8000), (60_000, 10_000), (3, 250)])
def test_latency_buckets_make_the_p99_target_a_boundary(p99, deadline):
    buckets = d.latency_buckets(p99, deadline, STD).choice
    assert buckets == sorted(set(buckets)) and all(b > 0 for b in buckets)
    assert p99 / 1000 in buckets  # exactly, as a float: the latency SLO's le="..."
    assert deadline / 1000 in buckets
    assert buckets[-1] == max(p99, deadline) / 1000  # nothing above the deadline (or the target)
    for b in buckets:
        if b not in (deadline / 1000, max(p99, deadline) / 1000):
            assert any(math.isclose(b, p99 * m / 1000) for m in STD["slo"]["latency_bucket_multiples"])


def test_latency_buckets_default_and_the_standard_needs_one():
    assert d.latency_buckets(50, 250, STD).choice == [0.0025, 0.005, 0.0125, 0.025, 0.0375, 0.05, 0.075, 0.1, 0.15, 0.25]
    broken = {**STD, "slo": {**STD["slo"], "latency_bucket_multiples": [0.5, 2]}}
    with pytest.raises(ValueError, match="must contain 1"):
        d.latency_buckets(50, 250, broken)


def test_le_matcher_and_go_float():
    assert d.le_matcher(0.05) == 'le="0.05"'
    assert d.le_matcher(1.0) == 'le=~"1|1[.]0"'  # Go writes 1, Prometheus 3 normalizes to 1.0
    assert (d.go_float(0.05), d.go_float(2.0), d.go_float(5e-05)) == ("0.05", "2", "5e-05")


def test_slo_budgets_and_burn_thresholds():
    s = d.slo(99.9, 50, STD)
    c = s.choice
    assert (c["availability_percent"], c["error_budget"], c["latency_budget"], c["latency_target_s"]) == (99.9, 0.001, 0.01, 0.05)
    assert [(a["severity"], a["burn_rate"], a["long"], a["short"]) for a in c["burn_alerts"]] == [
        ("page", 14.4, "1h", "5m"), ("page", 6, "6h", "30m"), ("ticket", 3, "1d", "2h"), ("ticket", 1, "3d", "6h")]
    assert [a["error_ratio"] for a in c["burn_alerts"]] == [0.0144, 0.006, 0.003, 0.001]
    assert [a["slow_ratio"] for a in c["burn_alerts"]] == [0.144, 0.06, 0.03, 0.01]
    assert c["windows"] == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    assert "14.4x over 1h and 5m (page)" in s.reason and "1.44 % failed requests" in s.reason
    assert s.numbers == {"le": "0.05", "le_matcher": 'le="0.05"'}
    # The fastest page must be reachable at the loosest availability the standard accepts.
    loosest = d.slo(STD["slo"]["availability_min"], 50, STD).choice
    assert loosest["burn_alerts"][0]["error_ratio"] < 1
    for bad in (STD["slo"]["availability_below"], STD["slo"]["availability_min"] - 0.01):
        with pytest.raises(ValueError, match="slo_availability"):
            d.slo(bad, 50, STD)


def test_slo_in_the_plan_and_computed_values():
    answers = {"peak_rps": 20000, "p99_ms": 50, "packets_per_s": 0, "cpu_bound": False, "exposure": "external",
               "schema_churn": "low", "go_version": "1.26", "resource": "item", "slo_availability": 99.95}
    p = d.plan(answers, STD)
    assert p["slo"]["chosen"]["error_budget"] == 0.0005
    assert p["computed"]["slo"]["availability_percent"] == 99.95
    assert p["computed"]["latency_buckets_s"] == p["latency_buckets"]["chosen"]
    del answers["slo_availability"]  # older answers files: the standard's default
    assert d.plan(answers, STD)["slo"]["chosen"]["availability_percent"] == STD["slo"]["availability_default"]


def test_percent_range_validator():
    assert v.percent_range("slo_availability", 99.9, 95, 100) == ""
    assert v.percent_range("slo_availability", 95, 95, 100) == ""
    for bad in (100, 100.0, 94.99, "abc", float("nan"), True, None):
        msg = v.percent_range("slo_availability", bad, 95, 100)
        assert msg.startswith("slo_availability must be a percentage of at least 95 and below 100"), (bad, msg)
