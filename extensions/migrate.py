"""`copier update` migrations for services made from copier-go-service.

Copier runs this from the *new* template version, in the service's directory (copier.yml,
`_migrations`):

  before  rewrites the answers file so answers from older versions fit this version's
          questions (answer_migrations.yml; a Go line the standards no longer support moves
          to a supported one), keeps a copy of docs/adr/computed.yml, and notes which
          team-owned files (team_owned.yml) exist;
  after   removes team-owned files the update brought back or added (Copier recreates
          deleted `_skip_if_exists` files), moves team-owned code written for older versions
          to today's APIs where the change is mechanical (upgrade_routes), compares the copy
          with the freshly rendered computed.yml and appends what the new standard changed,
          and what was rewritten, to docs/adr/standards-updates.md (the team's file).

Only the standard library and PyYAML (a Copier dependency) are used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import yaml

HERE = Path(__file__).resolve().parent
COMPUTED = Path("docs/adr/computed.yml")
LOG = Path("docs/adr/standards-updates.md")
ANSWERS_HEADER = "# Changes here will be overwritten by Copier; NEVER EDIT MANUALLY\n"


def state_dir() -> Path:
    """A place inside .git for what `before` hands to `after` (never committed)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--git-path", "copier-go-service"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        path = Path(out)
    except (OSError, subprocess.CalledProcessError):
        path = Path(".copier-go-service-update")
    path.mkdir(parents=True, exist_ok=True)
    return path


def migrate_answers(answers: dict[str, Any], migrations: list[dict[str, Any]], std: dict[str, Any]) -> list[str]:
    """Apply renames, removals and the Go-line rule to answers in place; return notes."""
    notes: list[str] = []
    for m in migrations or []:
        for old, new in (m.get("rename") or {}).items():
            if old in answers and new not in answers:
                answers[new] = answers.pop(old)
                notes.append(f"answer `{old}` is now `{new}` (template {m.get('version', '?')})")
        for new, value in (m.get("add") or {}).items():
            if new not in answers:
                answers[new] = value
                notes.append(f"new question `{new}`: set to {value!r}, what older versions rendered (template {m.get('version', '?')})")
        for old in m.get("remove") or []:
            if old in answers:
                del answers[old]
                notes.append(f"answer `{old}` was dropped (template {m.get('version', '?')})")
    supported = [str(v) for v in std["go"]["supported"]]
    current = str(answers.get("go_version", ""))
    if current and current not in supported:
        def key(v: str) -> tuple[int, ...]:
            return tuple(int(p) for p in v.split("."))

        newer = [v for v in supported if key(v) > key(current)]
        target = min(newer, key=key) if newer else str(std["go"]["default"])
        answers["go_version"] = target
        notes.append(f"Go {current} is no longer supported by the platform standard: moved to Go {target}")
    return notes


def team_owned_files(answers: dict[str, Any]) -> set[str]:
    """The team-owned files present in the project (cwd), by team_owned.yml's patterns."""
    patterns = yaml.safe_load((HERE / "team_owned.yml").read_text(encoding="utf-8"))["_skip_if_exists"]
    found: set[str] = set()
    for pattern in patterns:
        rendered = jinja2.Template(pattern).render(**answers).lstrip("/")
        found.update(str(p) for p in Path(".").glob(rendered) if p.is_file())
    return found


def project_dirs() -> set[str]:
    """Every directory of the project (cwd), outside .git."""
    return {str(p) for p in Path(".").rglob("*") if p.is_dir() and ".git" not in p.parts}


def ever_committed(path: str) -> bool | None:
    """Whether the service's git history (cwd) has held path; None without a history to ask."""
    try:
        out = subprocess.run(["git", "log", "--all", "-n", "1", "--format=%H", "--", path],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return bool(out.strip())


def deleted_by_team(path: str, dirs_before: set[str] | None, committed: bool | None = None) -> bool:
    """A team-owned file the update brought back: the team deleted it when its package was
    already there and the service's history had it (committed). In a package new to the
    service (a data layer or transport the new answers add), or never in the history (a file
    new in this template version, such as a new migration or queries file), it is new and
    stays. Unknown history (committed None): the package rule alone."""
    if dirs_before is None:
        return True
    return str(Path(path).parent) in dirs_before and committed is not False


ROUTES = Path("internal/httpapi/routes.go")

# routes.go before template 0.4: one middleware chain for the API and requireScope for writes.
OLD_GUARD = (
    "\tapi := chain(\n"
    "\t\tlimitBody(d.Logger, d.HTTP.MaxBodyBytes),\n"
    "\t\trateLimit(d.Logger, newClientLimiter(d.RateLimit.RPS, d.RateLimit.Burst)),\n"
    "\t\tdeadline(d.HTTP.RequestTimeout),\n"
    "\t)\n"
    "\twrite := requireScope(d.Logger, d.Auth, writeScope)\n"
)
NEW_GUARD = (
    "\t// guard is what every API endpoint passes, in order: who is calling and may they\n"
    "\t// (401/403, internal/auth), how often (429), the body (413/408), then the deadline\n"
    "\t// for the work itself.\n"
    "\tguard := func(action, scope string) func(http.Handler) http.Handler {\n"
    "\t\treturn chain(\n"
    "\t\t\tauthenticate(d, action, scope),\n"
    "\t\t\trateLimit(d.Logger, d.Limiter),\n"
    "\t\t\treadBody(d.Logger, d.HTTP.MaxBodyBytes, d.HTTP.BodyReadTimeout),\n"
    "\t\t\tdeadline(d.HTTP.RequestTimeout),\n"
    "\t\t)\n"
    "\t}\n"
    "\tread := func(action string, h http.Handler) http.Handler { return guard(action, auth.ReadScope)(h) }\n"
    "\t// Writes also leave an audit record.\n"
    "\twrite := func(action string, h http.Handler) http.Handler {\n"
    "\t\treturn guard(action, auth.WriteScope)(audited(d, action, h))\n"
    "\t}\n"
)
ENDPOINT = re.compile(r"^(\t+\{http\.Method(\w+), (.+?), )api\((.*)\)\},$")
VERBS = {"Post": "create", "Put": "update", "Patch": "update", "Delete": "delete"}


def endpoint_action(method: str, pattern: str) -> str:
    """The audit name of an endpoint: its collection and what it does (items.get)."""
    name = re.match(r"[A-Za-z_]\w*", pattern)
    if name:
        collection = name.group(0)
    else:
        segments = [p for p in pattern.strip('"').split("/") if p and not p.startswith("{")]
        collection = segments[-1] if segments else "root"
    verb = VERBS.get(method) or ("get" if "{" in pattern else "list")
    return f"{collection}.{verb}"


def upgrade_routes(module: str) -> str | None:
    """Move a routes.go written before template 0.4 to the endpoint guard (authentication,
    rate limit, body, deadline, audit of writes): the middleware block and every
    api(...)/api(write(...)) endpoint. Returns a note, or None when there was nothing to do."""
    if not ROUTES.is_file():
        return None
    text = ROUTES.read_text(encoding="utf-8")
    if "newClientLimiter(" not in text and "requireScope(" not in text:
        return None
    if OLD_GUARD not in text:
        return (f"`{ROUTES}` still uses the middleware of template 0.3 (limitBody, newClientLimiter, "
                "requireScope) in a form the update cannot rewrite: replace that block as the CHANGELOG shows")
    text = text.replace(OLD_GUARD, NEW_GUARD)
    lines = []
    for line in text.split("\n"):
        m = ENDPOINT.match(line)
        if m:
            prefix, method, pattern, inner = m.groups()
            if inner.startswith("write(") and inner.endswith(")"):
                line = f'{prefix}write("{endpoint_action(method, pattern)}", {inner[len("write("):-1]})}},'
            else:
                line = f'{prefix}read("{endpoint_action(method, pattern)}", {inner})}},'
        lines.append(line)
    text = "\n".join(lines)
    text = text.replace('import "net/http"\n', f'import (\n\t"net/http"\n\n\t"{module}/internal/auth"\n)\n', 1)
    ROUTES.write_text(text, encoding="utf-8")
    return (f"rewrote `{ROUTES}` for the endpoint guard: every API endpoint authenticates (reads too, "
            "when AUTH_PROTECT_READS is set), and writes are audited; check the action names")


def go_module() -> str:
    gomod = Path("go.mod")
    if not gomod.is_file():
        return ""
    first = gomod.read_text(encoding="utf-8").split("\n", 1)[0]
    return first.removeprefix("module ").strip()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    a, b = flatten(before), flatten(after)
    return [(k, a.get(k, "—"), b.get(k, "—")) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def before(answers_file: Path) -> None:
    std = yaml.safe_load((HERE / "standards.yml").read_text(encoding="utf-8"))
    migrations = yaml.safe_load((HERE / "answer_migrations.yml").read_text(encoding="utf-8")) or []
    answers = yaml.safe_load(answers_file.read_text(encoding="utf-8")) or {}
    notes = migrate_answers(answers, migrations, std)
    if notes:
        answers_file.write_text(ANSWERS_HEADER + yaml.safe_dump(answers, sort_keys=True, allow_unicode=True), encoding="utf-8")
    state = state_dir()
    (state / "notes.yml").write_text(yaml.safe_dump(notes), encoding="utf-8")
    (state / "team-owned.yml").write_text(yaml.safe_dump(sorted(team_owned_files(answers))), encoding="utf-8")
    (state / "dirs-before.yml").write_text(yaml.safe_dump(sorted(project_dirs())), encoding="utf-8")
    if COMPUTED.is_file():
        (state / "computed-before.yml").write_text(COMPUTED.read_text(encoding="utf-8"), encoding="utf-8")
    for note in notes:
        print(f"copier-go-service: {note}")


def after(answers_file: Path, version_from: str, version_to: str) -> None:
    state = state_dir()
    notes = yaml.safe_load((state / "notes.yml").read_text(encoding="utf-8")) if (state / "notes.yml").is_file() else []
    owned_file, dirs_file = state / "team-owned.yml", state / "dirs-before.yml"
    if owned_file.is_file():
        kept = set(yaml.safe_load(owned_file.read_text(encoding="utf-8")) or [])
        dirs = set(yaml.safe_load(dirs_file.read_text(encoding="utf-8")) or []) if dirs_file.is_file() else None
        answers = yaml.safe_load(answers_file.read_text(encoding="utf-8")) or {}
        for path in sorted(team_owned_files(answers) - kept):
            if deleted_by_team(path, dirs, ever_committed(path)):
                Path(path).unlink()
                notes.append(f"left `{path}` out: the file is the team's and was not there before the update")
            else:
                notes.append(f"added `{path}`: new with this update (a new file, or a package the service did not have); it is the team's from now on")
    note = upgrade_routes(go_module())
    if note:
        notes.append(note)
    old_file = state / "computed-before.yml"
    old = yaml.safe_load(old_file.read_text(encoding="utf-8")) if old_file.is_file() else {}
    new = yaml.safe_load(COMPUTED.read_text(encoding="utf-8")) if COMPUTED.is_file() else {}
    diff = changes(old or {}, new or {})
    if diff or notes:
        lines = [f"## {dt.date.today().isoformat()}: template {version_from} → {version_to}", ""]
        lines += [f"- {n}" for n in notes or []]
        if notes:
            lines.append("")
        if diff:
            lines += ["| computed value | before | after |", "|---|---|---|"]
            lines += [f"| `{k}` | {fmt(a)} | {fmt(b)} |" for k, a, b in diff]
        else:
            lines.append("No computed value changed.")
        lines.append("")
        head = "" if LOG.is_file() else (
            "# Standards updates\n\nWhat each `copier update` changed in this service's computed "
            "architecture (see 0001-architecture.md for the current values). Appended by the "
            "template's update migration; the file is yours.\n\n"
        )
        LOG.parent.mkdir(parents=True, exist_ok=True)
        with LOG.open("a", encoding="utf-8") as f:
            f.write(head + "\n".join(lines) + "\n")
        print(f"copier-go-service: {len(diff)} computed value(s) changed; see {LOG}")
    for f in (old_file, state / "notes.yml", owned_file, dirs_file):
        f.unlink(missing_ok=True)


def fmt(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) or "—"
    return str(v)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["before", "after"])
    p.add_argument("--answers-file", type=Path, default=Path(".copier-answers.yml"))
    p.add_argument("--from", dest="version_from", default="?")
    p.add_argument("--to", dest="version_to", default="?")
    args = p.parse_args(argv)
    if args.stage == "before":
        before(args.answers_file)
    else:
        after(args.answers_file, args.version_from, args.version_to)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
