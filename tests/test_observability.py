"""SLO alerting, the dashboard and the saturation metrics (issue 12).

promtool (Debian's prometheus package) checks the rendered rules and runs their unit tests,
whose synthetic series make each alert fire and stay quiet; every metric the rules and the
dashboard name must be one the built binary exposes; the new metrics move on real traffic.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import render, unavailable
from tests.test_smoke import GRPCClient, Service, base_env, binaries, call  # noqa: F401 (binaries is a fixture)

TRANSPORTS = {"rest": {"transport": "rest"}, "grpc": {"transport": "grpc"}, "rest+grpc": {"transport": "rest+grpc"}}
# Other SLO numbers: the loosest availability, a tight one, a whole-second p99 target (le="1").
SLO_VARIANTS = {
    **TRANSPORTS,
    "loose": {"transport": "rest+grpc", "slo_availability": 95},
    "tight-1s": {"transport": "grpc", "slo_availability": 99.99, "p99_ms": 1000},
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        unavailable("promtool is not on PATH (apt-get install prometheus)")
    return path


def promtool_run(promtool: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The deploy/ files of a variant, rendered without tasks (no Go needed)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = render(tmp_path_factory.mktemp(f"obs-{name.replace('+', '-')}") / "svc", SLO_VARIANTS[name], skip_tasks=True)
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(SLO_VARIANTS))
def test_rules_pass_promtool_check_and_their_unit_tests(promtool, rendered, variant):
    rules = rendered(variant) / "deploy" / "prometheus"
    out = promtool_run(promtool, "check", "rules", "alerts.yml", cwd=rules)
    assert "SUCCESS" in out
    out = promtool_run(promtool, "test", "rules", "alerts_test.yml", cwd=rules)
    assert "SUCCESS" in out
    tests = yaml.safe_load((rules / "alerts_test.yml").read_text())["tests"]
    alerts = {r["alert"] for g in yaml.safe_load((rules / "alerts.yml").read_text())["groups"] for r in g["rules"] if "alert" in r}
    # Every alert is tested both ways: firing (expected alerts) and quiet (none expected).
    for name in alerts:
        cases = [t for group in tests for t in group["alert_rule_test"] if t["alertname"] == name]
        assert any(c["exp_alerts"] for c in cases), f"{name} is never shown firing"
        assert any(not c["exp_alerts"] for c in cases), f"{name} is never shown quiet"


@pytest.mark.slow
def test_rule_unit_tests_catch_a_wrong_threshold(promtool, rendered, tmp_path):
    """The unit tests are not vacuous: a page threshold raised tenfold fails them."""
    src = rendered("rest") / "deploy" / "prometheus"
    for f in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(src / f, tmp_path / f)
    text = (tmp_path / "alerts.yml").read_text()
    page = yaml.safe_load(text)["groups"][1]["rules"][0]["expr"]
    threshold = re.search(r"> ([0-9.e-]+)", page).group(1)
    (tmp_path / "alerts.yml").write_text(text.replace(f"> {threshold}\n", f"> {float(threshold) * 10}\n", 1))
    proc = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "AvailabilityErrorBudgetBurn" in proc.stdout + proc.stderr


def dashboard_exprs(project: Path) -> list[str]:
    board = json.loads((project / "deploy" / "grafana" / "dashboard.json").read_text())
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "job"}
    exprs = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        exprs += [t["expr"] for t in panel["targets"]]
    return exprs


def rule_exprs(project: Path) -> tuple[list[str], set[str]]:
    groups = yaml.safe_load((project / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    return [r["expr"] for r in rules], {r["record"] for r in rules if "record" in r}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(TRANSPORTS))
def test_dashboard_is_json_and_every_expression_parses(promtool, rendered, variant, tmp_path):
    project = rendered(variant)
    exprs = dashboard_exprs(project)
    concrete = [e.replace("$job", "svc").replace("$__rate_interval", "5m") for e in exprs]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(concrete)]}]}
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump(rules))
    out = promtool_run(promtool, "check", "rules", "dashboard-rules.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(concrete)} rules found" in out
    board = json.loads((project / "deploy" / "grafana" / "dashboard.json").read_text())
    thresholds = [s["value"] for p in board["panels"] if p["type"] != "row"
                  for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None]
    assert 0.05 in thresholds  # the p99 target (50 ms, the default) is a threshold line


# ---------------------------------------------------------------- the built binary

def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: every selector here has a {...}."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))


def exposed(text: str) -> set[str]:
    """Metric names on a /metrics page, histograms also under their _bucket/_sum/_count series."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def scrape(svc: Service) -> str:
    with urllib.request.urlopen(svc.metrics + "/metrics", timeout=10) as res:
        return res.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def grpc_method_code(addr: str, n: int) -> list[str]:
    client = GRPCClient(addr, "item")
    try:
        return [client.code("ListItems", page_size=1) for _ in range(n)]
    finally:
        client.close()


@pytest.mark.go
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["default", "grpc", "chi-grpc"])
def test_rules_and_dashboard_name_only_metrics_the_binary_exposes(binaries, projects, variant, tmp_path):
    svc = Service(binaries[variant], base_env(DB_TYPE="sqlite", DATABASE_URL=f"file:{tmp_path}/obs.db", GRPC_ADDR="127.0.0.1:0",
                                               RATE_LIMIT_RPS="1", RATE_LIMIT_BURST="2"))
    try:
        svc.wait_listening().wait_ready()
        rest, grpc_on = bool(svc.api), bool(svc.grpc)
        assert rest == (variant != "grpc") and grpc_on == (variant != "default")
        text = scrape(svc)
        assert sample(text, "service_ready") == 1.0
        # The rate limit (1 req/s, burst 2) refuses the rest of a quick burst.
        if rest:
            assert sample(text, "rate_limited_requests_total", transport="http") == 0.0
            codes = [call("GET", svc.api + "/api/v1/items")[0] for _ in range(8)]
            assert 429 in codes and 200 in codes, codes
        if grpc_on:
            assert sample(text, "rate_limited_requests_total", transport="grpc") == 0.0
            assert sample(text, "grpc_server_in_flight") == 0.0
            codes = grpc_method_code(svc.grpc, 8)
            assert "RESOURCE_EXHAUSTED" in codes and ("OK" in codes or rest), codes  # one limiter for both
        text = scrape(svc)
        if rest:
            assert sample(text, "rate_limited_requests_total", transport="http") == codes_refused(text, "http")
            assert sample(text, "rate_limited_requests_total", transport="http") >= 1
            assert sample(text, "http_requests_total", code="429") >= 1
        if grpc_on:
            assert sample(text, "rate_limited_requests_total", transport="grpc") >= 1
            assert sample(text, "grpc_server_handled_total", code="ResourceExhausted") >= 1
        names = exposed(text)
        project = projects[variant]
        exprs, recorded = rule_exprs(project)
        wanted = set().union(*(metric_names(e) for e in exprs + dashboard_exprs(project)))
        assert wanted, "no metric names found in the expressions"
        missing = {n for n in wanted - recorded - names}
        assert not missing, f"named in the rules or dashboard but not exposed by the binary: {sorted(missing)}"
        for must in ("service_ready", "rate_limited_requests_total", "go_goroutines", "db_pool_in_use_connections"):
            assert must in wanted and must in names
        assert ("grpc_server_in_flight" in wanted) == grpc_on
        assert ("http_requests_in_flight" in wanted) == rest
    finally:
        svc.stop()


def codes_refused(text: str, transport: str) -> float:
    """429s answered over HTTP, every route (the counter counts exactly those)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("http_requests_total{") and 'code="429"' in line)


@pytest.mark.go
@pytest.mark.slow
def test_readiness_gauge_reads_zero_while_not_ready(binaries, tmp_path):
    """service_ready follows readiness: 0 while the database cannot be reached."""
    svc = Service(binaries["default"], base_env(DB_TYPE="postgresql", DATABASE_URL="postgres://u:p@127.0.0.1:1/none?sslmode=disable"))
    try:
        svc.wait_listening()
        deadline = time.monotonic() + 10
        while sample(scrape(svc), "service_ready") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sample(scrape(svc), "service_ready") == 0.0
        assert call("GET", svc.api + "/readyz")[0] == 503
    finally:
        svc.stop()
