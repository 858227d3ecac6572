"""ModelCache on its own: atomic stores, verification, cap and LRU eviction."""

from __future__ import annotations

import hashlib
import os

import pytest

from agent.cache import ModelCache
from agent.errors import CacheFull, InvalidDigest, UploadRejected


def blob(n: int, fill: bytes = b"x") -> tuple[str, bytes]:
    data = fill * n
    return hashlib.sha256(data).hexdigest(), data


def chunks(data: bytes, size: int = 7):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def leftovers(cache: ModelCache) -> list[str]:
    return sorted(p.name for p in cache.tmp.iterdir())


def test_store_verifies_and_renames_atomically(tmp_path):
    cache = ModelCache(tmp_path, 1000)
    digest, data = blob(100)
    stored = cache.store(digest, len(data), chunks(data))
    assert not stored.already_present and stored.bytes_received == 100
    assert cache.path(digest).read_bytes() == data and leftovers(cache) == []
    again = cache.store(digest, len(data), iter(()))
    assert again.already_present and again.bytes_received == 0


@pytest.mark.parametrize("declared, sent, error, words", [
    (100, blob(100, b"y")[1], UploadRejected, "digest mismatch"),
    (100, blob(60)[1], UploadRejected, "cut short"),
    (100, blob(130)[1], UploadRejected, "more than the 100 bytes"),
    (5000, blob(100)[1], CacheFull, "over this agent's cache cap"),
    (-1, b"", UploadRejected, "negative size"),
])
def test_bad_uploads_leave_nothing(tmp_path, declared, sent, error, words):
    cache = ModelCache(tmp_path, 1000)
    digest = blob(100)[0]
    with pytest.raises(error, match=words):
        cache.store(digest, declared, chunks(sent))
    assert leftovers(cache) == [] and not cache.has(digest)


@pytest.mark.parametrize("digest", ["../../etc/passwd", "A" * 64, "abc", "0" * 63 + "/", ""])
def test_digests_that_are_not_sha256_hex_are_refused(tmp_path, digest):
    cache = ModelCache(tmp_path, 1000)
    with pytest.raises(InvalidDigest):
        cache.path(digest)
    with pytest.raises(InvalidDigest):
        cache.missing([digest])


def test_lru_eviction_skips_pinned_models(tmp_path):
    cache = ModelCache(tmp_path, 250)
    (da, a), (db, b), (dc, c) = blob(100, b"a"), blob(100, b"b"), blob(100, b"c")
    cache.store(da, 100, [a])
    cache.store(db, 100, [b])
    os.utime(cache.path(da), (1, 1))
    os.utime(cache.path(db), (2, 2))  # a is least recently used
    with cache.pinned(da):  # ... but in use
        cache.store(dc, 100, [c])
    assert cache.missing([da, db, dc]) == [db]
    assert cache.total_bytes() == 200


def test_full_of_pinned_models_is_refused(tmp_path):
    cache = ModelCache(tmp_path, 150)
    (da, a), (db, b) = blob(100, b"a"), blob(100, b"b")
    cache.store(da, 100, [a])
    with cache.pinned(da), pytest.raises(CacheFull, match="full of models in use \\(100 bytes\\) of its 150-byte cap"):
        cache.store(db, 100, [b])
    assert leftovers(cache) == []


def test_stale_partial_files_are_removed_at_start(tmp_path):
    import subprocess
    import sys

    cache = ModelCache(tmp_path, 100)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = os.getpid()
    old, fresh, orphan = (cache.tmp / f"{live}-old.part", cache.tmp / f"{live}-fresh.part",
                          cache.tmp / f"{dead.stdout.strip()}-orphan.part")
    for part in (old, fresh, orphan):
        part.write_bytes(b"x")
    os.utime(old, (1, 1))
    assert cache.total_bytes() == 3   # uploads in progress count toward the cache size
    ModelCache(tmp_path, 100)
    # kept: a live agent's upload in progress; gone: an hour-old one and one whose agent died
    assert leftovers(cache) == [fresh.name]

def test_a_relative_cache_folder_works(start_agent, conv_onnx, tmp_path, monkeypatch):
    """`farm-agent serve --cache-dir agent-cache`: the runners (started in job folders) still find the
    models; the folder is resolved against the agent's working directory when it starts."""
    from controller.measure.api import bench
    from controller.measure.settings import MeasureSettings

    monkeypatch.chdir(tmp_path)
    client, _ = start_agent("--cache-dir", "agent-cache")
    res = bench(conv_onnx, client, MeasureSettings(threads=1, warmup=1, min_iterations=5, min_seconds=0.0))
    assert res.iterations >= 5 and (tmp_path / "agent-cache" / "models").is_dir()
