"""`copier update` end to end: a throwaway git repo of the template tagged v1 (the layout
before the file table, from this repo's history), v2 and v3 (today's); a service made at v1
and edited by its team; updates through Copier's API. Edits must survive (or show up as
conflicts the service's own check catches), template changes must arrive, and the updated
service must still build and pass its tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import copier
import pytest
import yaml

from tests.conftest import ROOT, run, unavailable

pytestmark = [pytest.mark.go, pytest.mark.slow]

OWNER = "payments-team"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def sub(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def tag(repo: Path, name: str, message: str) -> None:
    commit(repo, message)
    git(repo, "tag", name)


# ------------------------------------------------------------------ template versions
def v1_changes(tpl: Path) -> None:
    """An older standard (two older module versions, one linter fewer): the v1 tag's, and
    the base the later tags change."""
    std = tpl / "extensions/standards.yml"
    sub(std, "chi: {path: github.com/go-chi/chi/v5, version: v5.5.0,", "chi: {path: github.com/go-chi/chi/v5, version: v5.4.0,")
    sub(std, "sync: {path: golang.org/x/sync, version: v0.24.0}", "sync: {path: golang.org/x/sync, version: v0.23.0}")
    sub(std, "misspell, unconvert]", "misspell]")


def v2_changes(tpl: Path) -> None:
    """v2: the standard moves on (module versions, a linter), a question is renamed (with
    its answer migration) and a middleware changes."""
    std = tpl / "extensions/standards.yml"
    sub(std, "version: v5.4.0,", "version: v5.5.0,")
    sub(std, "version: v0.23.0}", "version: v0.24.0}")
    sub(std, "misspell]", "misspell, unconvert]")
    copier_yml = tpl / "copier.yml"
    sub(copier_yml, "\nowner:\n", "\nowning_team:\n")
    sub(copier_yml, "answer_rule('owner', owner)", "answer_rule('owner', owning_team)")
    for f in tpl.joinpath("template").rglob("*.jinja"):
        text = f.read_text()
        if "{{ owner }}" in text:
            f.write_text(text.replace("{{ owner }}", "{{ owning_team }}"))
    (tpl / "extensions/answer_migrations.yml").write_text(
        '- version: "2.0.0"\n  rename: {owner: owning_team}\n  note: owner became owning_team\n'
    )
    sub(tpl / "template/internal/httpapi/middleware.go.jinja",
        "\t\tw.Header().Set(requestIDHeader, id)\n",
        "\t\tw.Header().Set(requestIDHeader, id)\n\t\tw.Header().Set(\"X-Content-Type-Options\", \"nosniff\")\n")


def v3_changes(tpl: Path) -> None:
    """v3: a sizing policy change (recomputed pool sizes) and a README change, which must
    not reach services (the README is the team's)."""
    sub(tpl / "extensions/standards.yml", "pool_headroom: 1.5", "pool_headroom: 2.0")
    sub(tpl / "CHANGELOG.md", "## Unreleased\n",
        "## v3.0.0\n\n- Database pools get 2.0x headroom over Little's law (was 1.5x).\n\n## Unreleased\n")
    sub(tpl / "template/README.md.jinja", "## Run it", "## Run it locally")


# v1 is the template as it was before the file table (template 0.2: options chose files by
# Jinja conditions in their paths, sqlc's output was kept by hand). Services made then must
# update to today's layout without conflicts.
V1_BASE = "5c282c7"
COPY_IGNORE = shutil.ignore_patterns(".git", "tests", "__pycache__", ".pytest_cache", "*.egg-info")


def replace_tree(tpl: Path, src: Path) -> None:
    """Make tpl's work tree (outside .git) a copy of src's."""
    for child in tpl.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    for child in src.iterdir():
        if child.name in (".git", "tests", "__pycache__", ".pytest_cache") or child.name.endswith(".egg-info"):
            continue
        if child.is_dir():
            shutil.copytree(child, tpl / child.name, ignore=COPY_IGNORE)
        else:
            shutil.copy2(child, tpl / child.name)


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("tpl-base")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", V1_BASE], capture_output=True)
    if archive.returncode != 0:
        unavailable(f"the template's history lacks {V1_BASE} (a shallow clone?): {archive.stderr.decode()[-300:]}")
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
    tpl = tmp_path_factory.mktemp("tpl") / "copier-go-service"
    tpl.mkdir()
    git(tpl, "init", "-q")
    replace_tree(tpl, base)
    v1_changes(tpl)
    tag(tpl, "v1.0.0", "v1 (the layout before the file table)")
    replace_tree(tpl, ROOT)
    v1_changes(tpl)
    v2_changes(tpl)
    tag(tpl, "v2.0.0", "v2")
    v3_changes(tpl)
    tag(tpl, "v3.0.0", "v3")
    return tpl


def make_service(tpl: Path, dst: Path, **data) -> Path:
    copier.run_copy(str(tpl), str(dst), data={"owner": OWNER, **data}, defaults=True, unsafe=True, vcs_ref="v1.0.0", quiet=True)
    git(dst, "init", "-q")
    commit(dst, "service from template v1")
    return dst


def team_edits(svc: Path) -> None:
    """What a team does to its service between template versions."""
    # A new handler file and its route (routes.go is the team's).
    (svc / "internal/httpapi/ping.go").write_text(
        "package httpapi\n\nimport (\n\t\"log/slog\"\n\t\"net/http\"\n)\n\n"
        "func handlePing(logger *slog.Logger) http.Handler {\n"
        "\treturn http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {\n"
        "\t\twriteJSON(w, r, logger, http.StatusOK, map[string]string{\"ping\": \"pong\"})\n\t})\n}\n"
    )
    sub(svc / "internal/httpapi/routes.go", '\t\t{http.MethodGet, "/livez", handleLivez(d.Logger)},\n',
        '\t\t{http.MethodGet, "/livez", handleLivez(d.Logger)},\n\t\t{http.MethodGet, "/ping", handlePing(d.Logger)},\n')
    # A changed line in a managed file the template does not change.
    sub(svc / "Makefile", "APP_ENV=development", "APP_ENV=local")
    # A deleted managed file, and a deleted team-owned file.
    (svc / ".dockerignore").unlink()
    (svc / "internal/httpapi/item_test.go").unlink()
    # A local change in a file the template also changes (elsewhere in it).
    sub(svc / "internal/httpapi/middleware.go", 'if id == "" || len(id) > 128 {', 'if id == "" || len(id) > 64 {')
    # Edits to team-owned files.
    sub(svc / "README.md", "## Run it", "## Run it (our notes)")
    sub(svc / "internal/httpapi/item.go", "type itemPage struct {", "// itemPage is one page of items (ours).\ntype itemPage struct {")
    commit(svc, "team edits")


def describe_ping(svc: Path) -> None:
    """What a team does when an update brings the API description (api/openapi.yaml, new in
    the template) and its check: the route it added is not in it yet, so the check names it;
    the team describes it."""
    failed = run(["go", "test", "-count=1", "-run", "TestOpenAPIDescribesEveryRoute", "./internal/httpapi/"], svc, check=False)
    assert failed.returncode != 0 and "GET /ping is routed but not described in api/openapi.yaml" in failed.stdout, failed.stdout
    sub(svc / "api/openapi.yaml", "\n  /livez:\n",
        "\n  /ping:\n    get:\n      operationId: ping\n      responses:\n        \"200\": {description: pong}\n  /livez:\n")


def update(svc: Path, ref: str, **kw) -> float:
    start = time.perf_counter()
    copier.run_update(str(svc), defaults=True, overwrite=True, unsafe=True, vcs_ref=ref, quiet=True, **kw)
    return time.perf_counter() - start


def answers(svc: Path) -> dict:
    return yaml.safe_load((svc / ".copier-answers.yml").read_text())


def conflicts_check(svc: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "scripts/check-conflicts.sh"], cwd=svc, capture_output=True, text=True)


# ------------------------------------------------------------------ tests
def test_update_keeps_edits_and_brings_the_standard(template_repo, tmp_path):
    svc = make_service(template_repo, tmp_path / "svc")
    assert "chi/v5 v5.4.0" in (svc / "go.mod").read_text()
    team_edits(svc)

    took = update(svc, "v2.0.0")
    print(f"copier update v1 -> v2 of the default service took {took:.1f} s")

    # The update is clean: no conflicts, and the project's own check agrees.
    assert git(svc, "ls-files", "-u") == ""
    assert not list(svc.rglob("*.rej"))
    check = conflicts_check(svc)
    assert check.returncode == 0, check.stdout

    # Template changes arrived.
    a = answers(svc)
    assert a["_commit"] == "v2.0.0"
    gomod = (svc / "go.mod").read_text()
    assert "github.com/go-chi/chi/v5 v5.5.0" in gomod and "golang.org/x/sync v0.24.0" in gomod
    assert "- unconvert" in (svc / ".golangci.yml").read_text()
    middleware = (svc / "internal/httpapi/middleware.go").read_text()
    assert '"X-Content-Type-Options", "nosniff"' in middleware
    # Files new in the template arrive even where team-owned patterns match (a migration, a
    # queries file and its sqlc output): the service never had them, so the team did not
    # delete them.
    store = svc / "internal/store"
    for new in ("migrations/sqlite/00003_idempotency_keys_created_at.sql", "queries/sqlite/idempotency_expiry.sql",
                "sqlite/gen/idempotency_expiry.sql.go"):
        assert (store / new).is_file(), new

    # The renamed question carried its answer over.
    assert a["owning_team"] == OWNER and "owner" not in a
    assert f"Owner: {OWNER}." in (svc / "docs/adr/0001-architecture.md").read_text()

    # Every team edit survived.
    assert 'if id == "" || len(id) > 64 {' in middleware
    assert "APP_ENV=local" in (svc / "Makefile").read_text()
    assert not (svc / ".dockerignore").exists()
    assert not (svc / "internal/httpapi/item_test.go").exists()
    assert (svc / "internal/httpapi/ping.go").is_file()
    routes = (svc / "internal/httpapi/routes.go").read_text()
    assert 'handlePing(d.Logger)' in routes
    # routes.go (the team's) moved to the endpoint guard by the update migration.
    assert 'write("items.create", handleItemCreate(d.Logger, d.Items))' in routes and "newClientLimiter" not in routes
    assert "## Run it (our notes)" in (svc / "README.md").read_text()
    assert "(ours)" in (svc / "internal/httpapi/item.go").read_text()

    # The decision log says what the new standard changed.
    log = (svc / "docs/adr/standards-updates.md").read_text()
    assert "template v1.0.0 → v2.0.0" in log
    assert "answer `owner` is now `owning_team`" in log
    assert "| `modules.github.com/go-chi/chi/v5` | v5.4.0 | v5.5.0 |" in log
    assert "unconvert" in log
    assert "rewrote `internal/httpapi/routes.go` for the endpoint guard" in log

    # And the service still builds, lints its format and passes its tests.
    assert run(["gofmt", "-l", "."], svc).stdout.strip() == ""
    run(["go", "build", "./..."], svc)
    run(["go", "vet", "./..."], svc)
    describe_ping(svc)
    run(["go", "test", "-count=1", "./..."], svc)


def test_update_across_two_versions(template_repo, tmp_path):
    svc = make_service(template_repo, tmp_path / "svc")
    team_edits(svc)
    update(svc, "v3.0.0")
    assert git(svc, "ls-files", "-u") == "" and conflicts_check(svc).returncode == 0
    a = answers(svc)
    assert a["_commit"] == "v3.0.0" and a["owning_team"] == OWNER
    # The sizing change recomputed the pool (20,000 req/s over 9 replicas x 2 ms x 2.0).
    computed = yaml.safe_load((svc / "docs/adr/computed.yml").read_text())
    assert computed["db_pool_max_conns"] == 9
    assert "### Database pool: 9 connections per instance" in (svc / "docs/adr/0001-architecture.md").read_text()
    assert 'env:"DB_MAX_CONNS" envDefault:"9"' in (svc / "internal/config/config.go").read_text()
    log = (svc / "docs/adr/standards-updates.md").read_text()
    assert "template v1.0.0 → v3.0.0" in log and "| `db_pool_max_conns` | 30 | 9 |" in log
    # The README is the team's: the template's v3 README change did not reach it.
    readme = (svc / "README.md").read_text()
    assert "## Run it (our notes)" in readme and "## Run it locally" not in readme
    run(["go", "build", "./..."], svc)
    describe_ping(svc)
    run(["go", "test", "-count=1", "./internal/config/...", "./internal/httpapi/..."], svc)


def test_conflicting_edit_fails_the_conflict_check(template_repo, tmp_path):
    svc = make_service(template_repo, tmp_path / "svc")
    # The team edits the very line the template changes next (v2 adds a linter after it).
    sub(svc / ".golangci.yml", "    - misspell\n", "    - misspell # team: keep\n")
    commit(svc, "team edits the linter list")
    update(svc, "v2.0.0")
    text = (svc / ".golangci.yml").read_text()
    assert "<<<<<<<" in text and ">>>>>>>" in text
    check = conflicts_check(svc)
    assert check.returncode == 1 and ".golangci.yml" in check.stdout
    proc = subprocess.run(["make", "check-conflicts"], cwd=svc, capture_output=True, text=True)
    assert proc.returncode != 0

    # Resolving it (keep both lines) makes the check pass.
    lines = [ln for ln in text.splitlines() if not ln.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
    resolved = "\n".join(dict.fromkeys(lines)) + "\n"
    (svc / ".golangci.yml").write_text(resolved)
    git(svc, "add", ".golangci.yml")
    assert conflicts_check(svc).returncode == 0
    assert "# team: keep" in resolved and "- unconvert" in resolved


def service_at_v2(tpl: Path, dst: Path) -> Path:
    copier.run_copy(str(tpl), str(dst), data={"owning_team": OWNER}, defaults=True, unsafe=True, vcs_ref="v2.0.0", quiet=True)
    git(dst, "init", "-q")
    commit(dst, "service from template v2")
    return dst


def standards_update(svc: Path, *args: str) -> subprocess.CompletedProcess:
    """The service's own fleet-update script, as its scheduled workflow runs it (without
    --open-pr: the branch and the description stay local)."""
    return subprocess.run([sys.executable, "scripts/standards-update.py", *args], cwd=svc, capture_output=True, text=True, timeout=900)


def test_fleet_update_script_describes_the_update(template_repo, tmp_path):
    svc = service_at_v2(template_repo, tmp_path / "svc")
    body = tmp_path / "pr.md"
    proc = standards_update(svc, "--ref", "v3.0.0", "--test-cmd", "go build ./...", "--body-file", str(body))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "v2.0.0 -> v3.0.0 on branch standards-update/v3.0.0; conflicts: no; checks: passed" in proc.stdout
    text = body.read_text()
    # What moved in this service's computed values, and the template's CHANGELOG for v3.
    assert "**v2.0.0 → v3.0.0**" in text and "Conflicts" not in text
    assert "| `db_pool_max_conns` | 7 | 9 |" in text
    assert "## v3.0.0" in text and "2.0x headroom" in text and "## Unreleased" not in text
    assert "Checks (`go build ./...`): **passed**" in text
    # The update is committed on its own branch, and the tree is clean.
    assert git(svc, "rev-parse", "--abbrev-ref", "HEAD").strip() == "standards-update/v3.0.0"
    assert git(svc, "status", "--porcelain").strip() == "" and answers(svc)["_commit"] == "v3.0.0"
    # Run again on the new version: nothing to do, nothing changed.
    again = standards_update(svc, "--ref", "v3.0.0", "--body-file", str(tmp_path / "again.md"))
    assert again.returncode == 0 and "already on v3.0.0" in again.stdout
    assert git(svc, "status", "--porcelain").strip() == ""
    # A template source outside TEMPLATE_SOURCES is refused before any of its code runs.
    refused = subprocess.run([sys.executable, "scripts/standards-update.py"], cwd=svc, capture_output=True, text=True,
                             env={**os.environ, "TEMPLATE_SOURCES": "https://example.com/platform/copier-go-service"})
    assert refused.returncode == 2 and "not in TEMPLATE_SOURCES" in refused.stderr


def test_fleet_update_script_marks_conflicts(template_repo, tmp_path):
    svc = service_at_v2(template_repo, tmp_path / "svc")
    # The team pinned its own pool size on the very line v3 recomputes.
    sub(svc / "internal/config/config.go", 'env:"DB_MAX_CONNS" envDefault:"7"', 'env:"DB_MAX_CONNS" envDefault:"12"')
    commit(svc, "team: a bigger pool")
    body = tmp_path / "pr.md"
    proc = standards_update(svc, "--ref", "v3.0.0", "--test-cmd", "go build ./...", "--body-file", str(body))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "conflicts: yes; checks: not run" in proc.stdout
    text = body.read_text()
    assert "**Conflicts.**" in text and "draft" in text and "internal/config/config.go" in text
    assert "| `db_pool_max_conns` | 7 | 9 |" in text
    # The conflicted state is committed on the branch for the team to resolve in the PR.
    assert git(svc, "rev-parse", "--abbrev-ref", "HEAD").strip() == "standards-update/v3.0.0"
    assert conflicts_check(svc).returncode == 1


def test_unsupported_go_line_moves_on(template_repo, tmp_path):
    """A standard that drops the service's Go line: the answer moves to the next supported
    line and the bump reaches go.mod, the Dockerfile and CI. (Not built: this machine's
    toolchain is older than the new line.)"""
    tpl = tmp_path / "tpl"
    shutil.copytree(template_repo, tpl)
    sub(tpl / "extensions/standards.yml", 'supported: ["1.26", "1.27"]\n  default: "1.26"', 'supported: ["1.27", "1.28"]\n  default: "1.27"')
    tag(tpl, "v9.0.0", "drop Go 1.26")
    svc = tmp_path / "svc"
    copier.run_copy(str(tpl), str(svc), data={"owner": OWNER}, defaults=True, unsafe=True, vcs_ref="v1.0.0", quiet=True, skip_tasks=True)
    git(svc, "init", "-q")
    commit(svc, "v1")
    assert answers(svc)["go_version"] == "1.26"
    update(svc, "v9.0.0", skip_tasks=True)
    assert answers(svc)["go_version"] == "1.27"
    assert "\ngo 1.27.0\n" in (svc / "go.mod").read_text()
    assert "golang:1.27 AS build" in (svc / "Dockerfile").read_text()
    assert 'go-version: "1.27"' in (svc / ".github/workflows/ci.yml").read_text()
    log = (svc / "docs/adr/standards-updates.md").read_text()
    assert "Go 1.26 is no longer supported by the platform standard: moved to Go 1.27" in log
    assert "| `go.directive` | 1.26.0 | 1.27.0 |" in log


def test_update_switches_the_data_layer(template_repo, tmp_path):
    """`copier update --data data_layer=sqlx`: the sqlc code goes, the sqlx package comes
    (its team-owned queries file included), a team file the team deleted stays deleted,
    and the service builds and passes its store contract."""
    svc = make_service(template_repo, tmp_path / "svc")
    assert answers(svc)["data_layer"] == "sqlc"
    team_edits(svc)
    update(svc, "v3.0.0", data={"data_layer": "sqlx"})
    assert git(svc, "ls-files", "-u") == "" and conflicts_check(svc).returncode == 0
    assert answers(svc)["data_layer"] == "sqlx"
    store = svc / "internal/store"
    assert (store / "sqlxstore/item.go").is_file()
    assert not (svc / "sqlc.yaml").exists() and not (store / "queries").exists() and not (store / "sqlite/item.go").exists()
    assert not (svc / "internal/httpapi/item_test.go").exists()  # deleted by the team: stays deleted
    log = (svc / "docs/adr/standards-updates.md").read_text()
    assert "added `internal/store/sqlxstore/item.go`" in log and "| `data_layer_rendered` | sqlc | sqlx |" in log
    run(["go", "build", "./..."], svc)
    run(["go", "test", "-count=1", "./internal/store/..."], svc)


@pytest.mark.parametrize("layer", ["gorm", "sqlx"])
def test_update_without_mariadb_keeps_building(template_repo, tmp_path, layer):
    """GORM and sqlx services made at v1 without MariaDB (so no causal pool) or MySQL:
    their team-owned code still builds and passes its tests after the update."""
    svc = make_service(template_repo, tmp_path / "svc", data_layer=layer, databases=["postgresql", "sqlite"])
    update(svc, "v3.0.0")
    assert git(svc, "ls-files", "-u") == "" and conflicts_check(svc).returncode == 0
    run(["go", "build", "./..."], svc)
    run(["go", "vet", "./..."], svc)
    run(["go", "test", "-count=1", "./internal/store/..."], svc)


def test_the_slo_rules_arrive_and_follow_the_answers(template_repo, tmp_path):
    """The alerting rules and the dashboard are managed files: a service made before they
    existed gets them on update, and a changed SLO answer rewrites their numbers."""
    svc = make_service(template_repo, tmp_path / "svc")
    rules, dashboard = svc / "deploy/prometheus/alerts.yml", svc / "deploy/grafana/dashboard.json"
    assert not rules.exists() and not dashboard.exists()
    update(svc, "v2.0.0")
    commit(svc, "update to v2")
    assert "> 0.0144\n" in rules.read_text() and dashboard.is_file()  # 14.4 x the 0.1 % budget of 99.9 %
    update(svc, "v3.0.0", data={"slo_availability": 99.5})
    assert git(svc, "ls-files", "-u") == "" and conflicts_check(svc).returncode == 0
    assert answers(svc)["slo_availability"] == 99.5
    text = rules.read_text()
    assert "> 0.072\n" in text and "> 0.0144\n" not in text, text[:2000]  # 14.4 x 0.5 %
    assert "99.5 %" in (svc / "docs/adr/0001-architecture.md").read_text()
