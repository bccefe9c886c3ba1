"""Steps 2 and 3: give an extracted consumer a virtual environment of its own, with what its entry point imports.

Order: make the environment (stdlib ``venv``, with pip), run ``init.sh``, install this project's consumer
distribution, then ``requirements.txt``.  Installing our own distribution first means a
``pacifica-notifications-consumer`` line in requirements.txt is already satisfied, so no package index
needs to know it; it also brings the library's own dependencies (jsonpath2, promise, requests).
pip's index settings (``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, pip.conf...) are left to the environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import venv
from collections.abc import Callable, Sequence
from pathlib import Path

from .package import INIT_SCRIPT, REQUIREMENTS, ConsumerError, Package

#: Lines of a failing command's stderr quoted in the error message.
TAIL_LINES = 3

#: How pip names the requirement it could not install, most specific first.
_PIP_FAILURES = [
    re.compile(r'No matching distribution found for (\S+)'),
    re.compile(r'Could not find a version that satisfies the requirement (\S+)'),
    re.compile(r"Invalid requirement: '?([^'\n]+)"),
    re.compile(r'Failed building wheel for (\S+)'),
    re.compile(r'Failed to build (\S+)'),
    re.compile(r'Could not build wheels for (\S+)'),
    re.compile(r'Cannot install (.+?) because these package versions have conflicting dependencies'),
]


def create(package: Package, venv_dir: Path, own_distribution: str, log: Callable[[str], None]) -> Path:
    """Make ``venv_dir`` ready to run ``package`` and return its python; raises :class:`ConsumerError`."""
    log(f'creating a virtual environment in {venv_dir}')
    try:
        venv.EnvBuilder(with_pip=True, symlinks=True).create(venv_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ConsumerError(f'cannot create a virtual environment in {venv_dir}: {exc}')
    python = venv_dir / 'bin' / 'python'
    env = _env(venv_dir)
    if package.has_init:
        log(f'running {INIT_SCRIPT}')
        _run_init(package.folder, env)
    log(f'installing {own_distribution}')
    pip_install(python, [own_distribution], package.folder, env, what=own_distribution)
    if package.has_requirements:
        log(f'installing {REQUIREMENTS}')
        pip_install(python, ['-r', REQUIREMENTS], package.folder, env, what=REQUIREMENTS)
    return python


def _env(venv_dir: Path) -> dict[str, str]:
    """The environment as if ``venv_dir`` were activated, without our own import path leaking in."""
    env = {key: value for key, value in os.environ.items() if key not in {'PYTHONPATH', 'PYTHONHOME'}}
    bin_dir = str(venv_dir.resolve() / 'bin')
    env['PATH'] = os.pathsep.join([bin_dir, env['PATH']]) if env.get('PATH') else bin_dir
    env['VIRTUAL_ENV'] = str(venv_dir.resolve())
    env['PIP_DISABLE_PIP_VERSION_CHECK'] = '1'
    env['PIP_NO_INPUT'] = '1'
    return env


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ' | '.join(lines[-TAIL_LINES:])


def _run_init(folder: Path, env: dict[str, str]) -> None:
    """Run init.sh with bash from the package folder; a non-zero exit stops the start."""
    try:
        done = subprocess.run(
            ['bash', INIT_SCRIPT],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise ConsumerError(f'cannot run {INIT_SCRIPT} with bash: {exc}')
    if done.returncode != 0:
        tail = _tail(done.stderr) or _tail(done.stdout) or 'no output'
        raise ConsumerError(f'{INIT_SCRIPT} failed with exit status {done.returncode}: {tail}')


def pip_install(python: Path, args: Sequence[str], cwd: Path, env: dict[str, str], what: str) -> None:
    """``pip install --quiet ARGS`` with the environment's python; a failure names the requirement pip gave up on."""
    command = [str(python), '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', *args]
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise ConsumerError(f'cannot run pip: {exc}')
    if done.returncode != 0:
        raise ConsumerError(f'{what}: {failed_requirement(done.stdout, done.stderr)}')


def failed_requirement(stdout: str, stderr: str) -> str:
    """What pip could not install, from its output: 'cannot install NAME' or, failing that, its last line."""
    for pattern in _PIP_FAILURES:
        found = pattern.search(stderr) or pattern.search(stdout)
        if found:
            return f'cannot install {found.group(1).strip()}'
    last = (stderr.strip() or stdout.strip()).splitlines()
    return last[-1].strip() if last else 'pip failed without saying why'
