#!/usr/bin/env python
"""The one table of ``benchmarks/README.md``: each path, its figure, its floor or peer, the
ratio, the date and the machine (issue 16, item 5).

Each benchmark that feeds the table calls :func:`update` with its rows (one *section* per
benchmark); the rows are kept in ``benchmarks/table_rows.json`` so that rerunning one
benchmark keeps the rows of the others, and the Markdown table between the markers
``<!-- table:start -->`` and ``<!-- table:end -->`` of the README is rewritten from them.

Usage::

    python benchmarks/table.py          # rewrite the README table from table_rows.json
    python benchmarks/table.py --run    # run every benchmark of RUNNERS, then rewrite it
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
ROWS = HERE / "table_rows.json"
START, END = "<!-- table:start -->", "<!-- table:end -->"

#: Section name -> the command that measures it and calls :func:`update`.
RUNNERS = {
    "latency": [sys.executable, str(HERE / "profile_latency.py"), "--repeat", "1", "--table"],
}


def _load() -> dict:
    return json.loads(ROWS.read_text()) if ROWS.exists() else {}


def render(sections: dict) -> str:
    lines = ["| path | figure | floor or peer | ratio | date | machine |",
             "|---|---|---|---|---|---|"]
    for name in sorted(sections):
        sec = sections[name]
        for r in sec["rows"]:
            lines.append(f"| {r['path']} | {r['figure']} | {r['floor']} | {r['ratio']} | "
                         f"{sec['date']} | {sec['machine']} |")
    return "\n".join(lines)


def write_readme(sections: dict) -> None:
    text = README.read_text()
    table = f"{START}\n{render(sections)}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + table + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## The table\n\n" + table + "\n"
    README.write_text(text)


def update(section: str, rows: list[dict], *, date: str, machine: str) -> None:
    """Replace the rows of ``section`` and rewrite the README table."""
    sections = _load()
    sections[section] = {"date": date, "machine": machine, "rows": rows}
    ROWS.write_text(json.dumps(sections, indent=1) + "\n")
    write_readme(sections)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="store_true", help="run every benchmark first")
    args = ap.parse_args(argv)
    if args.run:
        for name, cmd in RUNNERS.items():
            print(f"running {name}: {' '.join(cmd[1:])}", flush=True)
            subprocess.run(cmd, check=True)
    write_readme(_load())
    print(f"wrote the table of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
