"""Sphinx configuration of sklip's documentation.

``make -C doc html`` builds everything and runs the gallery (a few minutes on
two CPU cores; ``SKLIP_EXAMPLES_SMALL=1`` shrinks the examples to a smoke
test); ``make -C doc html-noplot`` skips running the examples. Both treat every
warning as an error.
"""

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the working tree's sklip, installed or not

import sklip  # noqa: E402

project = "sklip"
author = "the sklip developers"
copyright = "the sklip developers"
release = sklip.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build"]
default_role = "literal"  # `x` in prose renders as code, never as a warning
nitpicky = False

# -- API reference ----------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc "Parameters" sections say the types
autodoc_inherit_docstrings = False  # no torch docstrings on undocumented forward()
numpydoc_show_class_members = False  # autodoc's :members: lists the methods
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- Gallery ----------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "doc_module": ("sklip",),
    "backreferences_dir": "generated/backreferences",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "min_reported_time": 1,
    "show_memory": False,
}
os.environ.setdefault("MPLBACKEND", "Agg")

# -- HTML ---------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklip {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"index": [], "getting_started": [], "coming_from_deel": []}


# -- scikit-learn's inherited methods ------------------------------------------
# The estimators inherit documented methods from scikit-learn (score,
# get_params, set_fit_request, ...). Their docstrings link into scikit-learn's
# own user guide and glossary, which do not exist here: keep the link text.
_SKLEARN_LINK = re.compile(r":(?:ref|term):`([^`<]*?)\s*(?:<([^>`]*)>)?`")


def _sklearn_links_as_text(app, what, name, obj, options, lines):
    if not (getattr(obj, "__module__", None) or "").startswith("sklearn"):
        return
    lines[:] = [
        _SKLEARN_LINK.sub(lambda m: f"*{m.group(1).strip() or m.group(2)}*", line) for line in lines
    ]


def setup(app):
    app.connect("autodoc-process-docstring", _sklearn_links_as_text)
