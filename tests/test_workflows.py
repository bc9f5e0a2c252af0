"""The generated GitHub Actions workflows (CI, release, CodeQL, the fleet update) pass
actionlint (pinned in the standards data, built from source) in every transport's render,
and actionlint does fail on a broken workflow."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ALL_VARIANTS, go_tool, render_shared

pytestmark = [pytest.mark.go, pytest.mark.slow]

WORKFLOWS = {"ci.yml", "release.yml", "codeql.yml", "standards-update.yml"}


@pytest.fixture(scope="module")
def actionlint() -> Path:
    return go_tool("actionlint")


@pytest.mark.parametrize("variant", ["default", "grpc", "chi-grpc", "gin"])
def test_workflows_pass_actionlint(actionlint, variant):
    project = render_shared(ALL_VARIANTS[variant])
    files = sorted((project / ".github/workflows").glob("*.yml"))
    assert {f.name for f in files} == WORKFLOWS
    proc = subprocess.run([str(actionlint), "-color=false", *map(str, files)], capture_output=True, text=True, cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The fleet-update script the workflow runs is valid Python.
    compiled = subprocess.run(["python3", "-m", "py_compile", str(project / "scripts/standards-update.py")], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr


def test_actionlint_fails_on_a_broken_workflow(actionlint, tmp_path):
    project = render_shared(ALL_VARIANTS["default"])
    broken = tmp_path / ".github/workflows"
    broken.mkdir(parents=True)
    text = (project / ".github/workflows/release.yml").read_text()
    (broken / "release.yml").write_text(text.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    timeout: 5"))
    proc = subprocess.run([str(actionlint), "-color=false", str(broken / "release.yml")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0 and "timeout" in proc.stdout
    shutil.rmtree(broken)
