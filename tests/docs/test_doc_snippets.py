"""Docs that cannot rot: every shell snippet of README.md and docs/*.md marked `sh demo` runs, in order, in a
reader's shell against a freshly started `iot demo`, and fails the test when any command in it fails (curl
with --fail-with-body exits non-zero on an HTTP error such as the 422 of a body sent without
`Content-Type: application/json`). Every other shell block must say why it is not run."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from doc_snippets import BANNER_VALUES, DOCS, NOT_RUN, ROOT, RUN, extract, run_in_order, runnable

MIN_RUNNABLE = 16  # as many as the docs hold today: fewer means snippets were dropped or mislabelled
CURL = re.compile(r"(?<![\w-])curl\s")


def _label(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_shell_block_says_whether_it_runs() -> None:
    unmarked = [f"{s.where}: ```{s.lang} {s.kind}".rstrip() for path in DOCS for s in extract(path)
                if s.is_shell and s.kind not in {RUN, *NOT_RUN}]
    assert not unmarked, (f"shell blocks must be tagged `sh {RUN}` (run by tests/docs) or one of "
                          f"{sorted(NOT_RUN)} (not run, see tests/docs/doc_snippets.py): {unmarked}")


def test_no_code_block_hides_from_the_check() -> None:
    """An indented or language-less block cannot be told apart from a command: fence it with a language."""
    hidden = [s.where for path in DOCS for s in extract(path) if not s.lang]
    assert not hidden, f"code blocks without a language (use ```sh <kind>, ```text, ```python...): {hidden}"


def test_enough_snippets_run() -> None:
    snippets = runnable()
    assert len(snippets) >= MIN_RUNNABLE, f"only {len(snippets)} `sh {RUN}` blocks: {[s.where for s in snippets]}"
    assert {s.path.name for s in snippets} >= {"README.md", "api.md", "configuration.md", "operator-manual.md", "services.md"}


def test_every_curl_fails_on_an_http_error() -> None:
    """Without -f/--fail-with-body curl exits 0 on a 422, and a broken example would pass unnoticed."""
    lenient = [s.where for s in runnable() if CURL.search(s.code)
               for command in re.split(r"\n(?!\s)", s.code) if CURL.search(command)
               and not re.search(r"\s(--fail-with-body|--fail|-f|-\w*f\w*)\s", command + " ")]
    assert not lenient, f"curl commands without --fail-with-body: {lenient}"


def test_env_block_matches_the_demo_banner() -> None:
    """The variables the docs tell a reader to copy from the banner are exactly those the test copies."""
    documented = {name for path in DOCS for s in extract(path) if s.is_shell and s.kind == "env"
                  for name in re.findall(r"^export (\w+)=", s.code, re.M)}
    assert documented == set(BANNER_VALUES)
    used = {name for s in runnable() for name in re.findall(r"\$\{?([A-Z_]+)", s.code)}
    assignable = {name for s in runnable() for name in re.findall(r"^\s*([A-Z_]+)=", s.code, re.M)}
    assert used <= documented | assignable, f"snippets use variables nobody sets: {used - documented - assignable}"


@pytest.mark.e2e
def test_the_runner_fails_a_broken_snippet(tmp_path: Path, reader_env: dict[str, str]) -> None:
    """The bug class of issue 16: a JSON body sent without `Content-Type: application/json` is refused (422);
    a snippet doing that fails here, naming the block and showing the tracker's reason."""
    doc = tmp_path / "broken.md"
    doc.write_text('```sh demo\ncurl -sS --fail-with-body -X POST "$TRACKER/v1/tenants" '
                   '-H "Authorization: Bearer $ADMIN_TOKEN" -d \'{"slug": "broken"}\'\n```\n')
    ran, failure = run_in_order(extract(doc), reader_env)
    assert ran == 1 and failure is not None
    assert failure.exit_code == 22, failure  # curl: HTTP error
    assert "broken.md:1" in str(failure) and "422" in failure.output and "valid dictionary" in failure.output


def test_the_runner_carries_variables_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    doc = tmp_path / "steps.md"
    doc.write_text("```sh demo\nNAME=$(echo first)\n```\n\n```sh demo\ntest \"$NAME\" = first\nfalse\necho never\n```\n"
                   "\n```sh demo\necho not reached\n```\n")
    ran, failure = run_in_order(extract(doc), {"PATH": "/usr/bin:/bin"})
    assert ran == 2 and failure is not None and failure.exit_code == 1 and "never" not in failure.output
    assert failure.snippet.line == 5


@pytest.mark.e2e
@pytest.mark.parametrize("doc", [p for p in DOCS if any(s.path == p for s in runnable([p]))], ids=_label)
def test_doc_snippets_run(doc: Path, reader_env: dict[str, str]) -> None:
    snippets = runnable([doc])
    started = time.monotonic()
    ran, failure = run_in_order(snippets, reader_env)
    print(f"{_label(doc)}: {ran} snippets in {time.monotonic() - started:.1f}s")
    assert failure is None, str(failure)
    assert ran == len(snippets)
