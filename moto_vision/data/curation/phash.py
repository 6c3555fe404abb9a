"""Perceptual hashing (DCT pHash) and near-duplicate search.

Written here with scipy rather than taken from the ``imagehash`` package: the algorithm is a dozen lines,
and ``imagehash`` would add two dependencies (it pulls in PyWavelets) for that.

The hash follows the classic pHash recipe: reduce the image to a 32x32 grayscale thumbnail, take its 2-D
DCT-II, keep the 8x8 lowest frequencies and set one bit per coefficient that lies above their median. Two
hashes of the same picture after resizing, recompression or mild colour changes differ in a few bits; two
unrelated pictures differ in about 32 of the 64.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.fft import dctn

__all__ = ["hamming", "near_duplicate_pairs", "phash"]

HASH_SIZE = 8
THUMB_SIZE = 32
_BIT_WEIGHTS = (np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)).reshape(HASH_SIZE, HASH_SIZE)


def phash(thumbnail: np.ndarray) -> int:
    """64-bit DCT perceptual hash of a ``(32, 32)`` grayscale thumbnail (any float or integer scale).

    Args:
        thumbnail: the image reduced to ``32 x 32`` luminance values (e.g. with an anti-aliased resize).

    Returns:
        The hash as an unsigned 64-bit integer (Python ``int``).
    """
    thumbnail = np.asarray(thumbnail, dtype=np.float64)
    if thumbnail.shape != (THUMB_SIZE, THUMB_SIZE):
        raise ValueError(f"phash expects a ({THUMB_SIZE}, {THUMB_SIZE}) thumbnail, got {thumbnail.shape}.")
    low = dctn(thumbnail, type=2, norm="ortho")[:HASH_SIZE, :HASH_SIZE]
    bits = low > np.median(low)
    return int(np.bitwise_or.reduce(_BIT_WEIGHTS[bits])) if bits.any() else 0


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (int(a) ^ int(b)).bit_count()


def near_duplicate_pairs(
    hashes: np.ndarray, max_distance: int, chunk: int | None = None
) -> Iterator[tuple[int, int, int]]:
    """All index pairs ``(i, j, distance)`` with ``i < j`` whose hashes differ in at most ``max_distance`` bits.

    A brute-force comparison in blocks of rows, vectorised with ``numpy.bitwise_count``: about 4 million hash
    pairs (~40 MB) per block, 10^4 hashes in about a second. Identical hashes (distance 0) are included.

    Args:
        hashes: ``(N,)`` uint64 array.
        max_distance: largest Hamming distance reported.
        chunk: rows compared per block (default: ``2**22 // N``).
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    chunk = chunk or max(1, 2**22 // max(1, n))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = hashes[start:stop, None] ^ hashes[None, :]
        distance = np.bitwise_count(block)
        rows, cols = np.nonzero(distance <= max_distance)
        rows = rows + start
        keep = cols > rows
        for i, j in zip(rows[keep].tolist(), cols[keep].tolist()):
            yield i, j, int(distance[i - start, j])
