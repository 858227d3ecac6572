"""TensorRT's command-line side: the trtexec command for a benchmark/profile, the parsers of its
--exportTimes and --exportProfile JSON, and the engine cache key. Importable without TensorRT (the
parsers are tested on files in trtexec's format)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from agent.errors import JobError


def engine_key(model_digest: str, precision: str, trt_version: str, device: str) -> str:
    """Cache key of a built engine: the same model, precision, TensorRT and GPU reuse it."""
    return hashlib.sha256(f"{model_digest}|{precision}|{trt_version}|{device}".encode()).hexdigest()[:24]


def has_qdq(onnx_path: Path) -> bool:
    """True if the ONNX model has QuantizeLinear/DequantizeLinear nodes (explicit INT8 for TensorRT)."""
    data = Path(onnx_path).read_bytes()
    return b"QuantizeLinear" in data and b"DequantizeLinear" in data


def parse_trtexec_times(doc: list[dict]) -> list[float]:
    """Per-inference GPU compute times in ms from `trtexec --exportTimes` JSON (one object per
    inference with startComputeMs/endComputeMs, computeMs, latencyMs ...)."""
    if not isinstance(doc, list) or not doc:
        raise JobError("INTERNAL", "trtexec --exportTimes wrote no inference; raise --min-iterations")
    times = []
    for row in doc:
        if "computeMs" in row:
            times.append(float(row["computeMs"]))
        elif "startComputeMs" in row and "endComputeMs" in row:
            times.append(float(row["endComputeMs"]) - float(row["startComputeMs"]))
        elif "latencyMs" in row:
            times.append(float(row["latencyMs"]))
        else:
            raise JobError("INTERNAL", f"unrecognised trtexec --exportTimes row: {sorted(row)[:6]}")
    return times


def parse_trtexec_profile(doc: list[dict]) -> tuple[list[dict], float, int]:
    """Per-layer rows from `trtexec --exportProfile` JSON: [{"count": N}, {"name", "timeMs", "averageMs",
    "medianMs", "percentage"}, ...]; returns (rows, total ms per inference, runs)."""
    if not isinstance(doc, list) or not doc or "count" not in doc[0]:
        raise JobError("INTERNAL", "trtexec --exportProfile JSON does not start with {\"count\": N}")
    runs = int(doc[0]["count"])
    rows = []
    for row in doc[1:]:
        if "name" not in row:
            continue
        avg = float(row.get("averageMs", float(row.get("timeMs", 0.0)) / max(runs, 1)))
        rows.append({**trt_row(row["name"]), "time_ms": avg, "percent": float(row.get("percentage", 0.0))})
    total = sum(r["time_ms"] for r in rows)
    if rows and not any(r["percent"] for r in rows):
        for r in rows:
            r["percent"] = 100.0 * r["time_ms"] / (total or 1.0)
    return rows, total, runs


def trt_row(name: str) -> dict:
    """A TensorRT layer's profile row without its time: TensorRT reports no shapes or memory per layer."""
    return {"name": name, "op_type": layer_type(name), "input_shapes": [], "output_shapes": [], "memory_bytes": 0,
            "provider": "tensorrt"}


def layer_type(name: str) -> str:
    """TensorRT layer names carry the fused ONNX nodes ('/conv1/Conv + /relu/Relu'): the first op type."""
    first = name.split(" + ")[0]
    tail = first.rsplit("/", 1)[-1]
    return tail.split("_")[0] if tail else "Layer"


def trtexec_command(onnx_path: Path, engine_path: Path, precision: str, times_json: Path,
                    profile_json: Path | None, iterations: int, warmup_ms: int = 200) -> list[str]:
    """The trtexec command line for one benchmark (and, with profile_json, a separate profiling run)."""
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--iterations={iterations}", "--duration=0",
           f"--warmUp={warmup_ms}", f"--exportTimes={times_json}", "--useSpinWait"]
    cmd += [f"--loadEngine={engine_path}"] if engine_path.exists() else [f"--saveEngine={engine_path}"]
    if engine_path.exists():
        cmd.remove(f"--onnx={onnx_path}")
    if precision in ("fp16", "int8"):
        cmd.append("--fp16")
    if precision == "int8":
        cmd.append("--int8")
    if profile_json is not None:
        cmd += [f"--exportProfile={profile_json}", "--separateProfileRun", "--profilingVerbosity=detailed"]
    return cmd


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    model = Path("/proc/device-tree/model")
    return model.read_text().strip("\x00\n ") if model.exists() else "gpu"


def run_trtexec(onnx_path: Path, precision: str, iterations: int, work: Path, profile: bool) -> dict:
    """Benchmark (and optionally profile) through trtexec; returns times and, with profile, layer rows."""
    cache = Path(onnx_path).parent / "trt-engines"
    cache.mkdir(exist_ok=True)
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()
    engine = cache / f"{engine_key(digest, precision, trt_version(), gpu_name())}.engine"
    times_json, profile_json = work / "times.json", (work / "profile.json" if profile else None)
    cmd = trtexec_command(onnx_path, engine, precision, times_json, profile_json, iterations)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise JobError("INVALID_MODEL", f"trtexec failed ({proc.returncode}): {proc.stdout[-400:]}")
    out = {"times_ms": parse_trtexec_times(json.loads(times_json.read_text())), "engine": str(engine)}
    if profile_json is not None:
        out["layers"], out["total_ms"], out["runs"] = parse_trtexec_profile(json.loads(profile_json.read_text()))
    return out


def trt_version() -> str:
    """TensorRT's version from its Python package, else from `trtexec --help`."""
    try:
        import tensorrt

        return tensorrt.__version__
    except ImportError:
        pass
    out = subprocess.run(["trtexec", "--help"], capture_output=True, text=True, timeout=30).stdout
    for token in out.split():
        if token.startswith("[TensorRT v"):
            return token.removeprefix("[TensorRT v").rstrip("]")
    return "trtexec"
