"""Validators for the template's answers: pure functions returning "" or the broken rule.

Copier prints "Validation error for question '<name>': <message>", so each message states
the rule in words a person can act on (and repeats the question, for the pty prompt).
"""

from __future__ import annotations

import math
import re
from typing import Any

GO_KEYWORDS = frozenset(
    "break case chan const continue default defer else fallthrough for func go goto if "
    "import interface map package range return select struct switch type var".split()
)

_SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_RESOURCE = re.compile(r"^[a-z][a-z0-9]*$")
# Module path rules from golang.org/x/mod/module.CheckPath, restated.
_PATH_ELEM = re.compile(r"^[A-Za-z0-9._~-]+$")
_FIRST_ELEM = re.compile(r"^[a-z0-9.-]+$")
# Windows reserved names, rejected by Go in any path element.
_RESERVED = {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {
    f"lpt{i}" for i in range(1, 10)
}


def slug(value: str) -> str:
    v = str(value)
    if not _SLUG.match(v):
        return (
            f"service_slug {v!r} must be lower-case letters and digits in words joined by "
            "single hyphens, starting with a letter (e.g. billing-api): it names the binary "
            "and the directory."
        )
    if len(v) > 40:
        return f"service_slug must be at most 40 characters (got {len(v)})."
    return ""


def module_path(value: str) -> str:
    """Check a Go module path the way `go mod init` would."""
    v = str(value)
    rule = "must be a Go module path like github.com/acme/billing-api"
    if not v or v != v.strip():
        return f"module_path {rule}: it is empty or has surrounding spaces."
    if v.startswith("/") or v.endswith("/") or "//" in v:
        return f"module_path {v!r} {rule}: no leading, trailing or double slashes."
    elems = v.split("/")
    first = elems[0]
    if not _FIRST_ELEM.match(first) or "." not in first or first.startswith(("-", ".")):
        return (
            f"module_path {v!r} {rule}: the first element must be a lower-case domain name "
            "with a dot (letters, digits, '-', '.')."
        )
    for elem in elems:
        if not _PATH_ELEM.match(elem):
            return (
                f"module_path {v!r} {rule}: element {elem!r} may only use letters, digits "
                "and '.', '_', '~', '-'."
            )
        if elem.startswith(".") or elem.endswith("."):
            return f"module_path {v!r} {rule}: element {elem!r} may not start or end with a dot."
        if elem.split(".")[0].lower() in _RESERVED:
            return f"module_path {v!r} {rule}: element {elem!r} is a reserved file name."
    return ""


def int_range(question: str, value: Any, lo: int, hi: int) -> str:
    if isinstance(value, bool):
        return f"{question} must be a whole number from {lo:,} to {hi:,}."
    try:
        n = int(value)
    except (TypeError, ValueError):
        return f"{question} must be a whole number from {lo:,} to {hi:,} (got {value!r})."
    if str(value).strip() not in (str(n), f"+{n}") and not isinstance(value, int):
        return f"{question} must be a whole number from {lo:,} to {hi:,} (got {value!r})."
    if not lo <= n <= hi:
        return f"{question} must be a whole number from {lo:,} to {hi:,} (got {n:,})."
    return ""


def percent_range(question: str, value: Any, lo: float, below: float) -> str:
    """A percentage at least lo and below `below` (a float; 99.9 means 99.9 %)."""
    rule = f"{question} must be a percentage of at least {lo:g} and below {below:g} (e.g. 99.9)"
    if isinstance(value, bool):
        return rule + "."
    try:
        x = float(value)
    except (TypeError, ValueError):
        return f"{rule} (got {value!r})."
    if math.isnan(x) or not lo <= x < below:
        return f"{rule} (got {value!r})."
    return ""


def text(question: str, value: Any, max_len: int, required: bool = True) -> str:
    v = "" if value is None else str(value)
    if required and not v.strip():
        return f"{question} is required: it must not be empty."
    if len(v) > max_len:
        return f"{question} must be at most {max_len} characters (got {len(v)})."
    if any(c in v for c in "\n\r\t\x00") or "*/" in v or "{{" in v or "{%" in v:
        return (
            f"{question} must be one line of plain text (no tabs, no '*/', no template markers)."
        )
    return ""


def resource(value: str) -> str:
    v = str(value)
    if not _RESOURCE.match(v) or not 2 <= len(v) <= 30:
        return (
            f"resource {v!r} must be a singular lower-case noun of 2-30 letters and digits, "
            "starting with a letter (e.g. item, invoice)."
        )
    if v in GO_KEYWORDS:
        return f"resource {v!r} is a Go keyword; choose another noun."
    return ""


def justification(value: Any, min_len: int = 20) -> str:
    v = "" if value is None else str(value).strip()
    if len(v) < min_len:
        return (
            "go_justification is required when the numbers do not justify Go: write at least "
            f"{min_len} characters on why Go is still the right choice."
        )
    return text("go_justification", v, 500)


DATABASES = ("postgresql", "mysql", "mariadb", "sqlite")


def databases(value: Any) -> str:
    chosen = list(value or [])
    unknown = [d for d in chosen if d not in DATABASES]
    if unknown:
        return f"databases: {', '.join(map(str, unknown))} not supported; choose from {', '.join(DATABASES)}."
    if "sqlite" not in chosen:
        return "databases must include sqlite: `make run` and the service's own tests run on it."
    return ""


BROKERS = ("none", "nats", "redis", "rabbitmq", "kafka")


def events(value: Any) -> str:
    if value not in BROKERS:
        return (
            f"events {value!r} is not offered: choose none, nats (NATS JetStream), redis "
            "(Redis Streams), rabbitmq (RabbitMQ) or kafka (Apache Kafka)."
        )
    return ""
