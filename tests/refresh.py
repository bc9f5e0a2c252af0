"""Maintainer refresh: regenerate what the template keeps from real tool output.

    python -m tests.refresh            # rewrite the sqlc templates and the golden render
    python -m tests.refresh --check    # exit 1 if either is stale (what the tests run)

sqlc templates. The sqlc output under template/internal/store/<engine>/gen/ is not written
by hand: this renders the template with a sentinel resource name, runs the pinned sqlc on
it, and turns the output back into Jinja by replacing the sentinel's four spellings with the
resource's (`R.name`, `R.Name`, `R.plural`, `R.Plural`) and sqlc's version with the
standards'. sqlc's output depends on the resource only through those names: its models file
holds the resource's model alone (`omit_unused_structs`), so sqlc's sort order never moves
with the name. tests/test_go.py also runs sqlc on rendered variants with other resource
names and requires the same bytes.

Golden render. tests/golden/ is the default answers' service, rendered with Copier's tasks,
so every template change shows the Go it changes in review.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import GO_ENV, STANDARDS, go_tool_path, render  # noqa: E402

SENTINEL = {"name": "zqxwidget", "Name": "Zqxwidget", "plural": "zqxwidgets", "Plural": "Zqxwidgets"}
GEN_DIALECTS = ("postgres", "mysql", "sqlite")
GOLDEN = ROOT / "tests" / "golden"
# Answers of the golden render: the defaults. Written out so the render is reproducible.
GOLDEN_ANSWERS: dict = {}


def _quiet_copier_settings() -> None:
    settings = Path(tempfile.gettempdir()) / "cgs-empty-copier-settings.yml"
    settings.write_text("{}\n")
    os.environ["COPIER_SETTINGS_PATH"] = str(settings)
    warnings.filterwarnings("ignore", module="copier")


def to_jinja(text: str) -> str:
    """sqlc's output for the sentinel resource, as a template for any resource."""
    if "{{" in text or "{%" in text or "{#" in text:
        raise ValueError("sqlc output contains Jinja markers; escape them before templating")
    version = STANDARDS["tools"]["sqlc"]["version"]
    text = text.replace(f"sqlc {version}", "sqlc {{ plan.tools.sqlc.version }}")
    for key in ("plural", "Plural", "name", "Name"):  # plurals first: they contain the singular
        text = text.replace(SENTINEL[key], "{{ R.%s }}" % key)
    return text


def sqlc_templates(sqlc: Path) -> dict[Path, str]:
    """Every sqlc template file (path under template/ -> contents) from a fresh sqlc run."""
    _quiet_copier_settings()
    out: dict[Path, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proj = render(Path(tmp) / "svc", {"resource": SENTINEL["name"], "data_layer": "sqlc",
                                           "databases": ["postgresql", "mysql", "mariadb", "sqlite"]}, skip_tasks=True)
        for d in GEN_DIALECTS:
            shutil.rmtree(proj / "internal/store" / d / "gen")
        env = {**os.environ, **GO_ENV, "CGO_ENABLED": "1"}
        proc = subprocess.run([str(sqlc), "generate"], cwd=proj, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"sqlc generate failed:\n{proc.stdout}\n{proc.stderr}")
        for d in GEN_DIALECTS:
            for f in sorted((proj / "internal/store" / d / "gen").iterdir()):
                name = f.name.replace(SENTINEL["name"], "{{resource}}") + ".jinja"
                out[Path("template/internal/store") / d / "gen" / name] = to_jinja(f.read_text())
    return out


def stale_sqlc_templates(sqlc: Path) -> list[str]:
    """Paths whose committed sqlc template differs from a fresh run (or exist on one side)."""
    fresh = sqlc_templates(sqlc)
    committed = {p.relative_to(ROOT) for d in GEN_DIALECTS for p in (ROOT / "template/internal/store" / d / "gen").glob("*")}
    stale = [str(p) for p, text in fresh.items() if not (ROOT / p).is_file() or (ROOT / p).read_text() != text]
    stale += [str(p) for p in committed - set(fresh)]
    return sorted(stale)


def write_sqlc_templates(sqlc: Path) -> None:
    fresh = sqlc_templates(sqlc)
    for d in GEN_DIALECTS:
        gen = ROOT / "template/internal/store" / d / "gen"
        for old in gen.glob("*"):
            old.unlink()
    for path, text in fresh.items():
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / path).write_text(text)


def golden_render(dst: Path) -> Path:
    """The default answers' service, with Copier's tasks, minus what varies by machine."""
    _quiet_copier_settings()
    render(dst, GOLDEN_ANSWERS)
    answers = dst / ".copier-answers.yml"
    # _src_path is where the template sits on this machine, _commit the template's commit.
    answers.write_text("".join(ln for ln in answers.read_text().splitlines(keepends=True)
                               if not ln.startswith(("_src_path:", "_commit:"))))
    return dst


def tree_diffs(a: Path, b: Path) -> list[str]:
    diffs: list[str] = []

    def walk(c: filecmp.dircmp, prefix: str) -> None:
        diffs.extend(prefix + f for f in c.diff_files + c.left_only + c.right_only + c.funny_files)
        for name, sub in c.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(a, b, ignore=[]), "")
    return sorted(diffs)


def stale_golden() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = golden_render(Path(tmp) / "svc")
        return tree_diffs(GOLDEN, fresh) if GOLDEN.is_dir() else ["tests/golden (missing)"]


def write_golden() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = golden_render(Path(tmp) / "svc")
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(fresh, GOLDEN)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Regenerate the sqlc templates and the golden render.")
    p.add_argument("--check", action="store_true", help="report what is stale and exit 1; write nothing")
    p.add_argument("--only", choices=["sqlc", "golden"], help="one of the two")
    args = p.parse_args(argv)
    sqlc = go_tool_path("sqlc")
    stale: list[str] = []
    if args.only in (None, "sqlc"):
        if args.check:
            stale += stale_sqlc_templates(sqlc)
        else:
            write_sqlc_templates(sqlc)
    if args.only in (None, "golden"):
        if args.check:
            stale += [f"tests/golden/{f}" for f in stale_golden()]
        else:
            write_golden()
    for f in stale:
        print(f"stale: {f}")
    if stale:
        print("run `python -m tests.refresh` and commit the result")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
