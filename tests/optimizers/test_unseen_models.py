"""The PyTorch techniques on the user's own models, not the built-in example: six published architectures
(tests/optimizers/unseen.py) pruned without an example input, factorized, exported and run in ONNX
Runtime; models that return output objects; inputs that cannot be guessed; layers that cannot be pruned."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from optimizers import LowRankFactorizer, Pruner, Quantizer, calculate_flops, count_params, export_onnx
from optimizers.errors import ModelError
from optimizers.pytorch.inputs import find_example_input, select_output
from tests.optimizers.unseen import ARCHITECTURES, build

pytestmark = pytest.mark.slow   # prunes, factorizes and trains six published architectures


def _logits(model, x):
    with torch.no_grad():
        return select_output(model(x))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_structured_pruning_without_an_example_input_returns_a_model_that_runs(name, tmp_path):
    model = build(name)
    pruner = Pruner("structured")
    pruned = pruner.prune(model, pruning_ratio=0.3)
    found = find_example_input(model)
    assert _logits(pruned, found.tensor).shape == _logits(model, found.tensor).shape == (1, 10)
    report = pruner.report
    assert report.example_input == found.source
    assert 0.3 <= report.params_ratio <= 0.92 or report.kept_whole, report.to_json()
    assert count_params(pruned) < count_params(model)
    assert all(reason for reason in report.kept_whole.values())
    path = export_onnx(pruned, tmp_path / f"{name}-pruned.onnx")   # the input found again, the logits exported
    session = ort.InferenceSession(str(path))
    x = torch.randn(*session.get_inputs()[0].shape)
    got = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(got - _logits(pruned, x).numpy()).max() < 1e-4


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_low_rank_at_full_rank_reproduces_the_outputs(name):
    model = build(name)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    factorizer = LowRankFactorizer()
    factorized = factorizer.factorize(model, rank_ratio=1.0, layers=linears)
    assert factorizer.report.output_max_abs_error < 1e-3
    assert set(factorizer.report.ranks) == set(linears)
    x = find_example_input(model).tensor
    assert torch.allclose(_logits(factorized, x), _logits(model, x), atol=1e-3)


def test_attention_layers_are_kept_whole_and_said_so():
    pruner = Pruner("structured")
    pruner.prune(build("mobilevit"), pruning_ratio=0.3)
    attention = {n: why for n, why in pruner.report.kept_whole.items() if ".attention." in n}
    assert attention and all("split into heads" in why for why in attention.values())


class FixedReshape(torch.nn.Module):
    """A model that reshapes by a fixed width: pruning its first conv's channels breaks the view."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(32, 32, 3, padding=1)
        self.head = torch.nn.Linear(32 * 16, 10)

    def forward(self, x):
        y = torch.relu(self.conv2(torch.relu(self.conv(x))))
        y = torch.nn.functional.adaptive_avg_pool2d(y, 4)
        return self.head(y.view(y.shape[0], 32 * 16))


def test_layers_whose_pruning_breaks_the_model_are_found_and_kept():
    model = FixedReshape().eval()
    pruner = Pruner("structured", round_to=None)
    pruned = pruner.prune(model, pruning_ratio=0.3, example_input=torch.randn(1, 3, 16, 16))
    assert _logits(pruned, torch.randn(1, 3, 16, 16)).shape == (1, 10)
    assert "breaks the model" in pruner.report.kept_whole["conv2"]
    assert count_params(pruned) < count_params(model)   # conv's channels still went


def test_a_model_whose_input_cannot_be_guessed_names_example_input():
    model = torch.nn.Sequential(torch.nn.Embedding(100, 8), torch.nn.Flatten(), torch.nn.Linear(8 * 12, 2))
    with pytest.raises(ModelError, match="give example_input="):
        Pruner("structured").prune(model, pruning_ratio=0.3)
    with pytest.raises(ModelError, match="example_input"):
        export_onnx(model, "/nonexistent/never-written.onnx")
    with pytest.raises(ModelError, match="does not run on the example_input given"):
        Pruner("structured").prune(FixedReshape(), pruning_ratio=0.3, example_input=torch.zeros(1, 5, 16, 16))


def test_the_onnx_techniques_take_a_pytorch_module(tmp_path):
    model = build("resnet")
    photos = np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)
    q = Quantizer(method="int8").quantize(model=model, calibration_data=photos, algorithm="minmax",
                                          output=tmp_path / "resnet.int8.onnx")
    assert any("exported to ONNX first" in n and "[1, 3, 64, 64]" in n for n in q.record.notes)
    assert ort.InferenceSession(str(q.path)).run(None, {"input": photos[:1]})[0].shape == (1, 10)
    assert calculate_flops(model, example_input=torch.zeros(1, 3, 64, 64)) > 0


def test_qat_distillation_and_evaluation_take_models_that_return_output_objects(tmp_path):
    """Hugging Face classifiers return an object with .logits: QAT, distillation and evaluation use it."""
    from optimizers import KnowledgeDistiller, QATTrainer, convert_to_int8, evaluate

    teacher = build("resnet")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 3, 64, 64)).astype(np.float32), np.arange(32) % 10
    qat = QATTrainer(teacher).train((x, y), epochs=1)
    int8 = convert_to_int8(qat, (x[:8], y[:8]), output=tmp_path / "qat.onnx")
    assert evaluate(int8.path, {"input": x[:4]}, reference=teacher).fidelity.cosine > 0.9
    student = KnowledgeDistiller(teacher, build("regnet")).train((x, y), epochs=1)
    assert _logits(student, torch.from_numpy(x[:2])).shape == (2, 10)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_onnx_technique_runs_on_the_export_or_says_why_not(name, tmp_path):
    """The ONNX battery's cells for one exported architecture: a model ONNX Runtime runs, or the
    technique's own sentence; anything else (a raw exception) fails here."""
    from benchmarks.onnx_battery import TECHNIQUES, run_technique
    from controller.optimization.sources import onnx_source

    path = export_onnx(build(name), tmp_path / f"{name}.onnx")
    source = onnx_source(str(path))
    cells = {t: run_technique(t, path, source, tmp_path) for t in TECHNIQUES}
    assert all(c.startswith(("ok", "cannot: ")) for c in cells.values()), cells
    assert cells["int8"].startswith("ok") and cells["profile"].startswith("ok")


def test_a_failed_shape_inference_leaves_nothing_in_the_working_directory(tmp_path, monkeypatch):
    """ONNX Runtime's symbolic shape inference fails on MobileViT and dumps its half-inferred model and
    weights into the current directory; the quantizer falls back, says so, and removes them."""
    path = export_onnx(build("mobilevit"), tmp_path / "mobilevit.onnx")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    q = Quantizer("int8").quantize(path, calibration_data="synthetic", output=tmp_path / "q.onnx")
    assert q.record.settings["preprocessing"] == "without symbolic shape inference"
    assert list(work.iterdir()) == []
