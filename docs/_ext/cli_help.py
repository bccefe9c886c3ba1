"""Sphinx extension: a command's ``--help``, generated from its argparse parser.

``command-help`` takes ``module:function`` (a function returning an
:class:`argparse.ArgumentParser`) and, optionally, a sub-command name, and
renders that parser's help text as a literal block, so the options shown are
always the ones the code accepts.
"""

from __future__ import annotations

import argparse
import importlib
import os
from contextlib import contextmanager

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

#: Width of the rendered help, whatever the terminal building the docs.
COLUMNS = '100'


@contextmanager
def _columns():
    saved = os.environ.get('COLUMNS')
    os.environ['COLUMNS'] = COLUMNS
    try:
        yield
    finally:
        if saved is None:
            del os.environ['COLUMNS']
        else:
            os.environ['COLUMNS'] = saved


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    raise ValueError(f'{parser.prog} has no sub-command {name!r}')


def command_help(target: str, subcommand: str = '') -> str:
    """The help text of the parser ``module:function`` builds (or of one of its sub-commands)."""
    module_name, _, function = target.partition(':')
    module = importlib.import_module(module_name)
    with _columns():
        parser = getattr(module, function)()
        if subcommand:
            parser = _subcommand(parser, subcommand)
        if hasattr(parser, 'color'):  # Python 3.14+: no terminal colours in the docs
            parser.color = False
        return parser.format_help()


class CommandHelp(SphinxDirective):
    """``command-help module:function [sub-command]``."""

    required_arguments = 1
    optional_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0].partition(':')[0]
        self.env.note_dependency(importlib.import_module(module_name).__file__)
        text = command_help(*self.arguments).rstrip() + '\n'
        block = nodes.literal_block(text, text, language='text')
        self.set_source_info(block)
        return [block]


def setup(app: Sphinx) -> dict:
    app.add_directive('command-help', CommandHelp)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
