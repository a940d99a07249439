"""Fetching one checkpoint over HTTP(S) into a file, checked before anyone may use it.

A body is accepted only when it is whole and is a checkpoint: an HTML or JSON body (a login or
error page), a body shorter than announced (or, without a Content-Length, one that does not load),
a body that is not a loadable checkpoint, and one that fails its published size or sha256 are all
refused. A connection that sends nothing for `stall_sec`, or less than `min_rate` bytes per second
over `rate_window_sec`, is given up, so a download ends within a bounded time. Connection resets,
truncated bodies and 5xx answers are retried a bounded number of times with a doubling pause.

Settings come from the environment (see :class:`DownloadPolicy`); `VIDEOZOO_MIRROR=BASE_URL`
replaces the scheme and host of every weight URL, keeping its path.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 16


class IntegrityError(RuntimeError):
    """A downloaded or cached file is not the checkpoint it should be (truncated, a web page, a wrong hash)."""


class DownloadFailed(RuntimeError):
    """The connection failed (stalled, too slow, reset, an HTTP error); `transient`: worth another try."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class DownloadPolicy:
    """How long a download may stall or crawl, and how often it is retried.

    Environment: VIDEOZOO_DOWNLOAD_STALL_SEC (30), VIDEOZOO_DOWNLOAD_MIN_RATE (bytes/s, 10000),
    VIDEOZOO_DOWNLOAD_RATE_WINDOW_SEC (60), VIDEOZOO_DOWNLOAD_RETRIES (3),
    VIDEOZOO_DOWNLOAD_BACKOFF_SEC (1, doubled after each retry).
    """

    stall_sec: float = 30.0
    min_rate: float = 10_000.0
    rate_window_sec: float = 60.0
    retries: int = 3
    backoff_sec: float = 1.0

    @classmethod
    def from_env(cls) -> DownloadPolicy:
        names = {
            "stall_sec": "VIDEOZOO_DOWNLOAD_STALL_SEC",
            "min_rate": "VIDEOZOO_DOWNLOAD_MIN_RATE",
            "rate_window_sec": "VIDEOZOO_DOWNLOAD_RATE_WINDOW_SEC",
            "retries": "VIDEOZOO_DOWNLOAD_RETRIES",
            "backoff_sec": "VIDEOZOO_DOWNLOAD_BACKOFF_SEC",
        }
        values: dict = {}
        for field_name, var in names.items():
            text = os.environ.get(var)
            if text is None or text == "":
                continue
            kind = int if field_name == "retries" else float
            try:
                value = kind(text)
            except ValueError:
                raise ValueError(f"{var}={text!r}: expected a {'whole ' if kind is int else ''}number") from None
            if value < 0 or (field_name in ("stall_sec", "rate_window_sec") and value == 0) or value != value:
                raise ValueError(
                    f"{var}={text!r}: must be {'> 0' if field_name in ('stall_sec', 'rate_window_sec') else '>= 0'}"
                )
            values[field_name] = value
        return cls(**values)


def mirrored(url: str) -> str:
    """`url` with the scheme and host of VIDEOZOO_MIRROR (a base URL; its own path is a prefix)."""
    base = os.environ.get("VIDEOZOO_MIRROR", "").strip()
    if not base:
        return url
    b = urllib.parse.urlsplit(base)
    if b.scheme not in ("http", "https", "file") or (b.scheme != "file" and not b.netloc):
        raise ValueError(f"VIDEOZOO_MIRROR={base!r}: expected a base URL such as https://mirror.example.org")
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((b.scheme, b.netloc, b.path.rstrip("/") + u.path, u.query, ""))


def download_checked(
    url: str, tmp: Path, *, check, progress: bool, name: str, policy: DownloadPolicy | None = None
) -> None:
    """Download `url` into `tmp` and run `check(tmp)` (raising IntegrityError) on the whole body, with retries.

    On failure `tmp` is removed and the last error raised.
    """
    policy = policy or DownloadPolicy.from_env()
    for attempt in range(policy.retries + 1):
        try:
            _download_once(url, tmp, policy=policy, progress=progress, name=name)
            check(tmp)
            return
        except (DownloadFailed, IntegrityError) as e:
            tmp.unlink(missing_ok=True)
            transient = getattr(e, "transient", False)
            if not transient or attempt == policy.retries:
                raise
            pause = policy.backoff_sec * 2**attempt
            print(
                f"videozoo: download of {url} failed ({e}); retrying in {pause:g} s "
                f"(attempt {attempt + 2} of {policy.retries + 1})",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(pause)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class _Truncated(IntegrityError):
    transient = True


def _download_once(url: str, tmp: Path, *, policy: DownloadPolicy, progress: bool, name: str) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "videozoo"})
    try:
        resp = urllib.request.urlopen(req, timeout=policy.stall_sec)
    except urllib.error.HTTPError as e:
        raise DownloadFailed(f"{url}: HTTP {e.code} {e.reason}", transient=e.code >= 500 or e.code == 429) from e
    except urllib.error.URLError as e:
        reason = e.reason
        transient = isinstance(reason, (ConnectionResetError, ConnectionAbortedError))
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise DownloadFailed(f"{url}: no answer within {policy.stall_sec:g} s (VIDEOZOO_DOWNLOAD_STALL_SEC)") from e
        raise DownloadFailed(f"{url}: {reason}", transient=transient) from e
    except (ConnectionResetError, http.client.RemoteDisconnected) as e:
        raise DownloadFailed(f"{url}: connection reset ({e})", transient=True) from e
    except TimeoutError as e:
        raise DownloadFailed(f"{url}: no answer within {policy.stall_sec:g} s (VIDEOZOO_DOWNLOAD_STALL_SEC)") from e
    with resp, open(tmp, "wb") as out:
        kind = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind in ("text/html", "application/xhtml+xml", "application/json"):
            first = resp.read(200)
            raise IntegrityError(
                f"{url}: the server sent a {kind} page, not a checkpoint (a login or error page?): "
                f"{first.decode('utf-8', 'replace')[:120]!r}"
            )
        length = resp.headers.get("Content-Length")
        total = int(length) if length is not None and length.isdigit() else None
        bar = _progress_bar(total, name) if progress else None
        received, window_start, window_bytes = 0, time.monotonic(), 0
        try:
            while True:
                try:
                    block = resp.read1(_CHUNK)
                except http.client.IncompleteRead as e:
                    raise _Truncated(
                        f"{url}: connection closed after {received + len(e.partial)} of {total} bytes "
                        "(truncated download)"
                    ) from e
                except TimeoutError as e:
                    raise DownloadFailed(
                        f"{url}: no byte for {policy.stall_sec:g} s after {received} bytes (stalled "
                        "connection; VIDEOZOO_DOWNLOAD_STALL_SEC)"
                    ) from e
                except (ConnectionResetError, ConnectionAbortedError) as e:
                    raise DownloadFailed(f"{url}: connection reset after {received} bytes", transient=True) from e
                if not block:
                    break
                if received == 0 and block.lstrip()[:1] in (b"<", b"{", b"["):
                    raise IntegrityError(
                        f"{url}: the server sent an HTML or JSON page, not a checkpoint (a login or "
                        f"error page?): {block[:120].decode('utf-8', 'replace')!r}"
                    )
                out.write(block)
                received += len(block)
                if bar is not None:
                    bar.update(len(block))
                now = time.monotonic()
                if now - window_start >= policy.rate_window_sec:
                    rate = (received - window_bytes) / (now - window_start)
                    if rate < policy.min_rate:
                        raise DownloadFailed(
                            f"{url}: {rate:.0f} bytes/s over the last {now - window_start:.0f} s, below the floor of "
                            f"{policy.min_rate:g} (VIDEOZOO_DOWNLOAD_MIN_RATE); try later or set VIDEOZOO_MIRROR"
                        )
                    window_start, window_bytes = now, received
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received != total:
        raise _Truncated(f"{url}: connection closed after {received} of {total} bytes (truncated download)")


def _progress_bar(total: int | None, name: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr)
