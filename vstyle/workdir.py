"""The work folder of a run: finished frames as PNGs and a manifest, so a run can resume."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import VStyleError, again, opt
from .media import png_bytes

VERSION = 2  # bump when old work folders become unusable (2: untagged HD video read as BT.709)
LOCK = ".lock"  # held by the run using the folder


def fingerprint(path: Path, files: list[Path] | None = None) -> str:
    """Cheap identity of an input: name, size and mtime of the file, or of `files` (a folder's
    frames: a .DS_Store or a report written there must not restart a long run)."""
    if not path.is_dir():
        files = [path]
    elif not files:
        files = [p for p in path.iterdir() if p.is_file()]
    h = hashlib.sha1()
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


# what a manifest's entries are, for the line that says why a run starts fresh
MANIFEST_NAMES = {"version": "vstyle's work folder version", "input": "the input",
                  "input_fingerprint": "the input file", "start": "the first frame",
                  "frames": "the number of frames", "styles": "the style images",
                  "frame_size": "the frame size"}


def changes(old: dict, new: dict) -> str:
    """What differs between two manifests, as a user would name it (options as the user gives
    them: flags or keywords)."""
    names = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "options" and isinstance(a, dict) and isinstance(b, dict):
            names += [opt(o) for o in sorted(a.keys() | b.keys())
                      if a.get(o) != b.get(o)]
        else:
            names.append(opt(key) if key == "fps" else MANIFEST_NAMES.get(key, key))
    return ", ".join(names) or "the run"


def file_hash(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temporary name beside `path`, then rename: never a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal rights
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_frame(path: Path) -> np.ndarray:
    """A stylized frame that vstyle wrote (PNG), as RGB uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VStyleError(f"work frame {path} is unreadable: run again with "
                          f"{opt('restart', True)} (or delete {path.parent})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class WorkDir:
    """`NNNNN.png` per finished frame, `frames.jsonl` with their stats, `manifest.json`."""

    def __init__(self, path: Path, manifest: dict, restart: bool = False):
        self.path = path
        self.notice = ""
        if path.exists() and not path.is_dir():
            raise VStyleError(f"work folder {path} is a file: pass {opt('work_dir')} with a new or "
                              "empty folder")
        # the outermost folder this run makes (the output's folder too, when the work folder
        # is beside the output): removed with the work folder if nothing else was put there
        # (absolute, with any .. taken out: path's own parents as written could name others)
        self._full = Path(os.path.abspath(path))
        self.made = next((p for p in reversed([self._full, *self._full.parents])
                          if not p.exists()), None)
        # A run's folder: wait for no one (the same command started twice: one runs). A
        # foreign one (`--work-dir .`) gets no lock file before it is refused.
        self._lock = None
        if (path / LOCK).exists():
            with suppress(OSError):  # unreadable: the checks below say what is wrong
                self._lock = take_lock(path / LOCK)
        # The folder is deleted at the end: never take over one that holds someone's files,
        # nor count their NNNNN.png as finished frames.
        if self._read_manifest() is None and path.is_dir() and \
                any(p.name != LOCK for p in path.iterdir()):
            self.close()
            raise VStyleError(f"work folder {path} already holds files that are not a vstyle "
                              f"run's: pass {opt('work_dir')} with a new or empty folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
            if self._lock is None:
                self._lock = take_lock(path / LOCK)
            old = self._read_manifest()
            if old is not None and (restart or old != manifest):
                self.notice = (f"{opt('restart', True)}: starting fresh" if restart else
                               f"{changes(old, manifest)} changed since the last run: "
                               "starting fresh")
                self._clear()
            if not (path / "manifest.json").exists():
                write_atomic(path / "manifest.json", json.dumps(manifest, indent=1).encode())
        except OSError as e:
            raise VStyleError(f"cannot create work folder {path} ({e.strerror}): "
                              f"pass {opt('work_dir', 'DIR', placeholder=True)} on a writable "
                              "disk") from None
        self.done = self._count_done()

    def _read_manifest(self) -> dict | None:
        """The manifest of an earlier run of ours, or None."""
        try:
            manifest = json.loads((self.path / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and "version" in manifest else None

    def frame_path(self, index: int) -> Path:
        return self.path / f"{index + 1:05d}.png"

    def _count_done(self) -> int:
        n = 0
        while self.frame_path(n).exists():
            n += 1
        return n

    def save(self, index: int, image: np.ndarray, stats: dict) -> None:
        try:
            write_atomic(self.frame_path(index), png_bytes(image))
            with open(self.path / "frames.jsonl", "a") as f:
                f.write(json.dumps({"frame": index + 1, **stats}) + "\n")
        except OSError as e:  # disk full, the folder removed under us
            raise VStyleError(f"cannot save frame {index + 1} in {self.path} ({e.strerror or e}): "
                              "free some disk space or pass "
                              f"{opt('work_dir', 'DIR', placeholder=True)}, then "
                              f"{again('to resume')}") from None
        self.done = max(self.done, index + 1)

    def load(self, index: int) -> np.ndarray:
        return read_frame(self.frame_path(index))

    def frames(self, n: int) -> Iterator[np.ndarray]:
        for i in range(n):
            yield self.load(i)

    def stats(self, n: int) -> list[dict]:
        """Per-frame stats of frames 1..n, the latest line per frame (a resumed frame may appear
        twice; a rerun with fewer frames leaves later ones in the file)."""
        by_frame: dict[int, dict] = {}
        try:
            for line in (self.path / "frames.jsonl").read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                by_frame[entry["frame"]] = entry
        except OSError:
            pass
        return [by_frame[k] for k in sorted(by_frame) if k <= n]

    def _clear(self) -> None:
        # the manifest last: a folder left half cleared is still known as ours
        for p in sorted(self.path.iterdir(), key=lambda p: p.name == "manifest.json"):
            if p.name == LOCK:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    def remove(self) -> None:
        _delete(self.path, self._lock)
        self._lock = None
        if self.made is None:
            return
        for folder in self._full.parents:  # innermost first
            if not folder.is_relative_to(self.made):
                break
            with suppress(OSError):  # not empty: someone put something there
                folder.rmdir()

    def close(self) -> None:
        """Let another run use the folder (a process that ends lets go of it anyway)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def remove_idle(path: Path) -> bool:
    """Delete a run's work folder unless a live run holds it; whether it was deleted."""
    lock = None
    if (path / LOCK).exists():
        try:
            lock = take_lock(path / LOCK)
        except VStyleError:
            return False
    _delete(path, lock)
    return True


def _delete(path: Path, lock) -> None:
    """Delete a work folder, then let go of its lock (on Windows first: it deletes no open
    file; elsewhere after, so no other run takes the folder before it is gone)."""
    if lock is not None and os.name == "nt":
        lock.close()
    shutil.rmtree(path, ignore_errors=True)
    if lock is not None:
        lock.close()


def take_lock(path: Path):
    """An open file holding an exclusive lock on `path`, which the system drops when the
    process ends however it ends (no stale lock to clean up after a crash); None where the
    file system has no locks (some network mounts): the run goes on unguarded."""
    f = open(path, "a+b")
    try:
        if os.name == "nt":
            import msvcrt
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        if isinstance(e, BlockingIOError) or e.errno in (errno.EACCES, errno.EDEADLK):
            raise VStyleError(f"another vstyle run is working in {path.parent} (the same "
                              f"output or {opt('work_dir')}): wait for it to finish, or stop "
                              "it and run again to resume") from None
        return None
    return f
