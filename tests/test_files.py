"""The file table (extensions/files.yml): every template file has a rule, no path under
template/ hides a condition, and each option value adds and removes exactly the files
written below, in a real render."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from copier._main import _pathspec_pattern as PATTERN  # the pattern flavour Copier's _exclude uses
from pathspec import PathSpec

from extensions import decisions
from tests.conftest import ROOT, render_shared

pytestmark = pytest.mark.fast

TABLE = yaml.safe_load((ROOT / "extensions/files.yml").read_text())
TEMPLATE = ROOT / "template"

# What the placeholders in template paths render to with the default answers.
PLACEHOLDERS = {
    "{{_copier_conf.answers_file}}": ".copier-answers.yml",
    "{{service_slug}}": "my-service",
    "{{ plan.proto.package }}": "my_service",
    "{{ plan.proto.version }}": "v1",
    "{{resource}}": "item",
    "{{ resource }}": "item",
}


def template_files() -> list[str]:
    """Destination paths of every file under template/ (default answers)."""
    out = []
    for p in sorted(TEMPLATE.rglob("*")):
        if not p.is_file() or p.suffix == ".partial":
            continue
        rel = str(p.relative_to(TEMPLATE)).removesuffix(".jinja")
        for k, v in PLACEHOLDERS.items():
            rel = rel.replace(k, v)
        out.append(rel)
    return out


def spec(paths: list[str]) -> PathSpec:
    return PathSpec.from_lines(PATTERN, ["/" + p.replace("{resource}", "item").rstrip("/") for p in paths])


def test_no_template_path_hides_a_condition():
    conditional = [str(p.relative_to(TEMPLATE)) for p in TEMPLATE.rglob("*") if "{%" in p.name]
    assert conditional == [], "which files an option renders belongs in extensions/files.yml"


def test_every_template_file_has_a_rule():
    orphans = [f for f in template_files() if not any(spec(e["paths"]).match_file(f) for e in TABLE)]
    assert orphans == [], f"files with no entry in extensions/files.yml: {orphans}"


def test_every_rule_matches_a_file():
    files = template_files()
    unused = [p for e in TABLE for p in e["paths"] if not any(spec([p]).match_file(f) for f in files)]
    assert unused == [], f"entries in extensions/files.yml that match no template file: {unused}"


def default_plan() -> dict:
    answers = {"peak_rps": 20000, "p99_ms": 50, "packets_per_s": 0, "cpu_bound": False, "exposure": "external",
               "schema_churn": "low", "go_version": "1.26", "resource": "item"}
    return decisions.plan(answers, yaml.safe_load((ROOT / "extensions/standards.yml").read_text()))


def test_every_rule_names_known_flags():
    on = default_plan()["on"]
    for entry in TABLE:
        decisions.flags_on(entry["when"], on, "files.yml")  # raises on an unknown flag


def test_an_unknown_flag_is_an_error():
    with pytest.raises(ValueError, match="unknown flags"):
        decisions.excluded_files([{"when": "kafka", "paths": ["x/"]}], {"rest": True}, "item")


# ----------------------------------------------------------------- option value -> files
GRPC = {"api/proto/my_service/v1/item.proto", "buf.gen.yaml", "buf.yaml", "internal/grpcapi/auth.go", "internal/grpcapi/codec.go",
        "internal/grpcapi/codec_test.go", "internal/grpcapi/errors.go", "internal/grpcapi/grpcapi_test.go",
        "internal/grpcapi/guard_test.go", "internal/grpcapi/item.go", "internal/grpcapi/server.go"}
REST = {f"internal/httpapi/{f}.go" for f in ("auth", "errors", "handler", "item", "item_test", "json", "middleware",
                                                 "middleware_test", "router", "routes", "security_test", "server", "fuzz_test",
                                                 "openapi_test", "item_openapi_test", "bench_test")} | {"api/openapi.yaml", "api/openapi.go"}


def sqlc_files(*dialects: str) -> set[str]:
    out = set()
    for d in dialects:
        out |= {f"internal/store/queries/{d}/{f}.sql" for f in ("item", "idempotency", "idempotency_expiry")}
        out |= {f"internal/store/{d}/item.go"}
        out |= {f"internal/store/{d}/gen/{f}.go" for f in ("db", "models", "item.sql", "idempotency.sql", "idempotency_expiry.sql")}
    return out


def engine_files(dialect: str) -> set[str]:
    own = {"postgres": {"internal/store/postgres/postgres.go", "internal/store/postgres/postgres_test.go"},
           "mysql": {f"internal/store/mysql/{f}.go" for f in ("mysql", "mysql_test", "retry", "retry_test", "sql_test")}}[dialect]
    migrations = {f"internal/store/migrations/{dialect}/{f}.sql"
                  for f in ("00001_init", "00002_idempotency_keys", "00003_idempotency_keys_created_at")}
    return own | migrations | sqlc_files(dialect)


def layer_files(layer: str, mysql: bool = True) -> set[str]:
    files = {f"internal/store/{layer}store/{layer}store.go", f"internal/store/{layer}store/item.go"}
    if mysql:
        files |= {f"internal/store/{layer}store/export_test.go", f"internal/store/{layer}store/{layer}store_test.go"}
    return files


ALL_SQLC = sqlc_files("postgres", "mysql", "sqlite") | {"sqlc.yaml"}


def events_files(broker: str) -> set[str]:
    """The outbox, relay and consumer (any broker), the broker's own file, and the events
    tables' migrations on every engine."""
    code = {f"internal/events/{f}.go" for f in ("event", "outbox", "relay", "consumer", "inbox", "activity", broker)}
    return code | {f"internal/store/migrations/{dialect}/{m}.sql" for dialect in ("postgres", "mysql", "sqlite")
                   for m in ("00004_outbox", "00005_inbox", "00006_dead_letters", "00007_activity")}

# option value: (answers, files added to the default render, files removed from it)
OPTION_FILES = {
    "transport=grpc": ({"transport": "grpc"}, GRPC, REST),
    "transport=rest+grpc": ({"transport": "rest+grpc"}, GRPC, set()),
    "router=gin": ({"router": "gin"}, set(), set()),
    "exposure=internal": ({"exposure": "internal"}, GRPC, REST),  # gRPC becomes the default
    "exposure=both": ({"exposure": "both"}, GRPC, set()),
    "data_layer=gorm": ({"data_layer": "gorm"}, layer_files("gorm"), ALL_SQLC),
    "data_layer=sqlx": ({"data_layer": "sqlx"}, layer_files("sqlx"), ALL_SQLC),
    "schema_churn=medium": ({"schema_churn": "medium"}, set(), set()),
    "schema_churn=high": ({"schema_churn": "high"}, layer_files("gorm"), ALL_SQLC),  # GORM becomes the default
    "databases=postgresql+sqlite": ({"databases": ["postgresql", "sqlite"]}, set(), engine_files("mysql")),
    "databases=mysql+sqlite": ({"databases": ["mysql", "sqlite"]}, set(), engine_files("postgres")),
    "databases=mariadb+sqlite": ({"databases": ["mariadb", "sqlite"]}, set(), engine_files("postgres")),
    "databases=sqlite": ({"databases": ["sqlite"]}, set(), engine_files("postgres") | engine_files("mysql")),
    "gorm on sqlite only": ({"data_layer": "gorm", "databases": ["sqlite"]}, layer_files("gorm", mysql=False),
                            ALL_SQLC | engine_files("postgres") | engine_files("mysql")),
    "events=nats": ({"events": "nats"}, events_files("nats"), set()),
    "async_workflows": ({"async_workflows": True}, events_files("nats"), set()),  # NATS becomes the default
    "events=redis": ({"events": "redis"}, events_files("redis"), set()),
    "events=rabbitmq": ({"events": "rabbitmq"}, events_files("rabbitmq"), set()),
    "events=kafka": ({"events": "kafka"}, events_files("kafka"), set()),
    "go not justified": ({"peak_rps": 500, "p99_ms": 150, "go_justification": "The team runs only Go services here."}, set(), set()),
}


def files_of(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}


def dirs_of(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*") if p.is_dir()}


@pytest.fixture(scope="module")
def default_render() -> Path:
    return render_shared()


def test_the_default_render_is_what_the_table_says(default_render):
    """A file renders when every entry matching it is on for the default answers' flags."""
    on = default_plan()["on"]
    expected = {f for f in template_files()
                if all(decisions.flags_on(e["when"], on, "files.yml") for e in TABLE if spec(e["paths"]).match_file(f))}
    assert files_of(default_render) == expected


@pytest.mark.parametrize("option", list(OPTION_FILES))
def test_each_option_value_adds_and_removes_exactly_its_files(default_render, option):
    data, added, removed = OPTION_FILES[option]
    proj = render_shared(data)
    base, got = files_of(default_render), files_of(proj)
    assert sorted(got - base) == sorted(added)
    assert sorted(base - got) == sorted(removed)
    # No empty directories are left behind by excluded files.
    empty = [d for d in dirs_of(proj) if not any((proj / d).iterdir())]
    assert empty == []


def test_a_resource_name_renames_its_files(default_render):
    proj = render_shared({"resource": "category"})
    rename = re.compile(r"\bitem(?=[._/])")
    assert files_of(proj) == {rename.sub("category", f) for f in files_of(default_render)}
