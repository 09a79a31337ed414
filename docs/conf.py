"""Sphinx configuration: ``sphinx-build -W --keep-going -b html docs docs/_build``.

The API pages are the docstrings (numpydoc), so xent must be importable (installed or
built in place); ``xent.torch`` needs PyTorch.  The other pages are Markdown (MyST).
"""

import xent

project = "xent"
author = "the xent developers"
copyright = "the xent developers"
release = version = xent.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# Markdown: heading anchors so that [text](page.md#section) links resolve.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# API reference: one page per module, entries in source order, no generated stubs.
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Checked on every build (-W turns a finding into an error): every parameter
# documented (PR01), none that does not exist (PR02), in the signature's order (PR03),
# a Returns section (RT01), an Examples section (EX01).
numpydoc_validation_checks = {"PR01", "PR02", "PR03", "RT01", "EX01"}
# TokenScores is a NamedTuple: its fields are Attributes, not constructor parameters.
numpydoc_validation_exclude = {r"\.TokenScores$"}

html_theme = "alabaster"
html_static_path = []
html_title = f"xent {release}"
