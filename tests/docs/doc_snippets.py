"""The shell snippets of the README and docs/*.md: found with a Markdown parser, run in order with bash.

A fenced block's info string says what it is: "sh demo" is run by tests/docs (against a `make demo`-style
system when it talks to one), "sh cloud" needs real cloud accounts, "sh long" runs for minutes or until
Ctrl-C (covered by its own tests), "sh env" shows variables a reader fills in (the test sets them itself).
A plain "sh" block, or a kind not listed here, is an error: a new snippet must say whether it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"sh", "bash", "shell", "console", "zsh"}
RUN = "demo"
NOT_RUN = {"cloud", "long", "env"}
# What bash leaves in its environment by itself: never carried from one block to the next.
SHELL_OWN = {"PWD", "OLDPWD", "SHLVL", "_", "BASH_EXECUTION_STRING", "PIPESTATUS"}

# Each variable the docs' "sh env" block defines, and where the banner shows its value.
BANNER_VALUES = {
    "TRACKER": r"^\s+tracker\s+(\S+)",
    "ADMIN_TOKEN": r"^\s+tracker\s.*admin token (\S+?)\)",
    "API_KEY": r"^\s+demo key\s+(\S+)",
    "SIMULATOR": r"^\s+simulator\s+(\S+)",
    "DEVICE": r"^\s+simulator\s.*devices on (127\.0\.0\.1:\d+)-\d+",
    "WORKER": r"^\s+worker\s+(\S+?)/status",
    "DASHBOARD": r"^\s+dashboard\s+(\S+?)/?$",
}


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str  # "" for an indented code block
    kind: str  # the word after the language, "" when there is none
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELLS


@dataclass(frozen=True)
class Failure:
    snippet: Snippet
    exit_code: int
    output: str

    def __str__(self) -> str:
        return (f"{self.snippet.where}: `{self.snippet.lang} {self.snippet.kind}` block failed with exit code "
                f"{self.exit_code}\n--- block ---\n{self.snippet.code}--- output ---\n{self.output}")


def extract(path: Path, text: str | None = None) -> list[Snippet]:
    """Every code block of a Markdown file, fenced or indented, with its language and kind."""
    tokens = MarkdownIt("commonmark").parse(path.read_text() if text is None else text)
    snippets = []
    for token in tokens:
        if token.type not in ("fence", "code_block"):
            continue
        words = token.info.split() if token.type == "fence" else []
        snippets.append(Snippet(path, token.map[0] + 1, words[0] if words else "",
                                " ".join(words[1:]), token.content))
    return snippets


def runnable(paths: list[Path] = DOCS) -> list[Snippet]:
    return [s for path in paths for s in extract(path) if s.is_shell and s.kind == RUN]


def run_in_order(snippets: list[Snippet], env: dict[str, str], cwd: Path = ROOT,
                 timeout: float = 120) -> tuple[int, Failure | None]:
    """Run the blocks one after another as a reader pasting them into one shell would: a variable a block
    sets (KEY=$(curl ...)) is seen by the next ones. Each block runs under `set -euo pipefail`, so any
    failing command fails it. Returns how many blocks ran and the first failure, if any."""
    env = dict(env)
    with tempfile.TemporaryDirectory(prefix="doc-snippets-") as scratch:
        state = Path(scratch) / "env"
        for count, snippet in enumerate(snippets, start=1):
            # allexport: plain assignments reach the environment dump that carries them to the next block.
            script = f"set -euo pipefail\nset -a\n{snippet.code}\nenv -0 > {state}\n"
            try:
                done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                return count, Failure(snippet, -1, f"timed out after {timeout}s\n{exc.output or ''}")
            if done.returncode != 0:
                return count, Failure(snippet, done.returncode, done.stdout)
            for entry in state.read_text().split("\0"):
                name, sep, value = entry.partition("=")
                if sep and name not in SHELL_OWN:
                    env[name] = value
    return len(snippets), None


def shell_environment(values: dict[str, str]) -> dict[str, str]:
    """The reader's shell: `.venv` activated (so `iot` and `python` are the project's), nothing of make's."""
    venv_bin = Path(sys.executable).parent  # the venv running the tests: `make test` made it from `.venv`
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env["PATH"] = os.pathsep.join([str(venv_bin), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv_bin.parent)
    return env | values
