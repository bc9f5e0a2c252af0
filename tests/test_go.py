"""Go toolchain tests on rendered projects: gofmt, tidy, vet, golangci-lint, build,
test -race (on SQLite), deadcode, cross-compiles, and sqlc and protobuf regeneration. They
run on the default answers and on every row of the pairwise covering array
(tests/pairwise.py), so every pair of option values is built and tested. Each variant is
rendered once per session (with Copier's tasks) and shares the Go module and build caches
with every other test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import GRPC_VARIANTS, LAYER_VARIANTS, STANDARDS, TOOLCHAIN_VARIANTS, go_tool, layer_of, run, slug_of
from tests.refresh import tree_diffs

pytestmark = [pytest.mark.go, pytest.mark.slow]

VARIANT_NAMES = list(TOOLCHAIN_VARIANTS)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_gofmt_clean(projects, variant):
    out = run(["gofmt", "-l", "."], projects[variant]).stdout.strip()
    assert out == "", f"not gofmt-clean: {out}"


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_go_mod_is_tidy_and_verified(projects, variant):
    proj = projects[variant]
    assert (proj / "go.sum").is_file()
    before = (proj / "go.mod").read_text(), (proj / "go.sum").read_text()
    run(["go", "mod", "tidy"], proj)
    assert ((proj / "go.mod").read_text(), (proj / "go.sum").read_text()) == before
    run(["go", "mod", "verify"], proj)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_go_vet(projects, variant):
    run(["go", "vet", "./..."], projects[variant])


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_golangci_lint(projects, golangci_lint, variant):
    proc = run([str(golangci_lint), "run", "--allow-serial-runners", "./..."], projects[variant], check=False)
    assert proc.returncode == 0, f"golangci-lint found issues:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_go_build(projects, variant):
    proj = projects[variant]
    slug = slug_of(proj)
    run(["go", "build", "-o", f"bin/{slug}", f"./cmd/{slug}"], proj)
    assert (proj / "bin" / slug).is_file()


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_go_test_race(projects, variant):
    # -race needs cgo; the suite is otherwise CGO-free. Every test runs twice: a flaky
    # generated test fails here rather than in a user's CI.
    proj = projects[variant]
    proc = run(["go", "test", "-race", "-count=2", "./..."], proj, CGO_ENABLED="1")
    assert "FAIL" not in proc.stdout
    tested = sorted({str(p.parent.relative_to(proj)) for p in proj.rglob("*_test.go")})
    assert "internal/app" in tested and "internal/store" in tested
    for pkg in tested:
        assert f"ok  \t{module_of(proj)}/{pkg}\t" in proc.stdout, proc.stdout


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_deadcode_finds_nothing(projects, variant):
    """Every function the variant renders is reachable from main or a test."""
    deadcode = go_tool("deadcode")
    out = run([str(deadcode), "-test", "./..."], projects[variant]).stdout.strip()
    assert out == "", f"unreachable code in {variant}:\n{out}"


def module_of(project: Path) -> str:
    return (project / "go.mod").read_text().splitlines()[0].split()[1]


@pytest.mark.parametrize("variant", sorted(set(LAYER_VARIANTS.values())))
@pytest.mark.parametrize("platform", STANDARDS["images"]["platforms"])
def test_cross_compile(projects, platform, variant, tmp_path):
    """The image's binary: CGO_ENABLED=0 for every platform and every data layer (GORM's
    SQLite dialect runs over the pure-Go driver)."""
    proj = projects[variant]
    slug = slug_of(proj)
    goos, goarch = platform.split("/")
    out = tmp_path / f"{slug}-{goos}-{goarch}"
    run(["go", "build", "-trimpath", "-o", str(out), f"./cmd/{slug}"], proj, GOOS=goos, GOARCH=goarch, CGO_ENABLED="0")
    header = out.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    machine = int.from_bytes(header[18:20], "little")
    assert machine == {"amd64": 0x3E, "arm64": 0xB7}[goarch]


@pytest.mark.parametrize("variant", [v for v in VARIANT_NAMES if layer_of(v) == "sqlc"])
def test_sqlc_regenerates_the_rendered_code(projects, sqlc, variant, tmp_path):
    """The rendered sqlc code is what sqlc makes from the rendered SQL, for every resource
    name and set of engines (tests/refresh.py keeps the templates from sqlc's output)."""
    src = projects[variant]
    work = tmp_path / "regen"
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("bin", "tmp"))
    run([str(sqlc), "generate"], work, CGO_ENABLED="1")
    diffs = tree_diffs(src / "internal/store", work / "internal/store")
    assert not diffs, f"sqlc output differs from the template's: {diffs}"


@pytest.mark.parametrize("variant", GRPC_VARIANTS)
def test_protobuf_generation_is_reproducible(projects, variant, tmp_path):
    """Copier's task generated api/gen with the pinned buf and plugins; doing it again
    (what `make check-generate` does in the service's CI) changes nothing."""
    buf = go_tool("buf")
    src = projects[variant]
    assert list((src / "api/gen").rglob("*_grpc.pb.go")), "the copy task did not generate the gRPC code"
    work = tmp_path / "regen"
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("bin", "tmp"))
    run([str(buf), "generate"], work)
    diffs = tree_diffs(src / "api", work / "api")
    assert not diffs, f"protobuf output differs: {diffs}"


def test_makefile_targets_exist(projects):
    grpc = projects["grpc"]
    proc = run(["make", "-n", "generate", "generate-proto", "check-generate"], grpc)
    assert f"{STANDARDS['tools']['buf']['path']}@{STANDARDS['tools']['buf']['version']} generate" in proc.stdout
    proj = projects["default"]
    proc = run(["make", "-n", "build", "run", "test", "lint", "generate", "migrate", "docker-build", "cross"], proj)
    assert "go build" in proc.stdout and "buildx build --platform linux/amd64,linux/arm64" in proc.stdout
