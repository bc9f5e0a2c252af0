#!/usr/bin/env python3
"""Take in the platform's newer standard: `copier update`, the conflict check, the tests, and
a pull request that says what changed. The scheduled workflow
(.github/workflows/standards-update.yml) runs it; run it by hand the same way:

    python3 scripts/standards-update.py                 # latest template version, local branch only
    python3 scripts/standards-update.py --ref vX.Y.Z    # a given version
    python3 scripts/standards-update.py --open-pr       # push the branch and open the PR (gh)

It needs a clean work tree, Copier (9.19.1, as the workflow pins it) and, for
--open-pr, the GitHub CLI with GH_TOKEN. The pull request's description is the new entry of
docs/adr/standards-updates.md (which computed values moved) and the template's CHANGELOG
sections between the two versions; when the update left conflicts the description says so
and the pull request is a draft.

Copier runs the template's own migration code (`--trust`). The script only updates from the
template source this service was made from (`_src_path` in .copier-answers.yml), and, when
TEMPLATE_SOURCES is set (space-separated), only from one listed there.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSWERS = ROOT / ".copier-answers.yml"
LOG = ROOT / "docs/adr/standards-updates.md"
VERSION = re.compile(r"^## \[?v?(\d+(?:\.\d+)*)\]?")


def sh(*cmd: str, check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, check=check, capture_output=True, text=True)


def answer(key: str) -> str:
    for line in ANSWERS.read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip().strip("'\"")
    return ""


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("-")[0].split("+")[0])[:3])


def changelog_between(src: str, old: str, new: str) -> str:
    """The template CHANGELOG's sections for versions after old, up to new."""
    with tempfile.TemporaryDirectory() as tmp:
        if sh("git", "clone", "--quiet", "--no-checkout", src, tmp, check=False).returncode != 0:
            return f"(the template's CHANGELOG could not be read from {src})"
        shown = sh("git", "show", f"{new}:CHANGELOG.md", check=False, cwd=Path(tmp))
        if shown.returncode != 0:
            return f"(the template has no CHANGELOG.md at {new})"
        text = shown.stdout
    out: list[str] = []
    keep = False
    for line in text.splitlines():
        m = VERSION.match(line)
        if m:
            keep = version_key(old) < version_key(m.group(1)) <= version_key(new)
        elif line.startswith("## "):
            keep = False  # Unreleased: not part of any tagged version
        if keep:
            out.append(line)
    return "\n".join(out).strip() or "(no CHANGELOG section between these versions)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", help="template version to update to (default: the latest)")
    ap.add_argument("--open-pr", action="store_true", help="push the branch and open a pull request with gh")
    ap.add_argument("--test-cmd", default="make test lint", help="the checks to run after the update (default: %(default)s)")
    ap.add_argument("--body-file", default=str(ROOT / ".git/standards-update-pr.md"), help="where to write the PR description")
    args = ap.parse_args()

    if sh("git", "status", "--porcelain").stdout.strip():
        print("standards-update: the work tree has changes; commit or stash them first", file=sys.stderr)
        return 2
    src, old = answer("_src_path"), answer("_commit")
    allowed = os.environ.get("TEMPLATE_SOURCES", "").split()
    if allowed and src not in allowed:
        print(f"standards-update: template source {src!r} is not in TEMPLATE_SOURCES; refusing to run its code", file=sys.stderr)
        return 2
    before = LOG.read_text() if LOG.exists() else ""
    base_branch = sh("git", "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()

    copier = shutil.which("copier")
    cmd = [copier] if copier else [sys.executable, "-m", "copier"]
    cmd += ["update", "--trust", "--defaults", "--quiet"]
    if args.ref:
        cmd += ["--vcs-ref", args.ref]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        print("standards-update: copier update failed", file=sys.stderr)
        return 1
    new = answer("_commit")
    if new == old:
        # The tree was clean before: put it back as it was.
        sh("git", "reset", "--hard", "-q")
        sh("git", "clean", "-fdq")
        print(f"standards-update: already on {old}; nothing to do")
        return 0

    conflicts = subprocess.run(["sh", "scripts/check-conflicts.sh"], cwd=ROOT, capture_output=True, text=True)
    conflicted = conflicts.returncode != 0
    tests_ok = None
    test_output = ""
    if not conflicted and args.test_cmd:
        run = subprocess.run(shlex.split(args.test_cmd), cwd=ROOT, capture_output=True, text=True)
        tests_ok, test_output = run.returncode == 0, (run.stdout + run.stderr)[-3000:]

    after = LOG.read_text() if LOG.exists() else ""
    entry = after[len(before):].strip() if after.startswith(before) else after.strip()
    lines = [f"Platform standard **{old} → {new}** (copier-go-service), by `scripts/standards-update.py`.", ""]
    if conflicted:
        lines += ["> **Conflicts.** The update could not merge everything; this pull request is a draft.",
                  "> Resolve what `make check-conflicts` lists, then mark it ready.", "", "```", conflicts.stdout.strip(), "```", ""]
    if tests_ok is not None:
        lines += [f"Checks (`{args.test_cmd}`): **{'passed' if tests_ok else 'FAILED'}**.", ""]
        if not tests_ok:
            lines += ["```", test_output.strip(), "```", ""]
    lines += ["## What changed in this service's computed values", "", entry or "(no computed value changed)", "",
              "## The template's CHANGELOG", "", changelog_between(src, old, new), ""]
    body = "\n".join(lines)
    Path(args.body_file).write_text(body)

    branch = f"standards-update/{new}"
    sh("git", "switch", "-C", branch)
    sh("git", "add", "-A")
    sh("git", "commit", "-q", "-m", f"Platform standard {new}" + (" (conflicts to resolve)" if conflicted else ""))
    print(f"standards-update: {old} -> {new} on branch {branch}; conflicts: {'yes' if conflicted else 'no'}; "
          f"checks: {'not run' if tests_ok is None else 'passed' if tests_ok else 'failed'}; description: {args.body_file}")
    if args.open_pr:
        sh("git", "push", "--force-with-lease", "-u", "origin", branch)
        existing = sh("gh", "pr", "list", "--head", branch, "--json", "number", "--jq", ".[0].number").stdout.strip()
        if existing:  # last run's pull request for the same version: refresh its description
            sh("gh", "pr", "edit", existing, "--body-file", args.body_file)
            print(f"standards-update: updated pull request #{existing}")
        else:
            pr = ["gh", "pr", "create", "--base", base_branch, "--head", branch,
                  "--title", f"Platform standard {new}", "--body-file", args.body_file]
            if conflicted:
                pr.append("--draft")
            print(sh(*pr).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
