"""Content-addressed model cache: files named by sha256, a size cap with LRU eviction, atomic writes."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from agent.errors import CacheFull, InvalidDigest, UploadRejected

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
STALE_PART_SECONDS = 3600


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:   # an upload finished or was dropped meanwhile
        return 0


def check_digest(digest: str) -> str:
    """Return digest if it is a sha256 hex string, else raise InvalidDigest."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidDigest(
            f"'{digest[:80]}' is not a model digest: expected the sha256 of the file as 64 "
            "lowercase hex characters")
    return digest


@dataclass
class StoredModel:
    """What an upload left in the cache."""

    digest: str
    size_bytes: int
    already_present: bool
    bytes_received: int


class ModelCache:
    """Models stored as `<root>/models/<sha256>`; in-progress uploads live in `<root>/tmp/`."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.models = self.root / "models"
        self.tmp = self.root / "tmp"
        self.models.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pins: dict[str, int] = {}
        self._reserved = 0      # bytes announced by the uploads in progress (their headers)
        self._clean_stale_parts()

    def _clean_stale_parts(self) -> None:
        """Remove the partial uploads of agents no longer running (named PID-UUID.part) and any older than
        an hour (another live agent sharing this cache keeps its own)."""
        now = time.time()
        for part in self.tmp.glob("*.part"):
            owner = part.name.split("-", 1)[0]
            try:
                if not (owner.isdigit() and psutil.pid_exists(int(owner))) or now - part.stat().st_mtime > STALE_PART_SECONDS:
                    part.unlink()
            except FileNotFoundError:
                pass

    def path(self, digest: str) -> Path:
        """Path of a cached model (which may not exist)."""
        return self.models / check_digest(digest)

    def has(self, digest: str) -> bool:
        """True if the model is in the cache."""
        return self.path(digest).is_file()

    def missing(self, digests: Iterable[str]) -> list[str]:
        """The digests (validated) that the cache lacks, in request order."""
        return [d for d in (check_digest(x) for x in digests) if not self.has(d)]

    def total_bytes(self) -> int:
        """Bytes held by complete models and by uploads in progress."""
        return sum(_size(p) for p in [*self._entries(), *self.tmp.glob("*.part")])

    def _entries(self) -> list[Path]:
        return [p for p in self.models.iterdir() if p.is_file() and _DIGEST.fullmatch(p.name)]

    def touch(self, digest: str) -> None:
        """Mark a model as just used (LRU order is file mtime)."""
        os.utime(self.path(digest))

    @contextmanager
    def pinned(self, digest: str) -> Iterator[Path]:
        """Keep a model from eviction while a job uses it."""
        with self._lock:
            if not self.has(digest):
                raise FileNotFoundError(digest)
            self._pins[digest] = self._pins.get(digest, 0) + 1
            self.touch(digest)
        try:
            yield self.path(digest)
        finally:
            with self._lock:
                self._pins[digest] -= 1
                if not self._pins[digest]:
                    del self._pins[digest]

    def _make_room(self, size: int) -> None:
        """Evict least recently used, unpinned models until size more bytes fit; caller holds the lock."""
        entries = sorted(self._entries(), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        for p in entries:
            if total + size <= self.max_bytes:
                break
            if p.name in self._pins:
                continue
            total -= p.stat().st_size
            log.info("evicting %s (%d bytes) from the model cache", p.name, p.stat().st_size)
            p.unlink()
        if total + size > self.max_bytes:
            raise CacheFull(
                f"the model cache is full of models in use ({total} of {self.max_bytes} bytes); "
                "wait for running jobs to finish or start farm-agent with a larger --cache-max-mb")

    def store(self, digest: str, size: int, chunks: Iterable[bytes]) -> StoredModel:
        """Write an upload atomically after checking its size and digest; nothing partial is kept."""
        check_digest(digest)
        if size < 0:
            raise UploadRejected(f"upload header gives a negative size ({size})")
        if size > self.max_bytes:
            raise CacheFull(
                f"the model is {size} bytes, over this agent's cache cap of {self.max_bytes} bytes; "
                "start farm-agent with a larger --cache-max-mb or send a smaller model")
        if self.has(digest):
            received = sum(len(c) for c in chunks)  # drain; a client that knows sends none
            self.touch(digest)
            return StoredModel(digest, size, True, received)
        # nothing is evicted before the bytes have arrived and proved to be the model (a header alone
        # declaring the cap's size must not empty the cache): room is made at commit. Uploads in progress
        # reserve their announced size, so together with the models in use they never pass the cap.
        self._reserve(size)
        try:
            return self._receive(digest, size, chunks)
        finally:
            with self._lock:
                self._reserved -= size

    def _reserve(self, size: int) -> None:
        with self._lock:
            pinned = sum(_size(self.models / d) for d in self._pins)
            if pinned + self._reserved + size > self.max_bytes:
                held = (f"uploads in progress hold {self._reserved} and models in use {pinned} bytes"
                        if self._reserved else f"it is full of models in use ({pinned} bytes)")
                raise CacheFull(f"the model cache cannot take {size} more bytes now: {held} of its "
                                f"{self.max_bytes}-byte cap; retry when they finish, or start farm-agent with a "
                                "larger --cache-max-mb")
            self._reserved += size

    def _receive(self, digest: str, size: int, chunks: Iterable[bytes]) -> StoredModel:
        """The bytes of one upload into a part file, checked, then renamed into the cache."""
        part = self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}.part"
        hasher = hashlib.sha256()
        received = 0
        try:
            with open(part, "wb") as f:
                for chunk in chunks:
                    received += len(chunk)
                    if received > size:
                        raise UploadRejected(
                            f"upload sent more than the {size} bytes its header announced; "
                            "the client must send the whole file and its exact size")
                    hasher.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if received != size:
                raise UploadRejected(
                    f"upload ended after {received} of {size} bytes; the transfer was cut short, send it again")
            actual = hasher.hexdigest()
            if actual != digest:
                raise UploadRejected(
                    f"upload digest mismatch: the header says sha256 {digest} but the bytes hash to "
                    f"{actual}; the file changed or was corrupted in transit, upload it again")
            with self._lock:
                self._make_room(size)
                os.replace(part, self.path(digest))
            log.info("stored model %s (%d bytes)", digest, size)
            return StoredModel(digest, size, False, received)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                free = shutil.disk_usage(self.root).free
                raise CacheFull(f"cache disk full: {free} bytes free under {self.root}, {size} needed; free "
                                "space there or start farm-agent with another --cache-dir") from None
            raise
        finally:
            part.unlink(missing_ok=True)
