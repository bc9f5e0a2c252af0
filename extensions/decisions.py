"""The decision engine: pure functions from a load profile to architecture choices.

Nothing here imports Copier or Jinja. Every function takes the standards data (the parsed
standards.yml) explicitly and returns a `Decision`: the choice and the reason, so the
template can show the reason in prompts and in the service's decision record.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

Standards = dict[str, Any]

EXPOSURES = ("external", "internal", "both")
CHURN_LEVELS = ("low", "medium", "high")
DATA_LAYERS = ("sqlc", "gorm", "sqlx")


@dataclass(frozen=True)
class Decision:
    """A computed choice with the reason behind it (and the numbers, where there are any)."""

    choice: Any
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decided(recommendation: Decision, chosen: Any = None) -> dict[str, Any]:
    """One shape for every decision in the plan: what the standard recommends, what the
    service renders (the team's answer where there is one), whether the two differ, the
    reason and the numbers behind it."""
    chosen = recommendation.choice if chosen is None else chosen
    return {
        "recommended": recommendation.choice,
        "chosen": chosen,
        "overridden": chosen != recommendation.choice,
        "reason": recommendation.reason,
        "numbers": dict(recommendation.numbers),
    }


def _fmt(n: float) -> str:
    """Format a number with thousands separators and no needless decimals."""
    if float(n).is_integer():
        return f"{int(n):,}"
    return f"{n:,.2f}"


def go_justified(
    peak_rps: int, p99_ms: int, packets_per_s: int, cpu_bound: bool, std: Standards
) -> Decision:
    """Is Go justified for this load? Playbook: only above the thresholds, strictly."""
    t = std["thresholds"]
    reasons = []
    if peak_rps > t["go_min_peak_rps"]:
        reasons.append(f"peak {_fmt(peak_rps)} req/s > {_fmt(t['go_min_peak_rps'])} req/s")
    if p99_ms < t["go_max_p99_ms"]:
        reasons.append(f"p99 target {_fmt(p99_ms)} ms < {_fmt(t['go_max_p99_ms'])} ms")
    if packets_per_s > t["go_min_packets_per_s"]:
        reasons.append(
            f"packet work {_fmt(packets_per_s)}/s > {_fmt(t['go_min_packets_per_s'])}/s"
        )
    if cpu_bound:
        reasons.append("the work is CPU-bound")
    if reasons:
        return Decision(True, "Go is justified: " + "; ".join(reasons) + ".", {"brief": "Go is justified"})
    brief = (
        f"Go is not justified: {_fmt(peak_rps)} req/s <= {_fmt(t['go_min_peak_rps'])}, "
        f"p99 {_fmt(p99_ms)} ms >= {_fmt(t['go_max_p99_ms'])} ms, no heavy packet or CPU work "
        "(standard: Flask)"
    )
    return Decision(
        False,
        "Go is not justified by the numbers: "
        f"peak {_fmt(peak_rps)} req/s <= {_fmt(t['go_min_peak_rps'])}, "
        f"p99 target {_fmt(p99_ms)} ms >= {_fmt(t['go_max_p99_ms'])} ms, "
        f"packets {_fmt(packets_per_s)}/s <= {_fmt(t['go_min_packets_per_s'])}/s, "
        "not CPU-bound. The platform standard for this load is Flask (Python).",
        {"brief": brief},
    )


def xdp_tier(packets_per_s: int, std: Standards) -> Decision:
    """Packet-processing tier: standard Go networking, consider XDP, or XDP required."""
    t = std["thresholds"]
    lo, hi = t["xdp_consider_packets_per_s"], t["xdp_required_packets_per_s"]
    if packets_per_s < lo:
        return Decision(
            "standard", f"{_fmt(packets_per_s)} packets/s < {_fmt(lo)}/s: standard Go networking."
        )
    if packets_per_s <= hi:
        return Decision(
            "consider",
            f"{_fmt(packets_per_s)} packets/s is within {_fmt(lo)}-{_fmt(hi)}/s: "
            "consider XDP, profile the standard path first.",
        )
    return Decision(
        "required", f"{_fmt(packets_per_s)} packets/s > {_fmt(hi)}/s: XDP/AF_XDP is required."
    )


# Who calls the service -> the transport the standard recommends, and why.
TRANSPORT_BY_EXPOSURE = {
    "external": ("rest", "Called by external clients: REST (JSON over HTTP) on a versioned path."),
    "internal": ("grpc", "Called by other services only: gRPC with health checks."),
    "both": ("rest+grpc", "Called by clients and services: REST and gRPC over one service layer."),
}


def transport(exposure: str) -> Decision:
    """REST for clients, gRPC between services, both when both call it."""
    if exposure not in TRANSPORT_BY_EXPOSURE:
        raise ValueError(f"exposure must be one of {', '.join(EXPOSURES)}, not {exposure!r}")
    return Decision(*TRANSPORT_BY_EXPOSURE[exposure])


def router(delivery_speed_first: bool = False) -> Decision:
    """chi for lean explicit REST; gin when delivery speed and its ecosystem matter."""
    if delivery_speed_first:
        return Decision("gin", "Delivery speed and gin's middleware ecosystem come first.")
    return Decision(
        "chi",
        "chi: lean, explicit, net/http-native routing; the router costs 2-4% of a request, "
        "so the choice is about code, not speed.",
    )


# How often the schema changes -> the data layer the standard recommends, and why.
DATA_LAYER_BY_CHURN = {
    "low": ("sqlc", "Schema churn is low: sqlc gives type-safe SQL at raw-driver speed."),
    "medium": ("sqlc", "Schema churn is medium: sqlc gives type-safe SQL at raw-driver speed."),
    "high": ("gorm", "Schema churn is high: GORM keeps model changes cheap (about 1.5x read cost)."),
}


def data_layer(schema_churn: str) -> Decision:
    """sqlc for type-safe SQL on hot paths; GORM when the schema churns; sqlx is opt-in."""
    if schema_churn not in DATA_LAYER_BY_CHURN:
        raise ValueError(f"schema_churn must be one of {', '.join(CHURN_LEVELS)}, not {schema_churn!r}")
    return Decision(*DATA_LAYER_BY_CHURN[schema_churn])


def data_layer_flags(choice: str) -> dict[str, Any]:
    """The rendered data layer: one of sqlc, gorm, sqlx (the answer; the default is the
    recommendation)."""
    if choice not in DATA_LAYERS:
        raise ValueError(f"data_layer must be one of {', '.join(DATA_LAYERS)}, not {choice!r}")
    return {d: d == choice for d in DATA_LAYERS}


BROKERS = ("none", "nats", "redis", "rabbitmq", "kafka")


def events(async_workflows: bool, events_per_s: int = 0, std: Standards | None = None) -> Decision:
    """Events when workflows are asynchronous: NATS JetStream, the broker with the least to
    run (one binary, persistence and per-message deduplication built in), or Kafka from the
    standard's event rate on (partitions spread the load over brokers and consumer
    replicas, and the log keeps events for replay); none otherwise, since an event nobody
    needs is a table, a relay and a broker to operate for nothing."""
    if events_per_s < 0:
        raise ValueError(f"events_per_s must be at least 0, not {events_per_s}")
    threshold = (std or {}).get("events", {}).get("kafka_events_per_s")
    if async_workflows and threshold is not None and events_per_s >= threshold:
        return Decision(
            "kafka",
            f"Workflows are asynchronous at {events_per_s:,} events/s, at or above the standard's "
            f"{threshold:,}/s: Kafka, whose partitioned topic spreads the events over brokers and "
            "consumer replicas (each resource's events on one partition, in order) and keeps them "
            "for replay; a transactional outbox publishes them at least once.",
        )
    if async_workflows:
        return Decision(
            "nats",
            "Workflows are asynchronous: the service publishes its changes as events through a "
            "transactional outbox to NATS JetStream (one small server, persistent streams, "
            "deduplication by message ID); delivery is at least once, ordered per resource.",
        )
    return Decision(
        "none",
        "Workflows are synchronous: no events, so no outbox, relay or broker to operate.",
    )


def events_flags(choice: str) -> dict[str, Any]:
    """The rendered broker: `events` is on for any broker, and each broker has its flag."""
    if choice not in BROKERS:
        raise ValueError(f"events must be one of {', '.join(BROKERS)}, not {choice!r}")
    return {"events": choice != "none", **{b: choice == b for b in BROKERS[1:]}, "broker": choice,
            # The broker keeps events for a time (a stream, a log): EVENTS_STREAM_MAX_AGE.
            "retention": choice in ("nats", "redis", "kafka"),
            # The broker delivers again a message not acked in time: EVENTS_CONSUMER_ACK_WAIT.
            "ack_wait": choice in ("nats", "redis")}


def _clamp(value: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, value))


def replicas(peak_rps: int, std: Standards) -> Decision:
    """How many instances serve the peak: enough that each runs at the autoscaler's CPU
    target at the answered peak (never fewer than the standard's minimum), and the
    autoscaler's ceiling for a surge above it."""
    k = std["kubernetes"]
    per_instance = k["instance_capacity_rps"] * k["hpa_cpu_utilization"]
    needed = math.ceil(peak_rps / per_instance)
    low = min(max(k["replicas_min"], needed), k["replicas_max"])
    high = min(max(low + 1, math.ceil(peak_rps * k["hpa_surge"] / per_instance)), k["replicas_max"])
    note = ""
    if needed < k["replicas_min"]:
        note = f", raised to the standard's minimum of {k['replicas_min']}"
    elif needed > k["replicas_max"]:
        note = f", capped at {k['replicas_max']}"
    return Decision(
        {"min": low, "max": high},
        f"One instance serves {_fmt(k['instance_capacity_rps'])} req/s at its CPU request; at the "
        f"autoscaler's {k['hpa_cpu_utilization']:.0%} CPU target that is {_fmt(per_instance)} req/s, so peak "
        f"{_fmt(peak_rps)} req/s needs {_fmt(needed)} {'instance' if needed == 1 else 'instances'}{note}; the autoscaler may grow to "
        f"{high} for {k['hpa_surge']}x the peak.",
        {"needed": needed, "per_instance_rps": per_instance},
    )


def pool_size(peak_rps: int, std: Standards, instances: int | None = None) -> Decision:
    """DB pool size per instance from Little's law: L = lambda x W, with headroom, clamped.
    The peak is shared by `instances` (default: the replicas the peak needs)."""
    s = std["sizing"]
    if instances is None:
        instances = replicas(peak_rps, std).choice["min"]
    per_instance_rps = peak_rps / instances
    query_rate = per_instance_rps * s["db_queries_per_request"]
    concurrency = query_rate * s["db_query_ms"] / 1000.0
    raw = math.ceil(concurrency * s["pool_headroom"])
    size = int(_clamp(raw, s["pool_min"], s["pool_max"]))
    clamp_note = ""
    if size != raw:
        clamp_note = f", clamped to [{s['pool_min']}, {s['pool_max']}]"
    return Decision(
        size,
        f"Little's law: {_fmt(per_instance_rps)} req/s per instance x "
        f"{s['db_queries_per_request']} query x {s['db_query_ms']} ms = "
        f"{concurrency:.1f} connections busy; x {s['pool_headroom']} headroom = {raw}{clamp_note}.",
        {
            "replicas": instances,
            "per_instance_rps": per_instance_rps,
            "concurrency": round(concurrency, 2),
            "raw": raw,
        },
    )


def timeouts(p99_ms: int, std: Standards, http: bool = True) -> Decision:
    """Per-request deadline and HTTP server timeouts derived from the p99 target. Without
    an HTTP API (http=False) the reason leaves out the read/write timeouts."""
    s = std["sizing"]
    if s["drain_delay_ms"] + s["shutdown_timeout_ms"] >= s["termination_grace_ms"]:
        # Kubernetes kills the process at the end of the grace period: a drain delay and a
        # shutdown timeout that do not fit in it cut off in-flight requests.
        raise ValueError(
            f"standards: drain_delay_ms {s['drain_delay_ms']} + shutdown_timeout_ms {s['shutdown_timeout_ms']} "
            f"must be below termination_grace_ms {s['termination_grace_ms']}"
        )
    raw = p99_ms * s["request_timeout_p99_multiple"]
    request = int(_clamp(raw, s["request_timeout_min_ms"], s["request_timeout_max_ms"]))
    # A call to another service runs inside a request, so it gets a share of its deadline,
    # split over the tries of an idempotent call.
    outbound = int(request * s["outbound_timeout_share"])
    attempts = s["outbound_retry_attempts"]
    budget = {
        "request_ms": request,
        "read_header_ms": s["read_header_timeout_ms"],
        "read_ms": request + s["io_allowance_ms"],
        "write_ms": request + s["io_allowance_ms"],
        "idle_ms": s["idle_timeout_ms"],
        "shutdown_ms": s["shutdown_timeout_ms"],
        "drain_delay_ms": s["drain_delay_ms"],
        "db_statement_ms": request,
        "outbound_ms": outbound,
        "outbound_attempt_ms": max(1, outbound // attempts),
    }
    clamp_note = "" if request == raw else (
        f", clamped to [{s['request_timeout_min_ms']}, {s['request_timeout_max_ms']}] ms"
    )
    return Decision(
        budget,
        f"Request deadline = p99 {p99_ms} ms x {s['request_timeout_p99_multiple']} = "
        f"{raw} ms{clamp_note}; "
        + (f"read/write timeouts add {s['io_allowance_ms']} ms for I/O; " if http else "")
        + "database statements share the request deadline; "
        f"a call to another service may take {s['outbound_timeout_share']:.0%} of it, {outbound} ms, "
        f"{max(1, outbound // attempts)} ms per try over at most {attempts} tries.",
    )


def _mebibytes(quantity: str) -> int:
    """A Kubernetes memory quantity in Mi or Gi as MiB."""
    m = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    if not m:
        raise ValueError(f"standards: memory quantity {quantity!r}: use <n>Mi or <n>Gi")
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


def kubernetes(instances: dict[str, int], pool: int, budget: dict[str, int], std: Standards) -> Decision:
    """The Deployment's numbers: replicas and autoscaling, resources, GOMEMLIMIT, probe timing
    and the grace period, checked against the shutdown budget and the database's connections."""
    k, s = std["kubernetes"], std["sizing"]
    grace_s = math.ceil(s["termination_grace_ms"] / 1000)
    removal_ms = k["readiness_period_s"] * k["readiness_failures"] * 1000
    if removal_ms >= budget["drain_delay_ms"]:
        # A failing readiness probe must take the instance out of the endpoints before the
        # drain delay ends and the listeners close.
        raise ValueError(
            f"standards: kubernetes readiness_period_s x readiness_failures = {removal_ms} ms must be "
            f"below sizing.drain_delay_ms {budget['drain_delay_ms']}"
        )
    gomemlimit = int(_mebibytes(k["memory_limit"]) * k["gomemlimit_share"])
    connections = pool * instances["max"]
    over = connections > k["database_max_connections"]
    return Decision(
        {
            "replicas_min": instances["min"],
            "replicas_max": instances["max"],
            "hpa_cpu_percent": round(k["hpa_cpu_utilization"] * 100),
            "grace_s": grace_s,
            "cpu_request": k["cpu_request"],
            "cpu_limit": k["cpu_limit"],
            "memory_request": k["memory_request"],
            "memory_limit": k["memory_limit"],
            "gomemlimit": f"{gomemlimit}MiB",
            "readiness_period_s": k["readiness_period_s"],
            "readiness_failures": k["readiness_failures"],
            "liveness_period_s": k["liveness_period_s"],
            "liveness_failures": k["liveness_failures"],
            "startup_period_s": k["startup_period_s"],
            "startup_failures": k["startup_failures"],
            "pdb_max_unavailable": k["pdb_max_unavailable"],
            "run_as_user": k["run_as_user"],
            "connections_at_max": connections,
        },
        f"Grace period {grace_s} s covers the drain delay ({budget['drain_delay_ms'] / 1000:g} s) and the "
        f"shutdown timeout ({budget['shutdown_ms'] / 1000:g} s); a failing /readyz leaves the endpoints after "
        f"{removal_ms / 1000:g} s, inside the drain delay. GOMEMLIMIT {gomemlimit}MiB is "
        f"{k['gomemlimit_share']:.0%} of the {k['memory_limit']} limit. At {instances['max']} replicas the pools "
        f"hold {connections} database connections"
        + (
            f", more than a default server's {k['database_max_connections']}: put a pooler (PgBouncer, "
            f"ProxySQL, MaxScale) in front or raise max_connections."
            if over else f", within a default server's {k['database_max_connections']}."
        ),
        {"connections_over_default": over},
    )


def rate_limit(peak_rps: int, std: Standards) -> Decision:
    """Per-client token bucket: no single client takes more than a share of the peak."""
    s = std["sizing"]
    raw = peak_rps * s["rate_limit_client_share"]
    rps = int(_clamp(math.ceil(raw), s["rate_limit_min_rps"], s["rate_limit_max_rps"]))
    burst = rps * s["rate_limit_burst_multiple"]
    return Decision(
        {"rps": rps, "burst": burst},
        f"One client may take {s['rate_limit_client_share']:.0%} of peak {_fmt(peak_rps)} req/s "
        f"= {_fmt(raw)} req/s, clamped to [{s['rate_limit_min_rps']}, {s['rate_limit_max_rps']}] "
        f"-> {rps} req/s, burst {burst}.",
    )


def _seconds(ms: float) -> float:
    """Milliseconds as seconds, rounded past float noise (0.05, not 0.05000000000000001)."""
    return round(ms / 1000.0, 9)


def latency_buckets(p99_ms: int, request_ms: int, std: Standards) -> Decision:
    """Histogram buckets (seconds) from the p99 target: multiples of it from the standard, so
    the target is exactly a bucket boundary (the latency SLO counts the requests under it),
    capped at the request deadline, which is the last bucket (nothing is served later)."""
    multiples = std["slo"]["latency_bucket_multiples"]
    if 1 not in multiples:
        raise ValueError("standards: slo.latency_bucket_multiples must contain 1 (the p99 target is a bucket)")
    cap_ms = max(request_ms, p99_ms)  # a p99 target beyond the deadline stays a boundary
    bounds = sorted(
        {_seconds(p99_ms * m) for m in multiples if p99_ms * m <= cap_ms} | {_seconds(request_ms), _seconds(cap_ms)}
    )
    bounds = [b for b in bounds if b > 0]
    return Decision(
        bounds,
        f"Buckets are the p99 target {p99_ms} ms x {', '.join(f'{m:g}' for m in multiples)}, up to the "
        f"request deadline {cap_ms} ms (the last bucket): the target is a bucket boundary, so the "
        "latency SLO counts requests under it exactly.",
        {"p99_s": _seconds(p99_ms), "count": len(bounds)},
    )


def le_matcher(seconds: float) -> str:
    """A PromQL matcher for a histogram bucket's le label: Go's client writes 0.05 and 1,
    Prometheus 3 normalizes whole numbers to 1.0, so whole numbers match either form."""
    if float(seconds).is_integer():
        return f'le=~"{int(seconds)}|{int(seconds)}[.]0"'
    return f'le="{seconds!r}"'


def slo(availability: float, p99_ms: int, std: Standards) -> Decision:
    """The service level objectives and the burn-rate alerts on their error budgets.

    Availability: the share of requests that do not fail (the answer). Latency: the share
    answered within the p99 target (the standard). Each alert of the standard fires when the
    budget burns burn_rate times faster than the window allows, over a long and a short
    window at once (Google SRE workbook, multiwindow multi-burn-rate)."""
    s = std["slo"]
    lo, below = s["availability_min"], s["availability_below"]
    if not lo <= availability < below:
        raise ValueError(f"slo_availability must be at least {lo} and below {below}, not {availability!r}")
    error_budget = round(1 - availability / 100, 9)
    latency_budget = round(1 - s["latency_objective"] / 100, 9)
    alerts = [
        {
            "severity": a["severity"],
            "burn_rate": a["burn_rate"],
            "long": a["long"],
            "short": a["short"],
            "error_ratio": round(a["burn_rate"] * error_budget, 9),
            "slow_ratio": round(a["burn_rate"] * latency_budget, 9),
            "error_percent": round(a["burn_rate"] * error_budget * 100, 9),
            "slow_percent": round(a["burn_rate"] * latency_budget * 100, 9),
            "budget_hours": round(s["window_days"] * 24 / a["burn_rate"], 1),
        }
        for a in s["burn_alerts"]
    ]
    windows = sorted({a[w] for a in alerts for w in ("long", "short")}, key=_window_seconds)
    fastest = alerts[0]
    return Decision(
        {
            "availability_percent": availability,
            "error_budget": error_budget,
            "error_budget_percent": round(100 - availability, 9),
            "latency_objective_percent": s["latency_objective"],
            "latency_budget": latency_budget,
            "latency_budget_percent": round(100 - s["latency_objective"], 9),
            "latency_target_ms": p99_ms,
            "latency_target_s": _seconds(p99_ms),
            "window_days": s["window_days"],
            "windows": windows,
            "burn_alerts": alerts,
        },
        f"Availability {availability:g} % over {s['window_days']} days: an error budget of "
        f"{error_budget * 100:g} % of requests; latency: {s['latency_objective']:g} % of requests "
        f"within the p99 target {p99_ms} ms, a budget of {latency_budget * 100:g} %. Alerts fire when a "
        f"budget burns too fast over a long and a short window at once: "
        + "; ".join(f"{a['burn_rate']:g}x over {a['long']} and {a['short']} ({a['severity']})" for a in alerts)
        + f". The fastest page fires at {fastest['error_ratio'] * 100:g} % failed requests.",
        {"le": go_float(_seconds(p99_ms)), "le_matcher": le_matcher(_seconds(p99_ms))},
    )


def go_float(x: float) -> str:
    """A float as Go's Prometheus client writes a bucket's le label: 0.05, 1, 2.5e-05."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _window_seconds(window: str) -> int:
    """A Prometheus duration of one unit (5m, 1h, 3d) in seconds."""
    return int(window[:-1]) * _WINDOW_UNITS[window[-1]]


def plural(noun: str) -> str:
    """English plural of a lower-case resource noun (table names, collection paths)."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


# Nouns whose first letter does not decide the article: a "you" or "w" sound takes "a",
# a silent h takes "an".
_A_BEFORE = ("uni", "use", "usu", "uti", "eu", "ewe", "one")
_AN_BEFORE = ("hour", "honest", "honor", "honour", "heir")


def with_article(noun: str) -> str:
    """The noun with its indefinite article: an item, a category, a user, an hour."""
    lower = noun.lower()
    vowel_sound = lower[:1] in ("a", "e", "i", "o", "u")
    if lower.startswith(_A_BEFORE):
        vowel_sound = False
    elif lower.startswith(_AN_BEFORE):
        vowel_sound = True
    return ("an " if vowel_sound else "a ") + noun


def go_version(requested: str, std: Standards) -> Decision:
    """The go.mod directive for a supported Go line."""
    supported = std["go"]["supported"]
    if requested not in supported:
        raise ValueError(f"go_version must be one of {', '.join(supported)}, not {requested!r}")
    return Decision(
        f"{requested}.0", f"Go {requested} is a supported release line; go.mod says go {requested}.0."
    )


TRANSPORTS = ("rest", "grpc", "rest+grpc")
ROUTERS = ("chi", "gin")


def transport_flags(transport_choice: str, router_choice: str | None) -> dict[str, Any]:
    """The flags templates branch on, from the chosen transport and router."""
    if transport_choice not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport_choice!r}")
    rest = transport_choice in ("rest", "rest+grpc")
    router_name = (router_choice or "chi") if rest else None
    if rest and router_name not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router_choice!r}")
    return {
        "rest": rest,
        "grpc": transport_choice in ("grpc", "rest+grpc"),
        "chi": router_name == "chi",
        "gin": router_name == "gin",
        "router": router_name,
    }


DB_TYPES = ("postgresql", "mysql", "mariadb", "sqlite")
ENGINE_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL 8", "mariadb": "MariaDB", "sqlite": "SQLite"}


def database_flags(chosen: list[str] | None) -> dict[str, Any]:
    """Which engines are compiled in; mysql and mariadb share the MySQL dialect."""
    chosen = list(chosen) if chosen else list(DB_TYPES)
    unknown = [d for d in chosen if d not in DB_TYPES]
    if unknown:
        raise ValueError(f"databases must be among {', '.join(DB_TYPES)}, not {unknown!r}")
    flags = {d: d in chosen for d in DB_TYPES}
    flags["mysql_dialect"] = flags["mysql"] or flags["mariadb"]
    # Both flavors of the MySQL dialect: the engine then picks session settings per DB_TYPE.
    flags["mysql_and_mariadb"] = flags["mysql"] and flags["mariadb"]
    flags["server"] = flags["postgresql"] or flags["mysql_dialect"]  # any engine that needs a server
    flags["types"] = [d for d in DB_TYPES if flags[d]]
    # Production's engine by default: PostgreSQL when compiled in, else the first chosen.
    flags["default_type"] = "postgresql" if flags["postgresql"] else flags["types"][0]
    flags["dialects"] = [d for d, on in (("postgres", flags["postgresql"]), ("mysql", flags["mysql_dialect"]), ("sqlite", True)) if on]
    names = [ENGINE_NAMES[d] for d in flags["types"]]
    flags["names"] = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return flags


def proto_package(slug: str) -> str:
    """A protobuf package name from a service slug: my-service -> my_service."""
    return slug.replace("-", "_")


def repository_url(module_path: str, std: Standards) -> str:
    """The web address of the service's repository, when its Go module path names a known
    forge (github.com/org/svc -> https://github.com/org/svc); else "" (no links)."""
    parts = module_path.split("/")
    if len(parts) >= 3 and parts[0] in std["catalog"]["forges"]:
        return "https://" + "/".join(parts[:3])
    return ""


def plan(answers: dict[str, Any], std: Standards) -> dict[str, Any]:
    """Every computed decision for a set of answers, as plain data for the templates."""
    go = go_justified(
        answers["peak_rps"], answers["p99_ms"], answers["packets_per_s"], answers["cpu_bound"], std
    )
    resource = answers["resource"]
    recommended_transport = transport(answers["exposure"])
    flags = transport_flags(answers.get("transport") or recommended_transport.choice, answers.get("router"))
    recommended_events = events(bool(answers.get("async_workflows", False)), int(answers.get("events_per_s", 0)), std)
    flags.update(events_flags(answers.get("events") or recommended_events.choice))
    recommended_layer = data_layer(answers["schema_churn"])
    layer = answers.get("data_layer") or recommended_layer.choice
    backend = Decision("go" if go.choice else "flask", go.reason, go.numbers)
    result = {
        # Every decision: {recommended, chosen, overridden, reason, numbers} (see decided).
        "go": decided(backend, chosen="go"),
        "xdp": decided(xdp_tier(answers["packets_per_s"], std)),
        "transport": decided(recommended_transport, chosen="+".join(t for t in ("rest", "grpc") if flags[t])),
        "router": decided(router(), chosen=flags["router"]) if flags["rest"] else decided(Decision("none", "No REST API: no router.")),
        "data_layer": decided(recommended_layer, chosen=layer),
        "replicas": decided(replicas(answers["peak_rps"], std)),
        "events": decided(recommended_events, chosen=flags["broker"]),
        "pool": decided(pool_size(answers["peak_rps"], std)),
        "timeouts": decided(timeouts(answers["p99_ms"], std, http=flags["rest"])),
        "rate_limit": decided(rate_limit(answers["peak_rps"], std)),
        "slo": decided(slo(float(answers.get("slo_availability", std["slo"]["availability_default"])), answers["p99_ms"], std)),
        # Flags the templates and the file table branch on.
        "flags": flags,
        "db": database_flags(answers.get("databases")),
        "layer": data_layer_flags(layer),
        "go_directive": go_version(answers["go_version"], std).choice,
        "proto": {"package": proto_package(answers.get("service_slug", "service")), "version": f"v{std['api']['major_version']}"},
        "repo_url": repository_url(answers.get("module_path", ""), std),
        "tools": std["tools"],
        "modules": [],
        "resource": {
            "name": resource,
            "Name": resource[:1].upper() + resource[1:],
            "plural": plural(resource),
            "Plural": plural(resource)[:1].upper() + plural(resource)[1:],
            "a_name": with_article(resource),
        },
    }
    # What `make generate` regenerates: sqlc's Go from the SQL, protobuf code from the proto.
    sqlc, protobuf = result["layer"]["sqlc"], result["flags"]["grpc"]
    result["codegen"] = {"sqlc": sqlc, "protobuf": protobuf, "any": sqlc or protobuf}
    on = {**result["flags"], **result["db"], **result["layer"]}
    result["on"] = {k: v for k, v in on.items() if isinstance(v, bool)}
    result["modules"] = [
        {"name": k, "path": v["path"], "version": v["version"]}
        for k, v in sorted(std["modules"].items(), key=lambda kv: kv[1]["path"])
        if module_wanted(v, on)
    ]
    result["kubernetes"] = decided(
        kubernetes(result["replicas"]["chosen"], result["pool"]["chosen"], result["timeouts"]["chosen"], std)
    )
    result["latency_buckets"] = decided(
        latency_buckets(answers["p99_ms"], result["timeouts"]["chosen"]["request_ms"], std)
    )
    result["computed"] = computed_summary(result, std)
    return result


def flags_on(when: Any, on: dict[str, Any], what: str) -> bool:
    """Is a `when` (a computed flag's name, a list of names that must all be on, or
    None/"always") satisfied by the plan's flags? Unknown names are an error in `what`."""
    if when is None or when == "always":
        return True
    names = [when] if isinstance(when, str) else list(when)
    unknown = [n for n in names if n not in on]
    if unknown:
        raise ValueError(f"{what} names unknown flags {unknown}")
    return all(on[n] is True for n in names)


def module_wanted(module: dict[str, Any], on: dict[str, Any]) -> bool:
    """A module is required when every computed flag its `when` names is on (a flag name
    or a list of them; no `when`: always)."""
    return flags_on(module.get("when"), on, f"standards.yml: module {module['path']}")


def excluded_files(table: list[dict[str, Any]], on: dict[str, Any], resource: str) -> list[str]:
    """The file table (files.yml) as `_exclude` patterns: the paths of every entry whose
    flags are off, anchored at the project root. A file renders when no pattern matches it."""
    out: list[str] = []
    for entry in table:
        if not flags_on(entry["when"], on, f"files.yml: entry {entry['paths'][:1]}"):
            out += ["/" + p.replace("{resource}", resource).rstrip("/") for p in entry["paths"]]
    return out


def computed_summary(p: dict[str, Any], std: Standards) -> dict[str, Any]:
    """The computed values a service carries (docs/adr/computed.yml): what `copier update`
    compares to tell a team what a new standard changed."""
    return {
        "go": {"justified": p["go"]["recommended"] == "go", "directive": p["go_directive"]},
        "xdp_tier": p["xdp"]["chosen"],
        "transport": p["transport"]["recommended"],
        "transport_rendered": p["transport"]["chosen"],
        "router_rendered": p["router"]["chosen"],
        "data_layer": p["data_layer"]["recommended"],
        "data_layer_rendered": p["data_layer"]["chosen"],
        "events": p["events"]["recommended"],
        "events_rendered": p["events"]["chosen"],
        "databases": p["db"]["types"],
        "replicas": dict(p["replicas"]["chosen"]),
        "db_pool_max_conns": p["pool"]["chosen"],
        "kubernetes": {
            key: p["kubernetes"]["chosen"][key]
            for key in ("grace_s", "cpu_request", "cpu_limit", "memory_request", "memory_limit", "gomemlimit", "hpa_cpu_percent")
        },
        "timeouts_ms": dict(p["timeouts"]["chosen"]),
        "rate_limit": dict(p["rate_limit"]["chosen"]),
        "slo": {
            k: v for k, v in p["slo"]["chosen"].items()
            if k in ("availability_percent", "latency_objective_percent", "latency_target_ms", "window_days")
        } | {"burn_alerts": [dict(a) for a in p["slo"]["chosen"]["burn_alerts"]]},
        "latency_buckets_s": list(p["latency_buckets"]["chosen"]),
        "modules": {m["path"]: m["version"] for m in p["modules"]},
        "tools": {t["path"]: t["version"] for t in p["tools"].values()},
        "linters": list(std["lint"]["linters"]),
    }
