"""Shared fixtures: in-process rendering, Go tool helpers, and the CI no-skip rule.

In CI (CI=true, set by .ci/run) a missing Go toolchain, tool or database server fails the
test instead of skipping it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
STANDARDS = yaml.safe_load((ROOT / "extensions" / "standards.yml").read_text())
IN_CI = os.environ.get("CI", "").lower() == "true"
TOOLS_DIR = Path(
    os.environ.get("CGS_TOOLS_DIR", Path.home() / ".cache" / "copier-go-service" / "bin")
)

# Keep Go offline-safe and quiet: the local toolchain only, shared module and build caches.
GO_ENV = {"GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"}


def unavailable(what: str) -> None:
    """Skip locally, fail in CI: nothing may silently skip there."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: this must not skip)")
    pytest.skip(what)


def go_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GO_ENV)
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, timeout: int = 900, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run a command, failing the test with its output when it fails."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=go_env(**env), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode} in {cwd}\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def render(dst: Path, data: dict[str, Any] | None = None, skip_tasks: bool = False, **kw: Any) -> Path:
    """Render the working tree of the template into dst, in-process."""
    copier.run_copy(
        str(ROOT),
        str(dst),
        data=data or {},
        defaults=True,
        unsafe=True,
        vcs_ref="HEAD",
        skip_tasks=skip_tasks,
        quiet=True,
        **kw,
    )
    return dst


_SHARED: dict[str, Path] = {}


def render_shared(data: dict[str, Any] | None = None) -> Path:
    """A render without tasks, made once per test session for each set of answers and shared
    by every test that asks for the same: read it, never change it."""
    key = json.dumps(data or {}, sort_keys=True)
    if key not in _SHARED:
        base = Path(tempfile.mkdtemp(prefix="cgs-shared-render-"))
        atexit.register(shutil.rmtree, base, True)
        _SHARED[key] = render(base / "my-service", data, skip_tasks=True)
    return _SHARED[key]


@pytest.fixture(autouse=True)
def _isolated_copier_settings(tmp_path_factory, monkeypatch):
    """User-level Copier settings must not leak into the tests."""
    settings = tmp_path_factory.getbasetemp() / "copier-settings.yml"
    if not settings.exists():
        settings.write_text("{}\n")
    monkeypatch.setenv("COPIER_SETTINGS_PATH", str(settings))


@pytest.fixture(scope="session")
def go_bin() -> str:
    go = shutil.which("go")
    if not go:
        unavailable("the Go toolchain ('go') is not on PATH")
    return go


def go_tool_path(name: str) -> Path:
    """Build a pinned tool from source (the standards data names path and version) once,
    into a shared cache directory, and return its path. Raises when it cannot."""
    if not shutil.which("go"):
        raise FileNotFoundError("the Go toolchain ('go') is not on PATH")
    spec = STANDARDS["tools"][name]
    parts = Path(spec["path"]).parts
    # go install names a binary after its path, less a major-version suffix (.../vegeta/v12).
    binary = TOOLS_DIR / spec["version"] / (parts[-2] if re.fullmatch(r"v\d+", parts[-1]) else parts[-1])
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        cgo = "1" if name == "sqlc" else "0"  # sqlc's parser needs cgo
        proc = subprocess.run(
            ["go", "install", f"{spec['path']}@{spec['version']}"],
            env=go_env(GOBIN=str(binary.parent), CGO_ENABLED=cgo),
            capture_output=True, text=True, timeout=1800,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"could not build {name} {spec['version']} from source:\n{proc.stderr[-3000:]}")
    return binary


def available(build: Any) -> Path:
    """A tool for tests, made by build(): skips locally (fails in CI) when it cannot be had."""
    try:
        return build()
    except (FileNotFoundError, RuntimeError) as err:
        unavailable(str(err))
        raise


def go_tool(name: str) -> Path:
    """go_tool_path for tests: skips locally (fails in CI) when the tool cannot be had."""
    return available(lambda: go_tool_path(name))


@pytest.fixture(scope="session")
def golangci_lint() -> Path:
    return go_tool("golangci_lint")


@pytest.fixture(scope="session")
def sqlc() -> Path:
    return go_tool("sqlc")


def server_dsn(variable: str, script: str) -> str:
    """The DSN of a test database server from the environment (.ci/run starts them)."""
    dsn = os.environ.get(variable, "")
    if not dsn:
        unavailable(f"{variable} is not set (start a server with .ci/{script})")
    return dsn


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    return server_dsn("TEST_POSTGRES_DSN", "postgres.sh")


@pytest.fixture(scope="session")
def mariadb_dsn() -> str:
    return server_dsn("TEST_MARIADB_DSN", "mariadb.sh")


# Rendered projects shared by the Go toolchain, smoke and database tests. Each is rendered
# once per session, with Copier's tasks (go mod tidy, gofmt), like a user's first copy.
# VARIANTS are named for what the smoke and database tests need; the toolchain tests run on
# TOOLCHAIN_VARIANTS: the defaults and every row of the pairwise covering array.
VARIANTS: dict[str, dict[str, Any]] = {
    # REST on chi: the defaults (external callers, a load that justifies Go).
    "default": {},
    # REST on gin, with MariaDB and SQLite only.
    "gin": {"router": "gin", "databases": ["mariadb", "sqlite"]},
    # gRPC only: internal callers make it the recommendation; PostgreSQL and SQLite only.
    "grpc": {"exposure": "internal", "databases": ["postgresql", "sqlite"]},
    # REST on chi and gRPC in one process, SQLite only.
    "chi-grpc": {"transport": "rest+grpc", "databases": ["sqlite"]},
    # The two other data layers, each over all four engines.
    "gorm": {"data_layer": "gorm"},
    "sqlx": {"data_layer": "sqlx", "router": "gin"},
    # Events (issue 14): asynchronous workflows, so the recommendation, NATS JetStream, on
    # sqlc and all four engines (tests/test_events.py).
    "events": {"async_workflows": True},
    # The same on Redis Streams.
    "events-redis": {"async_workflows": True, "events": "redis"},
    "events-rabbitmq": {"async_workflows": True, "events": "rabbitmq"},
    "events-kafka": {"async_workflows": True, "events": "kafka"},
    # REST on gin and gRPC, below the Go thresholds (so a justification), another resource
    # with an irregular plural, another module path, MySQL without MariaDB, high schema
    # churn (so GORM, the recommendation, by default): the other branch of every choice.
    "gin-grpc-category": {
        "project_name": "Catalog API",
        "module_path": "example.com/platform/catalog-api",
        "peak_rps": 800,
        "p99_ms": 200,
        "exposure": "both",
        "router": "gin",
        "schema_churn": "high",
        "resource": "category",
        "databases": ["mysql", "sqlite"],
        "go_justification": "The team ships only Go services and shares this codebase's libraries.",
    },
}

def _pairwise() -> dict[str, dict[str, Any]]:
    from tests import pairwise

    return pairwise.VARIANTS


PAIRWISE_VARIANTS = _pairwise()
TOOLCHAIN_VARIANTS: dict[str, dict[str, Any]] = {"default": {}, **PAIRWISE_VARIANTS}
ALL_VARIANTS: dict[str, dict[str, Any]] = {**VARIANTS, **PAIRWISE_VARIANTS}

REST_VARIANTS = [name for name in VARIANTS if VARIANTS[name].get("exposure") != "internal"]
GRPC_VARIANTS = ["grpc", "chi-grpc", "gin-grpc-category"]
# The variant that renders each data layer over all four engines.
LAYER_VARIANTS = {"sqlc": "default", "gorm": "gorm", "sqlx": "sqlx"}


def layer_of(variant: str) -> str:
    """The data layer a variant renders (its answer, else the recommendation)."""
    from extensions import decisions

    data = ALL_VARIANTS[variant]
    return data.get("data_layer") or decisions.data_layer(data.get("schema_churn", "low")).choice


@pytest.fixture(scope="session")
def projects(tmp_path_factory, go_bin) -> dict[str, Path]:
    """Every variant, rendered with tasks, keyed by name (rendered lazily on first use)."""
    cache: dict[str, Path] = {}

    class Lazy(dict):
        def __missing__(self, name: str) -> Path:
            dst = tmp_path_factory.mktemp(f"proj-{name}") / "svc"
            settings = tmp_path_factory.getbasetemp() / "copier-settings.yml"
            if not settings.exists():
                settings.write_text("{}\n")
            os.environ["COPIER_SETTINGS_PATH"] = str(settings)
            render(dst, ALL_VARIANTS[name])
            cache[name] = dst
            self[name] = dst
            return dst

    return Lazy()


def slug_of(project: Path) -> str:
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return answers["service_slug"]


sys.path.insert(0, str(ROOT))


def k8scheck_path() -> Path:
    """Build tests/k8scheck (strict decoding of Kubernetes manifests into the API's Go types)
    against the modules the standards data pins, once per set of versions and source."""
    if not shutil.which("go"):
        raise FileNotFoundError("the Go toolchain ('go') is not on PATH")
    src = ROOT / "tests" / "k8scheck" / "main.go"
    mods = STANDARDS["check_modules"]
    key = hashlib.sha256((src.read_text() + json.dumps(mods, sort_keys=True)).encode()).hexdigest()[:12]
    binary = TOOLS_DIR / f"k8scheck-{key}" / "k8scheck"
    if binary.exists():
        return binary
    work = Path(tempfile.mkdtemp(prefix="cgs-k8scheck-"))
    try:
        shutil.copy(src, work / "main.go")
        env = go_env(CGO_ENABLED="0")
        steps = [
            ["go", "mod", "init", "k8scheck"],
            ["go", "get", *(f"{m['path']}@{m['version']}" for m in mods.values())],
            ["go", "mod", "tidy"],
            ["go", "build", "-o", str(binary), "."],
        ]
        binary.parent.mkdir(parents=True, exist_ok=True)
        for step in steps:
            proc = subprocess.run(step, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                raise RuntimeError(f"could not build tests/k8scheck ({' '.join(step[:3])}):\n{proc.stderr[-3000:]}")
        return binary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def catalogcheck_path() -> Path:
    """tests/catalogcheck/check.mjs with the npm packages the standards data pins installed
    next to it (once per set of versions and source); returns the script to run with node."""
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            raise FileNotFoundError(f"'{tool}' is not on PATH (Node.js runs the Backstage catalog check)")
    src = ROOT / "tests" / "catalogcheck" / "check.mjs"
    packages = STANDARDS["check_npm_packages"]
    key = hashlib.sha256((src.read_text() + json.dumps(packages, sort_keys=True)).encode()).hexdigest()[:12]
    home = TOOLS_DIR / f"catalogcheck-{key}"
    script = home / "check.mjs"
    if script.exists():
        return script
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tmp-catalogcheck-", dir=TOOLS_DIR))
    try:
        (work / "package.json").write_text(json.dumps({"name": "catalogcheck", "private": True, "type": "module"}))
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", *(f"{name}@{version}" for name, version in packages.items())],
            cwd=work, capture_output=True, text=True, timeout=900,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"could not install the catalog check's npm packages:\n{proc.stderr[-3000:]}")
        shutil.copy(src, work / "check.mjs")
        shutil.rmtree(home, ignore_errors=True)
        work.rename(home)
        return script
    finally:
        shutil.rmtree(work, ignore_errors=True)
