"""Named arrays in an .npz file under any name: `np.savez(path, **arrays)` breaks on an array named
`file` (savez's own argument) or `allow_pickle`, which model inputs and outputs may well be called. np.load
reads the result as usual (`data[name]`, `data.files`)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to an uncompressed .npz at path, one `NAME.npy` member per array, no pickles."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, array in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
