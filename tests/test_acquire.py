"""acquire: downloads (resume, retry, errors) against a local HTTP server, checksums and the lock
file, atomic extraction, zip slip, names with spaces/apostrophes/non-ASCII, and credentials."""

import hashlib
import io
import json
import logging
import re
import shutil
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from demixbench.data.acquire.archive import extract_archive
from demixbench.data.acquire.checksums import KNOWN_ARCHIVES, Checksum
from demixbench.data.acquire.http import DownloadOptions, download, redact_url
from demixbench.data.acquire.ingest import AcquireSpec, ingest
from demixbench.data.acquire.lock import read_lock
from demixbench.data.decode import decode_track
from demixbench.data.layout import DatasetError, musdb_sample_url
from demixbench.data.synthetic.spec import SyntheticSpec, track_names
from demixbench.data.synthetic.writer import write_dataset
from demixbench.data.verify import VerifySpec
from demixbench.fileio import atomic_directory

TINY = SyntheticSpec(n_train=2, n_test=1, duration=1.0, seed=5)
TINY_MP4 = SyntheticSpec(n_train=2, n_test=1, duration=1.0, seed=5, format="stem.mp4")
COUNTS = {"train": 2, "test": 1}
NON_ASCII = "Sigur Rós & Beyoncé - Don't Stop (Ça Va)"
FAST = DownloadOptions(attempts=3, backoff=0.01, timeout=10, chunk_size=4096, progress=False)


def verify_spec(source):
    return VerifySpec(source=source, counts=COUNTS, validation=())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _NoUtf8FlagInfo(zipfile.ZipInfo):
    """Some zip tools store UTF-8 names without the UTF-8 flag (bit 11): imitate them."""

    __slots__ = ()

    def _encodeFilenameFlags(self):
        return self.filename.encode("utf-8"), self.flag_bits & ~0x800


def zip_dir(root: Path, prefix: str = "", skip=(), utf8_flag: bool = True) -> bytes:
    """Zip `root`'s train/ and test/ (optionally under `prefix`), as the official archives do."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and relative not in skip:
                info = (zipfile.ZipInfo if utf8_flag else _NoUtf8FlagInfo)(prefix + relative)
                zf.writestr(info, path.read_bytes())
    return buffer.getvalue()


# --------------------------------------------------------------------------------------
# Fixtures: tiny datasets and a local HTTP server with Range support and injectable failures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wav_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("src") / "wav"
    write_dataset(TINY, root)
    # a track name with spaces, an apostrophe and non-ASCII letters
    (root / "test" / track_names(TINY)["test"][0]).rename(root / "test" / NON_ASCII)
    return root


@pytest.fixture(scope="module")
def wav_zip(wav_root):
    return zip_dir(wav_root)


@pytest.fixture(scope="module")
def mp4_zip(tmp_path_factory):
    root = tmp_path_factory.mktemp("src") / "mp4"
    write_dataset(TINY_MP4, root)
    return zip_dir(root, prefix="MUSDB18-7/")  # one top-level folder, like musdb's download


class Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.actions: list = []  # consumed one per request: 500, 404, 403, "drop"
        self.requests: list[dict] = []
        self.ranges = True
        self.redirects: dict[str, str] = {}  # path -> absolute URL to redirect to

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{urllib.parse.quote(path)}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _status(self, code):
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        state: Server = self.server.state
        parts = urllib.parse.urlsplit(self.path)
        state.requests.append(
            {
                "path": urllib.parse.unquote(parts.path),
                "query": parts.query,
                "range": self.headers.get("Range"),
                "authorization": self.headers.get("Authorization"),
            }
        )
        action = state.actions.pop(0) if state.actions else None
        if isinstance(action, int):
            return self._status(action)
        target = state.redirects.get(urllib.parse.unquote(parts.path))
        if target is not None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        data = state.files.get(urllib.parse.unquote(parts.path))
        if data is None:
            return self._status(404)
        start = 0
        requested = self.headers.get("Range")
        if requested and state.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if action == "drop":  # cut the connection halfway through the body
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.state = Server()
    httpd.state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()


# --------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------


def test_clean_download_extract_and_verify(server, wav_zip, tmp_path):
    server.files["/files/musdb18hq.zip"] = wav_zip
    dest = tmp_path / "data" / "musdb18hq"
    spec = AcquireSpec(
        source="musdb18hq",
        origin=server.url("/files/musdb18hq.zip"),
        download=FAST,
        progress=False,
        checksum=Checksum(sha256=sha256(wav_zip), size=len(wav_zip), source="test"),
    )
    report = ingest(spec, dest, verify_spec("musdb18hq"), report_path=tmp_path / "report.json")
    assert report.root == str(dest) and report.subsets["test"] == [NON_ASCII]
    assert (dest / "test" / NON_ASCII / "vocals.wav").is_file()
    archive = tmp_path / "data" / "downloads" / "musdb18hq.zip"
    assert archive.read_bytes() == wav_zip and not archive.with_name("musdb18hq.zip.part").exists()
    assert report.archive["sha256"] == sha256(wav_zip)
    assert json.loads((tmp_path / "report.json").read_text())["fingerprint"] == report.fingerprint
    assert [r["range"] for r in server.requests] == [None]
    assert not list(dest.parent.glob(".*partial*"))
    decode_track("musdb18hq", dest, "test", NON_ASCII, tmp_path / "cache" / NON_ASCII)


def test_cut_off_download_is_resumed_with_range(server, wav_zip, tmp_path):
    server.files["/musdb18hq.zip"] = wav_zip
    server.actions = ["drop"]
    dest = tmp_path / "musdb18hq.zip"
    one_shot = DownloadOptions(attempts=1, backoff=0.01, chunk_size=4096, progress=False)
    with pytest.raises(DatasetError, match="partial download is kept"):
        download(server.url("/musdb18hq.zip"), dest, options=one_shot)
    part = tmp_path / "musdb18hq.zip.part"
    kept = part.stat().st_size
    assert 0 < kept < len(wav_zip) and not dest.exists()
    assert json.loads((tmp_path / "musdb18hq.zip.part.json").read_text())["total"] == len(wav_zip)
    digest = download(server.url("/musdb18hq.zip"), dest, options=one_shot)
    assert server.requests[-1]["range"] == f"bytes={kept}-"
    assert dest.read_bytes() == wav_zip and digest.sha256 == sha256(wav_zip)
    assert not part.exists() and not (tmp_path / "musdb18hq.zip.part.json").exists()


def test_dropped_connection_is_retried_and_resumed_in_one_call(server, wav_zip, tmp_path):
    server.files["/a.zip"] = wav_zip
    server.actions = ["drop", "drop"]
    download(server.url("/a.zip"), tmp_path / "a.zip", expected=[Checksum(sha256=sha256(wav_zip))], options=FAST)
    assert (tmp_path / "a.zip").read_bytes() == wav_zip
    ranges = [r["range"] for r in server.requests]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and len(ranges) == 3


def test_server_without_range_support_restarts(server, wav_zip, tmp_path):
    server.files["/a.zip"] = wav_zip
    server.ranges = False
    server.actions = ["drop"]
    download(server.url("/a.zip"), tmp_path / "a.zip", options=FAST)
    assert (tmp_path / "a.zip").read_bytes() == wav_zip


def test_wrong_checksum_is_refused_and_nothing_is_promoted(server, wav_zip, tmp_path):
    server.files["/files/musdb18hq.zip"] = wav_zip
    dest = tmp_path / "data" / "musdb18hq"
    spec = AcquireSpec(
        source="musdb18hq",
        origin=server.url("/files/musdb18hq.zip"),
        download=FAST,
        progress=False,
        checksum=Checksum(sha256="0" * 64, source="a wrong test value"),
    )
    with pytest.raises(
        DatasetError, match="SHA-256 .* does not match the expected 0{64} \\(from a wrong test value\\)"
    ):
        ingest(spec, dest, verify_spec("musdb18hq"))
    downloads = tmp_path / "data" / "downloads"
    assert not dest.exists() and not any(downloads.iterdir())  # no archive, no .part, no sidecar


def test_published_checksum_applies_without_override(server, wav_zip, tmp_path):
    server.files["/musdb18hq.zip"] = wav_zip
    spec = AcquireSpec(source="musdb18hq", origin=server.url("/musdb18hq.zip"), download=FAST, progress=False)
    with pytest.raises(DatasetError, match="torchaudio"):
        ingest(spec, tmp_path / "musdb18hq", verify_spec("musdb18hq"))
    assert KNOWN_ARCHIVES["musdb18"].checksum.md5 == "af06762477334799bfc5abf237648207"
    assert KNOWN_ARCHIVES["musdb18"].checksum.size == 4_684_228_845


def test_server_error_is_retried(server, wav_zip, tmp_path, caplog):
    server.files["/a.zip"] = wav_zip
    server.actions = [500]
    with caplog.at_level(logging.WARNING, logger="demixbench.data.acquire.http"):
        download(server.url("/a.zip"), tmp_path / "a.zip", options=FAST)
    assert (tmp_path / "a.zip").read_bytes() == wav_zip and len(server.requests) == 2
    assert "HTTP 500; retry 1/2" in caplog.text


def test_persistent_server_error_gives_up(server, wav_zip, tmp_path):
    server.files["/a.zip"] = wav_zip
    server.actions = [503, 503, 503]
    with pytest.raises(DatasetError, match=r"download failed after 3 attempts \(HTTP 503\)"):
        download(server.url("/a.zip"), tmp_path / "a.zip", options=FAST)


def test_not_found_and_forbidden_are_clear(server, tmp_path):
    with pytest.raises(DatasetError, match="not found \\(HTTP 404\\)") as err:
        download(server.url("/missing.zip") + "?token=SECRET", tmp_path / "a.zip", options=FAST)
    assert "/missing.zip?<redacted>" in str(err.value) and "SECRET" not in str(err.value)
    server.actions = [403]
    with pytest.raises(DatasetError, match="access denied \\(HTTP 403\\).*request access"):
        download(server.url("/missing.zip"), tmp_path / "a.zip", options=FAST)
    assert len(server.requests) == 2  # neither is retried


# --------------------------------------------------------------------------------------
# Lock file and credentials
# --------------------------------------------------------------------------------------


def test_lock_file_records_then_verifies_then_refuses_tampering(mp4_zip, tmp_path):
    archive = tmp_path / "MUSDB18-7-STEMS.zip"
    archive.write_bytes(mp4_zip)
    lock = tmp_path / "checksums.json"
    spec = AcquireSpec(source="musdb18-7s", origin=str(archive), lock_file=lock, progress=False)
    first = ingest(spec, tmp_path / "one", verify_spec("musdb18-7s"))
    entry = read_lock(lock)["sources"]["musdb18-7s"]
    assert entry["archive"]["sha256"] == sha256(mp4_zip) and entry["archive"]["size"] == len(mp4_zip)
    assert entry["dataset"]["fingerprint"] == first.fingerprint
    assert first.layout == "stem.mp4" and first.n_files == 3

    second = ingest(spec, tmp_path / "two", verify_spec("musdb18-7s"))  # verifies against the lock
    assert second.fingerprint == first.fingerprint
    assert read_lock(lock) == json.loads(lock.read_text())

    tampered = bytearray(mp4_zip)
    tampered[len(tampered) // 2] ^= 0xFF
    archive.write_bytes(bytes(tampered))
    with pytest.raises(DatasetError, match=f"does not match the expected .*lock file {re.escape(str(lock))}"):
        ingest(spec, tmp_path / "three", verify_spec("musdb18-7s"))
    assert not (tmp_path / "three").exists() and archive.exists()  # a local archive is never deleted


def test_directory_fingerprint_is_locked(wav_root, tmp_path):
    local = tmp_path / "MUSDB18-HQ"
    shutil.copytree(wav_root, local)
    lock = tmp_path / "checksums.json"
    spec = AcquireSpec(source="musdb18hq", origin=str(local), lock_file=lock, progress=False)
    report = ingest(spec, local, verify_spec("musdb18hq"))  # in place: nothing copied
    assert (
        report.root == str(local)
        and read_lock(lock)["sources"]["musdb18hq"]["dataset"]["fingerprint"] == report.fingerprint
    )
    ingest(spec, local, verify_spec("musdb18hq"))
    (local / "train" / track_names(TINY)["train"][0] / "bass.wav").write_bytes(
        (local / "train" / track_names(TINY)["train"][0] / "drums.wav").read_bytes()
    )
    with pytest.raises(DatasetError, match="dataset fingerprint .* differs"):
        ingest(spec, local, verify_spec("musdb18hq"))


def test_credentials_from_the_environment_never_leak(server, mp4_zip, tmp_path, monkeypatch, caplog):
    server.files["/records/1/files/MUSDB18-7-STEMS.zip"] = mp4_zip
    server.actions = ["drop", 500]
    monkeypatch.setenv(
        "TEST_MUSDB_URL", server.url("/records/1/files/MUSDB18-7-STEMS.zip") + "?token=SECRET-QUERY-TOKEN"
    )
    monkeypatch.setenv("TEST_MUSDB_TOKEN", "SECRET-BEARER-TOKEN")
    lock = tmp_path / "checksums.json"
    spec = AcquireSpec(
        source="musdb18-7s",
        url_env="TEST_MUSDB_URL",
        token_env="TEST_MUSDB_TOKEN",
        lock_file=lock,
        download=FAST,
        progress=False,
    )
    with caplog.at_level(logging.DEBUG):
        report = ingest(
            spec, tmp_path / "data" / "musdb18-7s", verify_spec("musdb18-7s"), report_path=tmp_path / "report.json"
        )
    assert all(r["authorization"] == "Bearer SECRET-BEARER-TOKEN" for r in server.requests)
    assert all(r["query"] == "token=SECRET-QUERY-TOKEN" for r in server.requests) and len(server.requests) == 3
    written = [lock.read_text(), (tmp_path / "report.json").read_text(), caplog.text]
    for text in written:
        assert "SECRET" not in text
    assert "retry" in caplog.text and "?<redacted>" in caplog.text
    assert report.archive["origin"].endswith("/records/1/files/MUSDB18-7-STEMS.zip?<redacted>")


def test_bearer_token_is_not_sent_to_another_host(server, wav_zip, tmp_path, monkeypatch):
    server.files["/storage/a.zip"] = wav_zip
    # 127.0.0.1 and localhost are different hosts to the client
    server.redirects["/a.zip"] = f"http://localhost:{server.port}/storage/a.zip"
    download(server.url("/a.zip"), tmp_path / "a.zip", options=FAST, token="SECRET-BEARER-TOKEN")
    assert [r["authorization"] for r in server.requests] == ["Bearer SECRET-BEARER-TOKEN", None]
    assert (tmp_path / "a.zip").read_bytes() == wav_zip


def test_missing_environment_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_URL_VAR", raising=False)
    spec = AcquireSpec(source="musdb18", url_env="NO_SUCH_URL_VAR", progress=False)
    with pytest.raises(DatasetError, match="NO_SUCH_URL_VAR"):
        ingest(spec, tmp_path / "musdb18")


def test_the_committed_lock_file_is_valid():
    lock = read_lock(Path(__file__).resolve().parents[1] / "datasets.lock.json")
    assert lock["version"] == 1 and isinstance(lock["sources"], dict)


def test_redact_url():
    assert (
        redact_url("https://user:pw@zenodo.org/records/1/files/a.zip?token=abc#x")
        == "https://zenodo.org/records/1/files/a.zip?<redacted>"
    )
    assert redact_url("https://zenodo.org/a.zip") == "https://zenodo.org/a.zip"


def test_seven_second_previews_come_from_musdbs_url():
    assert musdb_sample_url().endswith("MUSDB18-7-STEMS.zip")


# --------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------


def test_zip_with_a_missing_stem_names_track_and_stem(wav_root, tmp_path):
    track = track_names(TINY)["train"][1]
    archive = tmp_path / "broken.zip"
    archive.write_bytes(zip_dir(wav_root, skip={f"train/{track}/bass.wav"}))
    dest = tmp_path / "musdb18hq"
    with pytest.raises(DatasetError, match="missing stem file") as err:
        extract_archive(archive, dest, verify_spec("musdb18hq"), progress=False)
    assert f"track {track!r}" in str(err.value) and "stem 'bass'" in str(err.value) and str(archive) in str(err.value)
    assert not dest.exists() and not list(tmp_path.glob(".*partial*"))


def test_single_top_level_folder_and_names_without_utf8_flag(wav_root, tmp_path):
    archive = tmp_path / "nested.zip"
    archive.write_bytes(zip_dir(wav_root, prefix="musdb18hq/", utf8_flag=False))
    with zipfile.ZipFile(archive) as zf:  # the names really are stored without the flag
        assert not any(info.flag_bits & 0x800 for info in zf.infolist())
    report = extract_archive(archive, tmp_path / "out", verify_spec("musdb18hq"), progress=False)
    assert report.subsets["test"] == [NON_ASCII] and (tmp_path / "out" / "test" / NON_ASCII / "mixture.wav").is_file()


@pytest.mark.parametrize("member", ["../evil.wav", "/etc/evil.wav", "train/../../evil.wav", "train\\..\\evil.wav"])
def test_zip_slip_is_refused(tmp_path, member):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/A - B/mixture.wav", b"x")
        zf.writestr(zipfile.ZipInfo(member), b"evil")
    with pytest.raises(DatasetError, match="zip slip"):
        extract_archive(archive, tmp_path / "out", verify_spec("musdb18hq"), progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("evil.wav"))


def test_interrupted_extraction_leaves_nothing(wav_zip, tmp_path, monkeypatch):
    archive = tmp_path / "musdb18hq.zip"
    archive.write_bytes(wav_zip)
    calls = []

    def interrupted(src, dst, length=0):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(src, dst, length)

    real = shutil.copyfileobj
    monkeypatch.setattr("demixbench.data.acquire.archive.shutil.copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive, tmp_path / "out", verify_spec("musdb18hq"), progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*partial*"))


def test_atomic_directory_removes_leftovers_and_never_clobbers(tmp_path):
    stale = tmp_path / ".out.partial-1"  # left by a killed run
    (stale / "train").mkdir(parents=True)
    with atomic_directory(tmp_path / "out") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.partial-") and list(tmp.iterdir()) == []
        assert not stale.exists()
        (tmp / "file").write_text("x")
    assert (tmp_path / "out" / "file").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(FileExistsError, match="appeared"):
        with atomic_directory(tmp_path / "late"):
            (tmp_path / "late").mkdir()  # another process got there first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late", "out"]


def test_synthetic_ingest(tmp_path):
    names = track_names(TINY)
    verify = VerifySpec.for_synthetic(TINY, validation=names["train"][-1:])
    report = ingest(AcquireSpec(source="synthetic", synthetic=TINY, progress=False), tmp_path / "synthetic", verify)
    assert report.validation == names["train"][-1:]
    assert report.subsets == track_names(TINY) and (tmp_path / "synthetic" / "train").is_dir()
    assert not list(tmp_path.glob(".*partial*"))
