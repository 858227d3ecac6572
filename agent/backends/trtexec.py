"""TensorRT's command-line side: where trtexec is, which TensorRT it is, the trtexec command for a
benchmark or a profile on that version, the parsers of its --exportTimes / --exportProfile JSON, and the
engine cache key. Importable without TensorRT (the parsers are tested on files in trtexec's format).

Version differences handled here (from trtexec's sampleOptions.cpp on release/8.5, 8.6, 10.3 and main):
TensorRT 11 removes --fp16 / --int8 (every network is strongly typed: the precision is the model's own),
and reports its version in the banner as `[TensorRT v110400]` (8.x: `[TensorRT v8502]`)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import JobError

# where JetPack (and NVIDIA's Debian packages) install trtexec: not on PATH
TRTEXEC_PLACES = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")
TRTEXEC_ENV = "EDGEFARM_TRTEXEC"      # a path that overrides the search
_BANNER = re.compile(r"\[TensorRT v(\d+)\]")


def find_trtexec() -> str | None:
    """trtexec's path: $EDGEFARM_TRTEXEC, else PATH, else where JetPack puts it; None when there is none."""
    configured = os.environ.get(TRTEXEC_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which("trtexec")
    if found:
        return found
    return next((p for p in TRTEXEC_PLACES if os.access(p, os.X_OK)), None)


def parse_banner_version(text: str) -> str | None:
    """'[TensorRT v100300]' -> '10.3.0', '[TensorRT v8502]' -> '8.5.2' (8.x packs MAJOR*1000 + MINOR*100 +
    PATCH, 10.x and later MAJOR*10000 + MINOR*100 + PATCH: NvInferVersion.h's NV_TENSORRT_VERSION)."""
    m = _BANNER.search(text or "")
    if not m:
        return None
    n = int(m.group(1))
    if n >= 100000:
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return f"{n // 1000}.{n // 100 % 10}.{n % 100}"


def major(version: str) -> int:
    """The major number of a version string ('10.3.0.26' -> 10); 0 when it has none."""
    m = re.match(r"(\d+)", version or "")
    return int(m.group(1)) if m else 0


@functools.lru_cache(maxsize=1)
def trtexec_version() -> str:
    """The TensorRT version of trtexec's banner (`trtexec --help`), or 'unknown'."""
    exe = find_trtexec()
    if exe is None:
        return "unknown"
    try:
        proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return parse_banner_version(proc.stdout + proc.stderr) or "unknown"


def engine_key(model_digest: str, precision: str, trt_version: str, device: str, verbosity: str = "default",
               shapes: dict | None = None) -> str:
    """Cache key of a built engine: the same model, precision, TensorRT, GPU, profiling verbosity (a DETAILED
    engine slows enqueue, so a benchmark never reuses a profile's engine) and input shapes reuse it."""
    shape_text = ";".join(f"{k}={'x'.join(map(str, v))}" for k, v in sorted((shapes or {}).items()))
    text = f"{model_digest}|{precision}|{trt_version}|{device}|{verbosity}|{shape_text}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def has_qdq(model: Path | bytes) -> bool:
    """True if the ONNX model (a path, or its bytes already read) has QuantizeLinear/DequantizeLinear nodes
    (explicit INT8 for TensorRT)."""
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
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


@dataclass
class TrtexecRun:
    """One trtexec invocation: the model, the cached engine, the outputs and the settings."""

    onnx_path: Path
    engine_path: Path
    times_json: Path
    precision: str = "fp32"                 # fp32 | fp16 | int8 (ignored on TensorRT >= 11: strongly typed)
    iterations: int = 100
    profile_json: Path | None = None
    shapes: dict[str, list[int]] = field(default_factory=dict)   # dynamic inputs: --shapes
    version: str = "10"
    warmup_ms: int = 200


def _shape_arg(shapes: dict[str, list[int]]) -> str:
    """--shapes' value; a name with ':' or ',' is quoted as trtexec's sampleOptions.cpp parses it."""
    parts = []
    for name, dims in shapes.items():
        quoted = f"'{name}'" if any(c in name for c in ":,") else name
        parts.append(f"{quoted}:{'x'.join(str(d) for d in dims)}")
    return ",".join(parts)


def trtexec_command(run: TrtexecRun, exe: str = "trtexec") -> list[str]:
    """The trtexec command line for one benchmark, or (with profile_json) one profiling run whose engine is
    built with detailed verbosity (its own cache entry: engine_key's verbosity)."""
    cached = run.engine_path.exists()
    cmd = [exe, f"--loadEngine={run.engine_path}" if cached else f"--onnx={run.onnx_path}",
           f"--iterations={run.iterations}", "--duration=0", f"--warmUp={run.warmup_ms}",
           f"--exportTimes={run.times_json}", "--useSpinWait"]
    if not cached:
        cmd.append(f"--saveEngine={run.engine_path}")
        if major(run.version) < 11:      # 11 removed the flags: the model's types decide
            cmd += ["--fp16"] if run.precision in ("fp16", "int8") else []
            cmd += ["--int8"] if run.precision == "int8" else []
        if run.profile_json is not None:
            cmd.append("--profilingVerbosity=detailed")
    if run.shapes:
        cmd.append(f"--shapes={_shape_arg(run.shapes)}")
    if run.profile_json is not None:
        cmd += [f"--exportProfile={run.profile_json}", "--separateProfileRun"]
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


def failure_text(stdout: str, stderr: str, limit: int = 600) -> str:
    """What a failed trtexec said: its error lines ('[E] ...', written to stderr), else the tail of stderr,
    else of stdout."""
    errors = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if "[E]" in line]
    text = " | ".join(errors) if errors else (stderr.strip() or stdout.strip())
    return text[-limit:]


def run_trtexec(onnx_path: Path, precision: str, iterations: int, work: Path, profile: bool,
                shapes: dict[str, list[int]] | None = None) -> dict:
    """Benchmark (or profile) through trtexec; returns times and, with profile, layer rows."""
    exe = find_trtexec()
    if exe is None:
        raise JobError("BACKEND_UNAVAILABLE", f"trtexec is neither on PATH nor in {', '.join(TRTEXEC_PLACES)}; "
                                              f"install TensorRT or set {TRTEXEC_ENV} to its path")
    version = trtexec_version()
    cache = Path(onnx_path).parent / "trt-engines"
    cache.mkdir(exist_ok=True)
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()
    verbosity = "detailed" if profile else "default"
    engine = cache / f"{engine_key(digest, precision, version, gpu_name(), verbosity, shapes)}.engine"
    run = TrtexecRun(Path(onnx_path), engine, work / "times.json", precision, iterations,
                     work / "profile.json" if profile else None, dict(shapes or {}), version)
    proc = subprocess.run(trtexec_command(run, exe), capture_output=True, text=True)
    if proc.returncode != 0:
        raise JobError("INVALID_MODEL", f"trtexec (TensorRT {version}) failed with exit code {proc.returncode}: "
                                        f"{failure_text(proc.stdout, proc.stderr)}")
    out = {"times_ms": parse_trtexec_times(json.loads(run.times_json.read_text())), "engine": str(engine)}
    if run.profile_json is not None:
        out["layers"], out["total_ms"], out["runs"] = parse_trtexec_profile(json.loads(run.profile_json.read_text()))
    return out
