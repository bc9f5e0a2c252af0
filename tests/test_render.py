"""Render tests: which files exist for which answers, the answers file, no leftover Jinja,
computed values, and bad answers refused with a message naming the question and the rule."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import copier
import pytest
import yaml
from copier.errors import UnsafeTemplateError

from extensions.jinja_ext import env_duration, go_duration
from tests.conftest import ROOT, STANDARDS, render, render_shared

pytestmark = pytest.mark.fast

JUSTIFIED_LOW = {
    "peak_rps": 500,
    "p99_ms": 150,
    "go_justification": "Shared Go libraries make this the cheaper service to run.",
}

EXPECTED_FILES = [
    ".copier-answers.yml",
    ".dockerignore",
    ".gitignore",
    ".github/workflows/ci.yml",
    ".golangci.yml",
    "Dockerfile",
    "Makefile",
    "README.md",
    "docs/adr/0001-architecture.md",
    "docs/adr/computed.yml",
    "scripts/check-conflicts.sh",
    "go.mod",
    "sqlc.yaml",
    "cmd/my-service/main.go",
    "internal/app/app.go",
    "internal/app/app_test.go",
    "internal/app/healthcheck.go",
    "internal/config/config.go",
    "internal/domain/errors.go",
    "internal/domain/item.go",
    "internal/health/health.go",
    "internal/httpapi/errors.go",
    "internal/httpapi/item.go",
    "internal/httpapi/routes.go",
    "internal/httpapi/server.go",
    "internal/httpapi/router.go",
    "internal/service/item.go",
    "internal/service/item_test.go",
    "internal/store/store.go",
    "internal/store/migrations/sqlite/00001_init.sql",
    "internal/store/migrations/postgres/00001_init.sql",
    "internal/store/queries/sqlite/item.sql",
    "internal/store/queries/postgres/item.sql",
    "internal/store/sqlite/gen/item.sql.go",
    "internal/store/postgres/gen/item.sql.go",
    "internal/store/storetest/storetest.go",
    "internal/store/storeerr/storeerr.go",
    "internal/store/sqlite/sqlite.go",
    "internal/store/sqlite/item.go",
    "internal/store/postgres/item.go",
]


@pytest.fixture(scope="module")
def default() -> Path:
    return render_shared()


def test_default_files(default):
    missing = [f for f in EXPECTED_FILES if not (default / f).is_file()]
    assert not missing


def test_nothing_template_only_leaks(default):
    names = {p.name for p in default.rglob("*")}
    assert not any(n.endswith(".jinja") for n in names)
    for leak in ("copier.yml", "extensions", "tests", "pyproject.toml", "standards.yml"):
        assert leak not in names


def test_answers_file(default):
    answers = yaml.safe_load((default / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == str(ROOT)
    assert answers["service_slug"] == "my-service"
    assert answers["resource"] == "item"
    assert answers["peak_rps"] == 20000
    assert "go_justification" not in answers  # only asked below the thresholds


def test_no_leftover_jinja(default):
    marker = re.compile(r"\{\{|\{%|%\}|\{#")
    # Grafana's legends name labels as {{label}}: its own syntax, not a leftover.
    legend = re.compile(r'"legendFormat": "[^"]*"')
    # GitHub Actions expressions (${{ github.ref_name }}) and docker/metadata-action's tag
    # patterns (pattern={{version}}) are theirs too.
    actions = re.compile(r"\$\{\{ [^}]* \}\}|pattern=[{}a-z.]+")
    offenders = [
        str(p.relative_to(default))
        for p in default.rglob("*")
        if p.is_file() and marker.search(actions.sub("", legend.sub("", p.read_text(errors="replace"))))
    ]
    assert not offenders


def test_go_mod_pins_the_standards(default):
    gomod = (default / "go.mod").read_text()
    assert "module github.com/example/my-service" in gomod
    assert f"go {STANDARDS['go']['default']}.0\n" in gomod
    assert "toolchain" not in gomod
    for spec in STANDARDS["modules"].values():
        line = f"\t{spec['path']} {spec['version']}\n"
        # The default renders REST on chi (no gin, no gRPC) and all four databases.
        assert (line in gomod) == (spec.get("when") in (None, "rest", "chi", "postgresql", "mysql_dialect")), spec


@pytest.mark.parametrize(
    ("data", "present", "absent", "modules"),
    [
        ({"router": "gin"}, ["internal/httpapi/router.go", "api/openapi.yaml"], ["internal/grpcapi", "api/proto", "buf.yaml"],
         {"gin", "cors", "kin_openapi"}),
        ({"exposure": "internal"}, ["internal/grpcapi/server.go", "internal/grpcapi/item.go", "buf.yaml", "buf.gen.yaml",
                                    "api/proto/my_service/v1/item.proto"], ["internal/httpapi", "api/openapi.yaml"],
         {"grpc", "protobuf", "genproto_rpc", "otelgrpc"}),
        ({"transport": "rest+grpc"}, ["internal/httpapi/router.go", "internal/grpcapi/server.go", "api/proto/my_service/v1/item.proto",
                                      "api/openapi.yaml"], [], {"chi", "cors", "kin_openapi", "grpc", "protobuf", "genproto_rpc", "otelgrpc"}),
    ],
)
def test_transport_variants(data, present, absent, modules):
    proj = render_shared(data)
    for f in present:
        assert (proj / f).exists(), f
    for f in absent:
        assert not (proj / f).exists(), f
    gomod = (proj / "go.mod").read_text()
    wanted = {name for name, spec in STANDARDS["modules"].items()
              if spec.get("when") in ("rest", "chi", "gin", "grpc") and spec["path"] in gomod}
    assert wanted == modules
    router = (proj / "internal/httpapi/router.go")
    if router.exists():
        assert ("gin-gonic" in router.read_text()) == ("gin" in modules)


def test_transport_follows_the_callers_unless_overridden():
    from extensions import decisions

    for exposure in ("external", "internal", "both"):
        proj = render_shared({"exposure": exposure})
        answers = yaml.safe_load((proj / ".copier-answers.yml").read_text())
        assert answers["transport"] == decisions.transport(exposure).choice
        adr = (proj / "docs/adr/0001-architecture.md").read_text()
        assert decisions.transport(exposure).reason in adr
    proj = render_shared({"exposure": "internal", "transport": "rest", "router": "gin"})
    assert (proj / "internal/httpapi").is_dir() and not (proj / "internal/grpcapi").exists()


def test_tools_and_images_come_from_the_standards(default):
    makefile = (default / "Makefile").read_text()
    for name in ("golangci_lint", "sqlc", "govulncheck"):
        spec = STANDARDS["tools"][name]
        assert f"{spec['path']}@{spec['version']}" in makefile
    dockerfile = (default / "Dockerfile").read_text()
    assert f"golang:{STANDARDS['go']['default']} AS build" in dockerfile
    assert STANDARDS["images"]["runtime"] in dockerfile
    assert 'HEALTHCHECK' in dockerfile and '"-healthcheck"' in dockerfile and "curl" not in dockerfile
    assert "USER 65532:65532" in dockerfile
    lint = yaml.safe_load((default / ".golangci.yml").read_text())
    assert lint["version"] == "2"
    assert {"staticcheck", "gosec", "errcheck", "ineffassign", "unused"} <= set(lint["linters"]["enable"])


def test_template_hardcodes_no_version_or_port():
    """Numbers and versions live in extensions/standards.yml, not in template/."""
    version = re.compile(r"\bv\d+\.\d+\.\d+\b")
    ports = re.compile(r"\b(" + "|".join(str(p) for p in STANDARDS["ports"].values()) + r")\b")
    offenders = []
    for p in (ROOT / "template").rglob("*"):
        if not p.is_file():
            continue
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if version.search(line) or ports.search(line):
                offenders.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders


def test_computed_values_follow_the_answers(tmp_path):
    from extensions import decisions

    a = render(tmp_path / "a", {"peak_rps": 20_000, "p99_ms": 50}, skip_tasks=True)
    b = render(tmp_path / "b", {"peak_rps": 90_000, "p99_ms": 5}, skip_tasks=True)
    for proj, rps, p99 in ((a, 20_000, 50), (b, 90_000, 5)):
        cfg = (proj / "internal/config/config.go").read_text()
        pool = decisions.pool_size(rps, STANDARDS).choice
        req = decisions.timeouts(p99, STANDARDS).choice["request_ms"]
        assert f'env:"DB_MAX_CONNS" envDefault:"{pool}"' in cfg
        assert f'env:"REQUEST_TIMEOUT" envDefault:"{env_duration(req)}"' in cfg
        adr = (proj / "docs/adr/0001-architecture.md").read_text()
        assert f"### Database pool: {pool} connections per instance" in adr
        assert "Little's law" in adr
    assert (a / "internal/config/config.go").read_text() != (b / "internal/config/config.go").read_text()


def test_justification_is_recorded(tmp_path):
    proj = render(tmp_path / "svc", JUSTIFIED_LOW, skip_tasks=True)
    main = (proj / "cmd/my-service/main.go").read_text()
    assert "Go was chosen below the platform thresholds" in main
    assert JUSTIFIED_LOW["go_justification"] in main
    assert main.index(JUSTIFIED_LOW["go_justification"]) < main.index("package main")
    adr = (proj / "docs/adr/0001-architecture.md").read_text()
    assert JUSTIFIED_LOW["go_justification"] in adr and "not justified" in adr
    answers = yaml.safe_load((proj / ".copier-answers.yml").read_text())
    assert answers["go_justification"] == JUSTIFIED_LOW["go_justification"]


def test_other_resource_and_go_line(tmp_path):
    newer = STANDARDS["go"]["supported"][-1]
    proj = render(tmp_path / "svc", {"resource": "category", "go_version": newer}, skip_tasks=True)
    assert (proj / "internal/domain/category.go").is_file()
    assert "/categories" in (proj / "internal/httpapi/routes.go").read_text()
    assert "CREATE TABLE categories" in (proj / "internal/store/migrations/postgres/00001_init.sql").read_text()
    assert f"go {newer}.0\n" in (proj / "go.mod").read_text()
    assert f"golang:{newer} AS build" in (proj / "Dockerfile").read_text()


BAD_ANSWERS = [
    ({"service_slug": "Bad_Slug"}, "service_slug", "single hyphens"),
    ({"module_path": "not a path"}, "module_path", "Go module path"),
    ({"module_path": "nodot/x"}, "module_path", "domain name"),
    ({"peak_rps": 0}, "peak_rps", "whole number from 1"),
    ({"p99_ms": 10_000_000}, "p99_ms", "whole number from 1"),
    ({"slo_availability": 100}, "slo_availability", "at least 95 and below 100"),
    ({"slo_availability": 80}, "slo_availability", "at least 95 and below 100"),
    ({"packets_per_s": -1}, "packets_per_s", "whole number from 0"),
    ({"resource": "func"}, "resource", "Go keyword"),
    ({"resource": "Items"}, "resource", "singular lower-case noun"),
    ({"description": "a */ b"}, "description", "one line"),
    ({"project_name": ""}, "project_name", "required"),
    ({"databases": ["postgresql"]}, "databases", "must include sqlite"),
    ({"peak_rps": 500, "p99_ms": 150}, "go_justification", "is required"),
    ({"peak_rps": 500, "p99_ms": 150, "go_justification": ""}, "go_justification", "required when the numbers do not justify Go"),
    ({"peak_rps": 500, "p99_ms": 150, "go_justification": "because"}, "go_justification", "at least 20 characters"),
]


@pytest.mark.parametrize(("data", "question", "rule"), BAD_ANSWERS)
def test_bad_answers_are_refused(tmp_path, data, question, rule):
    dst = tmp_path / "svc"
    with pytest.raises(ValueError) as err:
        render(dst, data, skip_tasks=True)
    message = str(err.value)
    # Copier names the question in one of two forms (validator failure / missing answer).
    assert f"question '{question}'" in message or f'Question "{question}"' in message
    assert rule in message
    assert not dst.exists(), "a refused answer must leave nothing behind"


def test_unsupported_go_version_is_refused(tmp_path):
    with pytest.raises(ValueError, match="go_version"):
        render(tmp_path / "svc", {"go_version": "1.22"}, skip_tasks=True)
    assert not (tmp_path / "svc").exists()


def copier_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("copier") or sys.executable
    cmd = [exe, *args] if exe.endswith("copier") else [exe, "-m", "copier", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_cli_bad_data_exits_nonzero_with_the_rule(tmp_path):
    dst = tmp_path / "svc"
    proc = copier_cli("copy", "--trust", "--defaults", "--vcs-ref=HEAD", "--skip-tasks",
                      "--data", "module_path=Not A Path", str(ROOT), str(dst))
    assert proc.returncode != 0
    assert "module_path" in proc.stderr and "Go module path" in proc.stderr
    assert not dst.exists()


def test_untrusted_copy_is_refused(tmp_path):
    with pytest.raises(UnsafeTemplateError):
        copier.run_copy(str(ROOT), str(tmp_path / "svc"), defaults=True, vcs_ref="HEAD", quiet=True)
    proc = copier_cli("copy", "--defaults", "--vcs-ref=HEAD", str(ROOT), str(tmp_path / "cli"))
    assert proc.returncode == 4


def test_tasks_fail_clearly_without_go(tmp_path):
    """Without Go on PATH the first task stops with a message saying what to do."""
    keep = []
    for tool in ("git", "sh"):
        found = shutil.which(tool)
        assert found
        keep.append(str(Path(found).parent))
    keep.append(str(Path(sys.executable).parent))
    path = os.pathsep.join(dict.fromkeys(keep))
    env = dict(os.environ, PATH=path)
    assert shutil.which("go", path=path) is None
    exe = [sys.executable, "-m", "copier"]
    proc = subprocess.run([*exe, "copy", "--trust", "--defaults", "--vcs-ref=HEAD", str(ROOT), str(tmp_path / "svc")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "Go toolchain ('go') was not found" in proc.stderr
    assert "--skip-tasks" in proc.stderr and "go mod tidy" in proc.stderr


# pytest-copie: the same checks through the fixture most Copier templates test with.
def test_copie_renders_the_defaults(copie):
    result = copie.copy(extra_answers={"project_name": "Copie Check"})
    assert result.exit_code == 0, result.exception
    assert result.project_dir.joinpath("cmd/copie-check/main.go").is_file()
    assert result.answers["service_slug"] == "copie-check"


def test_copie_reports_a_bad_answer(copie):
    result = copie.copy(extra_answers={"resource": "range"})
    assert result.exit_code == -1
    assert "Validation error for question 'resource'" in str(result.exception)
    assert "Go keyword" in str(result.exception)


@pytest.mark.parametrize(
    ("databases", "dirs", "absent", "modules"),
    [
        (["postgresql", "mysql", "mariadb", "sqlite"], ["postgres", "mysql", "sqlite"], [], {"pgx", "otelpgx", "mysql", "retry"}),
        (["mariadb", "sqlite"], ["mysql", "sqlite"], ["postgres"], {"mysql", "retry"}),
        (["postgresql", "sqlite"], ["postgres", "sqlite"], ["mysql"], {"pgx", "otelpgx"}),
        (["sqlite"], ["sqlite"], ["postgres", "mysql"], set()),
    ],
)
def test_databases_compiled_in(databases, dirs, absent, modules):
    proj = render_shared({"databases": databases})
    store = proj / "internal/store"
    for d in dirs:
        assert (store / d).is_dir() and (store / "migrations" / d).is_dir() and (store / "queries" / d).is_dir(), d
    for d in absent:
        assert not (store / d).exists() and not (store / "migrations" / d).exists(), d
    types = [t for t in ("postgresql", "mysql", "mariadb", "sqlite") if t in databases]
    assert "var Types = []string{" + ", ".join(f'"{t}"' for t in types) + "}" in (store / "store.go").read_text()
    gomod = (proj / "go.mod").read_text()
    wanted = {name for name, spec in STANDARDS["modules"].items()
              if spec.get("when") in ("postgresql", "mysql_dialect") and spec["path"] in gomod}
    assert wanted == modules
    sqlc = yaml.safe_load((proj / "sqlc.yaml").read_text())
    assert sorted(e["engine"] for e in sqlc["sql"]) == sorted({"postgres": "postgresql", "mysql": "mysql", "sqlite": "sqlite"}[d] for d in dirs)
    default_type = 'envDefault:"postgresql"' if "postgresql" in databases else f'envDefault:"{types[0]}"'
    assert f'env:"DB_TYPE" {default_type}' in (proj / "internal/config/config.go").read_text()


def test_runtime_policy_numbers_come_from_the_standards(default):
    from extensions import decisions

    s = STANDARDS["sizing"]
    app = (default / "internal/app/app.go").read_text()
    assert f"health.New(db, {go_duration(s['readiness_ping_timeout_ms'])})" in app
    assert f"backoff := {go_duration(s['migrate_retry_base_ms'])}" in app
    assert f"min(backoff*2, {go_duration(s['migrate_retry_cap_ms'])})" in app
    healthcheck = (default / "internal/app/healthcheck.go").read_text()
    assert f"context.WithTimeout(ctx, {go_duration(s['healthcheck_timeout_ms'])})" in healthcheck
    auth = (default / "internal/auth/auth.go").read_text()
    assert f"jwt.WithLeeway({go_duration(s['jwt_leeway_s'] * 1000)})" in auth
    sec = STANDARDS["security"]
    assert f"rate.Every({go_duration(sec['jwks_unknown_kid_refresh_s'] * 1000)})" in auth
    assert f"HTTPTimeout:       {go_duration(sec['jwks_http_timeout_ms'])}," in auth
    middleware = (default / "internal/ratelimit/ratelimit.go").read_text()
    assert f"clientIdleAfter = {go_duration(s['rate_limit_client_idle_minutes'] * 60_000)}" in middleware
    httpapi = (default / "internal/httpapi/middleware.go").read_text() + (default / "internal/httpapi/server.go").read_text()
    assert f"max-age={sec['hsts_max_age_s']}; includeSubDomains" in httpapi and f"MaxAge:           {sec['cors_max_age_s']}," in httpapi
    # What a person writes: time.Second, 2 * time.Second, "60s", never 1000*time.Millisecond
    # or "60000ms".
    assert "health.New(db, time.Second)" in app and "jwt.WithLeeway(30 * time.Second)" in auth
    config = (default / "internal/config/config.go").read_text()
    assert 'env:"HTTP_IDLE_TIMEOUT" envDefault:"1m"' in config
    # Calls to other services: the deadlines from the timeout budget, the rest from the standards.
    budget = decisions.timeouts(50, STANDARDS).choice
    for var, value in {
        "OUTBOUND_TIMEOUT": env_duration(budget["outbound_ms"]),
        "OUTBOUND_ATTEMPT_TIMEOUT": env_duration(budget["outbound_attempt_ms"]),
        "OUTBOUND_RETRY_ATTEMPTS": s["outbound_retry_attempts"],
        "OUTBOUND_RETRY_BASE": env_duration(s["outbound_retry_base_ms"]),
        "OUTBOUND_RETRY_CAP": env_duration(s["outbound_retry_cap_ms"]),
        "OUTBOUND_RETRY_AFTER_CAP": env_duration(s["outbound_retry_after_cap_ms"]),
        "OUTBOUND_BREAKER_FAILURES": s["outbound_breaker_failures"],
        "OUTBOUND_BREAKER_OPEN": env_duration(s["outbound_breaker_open_ms"]),
        "OUTBOUND_MAX_IN_FLIGHT": s["outbound_max_in_flight"],
    }.items():
        assert f'env:"{var}" envDefault:"{value}"' in config, var
    for text in (app, healthcheck, auth, middleware, config):
        assert not re.search(r"\d000\s*\*\s*time\.Millisecond|\d000ms", text)


@pytest.mark.parametrize("layer", ["gorm", "sqlx"])
def test_data_layer_renders_one_package_and_no_sqlc(layer):
    proj = render_shared({"data_layer": layer, "databases": ["mariadb", "sqlite"]})
    store = proj / "internal/store"
    assert (store / f"{layer}store" / "item.go").is_file()
    other = {"gorm": "sqlx", "sqlx": "gorm"}[layer]
    assert not (store / f"{other}store").exists()
    # No sqlc anywhere: no config, queries, generated code or Makefile tool.
    assert not (proj / "sqlc.yaml").exists() and not (store / "queries").exists()
    assert not list(store.rglob("gen")) and not (store / "sqlite" / "item.go").exists()
    assert "SQLC" not in (proj / "Makefile").read_text()
    assert f"{layer}store.New(e)" in (store / "store.go").read_text()
    gomod = (proj / "go.mod").read_text()
    if layer == "gorm":
        assert "gorm.io/driver/mysql" in gomod and "gorm.io/driver/sqlite" in gomod
        assert "gorm.io/driver/postgres" not in gomod and "jmoiron/sqlx" not in gomod
    else:
        assert "jmoiron/sqlx" in gomod and "gorm.io" not in gomod
    answers = yaml.safe_load((proj / ".copier-answers.yml").read_text())
    assert answers["data_layer"] == layer
    computed = yaml.safe_load((proj / "docs/adr/computed.yml").read_text())
    assert computed["data_layer_rendered"] == layer
    adr = (proj / "docs/adr/0001-architecture.md").read_text()
    assert f"### Data layer: {layer} (recommended: sqlc)" in adr and f"The team chose {layer} instead." in adr
    assert {"gorm": "pure-Go modernc.org/sqlite connection", "sqlx": "placeholders that sqlx rebinds"}[layer] in adr


def test_data_layer_default_follows_schema_churn():
    proj = render_shared({"schema_churn": "high"})
    assert yaml.safe_load((proj / ".copier-answers.yml").read_text())["data_layer"] == "gorm"
    assert (proj / "internal/store/gormstore").is_dir()


def test_an_unknown_data_layer_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Invalid choice for 'data_layer'"):
        render(tmp_path / "svc", {"data_layer": "ent"}, skip_tasks=True)
    assert not (tmp_path / "svc").exists() or not any((tmp_path / "svc").iterdir())
