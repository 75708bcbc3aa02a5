"""The documentation: its code runs, its references are complete, it builds cleanly.

The Sphinx build needs the ``docs`` extra (``pip install -e ".[docs]"``) and is
skipped without it; the other tests need only the package.
"""

import doctest
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "doc"
PAGES = sorted(
    path
    for path in DOC.rglob("*.rst")
    if path.relative_to(DOC).parts[0] not in {"_build", "_templates", "generated", "auto_examples"}
)
PUBLIC_MODULES = ("sklip", "sklip.robustness", "sklip.nn")


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [page for page in PAGES if ">>> " in page.read_text()], ids=lambda p: p.stem
)
def test_doc_page_examples_pass_as_doctests(page):
    result = doctest.testfile(
        str(page),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
    )
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {page.name}"


@pytest.mark.slow
def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})


def test_readme_links_into_the_docs_resolve():
    links = re.findall(r"\]\((doc/[^)]+)\)", (ROOT / "README.md").read_text())
    assert len(links) >= 5
    for link in links:
        assert (ROOT / link).is_file(), link


def test_readme_comparison_table_figures_come_from_the_benchmarks():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## How it compares", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) > 3
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    figures = set(re.findall(r"\d+\.\d+", "\n".join(rows)))
    assert figures
    missing = sorted(figure for figure in figures if figure not in results)
    assert not missing, f"figures in the README table that RESULTS.md does not hold: {missing}"


def test_api_reference_lists_every_public_name():
    api = (DOC / "api.rst").read_text()
    listed = set(re.findall(r"^   (\w+)$", api, re.M)) | set(
        re.findall(r"^\.\. autodata:: (\w+)", api, re.M)
    )
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        public = {name for name in module.__all__ if not name.startswith("_")}
        assert not public - listed, f"{module_name} names missing from doc/api.rst"


def test_docs_build_without_warnings(tmp_path):
    for package in ("sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme"):
        pytest.importorskip(package)
    # -W: any warning fails the build. plot_gallery=0: the examples are run by
    # tests/test_examples.py, not here, so the build takes seconds.
    command = [
        sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going",
        "-D", "plot_gallery=0", "-d", str(tmp_path / "doctrees"),
        str(DOC), str(tmp_path / "html"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    html = tmp_path / "html"
    for page in ("index", "getting_started", "coming_from_deel", "user_guide/hkr_loss", "api"):
        assert (html / f"{page}.html").is_file(), page
    classifier = (html / "generated" / "sklip.LipschitzClassifier.html").read_text()
    assert 'id="sklip.LipschitzClassifier.certified_radius"' in classifier
    assert (html / "auto_examples" / "plot_wasserstein_two_samples.html").is_file()


def test_every_public_class_and_function_has_an_examples_section():
    # numpydoc Examples are run by pytest's --doctest-modules over sklip/.
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not callable(obj):
                continue
            if "Examples\n" not in (inspect.getdoc(obj) or ""):
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names without an Examples section: {missing}"
