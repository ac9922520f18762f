"""Read Nomad job specs (`jobs/*.nomad.hcl`) with python-hcl2 for checks that need no Nomad binary.

python-hcl2 keeps string literals as written (quotes, escapes, `${...}`), so this module unquotes
them and evaluates the small expression subset the specs use in strings: `var.x`, `local.x`,
`replace()`, `jsondecode()`, `concat()`
and `yamlencode()`. Anything else raises, so a check never silently reads a wrong value.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import yaml

_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n", "\\t": "\t", "\\r": "\r"}
_ESCAPE_RE = re.compile(r'\\[\\"ntr]')
_HEREDOC_RE = re.compile(r"^<<(-?)([A-Z]+)\n(.*?)[ \t]*\2$", re.S)
_INTERP_RE = re.compile(r"\$\{([^}]*)\}")
_REF_RE = re.compile(r"^(var|local)\.([A-Za-z_][A-Za-z0-9_]*)$")
_CALL_RE = re.compile(r"^([a-z]+)\((.*)\)$", re.S)


class SpecError(ValueError):
    """A job spec cannot be read or uses an expression this reader does not evaluate."""


def unescape(text: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], text)


def unquote(raw: str) -> str:
    """`"a\\\\.b"` (as python-hcl2 returns it) -> `a\\.b`; unquoted values are returned as they are."""
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1]
        heredoc = _HEREDOC_RE.match(raw)
        if heredoc:  # python-hcl2 keeps heredocs as written: <<-EOT\n...\nEOT
            body = heredoc.group(3)
            return textwrap.dedent(body) if heredoc.group(1) else body
        return unescape(raw)
    return raw


def strip_label(label: str) -> str:
    return label.strip('"')


@dataclass
class JobSpec:
    path: Path
    doc: dict[str, Any]

    @property
    def variables(self) -> dict[str, dict[str, Any]]:
        """Declared variables: name -> block (with 'default' when it has one)."""
        out: dict[str, dict[str, Any]] = {}
        for block in self.doc.get("variable", []):
            for label, body in block.items():
                out[strip_label(label)] = body
        return out

    @property
    def required_variables(self) -> set[str]:
        return {name for name, body in self.variables.items() if "default" not in body}

    @property
    def raw_locals(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for block in self.doc.get("locals", []):
            out.update({k: v for k, v in block.items() if k != "__is_block__"})
        return out

    @property
    def job_name(self) -> str:
        (label,) = self.doc["job"][0].keys()
        return strip_label(label)

    @property
    def job(self) -> dict[str, Any]:
        return self.doc["job"][0][f'"{self.job_name}"']

    def groups(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for block in self.job.get("group", []):
            for label, body in block.items():
                yield strip_label(label), body

    def tasks(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for _, group in self.groups():
            for block in group.get("task", []):
                for label, body in block.items():
                    yield strip_label(label), body

    def services(self) -> Iterator[dict[str, Any]]:
        for _, group in self.groups():
            yield from group.get("service", [])
        for _, task in self.tasks():
            yield from task.get("service", [])

    def templates(self) -> Iterator[dict[str, Any]]:
        for _, task in self.tasks():
            yield from task.get("template", [])

    def evaluate(self, raw: str, values: Mapping[str, str]) -> Any:
        """An attribute evaluated against `values` (HCL2 vars): a lone `${expr}` gives its value
        (list, dict...), a string with interpolations gives a string, blocks of data recurse."""
        if isinstance(raw, dict):
            return {k: self.evaluate(v, values) for k, v in raw.items() if not k.startswith("__")}
        if isinstance(raw, list):
            return [self.evaluate(v, values) for v in raw]
        if not isinstance(raw, str):
            return raw
        whole = _INTERP_RE.fullmatch(raw)
        if whole:
            return self._expression(whole.group(1).strip(), values)
        text = unquote(raw)
        return _INTERP_RE.sub(lambda m: str(self._expression(m.group(1).strip(), values)), text)

    def _expression(self, expr: str, values: Mapping[str, str]) -> Any:
        if expr.startswith('"') and expr.endswith('"'):
            return unescape(expr[1:-1])
        ref = _REF_RE.match(expr)
        if ref:
            return self._reference(ref.group(1), ref.group(2), values)
        call = _CALL_RE.match(expr)
        if call:
            name, args = call.group(1), [self._expression(a, values) for a in _split_args(call.group(2))]
            if name in _FUNCTIONS:
                return _FUNCTIONS[name](*args)
        raise SpecError(
            f"{self.path.name}: cannot evaluate ${{{expr}}} (only var.x, local.x, {', '.join(_FUNCTIONS)})"
        )

    def _reference(self, kind: str, name: str, values: Mapping[str, str]) -> Any:
        if kind == "var":
            if name in values:
                return values[name]
            if "default" not in self.variables.get(name, {}):
                raise SpecError(f"{self.path.name}: var.{name} has no value and no default")
            return self.evaluate(self.variables[name]["default"], values)
        if name not in self.raw_locals:
            raise SpecError(f"{self.path.name}: local.{name} is not defined")
        return self.evaluate(self.raw_locals[name], values)


def _split_args(text: str) -> list[str]:
    """Split a call's arguments on top-level commas (respecting quotes and parentheses)."""
    args, depth, quoted, current = [], 0, False, ""
    i = 0
    while i < len(text):
        char = text[i]
        if quoted and char == "\\":
            current += text[i : i + 2]
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            args.append(current.strip())
            current = ""
            i += 1
            continue
        current += char
        i += 1
    if current.strip():
        args.append(current.strip())
    return args


_FUNCTIONS = {
    "replace": lambda subject, old, new: str(subject).replace(old, new),
    "jsondecode": lambda text: json.loads(text),
    "concat": lambda *lists: [item for items in lists for item in items],
    "yamlencode": lambda value: yaml.safe_dump(value, sort_keys=False),
}


def load_job_spec(path: Path) -> JobSpec:
    """Parse one job spec; raises SpecError naming the file on a syntax error or a missing job block."""
    try:
        with path.open(encoding="utf-8") as handle:
            doc = hcl2.load(handle)
    except Exception as exc:  # python-hcl2 raises lark errors of several types
        raise SpecError(f"{path}: not valid HCL2: {exc}") from exc
    jobs = doc.get("job", [])
    if len(jobs) != 1 or len(jobs[0]) != 1:
        raise SpecError(f"{path}: expected exactly one job block, found {sum(len(j) for j in jobs)}")
    return JobSpec(path=path, doc=doc)
