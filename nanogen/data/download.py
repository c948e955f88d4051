"""Fetching dataset files: where they live, and a download that is verified before it lands.

:func:`download` streams a URL into a temporary file beside the target while computing its
SHA-256, and moves it into place (``os.replace``) only if the digest matches the published one.
A failed or tampered download therefore never leaves a file under the target's name -- the next
run simply downloads again.

Files live in ``root``: by default ``$NANOGEN_DATA/<name>`` when that variable is set, else
``~/.cache/nanogen/<name>`` (:func:`default_root`).
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..serialization import atomic_write
from .dataset import DatasetError

__all__ = ["download", "default_root", "RemoteFile", "fetch", "sha256_of"]

_CHUNK = 1 << 20


def default_root(name: str) -> str:
    """Where dataset ``name`` keeps its files: ``$NANOGEN_DATA/<name>`` or
    ``~/.cache/nanogen/<name>``."""
    base = os.environ.get("NANOGEN_DATA") or os.path.join(os.path.expanduser("~"), ".cache",
                                                           "nanogen")
    return os.path.join(base, name)


def sha256_of(path) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, path, sha256: str, timeout: float = 60.0) -> str:
    """Download ``url`` to ``path`` if its SHA-256 is ``sha256``; returns ``path``.

    The bytes go to a temporary file in ``path``'s directory (created if needed) and are
    renamed to ``path`` only after the digest matches.  A network error or a checksum
    mismatch raises :class:`DatasetError` and leaves no file behind.
    """
    expected = str(sha256).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ValueError(f"download: {sha256!r} is not a SHA-256 (64 hex digits)")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(out):
        digest = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "nanogen"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise DatasetError(f"could not download {url}: {reason}") from None
        if digest.hexdigest() != expected:
            raise DatasetError(f"{url}: SHA-256 mismatch (expected {expected}, got "
                               f"{digest.hexdigest()}); the download was discarded")

    atomic_write(os.path.abspath(path), write)
    return path


@dataclass(frozen=True)
class RemoteFile:
    """A published file: its name, SHA-256, and the URLs (mirrors) it can be fetched from."""

    filename: str
    sha256: str
    urls: tuple


def fetch(remote: RemoteFile, directory) -> str:
    """``directory/remote.filename``, downloaded from the first mirror that serves it intact
    unless it is already there."""
    path = os.path.join(os.fspath(directory), remote.filename)
    if os.path.isfile(path):
        return path
    errors = []
    for url in remote.urls:
        print(f"nanogen: downloading {url}", file=sys.stderr)
        try:
            return download(url, path, remote.sha256)
        except DatasetError as e:
            errors.append(str(e))
    raise DatasetError(f"could not fetch {remote.filename} into {directory}: "
                       + "; ".join(errors))
