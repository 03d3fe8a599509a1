"""Downloads: resumable, retried, checked before they appear; URLs redacted wherever they are shown.

Credentials never appear in arguments that end up in config files, logs or files: every logged
or recorded URL goes through redact_url(), which drops the query, fragment and user info, and a
bearer token is sent only to the URL's own host (also across redirects).

Downloads stream to ``<archive>.part`` next to the archive with a sidecar ``<archive>.part.json``
(a SHA-256 of the URL -- not the URL, which may hold a token -- and the expected size). A rerun
resumes with an HTTP Range request and keeps the bytes only when the server answers 206 with the
matching Content-Range; otherwise it starts over. 5xx answers and connection errors are retried
with exponential back-off; 401/403/404 stop at once with a DatasetError naming the (redacted) URL
and the fix. The finished file is checked against the published checksum and the lock file
before it is renamed into place, so a wrong download is never promoted.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from demixbench import __version__
from demixbench.data.acquire.checksums import MIB, ArchiveDigest, Checksum, check_digest, hash_file
from demixbench.data.layout import DatasetError
from demixbench.fileio import atomic_write_text

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# URLs and credentials
# --------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """`url` without user info, query and fragment (where access tokens live): safe to log."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    redacted = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    return redacted + ("?<redacted>" if parts.query else "")


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never send the Authorization header to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


# --------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadOptions:
    """Retry and streaming settings of download()."""

    #: Requests per download (1 = no retry). Each retry resumes from the bytes already written.
    attempts: int = 6
    #: Delay before the first retry; it doubles (x `backoff_factor`) up to `backoff_max`.
    backoff: float = 2.0
    backoff_factor: float = 2.0
    backoff_max: float = 120.0
    #: Socket timeout per request, seconds.
    timeout: float = 60.0
    chunk_size: int = MIB
    progress: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.backoff < 0 or self.backoff_factor < 1:
            raise ValueError("backoff must be >= 0 and backoff_factor >= 1")


class _Retry(Exception):
    """A failure worth another attempt (5xx, connection dropped, timeout)."""


def download(
    url: str,
    dest: Path,
    expected: Sequence[Checksum] = (),
    options: DownloadOptions | None = None,
    token: str | None = None,
) -> ArchiveDigest:
    """Download `url` to `dest`, resumably, and check it before it appears at `dest`.

    Args:
        url: http(s) URL; may carry an access token in its query (it is never logged or stored).
        dest: where the verified file ends up. The transfer goes to ``dest.part`` (kept after an
            interruption; the next call resumes it) with the sidecar ``dest.part.json``.
        expected: checksums the file must match (published, overridden, from the lock file).
        token: bearer token for the Authorization header (sent only to the URL's own host).
    Returns:
        The size and digests of the file now at `dest`.
    Raises:
        DatasetError naming the redacted URL (HTTP 401/403/404, retries exhausted) or the file
        (checksum mismatch: the partial file is deleted and nothing is promoted).
    """
    options = options or DownloadOptions()
    dest = Path(dest)
    shown = redact_url(url)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DatasetError(f"{shown}: not an http(s) URL")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    sidecar = dest.with_name(dest.name + ".part.json")
    url_id = hashlib.sha256(url.encode("utf-8")).hexdigest()
    expected_size = next((c.size for c in expected if c.size is not None), None)

    state = _read_sidecar(sidecar)
    if part.exists() and (state.get("url_sha256") != url_id or state.get("expected_size") != expected_size):
        log.info("%s: partial download is from another URL or size; starting over", part)
        _discard(part, sidecar)
        state = {}
    transfer = _Transfer(
        opener=urllib.request.build_opener(_RedirectHandler()),
        url=url,
        part=part,
        sidecar=sidecar,
        url_id=url_id,
        expected_size=expected_size,
        options=options,
        token=token,
    )
    use_range = True
    attempt = 0
    while True:
        attempt += 1
        try:
            _fetch(transfer, state, use_range)
            break
        except _RestartWithoutRange:
            # The server's partial answer did not fit our file: start over with a plain request
            # (this does not count as a failed attempt).
            _discard(part, sidecar)
            state, use_range = {}, False
            attempt -= 1
            continue
        except urllib.error.HTTPError as err:
            code = err.code
            err.close()
            if code in (401, 403):
                raise DatasetError(
                    f"{shown}: access denied (HTTP {code}). MUSDB18 on Zenodo needs an approved access request: "
                    f"request access on the record's page, then give the access link (with its token) through the "
                    "environment variable named by url_env, or a bearer token through token_env -- "
                    "never in a config file"
                ) from None
            if code in (404, 410):
                raise DatasetError(
                    f"{shown}: not found (HTTP {code}); check the URL (Zenodo files are at "
                    f"https://zenodo.org/records/<record>/files/<name>), or use a local copy of the archive"
                ) from None
            if code == 416:
                log.info("%s: server refused the range of the partial file; starting over", shown)
                _discard(part, sidecar)
                state, use_range = {}, False
                reason = "HTTP 416"
            elif code >= 500 or code in (408, 429):
                reason = f"HTTP {code}"
            else:
                raise DatasetError(f"{shown}: HTTP {code}; the server refused the download") from None
        except _Retry as err:
            reason = str(err)
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
            reason = _describe(err)
        if attempt >= options.attempts:
            kept = f"; the partial download is kept at {part}: rerun to resume" if part.exists() else ""
            raise DatasetError(f"{shown}: download failed after {attempt} attempts ({reason}){kept}") from None
        delay = min(options.backoff_max, options.backoff * options.backoff_factor ** (attempt - 1))
        log.warning("%s: %s; retry %d/%d in %.1f s", shown, reason, attempt, options.attempts - 1, delay)
        time.sleep(delay)

    digest = hash_file(part, progress=options.progress)
    try:
        check_digest(part, digest, expected)
    except DatasetError as err:
        _discard(part, sidecar)  # never promote (or resume) a wrong file
        raise DatasetError(f"{shown}: download refused and deleted: {err}") from None
    os.replace(part, dest)
    sidecar.unlink(missing_ok=True)
    log.info("downloaded %s (%d bytes, sha256 %s) from %s", dest, digest.size, digest.sha256, shown)
    return digest


class _RestartWithoutRange(Exception):
    pass


@dataclass(frozen=True)
class _Transfer:
    """What stays the same across the attempts of one download()."""

    opener: urllib.request.OpenerDirector
    url: str  # may carry a token: never logged
    part: Path  # the partial file, ``<dest>.part``
    sidecar: Path  # its state, ``<dest>.part.json``
    url_id: str  # SHA-256 of the URL
    expected_size: int | None
    options: DownloadOptions
    token: str | None  # bearer token


def _fetch(transfer: _Transfer, state: dict, use_range: bool) -> None:
    """One request: append to `part` from its current size (206) or rewrite it (200).

    `state` is the sidecar's content (updated with the total size); `use_range` is False once
    the server's partial answers proved unusable.
    """
    opener, url, part, sidecar = transfer.opener, transfer.url, transfer.part, transfer.sidecar
    url_id, expected_size, options, token = transfer.url_id, transfer.expected_size, transfer.options, transfer.token
    offset = part.stat().st_size if part.exists() else 0
    total = state.get("total") or expected_size
    if offset and total is not None and offset == total:
        return  # complete from an earlier run; the checksum decides
    if offset and total is not None and offset > total:
        raise _RestartWithoutRange()
    request = urllib.request.Request(
        url, headers={"User-Agent": f"demixbench/{__version__}", "Accept-Encoding": "identity"}
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if offset and use_range:
        request.add_header("Range", f"bytes={offset}-")
    with opener.open(request, timeout=options.timeout) as response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        if offset and use_range and status == 206:
            match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (response.headers.get("Content-Range") or "").strip())
            start = int(match.group(1)) if match else None
            full = int(match.group(3)) if match and match.group(3) != "*" else None
            if start != offset or (total is not None and full is not None and full != total):
                log.info(
                    "%s: server answered a different range (%s); starting over",
                    part,
                    response.headers.get("Content-Range"),
                )
                raise _RestartWithoutRange()
            total = full if full is not None else total
            mode = "ab"
            log.info("resuming %s at byte %d", part.name, offset)
        elif status == 200:
            if offset:
                log.info("%s: server ignored the range request; starting over", part)
            offset, mode = 0, "wb"
            total = length if length is not None else total
        else:
            raise _Retry(f"unexpected HTTP {status}")
        if expected_size is not None and total is not None and total != expected_size:
            raise DatasetError(
                f"{redact_url(url)}: the server offers {total} bytes, expected {expected_size}; "
                "wrong URL or a changed archive"
            )
        _write_sidecar(
            sidecar, {"url_sha256": url_id, "url": redact_url(url), "expected_size": expected_size, "total": total}
        )
        state.update(total=total)
        received = 0
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=offset,
                desc=part.name[: -len(".part")],
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not options.progress,
            ) as bar,
        ):
            while True:
                try:
                    block = response.read(options.chunk_size)
                except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as err:
                    raise _Retry(f"connection dropped after {offset + received} bytes ({_describe(err)})") from None
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        # http.client returns b"" when the peer closes early instead of raising: check the length.
        if length is not None and received < length:
            raise _Retry(f"connection dropped after {offset + received} of {offset + length} bytes")
        if total is not None and offset + received != total:
            raise _Retry(f"got {offset + received} of {total} bytes")


def _describe(err: BaseException) -> str:
    """An exception as text without any URL (urllib errors do not carry the query, but be sure)."""
    reason = getattr(err, "reason", None)
    text = f"{type(err).__name__}: {reason if reason is not None else err}"
    return re.sub(r"\?\S*", "?<redacted>", text)


def _read_sidecar(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_sidecar(path: Path, state: dict) -> None:
    atomic_write_text(path, json.dumps(state, indent=2) + "\n")


def _discard(*paths: Path) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)
