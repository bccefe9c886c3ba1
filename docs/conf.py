"""Sphinx configuration for the pacifica-notifications documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / '_ext'))
sys.path.insert(0, str(HERE.parent))

from pacifica.notifications import __version__  # noqa: E402

project = 'Pacifica Notifications'
author = 'Pacifica contributors'
copyright = 'Pacifica contributors'
version = release = __version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.viewcode',
    'settings_table',
    'cli_help',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build']

myst_heading_anchors = 3
myst_enable_extensions = ['deflist']

autodoc_member_order = 'bysource'
autodoc_default_options = {'members': True, 'show-inheritance': True}
autodoc_typehints = 'description'
# orm re-exports the models and rest has its own EventMatch class: the same short name in
# three modules makes Sphinx warn on every type hint naming it, though each resolves.
suppress_warnings = ['ref.python']

html_theme = 'alabaster'
html_static_path: list[str] = []
