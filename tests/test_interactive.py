"""The interactive path as a person meets it: `copier copy` in a pseudo-terminal, answers
typed at the prompts."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pexpect = pytest.importorskip("pexpect")

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\r")
CLEAR_LINE = "\x15"  # Ctrl-U: drop the pre-filled default
ENTER = "\r"


class Screen:
    """A pty session whose output is kept, ANSI-stripped, for searching in order."""

    def __init__(self, child):
        self.child = child
        self.text = ""
        self.pos = 0  # everything before pos has been matched already

    def _pump(self) -> None:
        try:
            chunk = self.child.read_nonblocking(65536, timeout=0.1)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            raise
        self.text += ANSI.sub("", chunk)

    def wait(self, needle: str, timeout: float = 30) -> int:
        """Wait until needle appears after the last match; return where it starts."""
        deadline = time.monotonic() + timeout
        while True:
            at = self.text.find(needle, self.pos)
            if at >= 0:
                self.pos = at + len(needle)
                return at
            if time.monotonic() > deadline:
                Path("/tmp/pty.log").write_text(self.text); raise AssertionError(f"never saw {needle!r}; screen tail:\n{self.text[-3000:]}")
            try:
                self._pump()
            except pexpect.EOF:
                at = self.text.find(needle, self.pos)
                if at >= 0:
                    self.pos = at + len(needle)
                    return at
                raise AssertionError(f"exited before {needle!r}; screen tail:\n{self.text[-3000:]}")

    def answer(self, text: str | None) -> None:
        """Accept the default (None) or replace it with text, then press Enter."""
        time.sleep(0.15)
        if text is not None:
            self.child.send(CLEAR_LINE)
            self.child.send(text)
        time.sleep(0.1)
        self.child.send(ENTER)


def test_interactive_copy(tmp_path):
    copier = shutil.which("copier")
    cmd, args = (copier, []) if copier else (sys.executable, ["-m", "copier"])
    dst = tmp_path / "pty-svc"
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", COLUMNS="200", LINES="60")
    child = pexpect.spawn(
        cmd, [*args, "copy", "--trust", "--vcs-ref=HEAD", "--skip-tasks", str(ROOT), str(dst)],
        env=env, encoding="utf-8", codec_errors="replace", dimensions=(60, 200), timeout=60,
    )
    s = Screen(child)
    try:
        s.wait("Project name")
        s.answer("Pty Service")

        s.wait("Service slug")
        s.answer("Bad_Slug")
        s.wait("single hyphens")  # refused at the prompt, with the rule
        s.answer("pty-svc")

        s.wait("Go module path")
        s.answer("example.com/team/pty-svc")
        s.wait("One-line description")
        s.answer(None)
        s.wait("Owning team")
        s.answer(None)
        s.wait("Go release line")
        s.answer(None)

        s.wait("Peak requests per second")
        s.answer("0")
        s.wait("whole number from 1")  # refused: out of range
        s.answer("300")
        s.wait("p99 latency target")
        s.answer("200")
        s.wait("Availability objective in percent")
        s.answer("100")
        s.wait("at least 95 and below 100")  # refused: no error budget left
        s.answer("99.5")
        s.wait("Packets per second")
        s.answer(None)
        s.wait("CPU-bound")
        s.answer(None)
        s.wait("Who calls the service?")
        s.answer(None)
        s.wait("How often will the data schema change?")
        s.answer(None)
        # The data layer's recommendation (from the schema churn) is shown with its choice.
        s.wait("Data layer (recommended: sqlc: Schema churn is low")
        s.answer(None)

        # The transport's recommendation (from the callers) is shown with its choice.
        s.wait("Transport (recommended: rest: Called by external clients")
        s.answer(None)
        s.wait("REST router")
        s.answer(None)
        s.wait("Databases to compile in")
        s.answer(None)
        s.wait("Are some workflows asynchronous")
        s.answer(None)
        # The events recommendation (from async_workflows) is shown with its choice.
        s.wait("Events (recommended: none: Workflows are synchronous")
        s.answer(None)

        # The computed verdict is on screen before the question it informs.
        verdict = s.wait("Go is not justified: 300 req/s <= 10,000, p99 200 ms >= 10 ms")
        question = s.wait("Why Go anyway?")
        assert verdict < question
        s.answer("too short")
        s.wait("at least 20 characters")
        s.answer("Our on-call tooling and libraries are Go-only.")

        s.wait("Example resource, a singular noun")
        s.answer(None)
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close()
    assert child.exitstatus == 0, s.text[-3000:]
    answers = yaml.safe_load((dst / ".copier-answers.yml").read_text())
    assert answers["service_slug"] == "pty-svc"
    assert answers["peak_rps"] == 300
    assert answers["slo_availability"] == 99.5
    assert answers["data_layer"] == "sqlc"
    assert answers["async_workflows"] is False and answers["events"] == "none"
    main = (dst / "cmd/pty-svc/main.go").read_text()
    assert "Our on-call tooling and libraries are Go-only." in main
