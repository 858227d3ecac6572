"""INT8 per layer as the device measured it (`int8-measured`): profile the float and the INT8 model on
the target, map the INT8 profile's rows back to the float graph's layers, keep in float every layer INT8
ran slower on that device, and, when the accuracy or fidelity threshold still fails, the layers that lose
most fidelity per measured millisecond saved (MixedPrecisionOptimizer's search with the measured savings
as its layer times)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from optimizers.graph.index import Graph
from optimizers.graph.layer_names import RUNTIME_SUFFIX, row_nodes
from optimizers.graph.model import ModelLike, load_model
from optimizers.quantization.mixed_precision import MixedPrecisionOptimizer
from optimizers.record import OptimizedModel

# A layer is kept float when INT8 ran it over 1.10x its float time (two profiles, not paired) AND the loss
# is at least 2 % of the INT8 model's profiled time: keeping a layer float inside an INT8 region adds a
# Dequantize/Quantize at each edge, which the profile charges to nobody yet. On YOLOv8n 23 layers were
# measured slower (Concats, small head Convs, losing 0.02-0.2 ms each); keeping all of them float ran
# 0.93x plain INT8, the first Conv alone (3 input channels: 2.09 ms INT8 vs 0.75 ms float) 1.03-1.06x.
SLOWER_MARGIN = 1.10
SLOWER_SHARE = 0.02
MIN_SAVING_MS = 1e-3


@dataclass
class LayerTiming:
    """One float profile row (a node, or the nodes the runtime fused into one kernel, e.g. Conv+Relu) and
    the same nodes' time in INT8 (their kernels plus the Q/DQ standing around them)."""

    node: str               # the row's first node that INT8 ran (the name shown)
    float_ms: float
    int8_ms: float
    slower: bool = False    # kept float: see SLOWER_MARGIN / SLOWER_SHARE
    nodes: list[str] = field(default_factory=list)   # every node of the row INT8 ran: kept float together

    @property
    def saved_ms(self) -> float:
        return self.float_ms - self.int8_ms

    def to_json(self) -> dict:
        return {**asdict(self), "saved_ms": round(self.saved_ms, 4)}


def profile_rows(profile) -> list[dict]:
    """Rows as dicts (`name`, `op_type`, `time_ms`, `source_nodes`) from a ModelProfile (optimizers.Profiler),
    a list of its LayerProfile, or a farm profile's rows (controller.profile(...).layers)."""
    layers = getattr(profile, "layers", profile)
    return [row if isinstance(row, dict) else asdict(row) for row in layers]


def least_disturbed(rounds: list[list[dict]]) -> list[dict]:
    """One profile from several of the same model: each row's smallest time over the rounds (a shared
    machine only ever adds time). YOLOv8n's first Conv (2.8x slower in INT8 here) was found in 4 of 4 runs
    profiling each model twice, alternately; with one profile each it was missed in 1 run of 8."""
    best: dict[str, dict] = {}
    for rows in rounds:
        for row in rows:
            if row["name"] not in best or row["time_ms"] < best[row["name"]]["time_ms"]:
                best[row["name"]] = row
    return list(best.values())


def int8_layer_times(rows: list[dict], quantized: ModelLike, float_nodes: set[str]) -> dict[str, float]:
    """{float graph node: ms} from the INT8 (QDQ) model's profile rows. ONNX Runtime runs a quantized node
    as a QLinear kernel named after it ('Conv_3_token_12'); a QuantizeLinear/DequantizeLinear left
    standing between INT8 and float is charged to the quantized node that needs it (the consumer of a
    Quantize, the producer behind a Dequantize): keeping that node float removes it."""
    graph = Graph(load_model(quantized).proto)
    nodes = {n.name: n for n in graph.g.node if n.name}
    producer, consumers = graph.producer, graph.consumers

    def owner(name: str) -> list[str] | None:
        node = nodes.get(name)
        if node is None:
            return None
        if node.op_type == "QuantizeLinear":   # charged to the quantized nodes reading it, split evenly
            users = [u.name for dq in consumers.get(node.output[0], []) for u in consumers.get(dq.output[0], [])
                     if u.name in float_nodes]
            return users or None
        if node.op_type == "DequantizeLinear":
            q = producer.get(node.input[0])
            source = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            if source is not None and source.name in float_nodes:
                return [source.name]
        return None

    out: dict[str, float] = {}
    for row in rows:
        name = RUNTIME_SUFFIX.sub("", row["name"])
        owners = [name] if name in float_nodes else owner(name)
        for node in owners or []:
            out[node] = out.get(node, 0.0) + row["time_ms"] / len(owners)
    return out


def measured_timings(float_rows: list[dict], int8_rows: list[dict], quantized: ModelLike) -> list[LayerTiming]:
    """Every float profile row the INT8 profile could be mapped to, with both times, compared row by row (a
    Conv+Relu fused in float against the QLinearConv and whatever of the Relu INT8 ran), slowest INT8
    first."""
    groups = [(row_nodes(row), row["time_ms"]) for row in float_rows]
    int8 = int8_layer_times(int8_rows, quantized, {n for nodes, _ in groups for n in nodes})
    worth = SLOWER_SHARE * sum(r["time_ms"] for r in int8_rows)
    out = []
    for nodes, float_ms in groups:
        ran = [n for n in nodes if n in int8]
        if ran:
            ms = sum(int8[n] for n in ran)
            out.append(LayerTiming(ran[0], float_ms, ms, ms > float_ms * SLOWER_MARGIN and ms - float_ms >= worth,
                                   ran))
    return sorted(out, key=lambda t: t.saved_ms)


class MeasuredPrecisionOptimizer:
    """`MeasuredPrecisionOptimizer(float_rows, int8_rows, int8_model).optimize(model, calibration_data,
    eval_data)`: static INT8 with the layers measured slower in INT8 kept float, then
    MixedPrecisionOptimizer's search (threshold, metric) ranked by fidelity lost per measured ms saved.

    float_profile / int8_profile: the device's per-layer profiles (profile_rows takes a ModelProfile or
    rows) of the float model and of `int8_model`, an INT8 QDQ model made from it with the same
    quant_options. Profile the two alternately, and pass least_disturbed(rounds) for several rounds."""

    def __init__(self, float_profile, int8_profile, int8_model: ModelLike,
                 accuracy_threshold: float = 0.99, metric: str = "cosine", algorithm: str = "minmax",
                 max_eval_samples: int = 64, **quant_options) -> None:
        self.timings = measured_timings(profile_rows(float_profile), profile_rows(int8_profile), int8_model)
        self.slower = [n for t in self.timings if t.slower for n in t.nodes]
        # a layer that saves nothing ranks as saving almost nothing (not as the median, which a layer
        # without a measured time gets): its fidelity loss buys no time, so it is kept float first
        savings = {n: max(t.saved_ms, MIN_SAVING_MS) / len(t.nodes) for t in self.timings if not t.slower
                   for n in t.nodes}
        self.mixed = MixedPrecisionOptimizer(accuracy_threshold=accuracy_threshold, sensitive_layers=self.slower,
                                             metric=metric, algorithm=algorithm, layer_times_ms=savings,
                                             max_eval_samples=max_eval_samples, unknown_sensitive="drop",
                                             **quant_options)

    def optimize(self, model: ModelLike, calibration_data, eval_data=None, labels=None,
                 output: str | Path | None = None, progress=None) -> OptimizedModel:
        result = self.mixed.optimize(model, calibration_data, eval_data, labels=labels, output=output,
                                     progress=progress)
        record = result.record
        record.technique = "quantize:int8-measured"
        record.settings["measured_slower_in_int8"] = self.slower
        record.metrics["layers_timed"] = len(self.timings)
        record.metrics["layers_measured_slower"] = len(self.slower)
        record.metrics["timings"] = [t.to_json() for t in self.timings]
        result.save_record()
        return result
