"""Sphinx configuration of the skbottleneck documentation.

Build with ``make -C docs html`` (warnings are errors; the worked examples
under ``docs/examples/`` are executed by sphinx-gallery, offline, on images
generated from scikit-image's bundled photos).
"""

import os
import re
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# Keep the examples' feature cache out of the user's real cache, and TF quiet.
os.environ.setdefault("SKBOTTLENECK_CACHE_DIR", tempfile.mkdtemp(prefix="skb-docs-cache-"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import skbottleneck  # noqa: E402

project = "skbottleneck"
author = "the skbottleneck developers"
copyright = "2026, the skbottleneck developers"
release = skbottleneck.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "examples/*.rst",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.pickle", "auto_examples/*.json"]
root_doc = "index"
default_role = "py:obj"

# -- API reference ----------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
numpydoc_xref_param_type = False

# No network while building: intersphinx inventories are not fetched.
intersphinx_mapping = {}

# -- worked examples ----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py$",  # execute every example
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "plot_gallery": "True",
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
    "matplotlib_animations": False,
    "min_reported_time": 1,
}

# TensorFlow / Keras deprecation chatter is not ours to fix.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

# -- HTML -------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skbottleneck {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": True,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []
html_show_sourcelink = False


# -- command-line reference: the --help of every command, generated -------------
def _write_cli_help():
    from skbottleneck.cli import EXIT_CODES, build_parser

    out = os.path.join(HERE, "generated", "cli")
    os.makedirs(out, exist_ok=True)
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "76"
    try:
        parser = build_parser()
        texts = {"skbottleneck": parser.format_help()}
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        for name, p in sub.choices.items():
            texts[name] = p.format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    for name, text in texts.items():
        path = os.path.join(out, f"{name}.txt")
        old = open(path).read() if os.path.exists(path) else None
        if old != text:  # keep the mtime, so Sphinx does not rebuild for nothing
            with open(path, "w") as f:
                f.write(text)
    rows = "".join(f"   * - {code}\n     - {text.replace('`', '``')}\n"
                   for code, text in EXIT_CODES.items())
    table = (".. list-table::\n   :header-rows: 1\n   :widths: 10 90\n\n"
             "   * - status\n     - meaning\n" + rows)
    path = os.path.join(out, "exit_codes.rst")
    if not os.path.exists(path) or open(path).read() != table:
        with open(path, "w") as f:
            f.write(table)


_write_cli_help()


# scikit-learn's generated metadata-routing setters (set_fit_request, ...) are
# not ours to document.
def _skip_member(app, what, name, obj, skip, options):
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


_SHAPE = re.compile(r"shape \(([^)]*)\)")


def _escape_shapes(app, what, name, obj, options, lines):
    """``shape (n, n_features_out_)``: a trailing underscore is rst link syntax; escape it."""
    for i, line in enumerate(lines):
        if "shape (" in line:
            lines[i] = _SHAPE.sub(
                lambda m: "shape (" + re.sub(r"(\w)_(?=[,\s]|$)", r"\1\\_", m.group(1)) + ")", line)


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _escape_shapes, priority=100)
