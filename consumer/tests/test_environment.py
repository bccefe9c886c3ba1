"""environment.create with real virtual environments and real pip (the package index this machine is set up with).

Slow (a virtual environment and a few pip runs, some seconds each), so not marked ``fast``; the module
makes one environment and shares it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pacifica_notifications_consumer import environment
from pacifica_notifications_consumer.package import ConsumerError, Package

CONSUMER_SOURCE = Path(__file__).resolve().parents[1]
INIT = 'echo "$(command -v python)" > marker\necho from init.sh\n'


def own_distribution(into: Path) -> Path:
    """A copy of consumer/ to install from: pip builds in the tree it is given, and ours is shared."""
    copy = into / 'consumer-source'
    shutil.copytree(
        CONSUMER_SOURCE, copy, ignore=shutil.ignore_patterns('tests', 'build', '*.egg-info', '__pycache__', '.*')
    )
    return copy


def make_package(folder: Path, requirements: str | None = None, init: str | None = None) -> Package:
    folder.mkdir(parents=True)
    (folder / '__main__.py').write_text('')
    (folder / 'jsonpath2.txt').write_text('$\n')
    if requirements is not None:
        (folder / 'requirements.txt').write_text(requirements)
    if init is not None:
        (folder / 'init.sh').write_text(init)
    return Package(folder, '$', has_init=init is not None, has_requirements=requirements is not None)


@pytest.fixture(scope='module')
def own(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return own_distribution(tmp_path_factory.mktemp('own'))


@pytest.fixture(scope='module')
def made(tmp_path_factory: pytest.TempPathFactory, own: Path) -> tuple[Package, Path, list[str]]:
    root = tmp_path_factory.mktemp('env')
    package = make_package(root / 'pkg', requirements='pacifica-notifications-consumer\nsix\n', init=INIT)
    said: list[str] = []
    python = environment.create(package, root / 'venv', str(own), said.append)
    return package, python, said


def test_environment_runs_the_library(made: tuple[Package, Path, list[str]]) -> None:
    package, python, said = made
    assert python == package.folder.parent / 'venv' / 'bin' / 'python'
    code = 'from pacifica_notifications_consumer import download, upload\nimport six, promise, jsonpath2, sys\n'
    code += 'print(sys.prefix)'
    done = subprocess.run([str(python), '-c', code], cwd='/', capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(package.folder.parent / 'venv')
    assert len(said) == 4 and said[1] == 'running init.sh' and said[3] == 'installing requirements.txt'


def test_init_sees_the_environment_first_on_path(made: tuple[Package, Path, list[str]]) -> None:
    package, python, _ = made
    assert (package.folder / 'marker').read_text().strip() == str(python.parent.resolve() / 'python')


def test_unknown_requirement_is_named(tmp_path: Path, own: Path) -> None:
    package = make_package(tmp_path / 'pkg', requirements='six\nno-such-package-xyz-123\n')
    said: list[str] = []
    with pytest.raises(ConsumerError, match=r'^requirements.txt: cannot install no-such-package-xyz-123$'):
        environment.create(package, tmp_path / 'venv', str(own), said.append)
    assert said[-1] == 'installing requirements.txt'


def test_impossible_version_is_named(made: tuple[Package, Path, list[str]]) -> None:
    package, python, _ = made
    env = environment._env(python.parent.parent)
    with pytest.raises(ConsumerError, match=r'cannot install six==0\.0\.0\.1$'):
        environment.pip_install(python, ['six==0.0.0.1'], package.folder, env, what='requirements.txt')


def test_failing_init_gives_its_status(tmp_path: Path) -> None:
    package = make_package(
        tmp_path / 'pkg', requirements='six\n', init='echo working\necho "no compiler" >&2\nexit 7\n'
    )
    said: list[str] = []
    with pytest.raises(ConsumerError, match=r'^init.sh failed with exit status 7: no compiler$'):
        environment.create(package, tmp_path / 'venv', str(tmp_path / 'unused'), said.append)
    assert said[-1] == 'running init.sh'


def test_pip_messages() -> None:
    """Names from pip's wording for the failures we have not provoked above; else its last line."""
    name = environment.failed_requirement
    assert name('', "ERROR: Invalid requirement: 'a b' (from line 1 of requirements.txt)\n") == 'cannot install a b'
    assert name('', '  ERROR: Failed building wheel for lxml\nERROR: Could not build wheels for lxml\n') == (
        'cannot install lxml'
    )
    assert name('', 'ERROR: Could not install packages due to an OSError: disk full\n') == (
        'ERROR: Could not install packages due to an OSError: disk full'
    )
    assert name('', '') == 'pip failed without saying why'
