"""Nothing generated is kept by hand: the sqlc templates match a fresh sqlc run, and the
golden render (tests/golden/) matches what the template renders for the default answers.
`python -m tests.refresh` rewrites both (see tests/refresh.py)."""

from __future__ import annotations

import pytest

from tests import refresh
from tests.conftest import go_tool


@pytest.mark.go
def test_sqlc_templates_match_a_fresh_sqlc_run():
    stale = refresh.stale_sqlc_templates(go_tool("sqlc"))
    assert stale == [], f"stale sqlc templates (run `python -m tests.refresh`): {stale}"


@pytest.mark.fast
def test_golden_render_is_current(go_bin):
    stale = refresh.stale_golden()
    assert stale == [], (
        "the default render differs from tests/golden/ (review the change, then run "
        f"`python -m tests.refresh --only golden` and commit it): {stale}"
    )
