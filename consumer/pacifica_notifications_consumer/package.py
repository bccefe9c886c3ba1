"""Step 1: unpack a consumer.zip into a folder of its own, refusing any zip that could not run or would write outside.

Every check reads the zip's directory (and the few members it needs) before anything is written, so a
refused zip leaves nothing behind.  A zip made of one top-level folder (``zip -r consumer.zip consumer/``,
or the Finder's "Compress", which adds ``__MACOSX/``) is accepted too: that folder's contents become the
package, as if it had been zipped from inside.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

from jsonpath2.path import Path as JSONPath

ENTRY_POINT = '__main__.py'
JSONPATH_FILE = 'jsonpath2.txt'
INIT_SCRIPT = 'init.sh'
REQUIREMENTS = 'requirements.txt'
#: Resource forks macOS adds to the zips it makes: never part of a consumer.
MACOS_JUNK = '__MACOSX'
#: Symlink hops followed when checking where a link ends up; more is a loop.
MAX_HOPS = 40


class ConsumerError(Exception):
    """Something the user must fix; the message is one line and is shown without a traceback."""


@dataclass(frozen=True)
class Package:
    """An extracted consumer.zip: where it is and what the later steps need to know about it."""

    folder: Path
    jsonpath: str
    has_init: bool
    has_requirements: bool


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]  # path inside the package, top-level folder removed
    link: Optional[str]  # symlink target, if the member is one


def extract(zip_path: Path, into: Path) -> Package:
    """Unpack ``zip_path`` into ``into`` (absent or empty) and return what it holds; raises :class:`ConsumerError`."""
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise ConsumerError(f'{into}: exists and is not an empty folder')
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise ConsumerError(f'{zip_path}: not a zip file')
    except OSError as exc:
        raise ConsumerError(f'{zip_path}: cannot read it ({exc.strerror or exc})')
    with archive:
        try:
            members = _members(archive)
            jsonpath = _read_jsonpath(archive, members)
        except zipfile.BadZipFile as exc:
            raise ConsumerError(f'{zip_path}: damaged zip file ({exc})')
        existed = into.exists()
        try:
            _write(archive, members, into)
        except (zipfile.BadZipFile, OSError) as exc:
            shutil.rmtree(into, ignore_errors=True)
            if existed:
                into.mkdir()
            raise ConsumerError(f'{zip_path}: cannot extract into {into} ({exc})')
    return Package(
        folder=into,
        jsonpath=jsonpath,
        has_init=(into / INIT_SCRIPT).is_file(),
        has_requirements=(into / REQUIREMENTS).is_file(),
    )


def _members(archive: zipfile.ZipFile) -> list[_Member]:
    """Every member with its path inside the package; refuses paths and links that leave it."""
    raw: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    for info in archive.infolist():
        name = info.filename
        path = PurePosixPath(name)
        if name.startswith(('/', '\\')) or (len(name) > 1 and name[1] == ':'):
            raise ConsumerError(f'member {name!r} has an absolute path')
        if '..' in path.parts:
            raise ConsumerError(f'member {name!r} leaves the package folder (..)')
        parts = tuple(part for part in path.parts if part != '.')
        if parts and parts[0] != MACOS_JUNK:
            raw.append((info, parts))
    tops = {parts[0] for _, parts in raw}
    if not _has_required(parts for _, parts in raw) and len(tops) == 1:
        # The whole zip is one folder: its contents are the package.
        raw = [(info, parts[1:]) for info, parts in raw if len(parts) > 1]
    if not _has_required(parts for _, parts in raw):
        found = {parts[0] for _, parts in raw if len(parts) == 1}
        missing = ' and '.join(name for name in (ENTRY_POINT, JSONPATH_FILE) if name not in found)
        raise ConsumerError(f'no {missing} at the top level of the zip')
    members = [_Member(info, parts, _link_target(archive, info)) for info, parts in raw]
    _check_links(members)
    return members


def _has_required(paths: Iterable[tuple[str, ...]]) -> bool:
    tops = {parts[0] for parts in paths if len(parts) == 1}
    return ENTRY_POINT in tops and JSONPATH_FILE in tops


def _is_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _link_target(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Optional[str]:
    if not _is_link(info):
        return None
    try:
        return archive.read(info).decode('utf-8')
    except UnicodeDecodeError:
        raise ConsumerError(f'member {info.filename!r} is a symlink with an unreadable target')


def _check_links(members: list[_Member]) -> None:
    """Refuse links that end up outside the folder, and members that would be written through a link."""
    links = {m.parts: m.link for m in members if m.link is not None}
    for member in members:
        for depth in range(1, len(member.parts)):
            if member.parts[:depth] in links:
                raise ConsumerError(f'member {member.info.filename!r} lies inside a symlink')
        if member.link is not None:
            if member.link.startswith('/') or _resolve(member.parts, links) is None:
                raise ConsumerError(f'member {member.info.filename!r} is a symlink pointing outside the package')


def _resolve(parts: tuple[str, ...], links: dict[tuple[str, ...], str]) -> Optional[tuple[str, ...]]:
    """Where ``parts`` ends up once every link in the zip is followed, as the file system would; None if outside.

    Done on paper rather than with ``realpath`` after extracting: ``a -> .`` then ``b -> a/..`` looks
    harmless name by name but leaves the folder, and nothing may be written before we know.
    """
    done: list[str] = []
    todo = list(parts)
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in {'', '.'}:
            continue
        if part == '..':
            if not done:
                return None
            done.pop()
            continue
        done.append(part)
        target = links.get(tuple(done))
        if target is not None:
            hops += 1
            if hops > MAX_HOPS or target.startswith('/'):
                return None
            done.pop()
            todo = target.split('/') + todo
    return tuple(done)


def _read_jsonpath(archive: zipfile.ZipFile, members: list[_Member]) -> str:
    """The subscription's JSONPath, checked with the parser the producer uses, before anything is extracted."""
    member = next(m for m in members if m.parts == (JSONPATH_FILE,))
    if member.link is not None:
        raise ConsumerError(f'{JSONPATH_FILE} is a symlink; it must be a file')
    try:
        text = archive.read(member.info).decode('utf-8').strip()
    except UnicodeDecodeError:
        raise ConsumerError(f'{JSONPATH_FILE} is not UTF-8 text')
    if not text:
        raise ConsumerError(f'{JSONPATH_FILE} is empty')
    # jsonpath2's parser also prints its complaint on stderr; the message goes into our error instead.
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            JSONPath.parse_str(text)
        except ValueError as exc:
            raise ConsumerError(f'{JSONPATH_FILE}: not a JSONPath jsonpath2 can parse: {exc}')
    return text


def _write(archive: zipfile.ZipFile, members: list[_Member], into: Path) -> None:
    """Write the checked members: folders, then files (keeping unix permission bits), then symlinks last."""
    into.mkdir(parents=True, exist_ok=True)
    for member in members:
        target = into.joinpath(*member.parts)
        if member.info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.link is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member.info) as source, open(target, 'wb') as out:
                shutil.copyfileobj(source, out)
            mode = (member.info.external_attr >> 16) & 0o777
            if member.info.create_system == 3 and mode:
                # Owner keeps read and write so the folder can be removed later.
                os.chmod(target, mode | stat.S_IRUSR | stat.S_IWUSR)
    for member in members:
        if member.link is not None:
            target = into.joinpath(*member.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(member.link, target)
