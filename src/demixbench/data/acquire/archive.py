"""Extraction: a zip archive to a verified dataset directory, atomically.

Extraction goes into a hidden temporary directory next to the destination, is verified there
(verify.verify_dataset) and renamed into place only when complete: an interrupted or failed run
leaves nothing at the destination, a successful one the complete dataset. Zip members with
absolute paths, ``..``, backslashes or symlinks are refused (zip slip).
"""

from __future__ import annotations

import logging
import re
import shutil
import unicodedata
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from demixbench.data.acquire.checksums import MIB
from demixbench.data.layout import DatasetError
from demixbench.data.verify import DatasetReport, VerifySpec, verify_dataset
from demixbench.fileio import atomic_directory

log = logging.getLogger(__name__)

_JUNK = re.compile(r"(^|/)(__MACOSX(/|$)|\.DS_Store$|\._[^/]*$|Thumbs\.db$)")


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name; UTF-8 names stored without the UTF-8 flag are recovered."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass  # really cp437
    return unicodedata.normalize("NFC", name)


def _safe_member(archive: Path, name: str, info: zipfile.ZipInfo) -> PurePosixPath:
    """Refuse names that could write outside the extraction directory (zip slip) and symlinks."""
    bad = (
        name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or re.match(r"^[A-Za-z]:", name) is not None
        or any(part == ".." for part in name.split("/"))
    )
    if bad:
        raise DatasetError(f"{archive}: refusing member {name!r}: absolute path, '..' or backslash (zip slip)")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise DatasetError(f"{archive}: refusing member {name!r}: symbolic link")
    return PurePosixPath(name)


def _layout_prefix(archive: Path, names: list[str]) -> str:
    """ "" when train/ and test/ are at the top of the zip, "<folder>/" when inside one folder."""
    tops = {name.split("/", 1)[0] for name in names}
    if tops & {"train", "test"}:
        return ""
    if len(tops) == 1:
        top = next(iter(tops))
        inner = {name.split("/", 2)[1] for name in names if name.count("/") >= 1}
        if inner & {"train", "test"}:
            return f"{top}/"
    raise DatasetError(
        f"{archive}: unexpected layout: expected train/ and test/ at the top of the zip or inside one folder, "
        f"found top-level entries {sorted(tops)[:5]}"
    )


def extract_archive(archive: Path, dest: Path, verify: VerifySpec, progress: bool = True) -> DatasetReport:
    """Extract the zip `archive` to `dest` and verify it; `dest` appears only when both succeed.

    Extracts the members under train/ and test/ (at the top of the zip or inside a single
    folder) into ``.<dest name>.partial-<pid>`` next to `dest` (fileio.atomic_directory), verifies
    that directory with verify_dataset(), then renames it to `dest`. On any failure the temporary
    directory is removed and `dest` is left untouched.

    Raises:
        DatasetError naming the archive (bad zip, zip slip, layout, disk space) or the
        track/stem/file at fault (verification; paths shown as ``<archive>!/subset/...``).
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise DatasetError(f"{dest}: already exists; remove it to extract again (or verify it in place)")
    with atomic_directory(dest) as tmp:
        try:
            zf = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as err:
            raise DatasetError(f"{archive}: not a readable zip archive ({err}); download it again") from None
        with zf:
            members = []
            for info in zf.infolist():
                name = _member_name(info)
                path = _safe_member(archive, name, info)
                if info.is_dir() or _JUNK.search(name):
                    continue
                members.append((info, name, path))
            if not members:
                raise DatasetError(f"{archive}: the zip is empty")
            prefix = _layout_prefix(archive, [name for _, name, _ in members])
            wanted = [
                (info, name[len(prefix) :])
                for info, name, _ in members
                if name.startswith(prefix) and name[len(prefix) :].split("/", 1)[0] in ("train", "test")
            ]
            skipped = len(members) - len(wanted)
            if skipped:
                log.info("%s: ignoring %d members outside train/ and test/", archive, skipped)
            needed = sum(info.file_size for info, _ in wanted)
            free = shutil.disk_usage(dest.parent).free
            if needed > free:
                raise DatasetError(
                    f"{dest.parent}: {needed / 1e9:.1f} GB needed to extract {archive.name}, {free / 1e9:.1f} GB free"
                )
            root = tmp.resolve()
            with tqdm(
                total=needed,
                desc=f"extract {archive.name}",
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
            ) as bar:
                for info, relative in wanted:
                    target = tmp / relative
                    if not target.resolve().is_relative_to(root):  # belt and braces after _safe_member
                        raise DatasetError(
                            f"{archive}: refusing member {relative!r}: it would leave the extraction directory"
                        )
                    target.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        with zf.open(info) as src, open(target, "wb") as out:
                            shutil.copyfileobj(src, out, MIB)
                    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                        raise DatasetError(
                            f"{archive}: member {prefix}{relative!r} is damaged ({err}); download the archive again"
                        ) from None
                    bar.update(info.file_size)
        try:
            report = verify_dataset(tmp, verify, progress=progress)
        except DatasetError as err:
            raise DatasetError(str(err).replace(str(tmp), f"{archive}!")) from None
        if dest.exists():
            raise DatasetError(f"{dest}: appeared while extracting; not overwritten")
    log.info("extracted %s to %s", archive, dest)
    return report.with_root(dest)
