"""Structured pruning on every `transformers` image classifier that builds offline from a small config
(tests/optimizers/vision_zoo.py): each is pruned into a model that runs and gives its logits, or refused with
a sentence, and none hangs (FocalNet's focal modulation once sent Torch-Pruning's dependency search round
for more than 30 minutes). How long each takes: benchmarks/prune_architectures.py."""

from __future__ import annotations

import pytest
import torch

from optimizers import Pruner, count_params
from optimizers.errors import OptimizerError
from optimizers.pytorch.inputs import select_output
from tests.optimizers.vision_zoo import ARCHITECTURES, build

pytestmark = pytest.mark.slow   # 32 architectures

HANG_GUARD_S = 240   # a hang, not a speed goal: each takes seconds (the benchmark's table)


@pytest.mark.timeout(HANG_GUARD_S)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_pruned_into_a_running_model_or_refused_with_a_reason(name):
    torch.set_num_threads(1)
    model = build(name)
    x = torch.randn(1, 3, 64, 64)
    pruner = Pruner("structured")
    try:
        pruned = pruner.prune(model, pruning_ratio=0.3, example_input=x)
    except OptimizerError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    with torch.no_grad():
        assert select_output(pruned(x)).shape == (1, 10)
    assert count_params(pruned) < count_params(model)
    assert all(reason for reason in pruner.report.kept_whole.values())


def test_focalnet_names_the_layers_whose_search_did_not_finish():
    pruner = Pruner("structured")
    pruner.prune(build("FocalNet"), pruning_ratio=0.3, example_input=torch.randn(1, 3, 64, 64))
    stuck = {n for n, why in pruner.report.kept_whole.items() if "did not converge" in why}
    assert {f"focalnet.encoder.stages.{i}.layers.0.modulation.projection_in" for i in range(4)} <= stuck
