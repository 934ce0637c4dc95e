"""Griffe extension for the API reference: fieldres's docstrings in Markdown.

fieldres's numpy-style docstrings use a few reStructuredText constructs (they read well in
``help()`` and in the source). mkdocstrings renders docstrings as Markdown, so this
extension rewrites them, once the package is loaded and before any docstring is parsed:

- ``.. math::`` blocks become display math ``$$ ... $$`` and ``:math:`x``` inline math
  ``\\(x\\)`` (both typeset by ``pymdownx.arithmatex`` and MathJax, as in the other pages);
- simple tables (columns framed by ``=====  =====`` rules) become Markdown tables;
- the cross-reference roles ``:func:``, ``:class:``, ``:mod:``, ``:meth:``, ``:attr:``,
  ``:data:``, ``:exc:`` and ``:obj:`` become inline code (``~a.b.c`` shows ``c``, as in
  Sphinx);
- the lazy-import hooks ``__getattr__`` and ``__dir__`` of a package are not part of its
  API and are hidden.

Loaded from mkdocs.yml (``extensions: [docs/griffe_fieldres.py]``); the source files are
not changed.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
_TABLE_RULE = re.compile(r"^(\s*)=+(?: +=+)+\s*$")
_HIDDEN = {"__getattr__", "__dir__"}


def _role(m: re.Match) -> str:
    target = m.group(2)
    return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _math_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _MATH_DIRECTIVE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        pad, first = m.group(1), m.group(2)
        body = [first] if first else []
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(pad)):
            block.append(lines[i])
            i += 1
        body += [ln for ln in textwrap.dedent("\n".join(block)).splitlines() if ln.strip()]
        out += ["", f"{pad}$$"] + [pad + ln for ln in body] + [f"{pad}$$", ""]
    return "\n".join(out)


def _cells(line: str, spans: list[tuple[int, int]]) -> list[str]:
    cells = [line[a:b].strip() for a, b in spans[:-1]]
    return cells + [line[spans[-1][0]:].strip()]


def _simple_tables(text: str) -> str:
    """A reST simple table (rule, header, rule, rows, rule) as a Markdown table."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _TABLE_RULE.match(lines[i])
        rules = [j for j in range(i, len(lines)) if _TABLE_RULE.match(lines[j])][:3]
        if not m or len(rules) < 3 or any(not lines[j].strip() for j in range(i, rules[2])):
            out.append(lines[i])
            i += 1
            continue
        pad = m.group(1)
        spans = [mm.span() for mm in re.finditer(r"=+", lines[i])]
        header = [_cells(ln, spans) for ln in lines[rules[0] + 1:rules[1]]]
        rows = [_cells(ln, spans) for ln in lines[rules[1] + 1:rules[2]]]
        table = [" | ".join(" ".join(col) for col in zip(*header))] if header else [""]
        table.append(" | ".join("---" for _ in spans))
        table += [" | ".join(r) for r in rows]
        out += ["", *(f"{pad}| {row} |" for row in table), ""]
        i = rules[2] + 1
    return "\n".join(out)


def to_markdown(text: str) -> str:
    """Rewrite the reStructuredText constructs of a fieldres docstring as Markdown."""
    if ".. math::" in text:
        text = _math_blocks(text)
    if "==" in text:
        text = _simple_tables(text)
    text = _MATH_ROLE.sub(lambda m: f"\\({m.group(1)}\\)", text)
    return _ROLE.sub(_role, text)


class FieldresDocstrings(griffe.Extension):
    """Rewrite docstrings as Markdown and hide the packages' lazy-import hooks."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name == "fieldres":
            self._visit(pkg)

    def _visit(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
        for member in obj.members.values():
            if member.is_alias:
                continue
            if member.is_function and obj.is_module and member.name in _HIDDEN:
                member.public = False
            self._visit(member)
