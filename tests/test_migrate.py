"""Unit tests of the update migration (extensions/migrate.py)."""

from __future__ import annotations

import pytest
import yaml

from extensions import migrate
from tests.conftest import STANDARDS

pytestmark = pytest.mark.fast

STD = {"go": {"supported": ["1.27", "1.28"], "default": "1.27"}}


def test_renames_and_removals_are_idempotent():
    answers = {"owner": "a", "old": 1, "keep": 2}
    table = [{"version": "2.0.0", "rename": {"owner": "team"}, "remove": ["old"]}]
    notes = migrate.migrate_answers(answers, table, STD)
    assert answers == {"team": "a", "keep": 2}
    assert len(notes) == 2
    assert migrate.migrate_answers(answers, table, STD) == []  # a second run changes nothing


def test_rename_never_overwrites_a_newer_answer():
    answers = {"owner": "old", "team": "new"}
    migrate.migrate_answers(answers, [{"rename": {"owner": "team"}}], STD)
    assert answers["team"] == "new"


def test_unsupported_go_line_moves_to_the_next_supported():
    answers = {"go_version": "1.26"}
    notes = migrate.migrate_answers(answers, [], STD)
    assert answers["go_version"] == "1.27" and "no longer supported" in notes[0]
    answers = {"go_version": "1.30"}  # newer than any supported line: the default
    migrate.migrate_answers(answers, [], STD)
    assert answers["go_version"] == "1.27"
    answers = {"go_version": "1.28"}
    assert migrate.migrate_answers(answers, [], STD) == []


def test_current_standards_keep_current_answers():
    answers = {"go_version": STANDARDS["go"]["default"]}
    assert migrate.migrate_answers(answers, [], STANDARDS) == []


def test_changes_lists_every_changed_value():
    before = {"db_pool_max_conns": 30, "timeouts_ms": {"request_ms": 250}, "modules": {"a": "v1"}}
    after = {"db_pool_max_conns": 40, "timeouts_ms": {"request_ms": 250}, "modules": {"a": "v2", "b": "v1"}}
    assert migrate.changes(before, after) == [
        ("db_pool_max_conns", 30, 40),
        ("modules.a", "v1", "v2"),
        ("modules.b", "—", "v1"),
    ]


def test_answer_migrations_table_is_valid():
    from tests.conftest import ROOT

    table = yaml.safe_load((ROOT / "extensions/answer_migrations.yml").read_text()) or []
    assert isinstance(table, list)
    for entry in table:
        assert set(entry) <= {"version", "rename", "add", "remove", "note"}


def test_a_service_from_before_the_data_layer_question_keeps_sqlc():
    from tests.conftest import ROOT

    table = yaml.safe_load((ROOT / "extensions/answer_migrations.yml").read_text())
    old = {"go_version": STANDARDS["go"]["default"], "schema_churn": "high"}  # high churn recommends gorm
    notes = migrate.migrate_answers(old, table, STANDARDS)
    assert old["data_layer"] == "sqlc" and "data_layer" in notes[0]
    chosen = {"go_version": STANDARDS["go"]["default"], "data_layer": "sqlx"}
    assert migrate.migrate_answers(chosen, table, STANDARDS) == [] and chosen["data_layer"] == "sqlx"


def test_a_team_file_comes_back_deleted_only_where_its_package_was_there():
    before = {"internal/store/sqlite", "internal/httpapi"}
    assert migrate.deleted_by_team("internal/httpapi/item.go", before)
    assert not migrate.deleted_by_team("internal/store/gormstore/item.go", before)
    assert migrate.deleted_by_team("internal/store/gormstore/item.go", None)  # no record: the old rule


def test_a_team_file_new_in_the_template_is_kept():
    """A team-owned file the service's history never had is new in this template version
    (a new migration, queries file or its sqlc output): the update keeps it."""
    before = {"internal/store/sqlite/gen"}
    path = "internal/store/sqlite/gen/idempotency_expiry.sql.go"
    assert not migrate.deleted_by_team(path, before, committed=False)
    assert migrate.deleted_by_team(path, before, committed=True)  # the team deleted it
    assert migrate.deleted_by_team(path, before, committed=None)  # no history: the package rule


def test_ever_committed_asks_the_service_history(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    monkeypatch.chdir(tmp_path)
    assert migrate.ever_committed("a.sql") is None  # not a repository
    git("init", "-q")
    (tmp_path / "a.sql").write_text("x")
    git("add", "a.sql")
    git("commit", "-qm", "a")
    git("rm", "-q", "a.sql")
    git("commit", "-qm", "the team deletes a")
    assert migrate.ever_committed("a.sql") is True
    assert migrate.ever_committed("b.sql") is False
