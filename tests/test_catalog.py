"""catalog-info.yaml: valid by Backstage's own catalog model (tests/catalogcheck, the npm
packages pinned in the standards data), one Component owned by the answered team providing
one API entity per rendered transport, whose definitions are the service's own OpenAPI
description and proto file, with links into the repository the module path names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ALL_VARIANTS, available, catalogcheck_path, render_shared

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def catalogcheck() -> Path:
    return available(catalogcheck_path)


def check(catalogcheck: Path, file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(catalogcheck), str(file)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("variant", ["default", "grpc", "chi-grpc"])
def test_catalog_entry_is_valid_and_names_the_apis(catalogcheck, variant):
    answers = {**ALL_VARIANTS[variant], "owner": "payments-team"}
    project = render_shared(answers)
    proc = check(catalogcheck, project / "catalog-info.yaml")
    assert proc.returncode == 0, proc.stderr
    entities = json.loads(proc.stdout)
    (component,) = [e for e in entities if e["kind"] == "Component"]
    apis = {e["metadata"]["name"]: e for e in entities if e["kind"] == "API"}
    assert component["metadata"]["name"] == "my-service" and component["spec"]["owner"] == "payments-team"
    assert component["spec"]["type"] == "service" and component["spec"]["lifecycle"] == "experimental"
    assert sorted(component["spec"]["providesApis"]) == sorted(apis)
    kinds = {api["spec"]["type"]: api for api in apis.values()}
    rest = (project / "internal/httpapi").is_dir()
    grpc = (project / "internal/grpcapi").is_dir()
    assert set(kinds) == {t for t, on in (("openapi", rest), ("grpc", grpc)) if on}
    if rest:
        assert kinds["openapi"]["spec"]["definition"] == (project / "api/openapi.yaml").read_text()
    if grpc:
        (proto,) = (project / "api/proto").rglob("*.proto")
        assert kinds["grpc"]["spec"]["definition"] == proto.read_text()
    assert all(api["spec"]["owner"] == "payments-team" for api in apis.values())
    # Links into the repository the module path names (github.com/example/my-service).
    links = {link["title"]: link["url"] for link in component["metadata"]["links"]}
    assert links["Architecture decision record"] == "https://github.com/example/my-service/blob/main/docs/adr/0001-architecture.md"
    assert all((project / url.split("/blob/main/", 1)[1]).is_file() for url in links.values())


def test_module_path_off_a_known_forge_gets_no_links(catalogcheck):
    project = render_shared({**ALL_VARIANTS["grpc"], "module_path": "go.internal.example/team/my-service"})
    proc = check(catalogcheck, project / "catalog-info.yaml")
    assert proc.returncode == 0, proc.stderr
    (component,) = [e for e in json.loads(proc.stdout) if e["kind"] == "Component"]
    assert "links" not in component["metadata"] and "annotations" not in {k for k, v in component["metadata"].items() if v}


def test_the_check_rejects_an_invalid_entry(catalogcheck, tmp_path):
    project = render_shared(ALL_VARIANTS["grpc"])
    text = (project / "catalog-info.yaml").read_text()
    for broken in (text.replace("  owner:", "  ownr:", 1), text.replace("name: my-service\n", "name: My Service!\n", 1)):
        (tmp_path / "api").symlink_to(project / "api") if not (tmp_path / "api").exists() else None
        (tmp_path / "catalog-info.yaml").write_text(broken)
        assert check(catalogcheck, tmp_path / "catalog-info.yaml").returncode == 1
