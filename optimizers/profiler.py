"""Per-layer profiles: time, share, memory and FLOPs of every layer, in process on this CPU or on a
farm device through its agent."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from optimizers.data.feeds import as_dataset, synthetic_data
from optimizers.errors import OptimizerError
from optimizers.graph.flops import graph_flops, row_flops
from optimizers.graph.layer_names import layer_label, node_times
from optimizers.graph.model import ModelLike, load_model
from optimizers.on_device import FarmProfileRequest, profile_here, profile_on_farm

log = logging.getLogger(__name__)


@dataclass
class LayerProfile:
    """One profiled layer (a runtime node, possibly several graph nodes fused by the runtime)."""

    name: str
    op_type: str
    time_ms: float          # mean per inference
    percentage: float       # share of the summed layer time, in percent
    memory_mb: float        # output + activation + parameter bytes the runtime reported, in MiB
    flops: int | None       # None: unknown (an op outside optimizers.graph.flops' tables)
    source_nodes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The graph node behind the row, as the CLI prints it (layer_label)."""
        return layer_label(self.name, self.source_nodes)


@dataclass
class ModelProfile:
    """Layers sorted slowest first, with the device and the run's totals."""

    device: str
    total_ms: float
    iterations: int
    threads: int
    layers: list[LayerProfile]

    def find_bottlenecks(self, threshold: float = 0.05) -> list[LayerProfile]:
        """Layers taking at least `threshold` (a fraction: 0.05 = 5 %) of the layer time."""
        if not 0 < threshold < 1:
            raise OptimizerError(f"threshold is a fraction in (0, 1), e.g. 0.05 for 5 %; got {threshold}")
        return [layer for layer in self.layers if layer.percentage >= threshold * 100]

    def layer_times(self) -> dict[str, float]:
        """{graph node name: ms}, a fused row's time split evenly over its source nodes
        (layer_names.node_times: what MixedPrecisionOptimizer's layer_times_ms takes)."""
        return node_times([asdict(layer) for layer in self.layers])

    def to_json(self) -> dict:
        return asdict(self)


class Profiler:
    """`Profiler(model).profile(input_data=..., device="cpu"|<farm device>)` -> ModelProfile."""

    def __init__(self, model: ModelLike, threads: int = 1, input_shapes: dict[str, list[int]] | None = None) -> None:
        self.source = load_model(model)
        self.threads = threads
        self.input_shapes = dict(input_shapes or {})
        self.last: ModelProfile | None = None

    def profile(self, input_data=None, device: str = "cpu", iterations: int = 30, warmup: int = 5,
                inventory: Path | None = None, store=None) -> ModelProfile:
        """Profile on this CPU in process ("cpu"), or on a farm device by name (e.g. "local")."""
        if iterations < 1 or warmup < 0:
            raise OptimizerError("iterations must be >= 1 and warmup >= 0")
        if device == "cpu":
            self.last = self._profile_cpu(input_data, iterations, warmup)
        else:
            self.last = self._profile_farm(device, iterations, warmup, inventory, store, input_data)
        return self.last

    def find_bottlenecks(self, threshold: float = 0.05) -> list[LayerProfile]:
        """Bottlenecks of the last profile (profiles on the CPU first if none was taken)."""
        return (self.last or self.profile()).find_bottlenecks(threshold)

    def _feed(self, input_data):
        model = self.source.proto
        if input_data is None:
            return synthetic_data(model, n=1, input_shapes=self.input_shapes).feeds[0]
        return as_dataset(input_data, model, max_samples=1).feeds[0]

    def _profile_cpu(self, input_data, iterations: int, warmup: int) -> ModelProfile:
        feed = self._feed(input_data)
        with tempfile.TemporaryDirectory(prefix="edgefarm-profile-") as tmp:
            path = self.source.path
            if path is None:
                path = Path(tmp) / "model.onnx"
                path.write_bytes(self.source.proto.SerializeToString())
            rows, total_ms, n = profile_here(path, self.threads, feed, warmup, iterations, Path(tmp))
        shapes = {k: list(v.shape) for k, v in feed.items()}
        graph = graph_flops(self.source.proto, shapes)
        layers = []
        for r in sorted(rows, key=lambda r: -r["time_ms"]):
            flops, sources = row_flops(r, graph)
            layers.append(LayerProfile(r["name"], r["op_type"], r["time_ms"], r["percent"],
                                       r.get("memory_bytes", 0) / 2**20, flops, sources))
        return ModelProfile("cpu", total_ms, n, self.threads, layers)

    def _profile_farm(self, device: str, iterations: int, warmup: int, inventory, store, input_data) -> ModelProfile:
        shapes = dict(self.input_shapes)
        if input_data is not None:  # the agent generates its inputs; the data fix dynamic shapes
            shapes.update({k: list(v.shape) for k, v in self._feed(input_data).items()})
        path = self.source.path
        tmp = None
        if path is None:
            tmp = tempfile.NamedTemporaryFile(suffix=".onnx", delete=False)
            tmp.write(self.source.proto.SerializeToString())
            tmp.close()
            path = Path(tmp.name)
        try:
            result = profile_on_farm(FarmProfileRequest(path, device, self.threads, warmup, iterations, shapes,
                                                        inventory, store))
        finally:
            if tmp is not None:
                Path(tmp.name).unlink(missing_ok=True)
        layers = [LayerProfile(r["name"], r["op_type"], r["time_ms"], r["percent"],
                               int(r.get("memory_bytes", 0)) / 2**20, r.get("flops"), r.get("source_nodes", []))
                  for r in result.layers]
        return ModelProfile(result.device, result.total_ms, result.iterations, result.threads, layers)
