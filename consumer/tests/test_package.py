"""package.extract: a good consumer.zip unpacks; every kind of bad one is refused with nothing left behind."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from pacifica_notifications_consumer.package import ConsumerError, Package, extract

pytestmark = pytest.mark.fast

JSONPATH = '$[?(@["eventType"] = "org.pacifica.metadata.ingest")]["data"][*]["_id"]'
GOOD = {
    '__main__.py': 'import sys\nprint(sys.argv)\n',
    'jsonpath2.txt': JSONPATH + '\n',
    'requirements.txt': 'six\n',
    'init.sh': '#!/usr/bin/env sh\nexit 0\n',
    'lib/helper.py': 'X = 1\n',
}


def make_zip(
    path: Path, files: dict[str, str], links: dict[str, str] | None = None, modes: dict[str, int] | None = None
) -> Path:
    """A zip with these files (unix mode 0o644 unless given) and symlinks (name -> target)."""
    with zipfile.ZipFile(path, 'w') as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | (modes or {}).get(name, 0o644)) << 16
            archive.writestr(info, text)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def test_good_zip(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / 'consumer.zip', GOOD, links={'lib/alias.py': 'helper.py'}, modes={'init.sh': 0o755})
    package = extract(zip_path, tmp_path / 'out')
    assert package == Package(tmp_path / 'out', JSONPATH, has_init=True, has_requirements=True)
    assert (tmp_path / 'out' / 'lib' / 'helper.py').read_text() == 'X = 1\n'
    assert (tmp_path / 'out' / 'lib' / 'alias.py').read_text() == 'X = 1\n'
    assert (tmp_path / 'out' / 'init.sh').stat().st_mode & 0o777 == 0o755
    assert (tmp_path / 'out' / '__main__.py').stat().st_mode & 0o777 == 0o644


def test_minimal_zip_into_empty_folder(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / 'consumer.zip', {'__main__.py': '', 'jsonpath2.txt': '  $.a  \n'})
    (tmp_path / 'out').mkdir()
    package = extract(zip_path, tmp_path / 'out')
    assert (package.jsonpath, package.has_init, package.has_requirements) == ('$.a', False, False)


def test_zip_of_one_folder(tmp_path: Path) -> None:
    """``zip -r consumer.zip consumer/`` (plus the Finder's __MACOSX) works like a zip made inside the folder."""
    files = {f'consumer/{name}': text for name, text in GOOD.items()}
    files['__MACOSX/consumer/._init.sh'] = 'junk'
    package = extract(make_zip(tmp_path / 'consumer.zip', files), tmp_path / 'out')
    assert package.jsonpath == JSONPATH
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == sorted(
        ['__main__.py', 'jsonpath2.txt', 'requirements.txt', 'init.sh', 'lib']
    )


def test_refuses_nonempty_target(tmp_path: Path) -> None:
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'keep').write_text('mine')
    with pytest.raises(ConsumerError, match='not an empty folder'):
        extract(make_zip(tmp_path / 'consumer.zip', GOOD), tmp_path / 'out')
    assert (tmp_path / 'out' / 'keep').read_text() == 'mine'


def without(name: str) -> dict[str, str]:
    return {key: value for key, value in GOOD.items() if key != name}


BAD = {
    'missing entry point': ({'files': without('__main__.py')}, 'no __main__.py at the top level'),
    'missing jsonpath': ({'files': without('jsonpath2.txt')}, 'no jsonpath2.txt at the top level'),
    'entry point too deep': (
        {'files': {'a/__main__.py': '', 'b/jsonpath2.txt': '$'}},
        'no __main__.py and jsonpath2.txt',
    ),
    'bad jsonpath': ({'files': {**GOOD, 'jsonpath2.txt': '$[?(@.a ='}}, 'jsonpath2.txt: not a JSONPath'),
    'empty jsonpath': ({'files': {**GOOD, 'jsonpath2.txt': ' \n'}}, 'jsonpath2.txt is empty'),
    'dot-dot member': ({'files': {**GOOD, '../evil': 'x'}}, r"'../evil' leaves the package folder"),
    'hidden dot-dot member': ({'files': {**GOOD, 'lib/../../evil': 'x'}}, 'leaves the package folder'),
    'absolute member': ({'files': {**GOOD, '/tmp/evil': 'x'}}, "'/tmp/evil' has an absolute path"),
    'absolute symlink': ({'files': GOOD, 'links': {'etc': '/etc'}}, "'etc' is a symlink pointing outside"),
    'relative symlink out': ({'files': GOOD, 'links': {'lib/up': '../../x'}}, 'symlink pointing outside'),
    'symlink chain out': ({'files': GOOD, 'links': {'a': '.', 'b': 'a/..'}}, "'b' is a symlink pointing outside"),
    'write through symlink': ({'files': {**GOOD, 'lnk/x.py': ''}, 'links': {'lnk': 'lib'}}, 'lies inside a symlink'),
    'symlink loop': ({'files': GOOD, 'links': {'a': 'b', 'b': 'a'}}, 'symlink pointing outside'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_zip(tmp_path: Path, case: str) -> None:
    spec, message = BAD[case]
    zip_path = make_zip(tmp_path / 'consumer.zip', spec['files'], spec.get('links'))
    with pytest.raises(ConsumerError, match=message) as caught:
        extract(zip_path, tmp_path / 'out')
    assert '\n' not in str(caught.value)
    assert not (tmp_path / 'out').exists()
    assert not (tmp_path / 'evil').exists()


def test_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / 'consumer.zip').write_text('print("hello")\n')
    with pytest.raises(ConsumerError, match='not a zip file'):
        extract(tmp_path / 'consumer.zip', tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


def test_missing_zip(tmp_path: Path) -> None:
    with pytest.raises(ConsumerError, match='cannot read it'):
        extract(tmp_path / 'nothing.zip', tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


def test_damaged_member_leaves_nothing(tmp_path: Path) -> None:
    """A CRC error shows only while writing: what was written by then is removed."""
    zip_path = make_zip(tmp_path / 'consumer.zip', {**GOOD, 'z.bin': 'A' * 1000})
    data = bytearray(zip_path.read_bytes())
    at = data.rindex(b'A' * 1000)
    data[at] = ord('B')
    zip_path.write_bytes(bytes(data))
    with pytest.raises(ConsumerError, match='cannot extract'):
        extract(zip_path, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()
