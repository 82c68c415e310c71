"""The base image model images are built FROM, made on this machine: no registry is contacted.

:func:`base_image_tarball` makes a Debian root filesystem with python3 and venv once, with
debootstrap (about 40 s; cached under ``~/.cache/mlctl/base-images``), and
:func:`ensure_base_image` imports it into a Docker engine as :data:`BASE_IMAGE` when the engine
does not have it yet. The Docker deploy target (:mod:`mlctl.lifecycle.deploy.docker`) builds on it.

From a shell (what the docker target's hint says to run when an engine lacks the image)::

    python -m mlctl.lifecycle.deploy.docker_base_image --docker unix:///var/run/docker.sock
"""

from __future__ import annotations

import subprocess
import urllib.parse
from pathlib import Path

from mlctl.connectors.docker import docker_api
from mlctl.core.errors import ServiceUnavailable
from mlctl.core.paths import cache_root
from mlctl.engines import require_binary
from mlctl.lifecycle.deploy.docker import DEFAULT_BASE_IMAGE, DEFAULT_DOCKER_URL

__all__ = ["BASE_IMAGE", "base_image_tarball", "ensure_base_image"]

#: the base image model images are built FROM (Debian bookworm's CPython 3.11, from debootstrap)
BASE_IMAGE = DEFAULT_BASE_IMAGE
_BASE_PACKAGES = "python3,python3-venv,ca-certificates"


def base_image_tarball(cache: Path | None = None, *, suite: str = "bookworm",
                       mirror: str = "http://deb.debian.org/debian") -> Path:
    """A root filesystem tarball of Debian ``suite`` with python3 and venv, made with debootstrap once.

    Cached as ``CACHE/base-images/python3-SUITE.tar`` (``CACHE``: ``$MLCTL_CACHE_DIR`` or
    ``~/.cache/mlctl``); later calls return the cached file at once. Needs root and ``debootstrap``.
    """
    import shutil
    import tempfile

    target = (cache or cache_root()) / "base-images" / f"python3-{suite}.tar"
    if target.is_file():
        return target
    debootstrap = require_binary("debootstrap", package="debootstrap")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlctl-rootfs-", dir=target.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={_BASE_PACKAGES}", suite, str(rootfs), mirror],
            capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
            raise ServiceUnavailable(f"debootstrap of {suite} failed ({result.returncode}):\n{tail}",
                                     hint=f"it needs root and access to {mirror}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = Path(tmp) / "rootfs.tar"
        tar = subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
                             capture_output=True, text=True)
        if tar.returncode != 0:
            raise ServiceUnavailable(f"could not pack the base image's root filesystem: {tar.stderr.strip()[-300:]}")
        shutil.move(str(partial), target)
    return target


def ensure_base_image(url: str, image: str = BASE_IMAGE, *, cache: Path | None = None) -> str:
    """Make sure the Docker engine at ``url`` has ``image``; import it from the cached tarball if not.

    No registry is contacted: the tarball comes from :func:`base_image_tarball` (debootstrap, once
    per machine, about 40 s) and is imported with ``POST /images/create?fromSrc=-``. Returns ``image``.
    """
    import json

    quoted = urllib.parse.quote(image, safe="")
    try:
        status, _ = docker_api(url, "GET", f"/images/{quoted}/json")
    except OSError as exc:
        raise ServiceUnavailable(f"the Docker engine at {url} is unreachable: {exc}",
                                 hint="is dockerd running? set services.docker / DOCKER_HOST") from None
    if status == 200:
        return image
    tarball = base_image_tarball(cache)
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["python3"]']
    query = urllib.parse.urlencode([("fromSrc", "-"), ("repo", repo), ("tag", tag),
                                    *(("changes", change) for change in changes)])
    with open(tarball, "rb") as body:
        status, answer = docker_api(url, "POST", f"/images/create?{query}", body=body,
                                    headers={"Content-Type": "application/x-tar"}, timeout=600)
    errors = [line for line in answer.decode(errors="replace").splitlines() if '"error"' in line]
    if status != 200 or errors:
        message = json.loads(errors[-1]).get("error") if errors else answer.decode(errors="replace")[-300:]
        raise ServiceUnavailable(f"importing {tarball} as {image} failed ({status}): {message}")
    return image


def main(argv: list[str] | None = None) -> int:
    """``python -m mlctl.lifecycle.deploy.docker_base_image [--docker URL] [--image NAME]``."""
    import argparse
    import os
    import sys

    from mlctl.core.errors import MlctlError

    parser = argparse.ArgumentParser(prog="python -m mlctl.lifecycle.deploy.docker_base_image",
                                     description="Put the docker deploy target's base image into a Docker engine "
                                                 "(made with debootstrap once, then imported; no registry).")
    parser.add_argument("--docker", default=os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_URL,
                        help="the engine (default: $DOCKER_HOST, else %(default)s)")
    parser.add_argument("--image", default=BASE_IMAGE, help="the image name (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        image = ensure_base_image(args.docker, args.image)
    except MlctlError as exc:
        print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return exc.exit_code
    print(f"{image} is in the Docker engine at {args.docker}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
