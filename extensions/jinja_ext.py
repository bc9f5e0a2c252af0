"""Jinja glue: exposes the standards data, the decision engine and the validators to
copier.yml and to the templates.

Copier loads this file by path (copier_template_extensions.TemplateExtensionLoader), once per
template version. The sibling modules and standards.yml are loaded by path too, under names
unique to this file's location, so two template versions in one process (as in an update)
never share a stale copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from copier_template_extensions import ContextHook
from jinja2.ext import Extension

HERE = Path(__file__).resolve().parent


def _load(name: str) -> ModuleType:
    tag = hashlib.sha1(str(HERE).encode()).hexdigest()[:10]
    full = f"_copier_go_service_{tag}_{name}"
    spec = importlib.util.spec_from_file_location(full, HERE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


decisions = _load("decisions")
validators = _load("validators")
STANDARDS: dict[str, Any] = yaml.safe_load((HERE / "standards.yml").read_text(encoding="utf-8"))
FILE_TABLE: list[dict[str, Any]] = yaml.safe_load((HERE / "files.yml").read_text(encoding="utf-8"))

REQUIRED_FOR_PLAN = (
    "peak_rps", "p99_ms", "packets_per_s", "cpu_bound", "exposure", "schema_churn",
    "go_version", "resource",
)
OPTIONAL_FOR_PLAN = ("transport", "router", "service_slug", "databases", "data_layer", "slo_availability", "module_path", "events",
                     "events_per_s")


def _text(limit: int) -> Any:
    return lambda question, value: validators.text(question, value, limit)


# Question -> its rule (the integer ranges come from the standards' `answers` limits).
RULES = {
    "service_slug": lambda q, v: validators.slug(v),
    "module_path": lambda q, v: validators.module_path(v),
    "resource": lambda q, v: validators.resource(v),
    "databases": lambda q, v: validators.databases(v),
    "events": lambda q, v: validators.events(v),
    "go_justification": lambda q, v: validators.justification(v),
    "project_name": _text(80),
    "description": _text(200),
    "owner": _text(80),
    "slo_availability": lambda q, v: validators.percent_range(
        q, v, STANDARDS["slo"]["availability_min"], STANDARDS["slo"]["availability_below"]
    ),
    **{q: (lambda lim: lambda q, v: validators.int_range(q, v, lim["min"], lim["max"]))(lim)
       for q, lim in STANDARDS["answers"].items()},
}


def _answer_rule(question: str, value: Any) -> str:
    """One entry point for every copier.yml validator: "" when valid, else the rule."""
    if question not in RULES:
        raise KeyError(f"no validator for question {question!r}")
    return RULES[question](question, value)


def _go_verdict(peak_rps: Any, p99_ms: Any, packets_per_s: Any, cpu_bound: Any) -> dict[str, Any]:
    return decisions.go_justified(
        int(peak_rps), int(p99_ms), int(packets_per_s), bool(cpu_bound), STANDARDS
    ).as_dict()


# Recommendations copier.yml shows at the prompt, in the plan's decision shape.
RECOMMENDATIONS = {
    "transport": lambda exposure: decisions.transport(exposure),
    "data_layer": lambda churn: decisions.data_layer(churn),
    "events": lambda async_workflows, rate=0: decisions.events(bool(async_workflows), int(rate or 0), STANDARDS),
    "xdp": lambda packets: decisions.xdp_tier(int(packets), STANDARDS),
    "pool": lambda rps: decisions.pool_size(int(rps), STANDARDS),
    "timeouts": lambda p99: decisions.timeouts(int(p99), STANDARDS),
}


def _recommend(kind: str, *args: Any) -> dict[str, Any]:
    if kind not in RECOMMENDATIONS:
        raise KeyError(f"no recommendation named {kind!r}")
    return decisions.decided(RECOMMENDATIONS[kind](*args))


class GoServiceGlobals(Extension):
    """Globals for copier.yml: standards, validators and recommendations."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["std"] = STANDARDS
        environment.globals["answer_rule"] = _answer_rule
        environment.globals["go_verdict"] = _go_verdict
        environment.globals["recommend"] = _recommend
        environment.filters["go_string"] = _go_string
        environment.filters["go_duration"] = go_duration
        environment.filters["env_duration"] = env_duration


def _go_string(value: Any) -> str:
    """A Go interpreted string literal for any text."""
    s = str(value)
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# Go's duration units, largest first, in milliseconds.
_GO_UNITS = (("time.Hour", 3_600_000), ("time.Minute", 60_000), ("time.Second", 1000), ("time.Millisecond", 1))


def go_duration(ms: Any) -> str:
    """A Go duration expression for a whole number of milliseconds, in the largest unit that
    divides it: 1000 -> time.Second, 2000 -> 2 * time.Second, 250 -> 250 * time.Millisecond,
    180000 -> 3 * time.Minute, 0 -> 0."""
    n = _whole_ms(ms)
    if n == 0:
        return "0"
    for unit, size in _GO_UNITS:
        if n % size == 0:
            count = n // size
            return unit if count == 1 else f"{count} * {unit}"
    raise AssertionError("unreachable: every whole number divides by 1")


def env_duration(ms: Any) -> str:
    """A time.ParseDuration string for a whole number of milliseconds, as a person writes it:
    60000 -> 1m, 90000 -> 1m30s, 2000 -> 2s, 1250 -> 1.25s, 250 -> 250ms, 0 -> 0s."""
    n = _whole_ms(ms)
    if n == 0:
        return "0s"
    if n < 1000:
        return f"{n}ms"
    hours, rest = divmod(n, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if millis:
        out += f"{seconds}.{millis:03d}".rstrip("0") + "s"
    elif seconds:
        out += f"{seconds}s"
    return out


def _whole_ms(ms: Any) -> int:
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise ValueError(f"a duration must be a whole, non-negative number of milliseconds, not {ms!r}")
    return ms


_PLANS: dict[str, dict[str, Any]] = {}


def _plan_for(answers: dict[str, Any]) -> dict[str, Any]:
    """The plan for a set of answers, computed once per set: Copier makes a new context for
    every file name and file it renders (over a thousand per copy), each asking for it."""
    key = json.dumps(answers, sort_keys=True, default=str)
    if key not in _PLANS:
        if len(_PLANS) > 64:
            _PLANS.clear()
        plan = decisions.plan(answers, STANDARDS)
        plan["excluded_files"] = decisions.excluded_files(FILE_TABLE, plan["on"], answers["resource"])
        _PLANS[key] = plan
    return _PLANS[key]


class GoServiceContext(ContextHook):
    """At render time, adds `plan` (every computed decision) to the template context."""

    def hook(self, context: dict[str, Any]) -> None:
        if context.get("_copier_phase") not in ("render", "tasks"):
            return
        if any(k not in context for k in REQUIRED_FOR_PLAN):
            return
        answers = {k: context[k] for k in REQUIRED_FOR_PLAN}
        answers.update({
            k: context[k] for k in OPTIONAL_FOR_PLAN
            if isinstance(context.get(k), (str, list, float, int)) and not isinstance(context.get(k), bool)
        })
        if isinstance(context.get("async_workflows"), bool):
            answers["async_workflows"] = context["async_workflows"]
        context["plan"] = _plan_for(answers)
        context["R"] = context["plan"]["resource"]
