"""Sphinx extension: the configuration reference, generated from ``config.SETTINGS``.

Two directives, so the configuration page can never drift from the code:

``settings-table``
    One row per :class:`~pacifica.notifications.config.Setting`: section, key,
    environment variable, default, the expected value (the docstring of the
    setting's parser, the same words a bad value is refused with) and meaning.

``settings-ini``
    An INI file holding every key at its default, section by section.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from pacifica.notifications import config

HEADERS = ('Section', 'Key', 'Environment variable', 'Default', 'Expected value', 'Meaning')
WIDTHS = (10, 14, 18, 16, 20, 30)


def expected(setting: config.Setting) -> str:
    """What a value of ``setting`` must be: its parser's docstring, first paragraph, as a sentence."""
    doc = ' '.join((setting.parse.__doc__ or '').strip().split('\n\n')[0].split())
    if not doc:
        raise ValueError(f'the parser of [{setting.section}] {setting.key} has no docstring')
    doc = doc[0].upper() + doc[1:]
    return doc if doc.endswith('.') else doc + '.'


def _cell(*children: nodes.Node) -> nodes.entry:
    return nodes.entry('', nodes.paragraph('', '', *children))


def _row(setting: config.Setting) -> nodes.row:
    default = nodes.literal(setting.default, setting.default) if setting.default else nodes.emphasis('unset', 'unset')
    return nodes.row(
        '',
        _cell(nodes.literal(setting.section, setting.section)),
        _cell(nodes.literal(setting.key, setting.key)),
        _cell(nodes.literal(setting.env, setting.env)),
        _cell(default),
        _cell(nodes.Text(expected(setting))),
        _cell(nodes.Text(setting.help)),
    )


class SettingsTable(SphinxDirective):
    """``settings-table``: every configuration key, in the order of ``config.SETTINGS``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(config.__file__)
        group = nodes.tgroup(cols=len(HEADERS))
        group += [nodes.colspec(colwidth=width) for width in WIDTHS]
        group += nodes.thead('', nodes.row('', *(_cell(nodes.Text(header)) for header in HEADERS)))
        group += nodes.tbody('', *(_row(setting) for setting in config.SETTINGS))
        return [nodes.table('', group, classes=['settings-table'])]


def settings_ini() -> str:
    """Every key at its default, as an INI file (an unset default is written empty)."""
    lines: list[str] = []
    section = None
    for setting in config.SETTINGS:
        if setting.section != section:
            section = setting.section
            lines += ['', f'[{section}]'] if lines else [f'[{section}]']
        lines.append(f'{setting.key} = {setting.default}'.rstrip())
    return '\n'.join(lines) + '\n'


class SettingsIni(SphinxDirective):
    """``settings-ini``: an INI file with every key at its default."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(config.__file__)
        text = settings_ini()
        block = nodes.literal_block(text, text, language='ini')
        self.set_source_info(block)
        return [block]


def setup(app: Sphinx) -> dict:
    app.add_directive('settings-table', SettingsTable)
    app.add_directive('settings-ini', SettingsIni)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
