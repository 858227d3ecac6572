"""The few CUDA runtime calls the TensorRT backend makes (device buffers, one stream, async copies), through
ctypes on the libcudart that the CUDA toolkit or JetPack already has: no Python binding to install, so no
cuda-python version to match to the JetPack's CUDA (cuda.bindings needs cuda-python >= 12.6.1, which JetPack
6.1 does not ship). Every return code is checked: a failure is a JobError naming the call and CUDA's
own description, never a later TypeError."""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
from pathlib import Path

from agent.errors import JobError

CUDART_ENV = "EDGEFARM_CUDART"        # a path to libcudart.so that overrides the search
H2D, D2H = 1, 2                       # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost
CUDA_ERROR_MEMORY_ALLOCATION = 2
_PLACES = ("/usr/local/cuda/lib64/libcudart.so*", "/usr/local/cuda/targets/*/lib/libcudart.so*",
           "/usr/lib/aarch64-linux-gnu/libcudart.so*", "/usr/lib/x86_64-linux-gnu/libcudart.so*")


def find_cudart() -> str | None:
    """libcudart's path: $EDGEFARM_CUDART, the loader's search, the toolkit's and JetPack's folders, then the
    nvidia-cuda-runtime wheel (pip's CUDA runtime for x86 GPUs); None when there is none."""
    if os.environ.get(CUDART_ENV):
        return os.environ[CUDART_ENV]
    found = ctypes.util.find_library("cudart")
    if found:
        return found
    candidates = [p for pattern in _PLACES for p in sorted(glob.glob(pattern))]
    spec = importlib.util.find_spec("nvidia.cuda_runtime") if importlib.util.find_spec("nvidia") else None
    if spec and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidates += sorted(glob.glob(str(Path(root) / "lib" / "libcudart.so*")))
    return candidates[0] if candidates else None


class CudaRuntime:
    """cudaMalloc / cudaFree / cudaMemcpyAsync / cudaStream* with checked return codes."""

    def __init__(self, path: str | None = None) -> None:
        path = path or find_cudart()
        if path is None:
            raise JobError("BACKEND_UNAVAILABLE", "the CUDA runtime (libcudart.so) was not found; install the "
                                                  f"CUDA toolkit or JetPack, or set {CUDART_ENV} to its path")
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as exc:
            raise JobError("BACKEND_UNAVAILABLE", f"the CUDA runtime {path} does not load ({exc}); set "
                                                  f"{CUDART_ENV} to a libcudart.so that matches the driver") from exc
        self.path = path
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p
        self.lib.cudaGetErrorName.restype = ctypes.c_char_p
        self.lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                             ctypes.c_void_p]
        self.lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]

    def check(self, call: str, code: int) -> None:
        """Raise a JobError for a non-zero cudaError_t returned by `call`."""
        if code == 0:
            return
        name = (self.lib.cudaGetErrorName(code) or b"?").decode()
        text = (self.lib.cudaGetErrorString(code) or b"?").decode()
        kind = "OUT_OF_MEMORY" if code == CUDA_ERROR_MEMORY_ALLOCATION else "BACKEND_UNAVAILABLE"
        raise JobError(kind, f"CUDA {call} failed: {text} ({name} = {code})")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self.check("cudaMalloc", self.lib.cudaMalloc(ctypes.byref(ptr), max(int(nbytes), 1)))
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        self.check("cudaFree", self.lib.cudaFree(ptr))

    def stream_create(self) -> int:
        stream = ctypes.c_void_p()
        self.check("cudaStreamCreate", self.lib.cudaStreamCreate(ctypes.byref(stream)))
        return int(stream.value or 0)

    def stream_destroy(self, stream: int) -> None:
        self.check("cudaStreamDestroy", self.lib.cudaStreamDestroy(stream))

    def copy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self.check("cudaMemcpyAsync", self.lib.cudaMemcpyAsync(dst, src, nbytes, kind, stream))

    def synchronize(self, stream: int) -> None:
        self.check("cudaStreamSynchronize", self.lib.cudaStreamSynchronize(stream))
