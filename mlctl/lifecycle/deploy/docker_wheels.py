"""The wheels the docker target's image installs, prepared on this machine: the build needs no network.

Where each wheel comes from, first that applies (``CACHE`` is :func:`mlctl.core.paths.cache_root`:
``$MLCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlctl``, else ``~/.cache/mlctl``):

mlctl itself
    * mlctl runs from a source checkout (an editable install, or the repository on ``sys.path``):
      ``pip wheel --no-deps`` of a copy of the sources, kept in ``CACHE/mlctl-wheels/<source hash>/``;
    * mlctl is an installed distribution (``pip install mlctl``): a wheel is rebuilt from the files
      its RECORD lists (:func:`rebuild_wheel`), kept in ``CACHE/wheels/local/<RECORD hash>/``.

the runtime dependencies (:func:`dependency_wheels`: the requirements and their dependencies,
markers evaluated for the image's interpreter, Debian bookworm's CPython 3.11 on x86_64)
    * installed here with a wheel tag that interpreter accepts (pure Python, cp311, abi3,
      manylinux x86_64): rebuilt from the installed files, like mlctl; no network;
    * installed here but built for another interpreter or platform (say this host runs Python
      3.12): ``pip download --no-deps`` of the same version for the image, into ``CACHE/wheels/pypi/``;
    * one of them not installed here at all: ``pip download`` of the whole requirement list once
      (pip resolves it), into ``CACHE/wheelhouse/<key>/``.

A rebuilt wheel is deterministic (sorted entries, fixed timestamps, no ``__pycache__``, no
installer files), so rebuilding it gives the same bytes and the engine's layer cache still
applies. Everything is made once and reused: after the first deploy the docker target works
offline, and with every package installed here the first deploy needs no network either.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from mlctl.core.errors import OperationFailed

__all__ = [
    "IMAGE_MARKERS",
    "WHEEL_PLATFORMS",
    "cache_dir",
    "dependency_wheels",
    "image_accepts",
    "installed_closure",
    "mlctl_wheel",
    "rebuild_wheel",
    "source_root",
]

#: the image's interpreter: Debian bookworm's CPython 3.11 on glibc 2.36, x86_64
WHEEL_PLATFORMS = [
    "manylinux_2_36_x86_64", "manylinux_2_35_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64",
    "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
    "manylinux2014_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
]
#: environment markers of that interpreter (PEP 508), for the requirements of the dependencies
IMAGE_MARKERS = {
    "implementation_name": "cpython", "implementation_version": "3.11.2", "os_name": "posix",
    "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
    "platform_system": "Linux", "platform_version": "", "python_full_version": "3.11.2",
    "python_version": "3.11", "sys_platform": "linux",
}
_IMAGE_GLIBC = (2, 36)
_LEGACY_MANYLINUX = {"manylinux1_x86_64": (2, 5), "manylinux2010_x86_64": (2, 12), "manylinux2014_x86_64": (2, 17)}
_SOURCE_PARTS = ("pyproject.toml", "README.md", "mlctl", "commands", "templates")
#: files of an installed dist-info folder that describe the installation, not the package
_INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SERVING_EXTRAS = "docker,serve,ml"
#: builds of one wheel kept in the cache (for other installations or states of the sources)
_KEEP = 3


def cache_dir() -> Path:
    """``$MLCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlctl``, else ``~/.cache/mlctl``."""
    from mlctl.core.paths import cache_root

    return cache_root()


def _say(text: str) -> None:
    from mlctl.core.output import message

    message(text)


# --------------------------------------------------------------------------- tags and names


def image_accepts(tag: str) -> bool:
    """Whether pip in the image (CPython 3.11, glibc 2.36, x86_64) installs a wheel tagged ``tag``.

    ``linux_x86_64`` (built on some machine, for its glibc) is refused: such a package is
    downloaded for the image instead.

    >>> [image_accepts(t) for t in ("py3-none-any", "cp311-cp311-manylinux_2_28_x86_64",
    ...                             "cp310-abi3-manylinux2014_x86_64")]
    [True, True, True]
    >>> [image_accepts(t) for t in ("cp312-cp312-manylinux_2_28_x86_64", "cp311-cp311-linux_x86_64",
    ...                             "py3-none-macosx_11_0_arm64", "cp311-cp311-manylinux_2_39_x86_64")]
    [False, False, False, False]
    """
    parts = tag.split("-")
    if len(parts) != 3:
        return False
    interpreter, abi, platform = parts
    if platform != "any":
        legacy = _LEGACY_MANYLINUX.get(platform)
        match = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", platform)
        glibc = legacy or ((int(match.group(1)), int(match.group(2))) if match else None)
        if glibc is None or glibc > _IMAGE_GLIBC:
            return False
    python = re.fullmatch(r"(py|cp)3(\d*)", interpreter)
    if python is None:
        return False
    minor = int(python.group(2)) if python.group(2) else None
    if abi == "none":
        return minor is None or minor <= 11 if python.group(1) == "py" else minor == 11
    if abi == "abi3":
        return python.group(1) == "cp" and minor is not None and minor <= 11
    return abi == "cp311" and interpreter == "cp311"


def _wheel_tags(dist: metadata.Distribution) -> list[str]:
    text = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def _wheel_name(dist: metadata.Distribution, tag: str) -> str:
    """``NAME-VERSION-TAG.whl`` as wheel file names write them (``ruamel.yaml`` -> ``ruamel_yaml``)."""
    return f"{_safe_name(dist.metadata['Name'])}-{dist.version.replace('-', '_')}-{tag}.whl"


def _safe_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- rebuilding installed wheels


def _dist_info_name(dist: metadata.Distribution) -> str | None:
    for path in dist.files or []:
        if len(path.parts) == 2 and path.parts[0].endswith(".dist-info") and path.parts[1] == "METADATA":
            return path.parts[0]
    return None


def _rebuildable(dist: metadata.Distribution) -> str | None:
    """Why ``dist`` cannot be rebuilt into a wheel for the image, or None when it can."""
    if dist.files is None or _dist_info_name(dist) is None:
        return "its installer recorded no file list (RECORD)"
    direct = dist.read_text("direct_url.json")
    if direct and json.loads(direct).get("dir_info", {}).get("editable"):
        return "it is an editable install"
    if not any(image_accepts(tag) for tag in _wheel_tags(dist)):
        return f"it was built for another interpreter or platform ({', '.join(_wheel_tags(dist)) or 'no tag'})"
    return None


def _wheel_members(dist: metadata.Distribution) -> list[tuple[str, Path]]:
    """(name in the wheel, file on disk) for the installed files that belong in a wheel, in wheel order."""
    info = _dist_info_name(dist)
    members = []
    for path in dist.files or []:
        posix = PurePosixPath(str(path).replace("\\", "/"))
        if posix.is_absolute() or ".." in posix.parts or "__pycache__" in posix.parts or posix.suffix == ".pyc":
            continue  # scripts, headers and data outside site-packages are regenerated or not needed
        if posix.parts[0] == info and posix.name in _INSTALLER_FILES:
            continue
        file = Path(str(dist.locate_file(path)))
        if file.is_file():
            members.append((str(posix), file))
    return sorted(members, key=lambda m: (m[0].startswith(f"{info}/"), m[0]))  # the dist-info folder last


def _local_folder(dist: metadata.Distribution, cache: Path) -> Path:
    """``CACHE/wheels/local/<key>``: the key changes whenever the installation does (its RECORD)."""
    record = dist.read_text("RECORD") or ""
    key = hashlib.sha256(f"{dist.metadata['Name']}\0{dist.version}\0{record}".encode()).hexdigest()[:16]
    return cache / "wheels" / "local" / key


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _write_wheel(target: Path, members: Iterable[tuple[str, Path]], info: str) -> None:
    """A deterministic wheel: sorted entries, fixed timestamps, a fresh RECORD."""
    record = []
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, file in members:
            data = file.read_bytes()
            entry = zipfile.ZipInfo(name, _EPOCH)
            entry.external_attr = ((file.stat().st_mode & 0o777) | 0o100000) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data, compresslevel=1)
            record.append(f"{name},{_record_hash(data)},{len(data)}")
        record.append(f"{info}/RECORD,,")
        entry = zipfile.ZipInfo(f"{info}/RECORD", _EPOCH)
        entry.external_attr = 0o100644 << 16
        zf.writestr(entry, "\n".join(record) + "\n", compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    os.replace(partial, target)


def rebuild_wheel(dist: metadata.Distribution, cache: Path | None = None) -> Path:
    """A wheel of the installed distribution ``dist``, made from the files its RECORD lists.

    Kept in ``CACHE/wheels/local/<hash of RECORD>/`` and reused while the installation is the
    same (the three latest builds of a distribution are kept). Raises :class:`OperationFailed`
    when ``dist`` cannot be rebuilt for the image (no RECORD, an editable install, or a wheel for
    another interpreter or platform).
    """
    name = dist.metadata["Name"]
    why = _rebuildable(dist)
    if why is not None:
        raise OperationFailed(f"no wheel of {name} {dist.version} can be made from this environment: {why}",
                              hint=f"reinstall it with pip (`pip install --force-reinstall --no-deps "
                                   f"'{name}=={dist.version}'`), then deploy again")
    tag = next(tag for tag in _wheel_tags(dist) if image_accepts(tag))
    info = _dist_info_name(dist)
    assert info is not None
    folder = _local_folder(dist, cache or cache_dir())
    target = folder / _wheel_name(dist, tag)
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    _write_wheel(target, _wheel_members(dist), info)
    _prune([w.parent for w in folder.parent.glob(f"*/{_safe_name(name)}-*.whl")])
    return target


def _prune(folders: list[Path], keep: int = _KEEP) -> None:
    """Remove all but the ``keep`` most recently made of ``folders`` (older builds of one wheel)."""
    def made(folder: Path) -> int:
        try:
            return folder.stat().st_mtime_ns
        except OSError:  # removed meanwhile by another deploy
            return 0

    for old in sorted(set(folders), key=made, reverse=True)[keep:]:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- mlctl's own wheel


def source_root() -> Path | None:
    """The source checkout this mlctl is imported from (a folder with pyproject.toml), or None."""
    import mlctl

    root = Path(mlctl.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "mlctl" / "__init__.py").is_file() else None


def installed_mlctl() -> metadata.Distribution | None:
    """The installed distribution (with a RECORD) whose files hold the ``mlctl`` imported now, or None."""
    import mlctl

    here = Path(mlctl.__file__).resolve()
    for dist in metadata.distributions():
        if _canonical(dist.metadata["Name"] or "") != "mlctl" or dist.read_text("RECORD") is None:
            continue  # another project, or a source tree's mlctl.egg-info (its files: SOURCES.txt)
        for path in dist.files or []:
            located = Path(str(dist.locate_file(path)))
            if str(path).replace("\\", "/") == "mlctl/__init__.py" and located.resolve() == here:
                return dist
    return None


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for part in _SOURCE_PARTS:
        base = root / part
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        for path in files:
            if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def mlctl_wheel(cache: Path | None = None) -> Path:
    """A wheel of the mlctl that runs now: built from its source checkout, or rebuilt from its installation.

    From a checkout, the sources are copied to a temporary folder and built there
    (``pip wheel --no-deps``), so nothing is written into the checkout; the wheel is cached by a hash
    of the sources. From an installed mlctl, see :func:`rebuild_wheel`.
    """
    root = source_root()
    if root is None:
        dist = installed_mlctl()
        if dist is None:
            import mlctl

            raise OperationFailed(f"the mlctl imported from {Path(mlctl.__file__).parent} belongs to no installed "
                                  "distribution with a file list, so no wheel of it can be made for the image",
                                  hint="install mlctl with pip (`pip install 'mlctl[docker,serve,ml]'`) "
                                       "and deploy again")
        return rebuild_wheel(dist, cache)
    out = (cache or cache_dir()) / "mlctl-wheels" / _tree_hash(root)
    found = sorted(out.glob("mlctl-*.whl"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory(prefix="mlctl-wheel-") as tmp:
        src = Path(tmp) / "mlctl-source"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for part in _SOURCE_PARTS:
            if (root / part).is_dir():
                shutil.copytree(root / part, src / part, ignore=ignore)
            elif (root / part).is_file():
                shutil.copy2(root / part, src / part)
        built = Path(tmp) / "out"
        _pip(["wheel", "--quiet", "--no-deps", "-w", str(built), str(src)], "build a wheel of mlctl",
             hint="building it needs setuptools here, or an index to fetch it from "
                  "(`pip install 'setuptools>=77' wheel`)")
        out.mkdir(parents=True, exist_ok=True)
        wheel = next(built.glob("mlctl-*.whl"))
        shutil.move(str(wheel), out / wheel.name)
    _prune([f for f in out.parent.iterdir() if f.is_dir()])
    return out / wheel.name


# --------------------------------------------------------------------------- the dependencies


def _packaging() -> Any:
    """``packaging.requirements`` (or pip's vendored copy); None when neither is importable."""
    try:
        from packaging import requirements
    except ImportError:
        try:
            from pip._vendor.packaging import requirements  # type: ignore[no-redef]
        except ImportError:
            return None
    return requirements


def installed_closure(requirements: list[str]) -> list[metadata.Distribution] | None:
    """The installed distributions the image needs for ``requirements`` (and their dependencies).

    Markers are evaluated for the image's interpreter (:data:`IMAGE_MARKERS`), with the extras
    asked for. None when one of them is not installed here, or is installed at a version its
    requirement excludes: then pip has to resolve the list from an index. mlctl is left out (its
    wheel is made by :func:`mlctl_wheel`).
    """
    reqs = _packaging()
    if reqs is None:
        return None
    found: dict[str, metadata.Distribution] = {}
    extras_done: dict[str, set[str]] = {}
    todo = [reqs.Requirement(text) for text in requirements]
    while todo:
        req = todo.pop()
        key = _canonical(req.name)
        if key == "mlctl":
            continue
        try:
            dist = found.get(key) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            return None
        if not req.specifier.contains(dist.version, prereleases=True):
            return None
        wanted = {_canonical(extra) for extra in req.extras} | {""}
        new = wanted - extras_done.get(key, set())
        if not new:
            continue
        found[key] = dist
        extras_done.setdefault(key, set()).update(new)
        for text in dist.requires or []:
            dep = reqs.Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({**IMAGE_MARKERS, "extra": e}) for e in new):
                todo.append(dep)
    return [found[key] for key in sorted(found)]


def _platform_args() -> list[str]:
    return ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            *(arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform))]


_OFFLINE_HINT = (f"install mlctl's serving stack in this environment (`pip install 'mlctl[{_SERVING_EXTRAS}]'`): "
                 "the image's wheels are then made from the installed packages, with no network; or run the "
                 "deploy once where pip reaches a package index ($MLCTL_CACHE_DIR keeps what it fetched)")


def _pip(args: list[str], what: str, *, hint: str = _OFFLINE_HINT) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines()
                 if line.strip() and not line.startswith("WARNING: Location")]
        raise OperationFailed(f"could not {what}: " + " | ".join(lines[-8:]), hint=hint)


def _downloaded_for_image(dists: list[metadata.Distribution], cache: Path) -> list[Path]:
    """The PyPI wheels of ``dists`` (same versions) for the image, downloaded once into CACHE/wheels/pypi."""
    folder = cache / "wheels" / "pypi"
    out, missing = [], []
    for dist in dists:
        have = [w for w in sorted(folder.glob("*.whl")) if _file_accepted(w.name) and _names(w.name) ==
                (_canonical(dist.metadata["Name"]), dist.version.replace("-", "_"))] if folder.is_dir() else []
        if have:
            out.append(have[0])
        else:
            missing.append(f"{dist.metadata['Name']}=={dist.version}")
    if missing:
        _say(f"downloading {len(missing)} wheel(s) for the image's Python 3.11 (once): {', '.join(missing)}")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="download-", dir=folder) as tmp:
            _pip(["download", "--quiet", "--no-deps", "-d", tmp, *_platform_args(), *missing],
                 f"download wheels of {', '.join(missing)} for the image")
            for wheel in sorted(Path(tmp).glob("*.whl")):
                os.replace(wheel, folder / wheel.name)
                out.append(folder / wheel.name)
    return out


def _names(filename: str) -> tuple[str, str]:
    """(canonical name, version) of a wheel file name."""
    name, version = filename.split("-")[:2]
    return _canonical(name), version


def _file_accepted(filename: str) -> bool:
    """Whether a wheel file name carries a tag the image accepts (compressed tag sets expanded)."""
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        return False
    interpreters, abis, platforms = (p.split(".") for p in parts[-3:])
    return any(image_accepts(f"{i}-{a}-{p}") for i in interpreters for a in abis for p in platforms)


def _resolved_download(requirements: list[str], cache: Path) -> list[Path]:
    """pip download of the whole list (pip resolves it) once into CACHE/wheelhouse/<key>."""
    key = hashlib.sha256(json.dumps([requirements, WHEEL_PLATFORMS]).encode()).hexdigest()[:16]
    folder = cache / "wheelhouse" / key
    if not (folder / ".complete").is_file():
        _say("downloading the image's wheels (once; some of them are not installed here)")
        partial = folder.with_name(folder.name + f".{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            _pip(["download", "--quiet", "-d", str(partial), *_platform_args(), *requirements],
                 "download the wheels the image needs")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        (partial / ".complete").write_text("\n".join(requirements) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return sorted(folder.glob("*.whl"))


def dependency_wheels(requirements: list[str], cache: Path | None = None) -> list[Path]:
    """Wheels of ``requirements`` and all their dependencies for the image's Python (see the module doc).

    From the installed packages when every one of them is installed here (rebuilt, or, for one
    built for another platform, that version downloaded for the image); else pip resolves and
    downloads the list once. Everything is cached: later calls work offline.
    """
    cache = cache or cache_dir()
    closure = installed_closure(requirements)
    if closure is None:
        return _resolved_download(requirements, cache)
    local: list[Any] = []
    foreign: list[Any] = []
    for dist in closure:
        (foreign if _rebuildable(dist) else local).append(dist)
    todo = [d for d in local if not any(_local_folder(d, cache).glob("*.whl"))]
    if todo:
        _say(f"preparing {len(todo)} wheel(s) for the image from this environment (once; kept in {cache})")
    wheels = [rebuild_wheel(dist, cache) for dist in local]
    return sorted([*wheels, *_downloaded_for_image(foreign, cache)])

