"""Downloading official weights into a local cache, verified, so they load offline afterwards.

Weights shipped inside a Python package (`package://<package>/<file>` sources) are read where the
package is installed, checked against their sha256 on every use, and never downloaded.

Layout: `$VIDEOZOO_HOME/checkpoints/<file name from the URL>` (VIDEOZOO_HOME defaults to
`~/.cache/videozoo`). A download goes to a temporary file in the same folder, is checked for
size and sha256, and only then renamed into place, so a file under its final name is always
whole. A file found in the cache (downloaded earlier or placed by hand) is verified once and a
`.verified` stamp records it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import shutil
import sys
import urllib.error
from pathlib import Path

from videozoo.weights.download import DownloadFailed, IntegrityError, download_checked, mirrored
from videozoo.weights.sources import WeightSource, license_name, license_url

__all__ = ["IntegrityError", "WeightsUnavailableError", "cache_path", "download", "fetch", "home", "verify"]


class WeightsUnavailableError(RuntimeError):
    """The weights are neither cached nor downloadable; the message says where to put them."""


def home() -> Path:
    return Path(os.environ.get("VIDEOZOO_HOME") or Path.home() / ".cache" / "videozoo")


def cache_path(source: WeightSource) -> Path:
    return home() / "checkpoints" / source.filename


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, source: WeightSource) -> None:
    """Raise IntegrityError unless `path` has the published size and hash (where published)."""
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        raise IntegrityError(f"{path}: {size} bytes, expected {source.size} (truncated or wrong file)")
    if source.sha256 or source.sha256_prefix:
        digest = sha256_of(path)
        want = source.sha256 or source.sha256_prefix or ""
        if not digest.startswith(want.lower()):
            raise IntegrityError(f"{path}: sha256 {digest} does not match the published {want} (corrupted file)")


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_text(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def packaged_path(source: WeightSource) -> Path:
    """The verified local file of a `package://` source, read from the installed package."""
    package, name = source.package_location()
    try:
        resource = importlib.resources.files(package).joinpath(name)
    except ModuleNotFoundError as e:
        raise WeightsUnavailableError(f"{source.url}: the package {package!r} is not installed ({e})") from e
    if not resource.is_file():
        raise WeightsUnavailableError(
            f"{source.url}: {name} is missing from the installed package {package!r}; reinstall videozoo"
        )
    if isinstance(resource, Path):
        path = resource
    else:
        # A package imported from an archive: copy the file out once, into the cache.
        path = cache_path(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with resource.open("rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, path)
    verify(path, source)
    return path


def fetch(source: WeightSource, *, progress: bool | None = None, offline: bool | None = None) -> Path:
    """Return the local path of `source`, downloading and verifying it first if needed.

    A `package://` source is taken from the installed package (see :func:`packaged_path`).
    """
    if source.packaged:
        return packaged_path(source)
    dest = cache_path(source)
    if dest.is_file():
        stamp = _stamp(dest)
        if not (stamp.is_file() and stamp.read_text() == _stamp_text(dest)):
            try:
                verify(dest, source)
            except IntegrityError as e:
                raise IntegrityError(f"{e}. Delete it to download again, or replace it with {source.url}") from e
            stamp.write_text(_stamp_text(dest))
        return dest
    if offline is None:
        offline = os.environ.get("VIDEOZOO_OFFLINE", "") not in ("", "0")
    if offline:
        raise WeightsUnavailableError(_unavailable_message(source, dest, "offline mode (VIDEOZOO_OFFLINE) is set"))
    url = mirrored(source.url)
    if source.non_commercial:
        # Said on the first download only: afterwards the file loads from the cache.
        print(
            f"videozoo: {source.filename} is published under {license_name(source.license)}, which does not "
            f"allow commercial use ({license_url(source.license)})",
            file=sys.stderr,
            flush=True,
        )
    try:
        download(url, dest, source=source, progress=progress)
    except (DownloadFailed, urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        where = f" (from the mirror: {url})" if url != source.url else ""
        raise WeightsUnavailableError(_unavailable_message(source, dest, f"download failed{where}: {reason}")) from e
    _stamp(dest).write_text(_stamp_text(dest))
    return dest


def _unavailable_message(source: WeightSource, dest: Path, why: str) -> str:
    check = f" (sha256 {source.sha256})" if source.sha256 else ""
    return (
        f"cannot get {source.url}: {why}. To use these weights offline, download that URL on a "
        f"machine with internet access and place the file at {dest}{check}; set VIDEOZOO_HOME to "
        "use another cache folder."
    )


def download(
    url: str,
    dest: Path,
    *,
    source: WeightSource | None = None,
    progress: bool | None = None,
) -> Path:
    """Download `url` to `dest` atomically: into a temporary file, checked (a whole, loadable
    checkpoint; the published size and hash where `source` gives them), then renamed into place.

    Stalls, crawls and retries follow :class:`videozoo.weights.download.DownloadPolicy`.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    if progress is None:
        progress = sys.stderr.isatty()

    def check(path: Path) -> None:
        if source is not None:
            verify(path, source)
        _check_loadable(path, url)

    try:
        download_checked(url, tmp, check=check, progress=progress, name=dest.name)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _check_loadable(path: Path, url: str) -> None:
    """Refuse a body that no checkpoint reader accepts (a cut body without Content-Length, a page)."""
    from videozoo.weights.checkpoint import read_checkpoint
    from videozoo.weights.errors import CheckpointError

    try:
        read_checkpoint(path)
    except CheckpointError as e:
        raise IntegrityError(f"{url}: the downloaded file is not a loadable checkpoint ({e})") from e


def cache_report(sources: list[WeightSource]) -> dict:
    """The weights cache as `videozoo doctor` shows it: its folder, its size, and every file in
    `checkpoints/` checked as :func:`fetch` checks it (published size and sha256, where published).

    Each entry: ``file``, ``bytes``, ``urls`` (the registry sources cached under that name; none for
    a file no source names) and ``status``: ``"ok"``, ``"no published hash"`` (nothing to check it
    against), ``"no registry source"`` (placed by hand or by an older version) or ``"damaged: <why>"``.
    The ``.verified`` stamp of a damaged file is removed, so that :func:`fetch` checks it again.
    """
    root = home()
    by_name: dict[str, list[WeightSource]] = {}
    for source in sources:
        if not source.packaged:
            by_name.setdefault(source.filename, []).append(source)
    entries = []
    folder = root / "checkpoints"
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file() or path.name.startswith(".") or path.name.endswith(".verified"):
            continue
        named = by_name.get(path.name, [])
        status = "ok"
        for source in named:
            try:
                verify(path, source)
            except IntegrityError as e:
                status = f"damaged: {e}"
                _stamp(path).unlink(missing_ok=True)
                break
        if not named:
            status = "no registry source"
        elif status == "ok" and not any(s.sha256 or s.sha256_prefix or s.size for s in named):
            status = "no published hash"
        entries.append(
            {"file": str(path), "bytes": path.stat().st_size, "urls": [s.url for s in named], "status": status}
        )
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
    return {"path": str(root), "bytes": total, "checkpoints": entries}
