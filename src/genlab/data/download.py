"""Fetch official data set files: checksum-verified, resumable, never half-written."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from genlab.errors import DataError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Remote:
    """One official file: where it lives and its published MD5."""

    url: str
    md5: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(remote: Remote, dest: Path, retries: int = 3, timeout: float = 30.0) -> Path:
    """Download `remote` to `dest`, verified against its MD5; only a verified file ever appears at `dest`.

    Bytes go to `dest.part` first; an interrupted download resumes from there (HTTP Range) on the next try.
    """
    if dest.exists() and md5_of(dest) == remote.md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(retries):
        try:
            _stream_to(remote.url, part, timeout)
            break
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            last_error = err
            if isinstance(err, urllib.error.HTTPError) and err.code == 416:  # stale .part larger than the file
                part.unlink(missing_ok=True)
            if attempt + 1 < retries:
                time.sleep(2**attempt)
    else:
        raise DataError(f"could not download {remote.url}: {last_error}") from last_error
    actual = md5_of(part)
    if actual != remote.md5:
        part.unlink(missing_ok=True)
        raise DataError(f"{remote.url}: checksum mismatch (md5 {actual}, expected {remote.md5}); the download was deleted")
    os.replace(part, dest)
    return dest


def _stream_to(url: str, part: Path, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        resumed = have and getattr(response, "status", 200) == 206
        with open(part, "ab" if resumed else "wb") as out:
            shutil.copyfileobj(response, out, CHUNK)


def extract_tar(archive: Path, into: Path) -> None:
    """Extract a tar archive into `into` atomically, refusing members that escape it (`..`, absolute paths, links out)."""
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into, prefix=".extract-") as tmp:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except tarfile.FilterError as err:
            raise DataError(f"{archive}: refusing to extract, unsafe member ({err})") from err
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DataError(f"{archive}: corrupt or truncated archive ({err})") from err
        for entry in Path(tmp).iterdir():
            target = into / entry.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(entry, target)


def ensure_files(dataset: str, folder: Path, required: list[str], remotes: list[Remote], download: bool, fetch_into) -> None:
    """Make sure `required` files exist in `folder`; download them when allowed, else say exactly what is missing.

    `fetch_into(folder)` performs the data set's own download (fetch + extract); it runs only when files are missing.
    """
    if _missing(folder, required) and download:
        try:
            fetch_into(folder)
        except DataError as err:
            missing = _missing(folder, required)
            raise DataError(_missing_message(dataset, folder, missing, remotes, f"Download failed: {err}")) from err
    missing = _missing(folder, required)
    if missing:
        raise DataError(_missing_message(dataset, folder, missing, remotes, "data.download=false, so nothing was fetched."))


def _missing(folder: Path, required: list[str]) -> list[str]:
    return [name for name in required if not (folder / name).is_file()]


def _missing_message(dataset: str, folder: Path, missing: list[str], remotes: list[Remote], why: str) -> str:
    sources = "\n".join(f"  {r.url}  (md5 {r.md5})" for r in remotes)
    return (
        f"{dataset}: missing {', '.join(missing)} in {folder.resolve()} (data.data_dir={folder.parent.resolve()}). {why}\n"
        f"Get the official files from:\n{sources}\n"
        f"and place them there, or run online with data.download=true."
    )
