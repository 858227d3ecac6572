from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_KIND_UNSPECIFIED: _ClassVar[JobKind]
    BENCHMARK: _ClassVar[JobKind]
    PROFILE: _ClassVar[JobKind]
    EVALUATE: _ClassVar[JobKind]

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_LOW: _ClassVar[Priority]
    PRIORITY_NORMAL: _ClassVar[Priority]
    PRIORITY_HIGH: _ClassVar[Priority]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    INVALID_MODEL: _ClassVar[ErrorCode]
    UNSUPPORTED_OP: _ClassVar[ErrorCode]
    INVALID_INPUT: _ClassVar[ErrorCode]
    MODEL_NOT_FOUND: _ClassVar[ErrorCode]
    TIMEOUT: _ClassVar[ErrorCode]
    OUT_OF_MEMORY: _ClassVar[ErrorCode]
    RUNNER_CRASHED: _ClassVar[ErrorCode]
    CANCELLED: _ClassVar[ErrorCode]
    BACKEND_UNAVAILABLE: _ClassVar[ErrorCode]
    INFERENCE_FAILED: _ClassVar[ErrorCode]
    INTERNAL: _ClassVar[ErrorCode]
JOB_KIND_UNSPECIFIED: JobKind
BENCHMARK: JobKind
PROFILE: JobKind
EVALUATE: JobKind
PRIORITY_UNSPECIFIED: Priority
PRIORITY_LOW: Priority
PRIORITY_NORMAL: Priority
PRIORITY_HIGH: Priority
ERROR_CODE_UNSPECIFIED: ErrorCode
INVALID_MODEL: ErrorCode
UNSUPPORTED_OP: ErrorCode
INVALID_INPUT: ErrorCode
MODEL_NOT_FOUND: ErrorCode
TIMEOUT: ErrorCode
OUT_OF_MEMORY: ErrorCode
RUNNER_CRASHED: ErrorCode
CANCELLED: ErrorCode
BACKEND_UNAVAILABLE: ErrorCode
INFERENCE_FAILED: ErrorCode
INTERNAL: ErrorCode

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Backend(_message.Message):
    __slots__ = ("name", "version", "providers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    providers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., providers: _Optional[_Iterable[str]] = ...) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("name", "device_class", "arch", "cpu_model", "cores", "physical_cores", "memory_bytes", "os", "backends", "accelerators", "agent_version", "fingerprint", "cache_bytes", "cache_max_bytes", "queue_length", "host_id", "cpus")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    device_class: str
    arch: str
    cpu_model: str
    cores: int
    physical_cores: int
    memory_bytes: int
    os: str
    backends: _containers.RepeatedCompositeFieldContainer[Backend]
    accelerators: _containers.RepeatedScalarFieldContainer[str]
    agent_version: str
    fingerprint: str
    cache_bytes: int
    cache_max_bytes: int
    queue_length: int
    host_id: str
    cpus: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., device_class: _Optional[str] = ..., arch: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cores: _Optional[int] = ..., physical_cores: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., os: _Optional[str] = ..., backends: _Optional[_Iterable[_Union[Backend, _Mapping]]] = ..., accelerators: _Optional[_Iterable[str]] = ..., agent_version: _Optional[str] = ..., fingerprint: _Optional[str] = ..., cache_bytes: _Optional[int] = ..., cache_max_bytes: _Optional[int] = ..., queue_length: _Optional[int] = ..., host_id: _Optional[str] = ..., cpus: _Optional[_Iterable[int]] = ...) -> None: ...

class MissingModelsRequest(_message.Message):
    __slots__ = ("digests",)
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    digests: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, digests: _Optional[_Iterable[str]] = ...) -> None: ...

class MissingModelsReply(_message.Message):
    __slots__ = ("missing",)
    MISSING_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, missing: _Optional[_Iterable[str]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("digest", "size_bytes", "filename")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size_bytes: int
    filename: str
    def __init__(self, digest: _Optional[str] = ..., size_bytes: _Optional[int] = ..., filename: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("digest", "size_bytes", "already_present", "bytes_received")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size_bytes: int
    already_present: bool
    bytes_received: int
    def __init__(self, digest: _Optional[str] = ..., size_bytes: _Optional[int] = ..., already_present: _Optional[bool] = ..., bytes_received: _Optional[int] = ...) -> None: ...

class Shape(_message.Message):
    __slots__ = ("dims",)
    DIMS_FIELD_NUMBER: _ClassVar[int]
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dims: _Optional[_Iterable[int]] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "dtype", "shape", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class MeasureSettings(_message.Message):
    __slots__ = ("threads", "warmup", "min_iterations", "min_seconds", "max_seconds", "input_shapes", "profile_iterations")
    class InputShapesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Shape
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Shape, _Mapping]] = ...) -> None: ...
    THREADS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    MIN_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    threads: int
    warmup: int
    min_iterations: int
    min_seconds: float
    max_seconds: float
    input_shapes: _containers.MessageMap[str, Shape]
    profile_iterations: int
    def __init__(self, threads: _Optional[int] = ..., warmup: _Optional[int] = ..., min_iterations: _Optional[int] = ..., min_seconds: _Optional[float] = ..., max_seconds: _Optional[float] = ..., input_shapes: _Optional[_Mapping[str, Shape]] = ..., profile_iterations: _Optional[int] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("job_id", "kind", "model_digest", "backend", "settings", "inputs", "time_limit_s", "memory_limit_bytes", "reference_digest", "priority")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: JobKind
    model_digest: str
    backend: str
    settings: MeasureSettings
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    time_limit_s: float
    memory_limit_bytes: int
    reference_digest: str
    priority: Priority
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., model_digest: _Optional[str] = ..., backend: _Optional[str] = ..., settings: _Optional[_Union[MeasureSettings, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., time_limit_s: _Optional[float] = ..., memory_limit_bytes: _Optional[int] = ..., reference_digest: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ...) -> None: ...

class Queued(_message.Message):
    __slots__ = ("position", "priority")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    position: int
    priority: Priority
    def __init__(self, position: _Optional[int] = ..., priority: _Optional[_Union[Priority, str]] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("backend", "backend_version", "pid")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    backend: str
    backend_version: str
    pid: int
    def __init__(self, backend: _Optional[str] = ..., backend_version: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("phase", "iterations", "elapsed_s", "message")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    phase: str
    iterations: int
    elapsed_s: float
    message: str
    def __init__(self, phase: _Optional[str] = ..., iterations: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class LayerRow(_message.Message):
    __slots__ = ("name", "op_type", "time_ms", "percent", "input_shapes", "output_shapes", "memory_bytes", "provider")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    op_type: str
    time_ms: float
    percent: float
    input_shapes: _containers.RepeatedScalarFieldContainer[str]
    output_shapes: _containers.RepeatedScalarFieldContainer[str]
    memory_bytes: int
    provider: str
    def __init__(self, name: _Optional[str] = ..., op_type: _Optional[str] = ..., time_ms: _Optional[float] = ..., percent: _Optional[float] = ..., input_shapes: _Optional[_Iterable[str]] = ..., output_shapes: _Optional[_Iterable[str]] = ..., memory_bytes: _Optional[int] = ..., provider: _Optional[str] = ...) -> None: ...

class LayerRows(_message.Message):
    __slots__ = ("rows", "total_ms", "iterations", "trace_json_zlib")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    TRACE_JSON_ZLIB_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[LayerRow]
    total_ms: float
    iterations: int
    trace_json_zlib: bytes
    def __init__(self, rows: _Optional[_Iterable[_Union[LayerRow, _Mapping]]] = ..., total_ms: _Optional[float] = ..., iterations: _Optional[int] = ..., trace_json_zlib: _Optional[bytes] = ...) -> None: ...

class LatencyStats(_message.Message):
    __slots__ = ("min_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv", "count", "max_ms", "p95_ms")
    MIN_MS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    STD_MS_FIELD_NUMBER: _ClassVar[int]
    CV_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    cv: float
    count: int
    max_ms: float
    p95_ms: float
    def __init__(self, min_ms: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., mean_ms: _Optional[float] = ..., std_ms: _Optional[float] = ..., cv: _Optional[float] = ..., count: _Optional[int] = ..., max_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ...) -> None: ...

class ThermalZone(_message.Message):
    __slots__ = ("name", "temp_c", "passive_c")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEMP_C_FIELD_NUMBER: _ClassVar[int]
    PASSIVE_C_FIELD_NUMBER: _ClassVar[int]
    name: str
    temp_c: float
    passive_c: float
    def __init__(self, name: _Optional[str] = ..., temp_c: _Optional[float] = ..., passive_c: _Optional[float] = ...) -> None: ...

class CpuFreq(_message.Message):
    __slots__ = ("cpu", "cur_khz", "max_khz", "hw_max_khz")
    CPU_FIELD_NUMBER: _ClassVar[int]
    CUR_KHZ_FIELD_NUMBER: _ClassVar[int]
    MAX_KHZ_FIELD_NUMBER: _ClassVar[int]
    HW_MAX_KHZ_FIELD_NUMBER: _ClassVar[int]
    cpu: int
    cur_khz: int
    max_khz: int
    hw_max_khz: int
    def __init__(self, cpu: _Optional[int] = ..., cur_khz: _Optional[int] = ..., max_khz: _Optional[int] = ..., hw_max_khz: _Optional[int] = ...) -> None: ...

class RpiReadings(_message.Message):
    __slots__ = ("temp_c", "arm_hz", "throttled")
    TEMP_C_FIELD_NUMBER: _ClassVar[int]
    ARM_HZ_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    temp_c: float
    arm_hz: int
    throttled: RpiThrottled
    def __init__(self, temp_c: _Optional[float] = ..., arm_hz: _Optional[int] = ..., throttled: _Optional[_Union[RpiThrottled, _Mapping]] = ...) -> None: ...

class RpiThrottled(_message.Message):
    __slots__ = ("value", "now", "reasons")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    value: int
    now: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, value: _Optional[int] = ..., now: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("thermal", "cpufreq", "throttled_raw", "timestamp", "load_1m", "rpi")
    THERMAL_FIELD_NUMBER: _ClassVar[int]
    CPUFREQ_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_RAW_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LOAD_1M_FIELD_NUMBER: _ClassVar[int]
    RPI_FIELD_NUMBER: _ClassVar[int]
    thermal: _containers.RepeatedCompositeFieldContainer[ThermalZone]
    cpufreq: _containers.RepeatedCompositeFieldContainer[CpuFreq]
    throttled_raw: str
    timestamp: float
    load_1m: float
    rpi: RpiReadings
    def __init__(self, thermal: _Optional[_Iterable[_Union[ThermalZone, _Mapping]]] = ..., cpufreq: _Optional[_Iterable[_Union[CpuFreq, _Mapping]]] = ..., throttled_raw: _Optional[str] = ..., timestamp: _Optional[float] = ..., load_1m: _Optional[float] = ..., rpi: _Optional[_Union[RpiReadings, _Mapping]] = ...) -> None: ...

class Energy(_message.Message):
    __slots__ = ("source", "energy_j", "avg_power_w", "mj_per_inference")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    AVG_POWER_W_FIELD_NUMBER: _ClassVar[int]
    MJ_PER_INFERENCE_FIELD_NUMBER: _ClassVar[int]
    source: str
    energy_j: float
    avg_power_w: float
    mj_per_inference: float
    def __init__(self, source: _Optional[str] = ..., energy_j: _Optional[float] = ..., avg_power_w: _Optional[float] = ..., mj_per_inference: _Optional[float] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("latency", "load_ms", "first_inference_ms", "peak_memory_bytes", "threads", "backend", "backend_version", "telemetry_before", "telemetry_after", "flags", "measured_seconds", "input_shapes", "warmup", "energy", "reference_latency", "times_ms", "reference_times_ms")
    class InputShapesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Shape
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Shape, _Mapping]] = ...) -> None: ...
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_VERSION_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    TIMES_MS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TIMES_MS_FIELD_NUMBER: _ClassVar[int]
    latency: LatencyStats
    load_ms: float
    first_inference_ms: float
    peak_memory_bytes: int
    threads: int
    backend: str
    backend_version: str
    telemetry_before: Telemetry
    telemetry_after: Telemetry
    flags: _containers.RepeatedScalarFieldContainer[str]
    measured_seconds: float
    input_shapes: _containers.MessageMap[str, Shape]
    warmup: int
    energy: Energy
    reference_latency: LatencyStats
    times_ms: _containers.RepeatedScalarFieldContainer[float]
    reference_times_ms: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, latency: _Optional[_Union[LatencyStats, _Mapping]] = ..., load_ms: _Optional[float] = ..., first_inference_ms: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ..., threads: _Optional[int] = ..., backend: _Optional[str] = ..., backend_version: _Optional[str] = ..., telemetry_before: _Optional[_Union[Telemetry, _Mapping]] = ..., telemetry_after: _Optional[_Union[Telemetry, _Mapping]] = ..., flags: _Optional[_Iterable[str]] = ..., measured_seconds: _Optional[float] = ..., input_shapes: _Optional[_Mapping[str, Shape]] = ..., warmup: _Optional[int] = ..., energy: _Optional[_Union[Energy, _Mapping]] = ..., reference_latency: _Optional[_Union[LatencyStats, _Mapping]] = ..., times_ms: _Optional[_Iterable[float]] = ..., reference_times_ms: _Optional[_Iterable[float]] = ...) -> None: ...

class Outputs(_message.Message):
    __slots__ = ("tensors",)
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("job_id", "queued", "started", "progress", "layers", "result", "outputs", "error")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    queued: Queued
    started: Started
    progress: Progress
    layers: LayerRows
    result: Result
    outputs: Outputs
    error: Error
    def __init__(self, job_id: _Optional[str] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., layers: _Optional[_Union[LayerRows, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., outputs: _Optional[_Union[Outputs, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelReply(_message.Message):
    __slots__ = ("cancelled", "state")
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    state: str
    def __init__(self, cancelled: _Optional[bool] = ..., state: _Optional[str] = ...) -> None: ...
