"""The TensorRT backend's engine code against the real Python bindings of TensorRT 8.6, 10.3 and 11.4 (the
wheels `make setup` unpacks: scripts/fetch_trt_bindings.py), and its CUDA runtime against the real libcudart,
all without a GPU. tests/agent/trt_surface.py says how: every attribute the code touches must exist in that
version's binding, every call returns what the binding's signature declares."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.backends.cuda_runtime import CudaRuntime, find_cudart
from agent.errors import JobError

BINDINGS = Path(sys.prefix) / "share" / "edgefarm-trt"
SURFACE = Path(__file__).with_name("trt_surface.py")
# the entry points TensorRT's bindings import from libnvinfer / libnvonnxparser / libnvinfer_plugin (and
# 8.x's libnvparsers): `nm -D --undefined-only tensorrt.so` on each wheel
ENTRY_POINTS = ("createInferBuilder_INTERNAL", "createInferRefitter_INTERNAL", "createInferRuntime_INTERNAL",
                "createNvOnnxParserRefitter_INTERNAL", "createNvOnnxParser_INTERNAL", "getBuilderPluginRegistry",
                "getNvOnnxParserVersion", "getPluginRegistry", "initLibNvInferPlugins",
                "_ZN11nvuffparser15createUffParserEv", "_ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi",
                "_ZN14nvcaffeparser117createCaffeParserEv", "_ZN14nvcaffeparser123shutdownProtobufLibraryEv")
LIBRARIES = ("libnvinfer", "libnvonnxparser", "libnvinfer_plugin", "libnvparsers")


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> Path:
    """Shared libraries named as TensorRT's, exporting its entry points (returning NULL, never called)."""
    if sys.version_info[:2] != (3, 11) or not sys.platform.startswith("linux"):
        pytest.skip("the unpacked TensorRT bindings are CPython 3.11 x86-64 wheels")
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler here to build the stand-ins for TensorRT's libraries")
    out = tmp_path_factory.mktemp("trt-libs")
    (out / "stub.c").write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in ENTRY_POINTS))
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(out / "libstub.so"), str(out / "stub.c")], check=True)
    for lib in LIBRARIES:
        for soname in (8, 10, 11):
            (out / f"{lib}.so.{soname}").symlink_to("libstub.so")
    return out


def surface(version: str, libs: Path) -> dict:
    bindings = BINDINGS / version
    if not (bindings / "tensorrt_bindings").is_dir():
        pytest.skip(f"TensorRT {version}'s bindings are not in {BINDINGS}: run `make setup` "
                    "(scripts/fetch_trt_bindings.py downloads them from PyPI)")
    proc = subprocess.run([sys.executable, str(SURFACE), str(bindings)], capture_output=True, text=True,
                          env={"LD_LIBRARY_PATH": str(libs), "PATH": "/usr/bin:/bin"}, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize(("version", "flags", "precision"), [("8.6.1", 1, "fp16"), ("10.3.0", 0, "fp16"),
                                                             ("11.4.0.106", 0, "typed")])
def test_engine_code_uses_only_what_each_tensorrt_version_has(stand_ins, version, flags, precision):
    got = surface(version, stand_ins)
    assert got["version"] == version and got["missing"] == []
    bench, prof = got["runs"]["benchmark"], got["runs"]["profile"]
    for run in (bench, prof):
        assert "error" not in run, run
        assert run["flags"] == flags and run["precision"] == precision
        assert run["shapes"] == {"images": [1, 3, 32, 32]} and run["io"] == [["images"], ["output0"]]
        # the dynamic batch gets an optimization profile at the --input-shape
        assert "IOptimizationProfile.set_shape('images', [1, 3, 32, 32], [1, 3, 32, 32], [1, 3, 32, 32])" in run["calls"]
    assert "IBuilderConfig.profiling_verbosity = ProfilingVerbosity.DETAILED" in prof["calls"]
    assert "IBuilderConfig.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY" in bench["calls"]
    assert bench["engine"] != prof["engine"]       # a profile's DETAILED engine is never benchmarked
    assert ("IBuilderConfig.set_flag(BuilderFlag.FP16)" in bench["calls"]) == (precision == "fp16")
    assert "pass --input-shape" in got["no_shape_error"]


def test_the_check_has_teeth_the_bindings_differ_where_the_code_branches(stand_ins):
    """What the code branches on is what the real bindings say (so a wrong branch would be caught above)."""
    old, new = surface("8.6.1", stand_ins)["has"], surface("11.4.0.106", stand_ins)["has"]
    for name in ("Builder.platform_has_fast_fp16", "BuilderFlag.FP16", "BuilderFlag.INT8",
                 "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"):
        assert old[name] and not new[name], name
    assert old["IExecutionContext.execute_async_v3"] and new["IExecutionContext.execute_async_v3"]
    assert old["ICudaEngine.num_io_tensors"] and new["ICudaEngine.num_io_tensors"]
    assert old["ICudaEngine.num_bindings"] and not new["ICudaEngine.num_bindings"]   # gone since 10


def test_cuda_runtime_return_codes_are_checked():
    """The real libcudart (the nvidia-cuda-runtime wheel of the dev extra, or a toolkit's) on a machine
    without a GPU driver: the first call fails, and the failure names the call and CUDA's reason."""
    path = find_cudart()
    if path is None:
        pytest.skip("no libcudart here (the dev extra installs nvidia-cuda-runtime-cu12 on x86-64 Linux)")
    runtime = CudaRuntime(path)
    try:
        stream = runtime.stream_create()
    except JobError as exc:
        assert exc.code == "BACKEND_UNAVAILABLE"
        assert exc.message.startswith("CUDA cudaStreamCreate failed: ") and "cudaError" in exc.message
    else:   # a machine with a GPU: the calls work and a huge allocation is an out-of-memory JobError
        with pytest.raises(JobError, match=r"cudaMalloc failed: .*cudaErrorMemoryAllocation") as caught:
            runtime.malloc(1 << 60)
        assert caught.value.code == "OUT_OF_MEMORY"
        runtime.stream_destroy(stream)


def test_cuda_runtime_missing_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEFARM_CUDART", str(tmp_path / "libcudart.so"))
    with pytest.raises(JobError, match="does not load .*set EDGEFARM_CUDART to a libcudart.so"):
        CudaRuntime()
