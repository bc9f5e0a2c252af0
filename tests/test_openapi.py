"""The REST API's contract (api/openapi.yaml). Fast tier: every REST render's description is
valid OpenAPI 3.1 (openapi-spec-validator) and carries the standards' numbers. Slow tier: the
built service serves it, and schemathesis runs every operation of the served description
against the running binary (chi and gin) with generated inputs, valid and invalid: no 5xx,
statuses, headers, content types and bodies as described, invalid input refused."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from extensions.decisions import plural
from tests.conftest import STANDARDS, render_shared, unavailable
from tests.jwt_helpers import SECRET, claims, hs256
from tests.test_smoke import Service, base_env, binaries  # noqa: F401  (binaries: fixture)

API = STANDARDS["api"]
SIZING = STANDARDS["sizing"]
# The shared renders the fast tier already makes (test_render, test_files): REST on chi and
# gin, REST beside gRPC, and another resource name.
REST_RENDERS = {
    "default": {},
    "gin": {"router": "gin"},
    "rest+grpc": {"transport": "rest+grpc"},
    "category": {"resource": "category"},
}


def validate_openapi(doc: dict) -> None:
    try:
        from openapi_spec_validator import OpenAPIV31SpecValidator, validate
    except ImportError:
        unavailable("openapi-spec-validator (pip install -e '.[test]')")
        raise
    validate(doc, cls=OpenAPIV31SpecValidator)


@pytest.mark.fast
@pytest.mark.parametrize("name", list(REST_RENDERS))
def test_description_is_valid_openapi_31_with_the_standards_numbers(name):
    data = REST_RENDERS[name]
    proj = render_shared(data)
    doc = yaml.safe_load((proj / "api/openapi.yaml").read_text())
    validate_openapi(doc)
    assert doc["openapi"].startswith("3.1.")
    resource = data.get("resource", "item")
    Name, base = resource.capitalize(), f"/api/v{API['major_version']}/{plural(resource)}"
    assert set(doc["paths"]) == {base, base + "/{id}", f"/api/v{API['major_version']}/openapi.yaml", "/livez", "/readyz"}
    ops = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item if m != "parameters"}
    assert ops == {f"GET {base}", f"POST {base}", f"GET {base}/{{id}}", f"PUT {base}/{{id}}", f"DELETE {base}/{{id}}",
                   f"GET /api/v{API['major_version']}/openapi.yaml", "GET /livez", "GET /readyz"}
    # One source for the limits: the standards data, as in the handlers and validation tags.
    schemas = doc["components"]["schemas"]
    assert schemas[f"{Name}Input"]["properties"]["name"]["maxLength"] == API["name_max_chars"]
    assert schemas[f"{Name}Input"]["properties"]["description"]["maxLength"] == API["description_max_chars"]
    domain = (proj / f"internal/domain/{resource}.go").read_text()
    assert f"max={API['name_max_chars']}," in domain and f"max={API['description_max_chars']}," in domain
    listing = {p["name"]: p for p in doc["paths"][base]["get"]["parameters"]}
    assert listing["limit"]["schema"]["maximum"] == SIZING["page_size_max"]
    create = doc["paths"][base]["post"]
    assert {p["name"]: p for p in create["parameters"]}["Idempotency-Key"]["schema"]["maxLength"] == API["idempotency_key_max_bytes"]
    # Every status the error table answers is described, Retry-After on 429 and 503.
    assert set(create["responses"]) == {"200", "201", "400", "401", "403", "408", "409", "413", "429", "500", "503"}
    assert create["security"] == [{"bearer": [f"{plural(resource)}:write"]}]
    assert doc["paths"][base]["get"]["security"] == [{}, {"bearer": [f"{plural(resource)}:read"]}]
    responses = doc["components"]["responses"]
    for name_ in ("RateLimited", "Unavailable"):
        assert "Retry-After" in responses[name_]["headers"]


@pytest.mark.fast
def test_grpc_only_services_have_no_openapi_description():
    proj = render_shared({"exposure": "internal"})
    assert (proj / "api/proto").is_dir()
    assert not (proj / "api/openapi.yaml").exists() and not (proj / "api/openapi.go").exists()


# ---------------------------------------------------------------- the running service
def schemathesis_cli() -> str:
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    if not Path(st).exists():
        unavailable("schemathesis (pip install -e '.[test]')")
    return st


@pytest.mark.go
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["default", "gin"])
def test_schemathesis_finds_no_fault_in_the_running_service(binaries, projects, variant, tmp_path):
    st = schemathesis_cli()
    resource = "item"
    svc = Service(binaries[variant], base_env(
        DB_TYPE="sqlite", DATABASE_URL=f"file:{tmp_path}/st.db", JWT_SECRET=SECRET, AUTH_PROTECT_READS="true",
        # Generated requests come fast from one client: the rate limit is tested elsewhere.
        RATE_LIMIT_RPS="100000", RATE_LIMIT_BURST="100000",
    ))
    try:
        svc.wait_listening().wait_ready()
        # Served: the file the project ships, as YAML, without a token although reads need one.
        url = f"{svc.api}/api/v{API['major_version']}/openapi.yaml"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{svc.api}/api/v{API['major_version']}/{plural(resource)}", timeout=10)
        assert refused.value.code == 401
        with urllib.request.urlopen(url, timeout=10) as res:
            assert res.status == 200 and res.headers["Content-Type"] == "application/yaml"
            served = res.read()
        assert served == (projects[variant] / "api/openapi.yaml").read_bytes()
        validate_openapi(yaml.safe_load(served))

        token = hs256(claims("schemathesis", f"{plural(resource)}:read {plural(resource)}:write"))
        # Every check but positive_data_acceptance: some valid-looking input is refused by
        # design (an opaque cursor that is not one, an update without If-Match or version).
        # Bounded: 50 examples per operation, one worker (hypothesis's lambda parsing is not
        # thread-safe on Python 3.11), a fixed seed so CI is reproducible.
        # The file the project ships, which the service was just shown to serve byte for byte.
        cmd = [st, "run", str(projects[variant] / "api/openapi.yaml"), "--url", svc.api, "-H", f"Authorization: Bearer {token}",
               "--checks", "all", "--exclude-checks", "positive_data_acceptance",
               "--max-examples", "50", "--workers", "1", "--seed", "20261203",
               "--generation-database", "none", "--no-color", "--request-timeout", "10"]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
        assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-5000:]
        # Every operation was tested.
        described = sum(1 for item in yaml.safe_load(served)["paths"].values() for m in item if m != "parameters")
        assert re.search(rf"Operations:\s+{described} selected / {described} total", proc.stdout), proc.stdout[-5000:]
        assert re.search(rf"Tested:\s+{described}\b", proc.stdout), proc.stdout[-5000:]
        assert " passed" in proc.stdout and "failed" not in proc.stdout.split("SUMMARY")[-1]
    finally:
        assert svc.stop() == 0
    statuses = [line.get("status") for line in svc.lines if line.get("msg") == "request"]
    assert len(statuses) > 300, "schemathesis sent fewer requests than expected"
    assert all(s < 500 for s in statuses), sorted(set(statuses))
    assert not [line for line in svc.lines if line.get("level") == "ERROR"]
