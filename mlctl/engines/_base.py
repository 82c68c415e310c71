"""What engine recipes need from the host: their binaries, folders their user owns, URL pieces.

* :func:`find_binary` / :func:`require_binary` look a program up on ``PATH``, then in
  :data:`DEFAULT_EXTRA_DIRS` (PostgreSQL's versioned ``bin`` folders, ``/usr/sbin``...);
  :class:`EngineNotInstalled` says which package to install;
* :func:`private_dir` makes a folder an engine's own user (``postgres``) can reach;
* :func:`split_url` and :func:`flag_pairs`, small helpers of the recipes.

>>> find_binary("surely-not-a-binary-xyz", extra_dirs=()) is None
True
>>> flag_pairs({"--port": "1", "--bind": "127.0.0.1"})
['--port', '1', '--bind', '127.0.0.1']
>>> split_url("redis://127.0.0.1/0")
('127.0.0.1', 6379)
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import stat
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mlctl.core.errors import ServiceUnavailable
from mlctl.core.proc import LOOPBACK, user_kwargs

__all__ = [
    "DEFAULT_EXTRA_DIRS",
    "EngineNotInstalled",
    "find_binary",
    "flag_pairs",
    "private_dir",
    "require_binary",
    "split_url",
]

#: Directories searched after ``PATH`` by :func:`find_binary`; globs expand highest version first.
DEFAULT_EXTRA_DIRS: tuple[str, ...] = (
    "/usr/lib/postgresql/*/bin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/local/sbin",
    "/sbin",
)


class EngineNotInstalled(ServiceUnavailable):
    """The binary an engine needs is not installed; the hint names the package to install."""


# --------------------------------------------------------------------------- binaries


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def _expand_dirs(dirs: Iterable[str | os.PathLike[str]]) -> list[str]:
    out: list[str] = []
    for entry in dirs:
        pattern = os.fspath(entry)
        if glob.has_magic(pattern):
            out.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
        else:
            out.append(pattern)
    return out


def find_binary(*names: str, extra_dirs: Iterable[str | os.PathLike[str]] = DEFAULT_EXTRA_DIRS) -> str | None:
    """The absolute path of the first of ``names`` found, or None.

    Each name is looked up on ``PATH`` first, then in ``extra_dirs`` (globs such as
    ``/usr/lib/postgresql/*/bin`` expand highest version first).

    >>> find_binary("sh") is not None
    True
    >>> find_binary("surely-not-a-binary-xyz", extra_dirs=()) is None
    True
    """
    dirs = _expand_dirs(extra_dirs)
    for name in names:
        found = shutil.which(name)
        if found:
            return os.path.abspath(found)
        for directory in dirs:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def require_binary(
    *names: str, package: str | None = None, extra_dirs: Iterable[str | os.PathLike[str]] = DEFAULT_EXTRA_DIRS
) -> str:
    """Like :func:`find_binary`, but raise :class:`EngineNotInstalled` when none is found.

    Inside a recipe ``package`` may be left out: :func:`start_engine` fills in the recipe's package.
    """
    found = find_binary(*names, extra_dirs=extra_dirs)
    if found is None:
        hint = f"install it with: apt-get install {package}" if package else None
        raise EngineNotInstalled(f"none of {', '.join(names)} found on PATH or in the usual places", hint=hint)
    return found



# --------------------------------------------------------------------------- a folder for the engine's user


def _can_traverse(path: Path, uid: int, groups: Sequence[int]) -> bool:
    """True when ``uid`` (member of ``groups``) may search every directory from / down to ``path``."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def private_dir(workdir: Path, name: str, user: str | None) -> tuple[Path, list[Path]]:
    """A directory for ``user`` to own: ``workdir/name``, or a fresh one under the temp dir.

    When we are root and ``user`` cannot reach ``workdir`` (pytest's base temp dir is 0700), the
    directory is made with :func:`tempfile.mkdtemp` instead and a symlink ``workdir/name`` points to
    it. Returns the directory and the paths to remove once the engine stopped.
    """
    kwargs = user_kwargs(user)
    target = workdir / name
    cleanup: list[Path] = []
    if kwargs and not _can_traverse(workdir.resolve(), kwargs["user"], kwargs["extra_groups"]):
        parent = Path(tempfile.mkdtemp(prefix=f"mlctl-{name}-"))
        parent.chmod(0o755)
        cleanup.append(parent)
        if target.is_symlink():  # left over from an earlier run
            target.unlink()
        if not target.exists():
            target.symlink_to(parent / name)
        target = parent / name
    target.mkdir(mode=0o700, exist_ok=True)
    if kwargs:
        os.chown(target, kwargs["user"], kwargs["group"])
    return target, cleanup



# --------------------------------------------------------------------------- recipe helpers


def split_url(url: str, default_port: int | None = None) -> tuple[str, int | None]:
    """``(host, port)`` of an engine URL: loopback without a host, the scheme's usual port without one."""
    parts = urllib.parse.urlsplit(url)
    defaults = {"http": 80, "https": 443, "redis": 6379, "postgresql": 5432, "postgres": 5432}
    return parts.hostname or LOOPBACK, parts.port or default_port or defaults.get(parts.scheme)


def flag_pairs(flags: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[str]:
    """Flatten flag/value pairs into argv items: ``{"--port": "1"}`` -> ``["--port", "1"]``."""
    items = flags.items() if isinstance(flags, Mapping) else flags
    return [part for pair in items for part in pair]
