"""A run's output folder: checked before work starts, locked while the run writes, and a manifest
that ties it to what produced it, so that `--resume` never mixes results of two different runs.

- :func:`prepare_out`: `--out` must be (or become) a writable folder; a file in the way, or a
  folder nobody may write in, is an error before anything is computed.
- :class:`RunLock`: an exclusive `fcntl.flock` on `OUT/.lock`, which holds the owner's pid. A
  second run into the folder stops at once naming that pid, or waits (`--wait`). The kernel drops
  the lock when its process ends, however it ends (kill -9 included).
- `OUT/manifest.json`: the identity of the first run (model, weights by the sha256 of their file,
  views, precision, the data list by the sha256 of its content, the videozoo version, and what
  else the job names). A resumption with any of them changed is refused, listing each difference.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
LOCK = ".lock"
_MANIFEST_LAYOUT = 1


class RunError(RuntimeError):
    """The run could not go on (a locked folder, a full disk, a diverged loss); exit status 1."""


def exit_status(error: BaseException) -> int:
    """The command-line exit status of an error: 1 the run failed (a held lock, a download or a write
    that failed, a diverged loss), 2 the input was wrong (usage)."""
    from videozoo.weights.hub import IntegrityError, WeightsUnavailableError

    if isinstance(error, (RunError, WeightsUnavailableError, IntegrityError)):
        return 1
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
        return 1
    return 2


class RunLockedError(RunError):
    """Another live process holds the output folder."""


class OutputDirError(ValueError):
    """`--out` cannot be used as an output folder; the message says why."""


class ResumeMismatchError(ValueError):
    """`--resume` of a folder whose first run had other settings; the message lists each difference."""


def prepare_out(out: str | os.PathLike, *, flag: str = "--out") -> Path:
    """Create `out` (and its parents) and check that files can be written in it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{flag} {out}: is a file, not a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputDirError(f"{flag} {out}: {parent} is a file, so no folder can be made under it")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputDirError(f"{flag} {out}: cannot write there ({e.strerror or e})") from None
    return out


class RunLock:
    """The exclusive lock of an output folder (a context manager; `acquire` / `release` too)."""

    def __init__(self, out: str | os.PathLike, *, wait: bool = False, flag: str = "--out"):
        self.path = Path(out) / LOCK
        self.wait = wait
        self.flag = flag
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                owner = self.owner()
                if not self.wait:
                    raise RunLockedError(
                        f"{self.flag} {self.path.parent} is in use by another run ({owner}); wait for it to "
                        "finish, pass --wait to start when it does, or choose another folder"
                    ) from None
                print(f"videozoo: waiting for {owner} to finish with {self.path.parent}", file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def owner(self) -> str:
        try:
            pid = self.path.read_text().split()[0]
        except (OSError, IndexError):
            return "a process that has not written its pid yet"
        return f"pid {pid}"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# -- identity ----------------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def data_sha256(spec: str | os.PathLike | None, *, videos: list[str] | None = None, root: str | None = None) -> str:
    """The sha256 of a dataset spec's content (a folder: its files' relative paths and sizes)."""
    h = hashlib.sha256()
    if spec is not None:
        path = Path(spec)
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                h.update(f"{f.relative_to(path)}\0{f.stat().st_size}\n".encode())
        else:
            h.update(bytes.fromhex(file_sha256(path)))
    for v in videos or []:
        h.update(f"{v}\n".encode())
    if root is not None:
        h.update(f"root={root}".encode())
    return h.hexdigest()


def weights_sha256(model: str, weights: str | os.PathLike | None) -> str | None:
    """The sha256 of the weights file `create_model(model, weights=weights)` reads (None: random)."""
    from videozoo.models.registry import get_spec
    from videozoo.weights import hub

    spec = get_spec(model)
    choice = spec.resolve_weights(weights)
    if choice.random:
        return None
    path = hub.cache_path(spec.weights[choice.key]) if choice.key is not None else choice.path
    assert path is not None
    return file_sha256(path) if path.is_file() else f"no file at {path}"


def identity(*, model: str, weights: str | os.PathLike | None, data_sha: str, **more: Any) -> dict[str, Any]:
    """What a run's results depend on, as stored in its manifest."""
    from videozoo.version import __version__

    return {
        "model": model,
        "weights_sha256": weights_sha256(model, weights),
        "data_sha256": data_sha,
        **{k: v for k, v in more.items()},
        "videozoo_version": __version__,
    }


def write_manifest(out: Path, ident: dict[str, Any], *, job: str, about: dict[str, Any] | None = None) -> None:
    body = {"manifest": _MANIFEST_LAYOUT, "job": job, "identity": ident, "about": about or {}}
    write_text_atomic(out / MANIFEST, json.dumps(body, indent=2) + "\n")


def manifest_differences(out: Path, ident: dict[str, Any], *, job: str) -> list[str]:
    """How `ident` differs from the identity in OUT/manifest.json (a missing manifest is one difference)."""
    path = out / MANIFEST
    try:
        saved = json.loads(path.read_text())
        first = saved["identity"]
        saved_job = saved.get("job")
    except FileNotFoundError:
        return [f"no {MANIFEST}: the folder's results cannot be tied to the settings that made them"]
    except (ValueError, KeyError, TypeError) as e:
        return [f"{MANIFEST} is damaged ({type(e).__name__}: {e})"]
    out_list = []
    if saved_job != job:
        out_list.append(f"job: {saved_job!r} in the first run, {job!r} now")
    for key in sorted(set(first) | set(ident), key=lambda k: list(ident).index(k) if k in ident else len(ident)):
        a, b = first.get(key), ident.get(key)
        if a != b:
            out_list.append(f"{key}: {_short(a)} in the first run, {_short(b)} now")
    return out_list


def _short(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:16] + "..."
    return "random initialisation" if value is None else repr(value)


def check_resume(out: Path, ident: dict[str, Any], *, job: str, also: list[str] | None = None) -> None:
    """Refuse a resumption whose identity differs from the first run's (`also`: further differences)."""
    differences = [*(also or []), *manifest_differences(out, ident, job=job)]
    if differences:
        raise ResumeMismatchError(
            f"--resume: {out} was started with other settings; start afresh without --resume or choose "
            "another --out:\n  " + "\n  ".join(differences)
        )


def write_text_atomic(path: Path, text: str) -> None:
    """Write `path` through a temporary file and a rename: it is whole or absent, never cut."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
