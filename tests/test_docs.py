"""The documentation builds without a warning, and the API reference cannot drift.

``mkdocs build --strict`` renders the API pages from the docstrings (mkdocstrings): a broken
cross-reference, a missing page, an object that no longer exists or a docstring griffe
cannot parse fails the build. The reference is checked against the package itself: every
name of the top-level namespace and every public package or module of ``fieldres/`` has
its anchor in the built API pages.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] is not installed")

ROOT = Path(__file__).resolve().parents[1]
BUILD_SECONDS = 60.0


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert seconds < BUILD_SECONDS, f"the docs build took {seconds:.0f} s (limit {BUILD_SECONDS} s)"
    return out


def _api_anchors(site: Path) -> set[str]:
    ids: set[str] = set()
    for page in (site / "api").rglob("*.html"):
        ids.update(re.findall(r'id="(fieldres(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"', page.read_text()))
    return ids


def _top_level_names() -> list[str]:
    import fieldres

    return sorted(
        name for name, value in vars(fieldres).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    )


def test_mkdocs_build_strict(site):
    assert (site / "index.html").is_file()
    assert (site / "architecture" / "index.html").is_file()
    assert (site / "api" / "index.html").is_file()


def test_every_top_level_name_is_in_the_api_pages(site):
    anchors = _api_anchors(site)
    names = _top_level_names()
    assert len(names) > 30  # the core calculator's namespace, not an empty import
    missing = [n for n in names if not any(a.rsplit(".", 1)[-1] == n for a in anchors)]
    assert not missing, f"top-level names without an entry in docs/api/: {missing}"
    overview = (ROOT / "docs" / "api" / "index.md").read_text()
    unlisted = [n for n in names if f"[fieldres.{n}]" not in overview]
    assert not unlisted, f"top-level names missing from the table of docs/api/index.md: {unlisted}"


def test_every_public_package_and_module_has_an_api_page(site):
    anchors = _api_anchors(site)
    pkg = ROOT / "fieldres"
    public = sorted(
        p.stem for p in pkg.iterdir()
        if not p.name.startswith("_")
        and ((p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py")
    )
    assert {"kernels", "signal", "finite_width", "simulation", "bayes", "meanfield"} <= set(public)
    missing = [f"fieldres.{m}" for m in public if f"fieldres.{m}" not in anchors]
    assert not missing, (
        f"public modules without an API page: {missing}; add a '::: module' block to a page "
        "under docs/api/ (and the page to the nav of mkdocs.yml)"
    )


def _documented_namespaces() -> list[tuple[str, bool]]:
    """The ``::: module`` blocks of docs/api/, with whether their submodules are shown."""
    blocks = []
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        text = page.read_text()
        for m in re.finditer(r"^::: (\S+)\n((?:    .*\n)*)", text, flags=re.M):
            blocks.append((m.group(1), "show_submodules: true" in m.group(2)))
    return blocks


def _public_names(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items()
                 if not n.startswith("_") and not isinstance(v, types.ModuleType)]
    return sorted(names)


def test_every_name_of_a_documented_namespace_is_rendered(site):
    """A re-export griffe cannot follow (a moved module, a typo) vanishes silently from the
    page; here every public name of every documented namespace must have its anchor."""
    anchors = {a.rsplit(".", 1)[-1] for a in _api_anchors(site)}
    modules = []
    for path, submodules in _documented_namespaces():
        parent, _, leaf = path.rpartition(".")
        obj = getattr(importlib.import_module(parent), leaf, None) if parent else None
        if obj is not None and not isinstance(obj, types.ModuleType):
            continue  # a function or class block, e.g. ``::: fieldres.response``
        module = importlib.import_module(path)  # a module that fails to import fails here
        modules.append(module)
        if submodules:
            modules += [importlib.import_module(f"{path}.{info.name}")
                        for info in pkgutil.iter_modules(module.__path__)
                        if not info.name.startswith("_")]
    assert len(modules) >= 12
    missing = {m.__name__: [n for n in _public_names(m) if n not in anchors] for m in modules}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"public names not rendered in docs/api/: {missing}"


def test_docstring_markup_is_rendered(site):
    """The griffe extension turns reST math and roles into Markdown: none is left over."""
    leftovers = {}
    for page in (site / "api").rglob("*.html"):
        text = page.read_text()
        found = re.findall(
            r"\.\. math::|:(?:math|func|class|mod|meth|attr|data):`|={3,} +={3,}", text
        )
        if found:
            leftovers[page.relative_to(site).as_posix()] = sorted(set(found))
    assert not leftovers, f"reStructuredText left in the API pages: {leftovers}"
    assert "arithmatex" in (site / "api" / "finite_width" / "index.html").read_text()


def test_markdown_conversion():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from griffe_fieldres import to_markdown
    finally:
        sys.path.pop(0)
    text = (
        "See :func:`~fieldres.signal.rho_star` and :class:`Hyper`, with :math:`\\rho^*`:\n"
        "\n"
        "    .. math::\n"
        "\n"
        "        a = b,\n"
        "\n"
        "        c = d\n"
        "\n"
        "    after\n"
    )
    assert to_markdown(text) == (
        "See `rho_star` and `Hyper`, with \\(\\rho^*\\):\n"
        "\n"
        "\n"
        "    $$\n"
        "    a = b,\n"
        "    c = d\n"
        "    $$\n"
        "\n"
        "    after"
    )
    table = (
        "Codes:\n\n====  ==========\ncode  meaning\n====  ==========\n"
        "0     ``OK``\n1     no maximum\n====  ==========\n"
    )
    assert to_markdown(table) == (
        "Codes:\n\n\n| code | meaning |\n| --- | --- |\n| 0 | ``OK`` |\n| 1 | no maximum |\n"
    )
