"""Low-rank factorization: the SVD of a Linear or 1x1 Conv weight splits the layer into two thinner
ones (W ~ U_r S_r V_r^T), and the record says how far the outputs moved."""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field

from optimizers.errors import DataMismatch, OptimizerError
from optimizers.pytorch.helpers import count_params
from optimizers.pytorch.inputs import evaluating, find_example_input, select_output

log = logging.getLogger(__name__)


@dataclass
class FactorizeReport:
    """Layers factorized (name -> rank), parameters before/after, and the output error."""

    rank_ratio: float
    ranks: dict[str, int] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    output_relative_error: float = 0.0   # ||y' - y|| / ||y|| on the example input
    output_max_abs_error: float = 0.0    # max |y' - y| on the example input
    example_input: str = ""              # where the example input came from
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _eligible(module) -> str | None:
    """None when the layer can be factorized, else why not."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return None
    if isinstance(module, torch.nn.Conv2d):
        if module.kernel_size != (1, 1):
            return f"a {module.kernel_size[0]}x{module.kernel_size[1]} conv (only 1x1 convs are matrices)"
        if module.groups != 1:
            return "a grouped/depthwise conv"
        return None
    return f"a {type(module).__name__}, not a Linear or 1x1 Conv"


def _split(module, rank: int):
    """Two layers whose product is the rank-`rank` SVD approximation of module's weight."""
    import torch

    conv = isinstance(module, torch.nn.Conv2d)
    w = module.weight.detach().reshape(module.weight.shape[0], -1).double()  # [out, in]
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    first_w = (root[:, None] * vh[:rank]).float()      # [rank, in]
    second_w = (u[:, :rank] * root[None, :]).float()   # [out, rank]
    has_bias = module.bias is not None
    if conv:
        first = torch.nn.Conv2d(module.in_channels, rank, 1, stride=module.stride, bias=False)
        second = torch.nn.Conv2d(rank, module.out_channels, 1, bias=has_bias)
        first.weight.data.copy_(first_w[:, :, None, None])
        second.weight.data.copy_(second_w[:, :, None, None])
    else:
        first = torch.nn.Linear(module.in_features, rank, bias=False)
        second = torch.nn.Linear(rank, module.out_features, bias=has_bias)
        first.weight.data.copy_(first_w)
        second.weight.data.copy_(second_w)
    if has_bias:
        second.bias.data.copy_(module.bias.detach())
    return torch.nn.Sequential(first, second)


class LowRankFactorizer:
    """`LowRankFactorizer().factorize(model, rank_ratio=0.5, layers=[...])` -> a factorized copy;
    `.report` has the ranks, parameters and output error."""

    def __init__(self) -> None:
        self.report: FactorizeReport | None = None

    def factorize(self, model, rank_ratio: float = 0.5, layers: list[str] | None = None, inputs=None,
                  example_input=None, output=None):
        """A factorized copy of `model`. The output error is measured on `example_input` (or `inputs`, a
        batch of real inputs), else on an input found from the model (inputs.py); `output` selects the
        output tensor of a model that returns more."""
        import torch

        if not 0 < rank_ratio <= 1:
            raise OptimizerError(f"rank_ratio must be in (0, 1] (kept rank / full rank), got {rank_ratio}")
        modules = dict(model.named_modules())
        if layers is not None:
            unknown = [n for n in layers if n not in modules]
            if unknown:
                raise DataMismatch(f"layers names {', '.join(map(repr, unknown))}, which the model does not have; "
                                   f"its layers are e.g. {', '.join(list(modules)[1:9])}")
            bad = {n: _eligible(modules[n]) for n in layers if _eligible(modules[n])}
            if bad:
                raise OptimizerError("cannot factorize " + "; ".join(f"'{n}': {why}" for n, why in bad.items()))
            names = list(layers)
        else:
            names = [n for n, m in modules.items() if n and _eligible(m) is None]
        result = copy.deepcopy(model).eval()
        report = FactorizeReport(rank_ratio=rank_ratio, params_before=count_params(model))
        for name in names:
            module = result.get_submodule(name)
            full = min(module.weight.shape[0], module.weight[0].numel())
            rank = max(1, round(rank_ratio * full))
            parent_name, _, child = name.rpartition(".")
            parent = result.get_submodule(parent_name) if parent_name else result
            setattr(parent, child, _split(module, rank))
            report.ranks[name] = rank
        report.params_after = count_params(result)
        found = find_example_input(model, example_input if example_input is not None else inputs, output=output)
        x = found.tensor
        if found.guessed:   # zeros of a guessed shape would hide the error: random inputs of that shape
            x = torch.randn(found.shape, generator=torch.Generator().manual_seed(0))
        with evaluating(model), evaluating(result):
            y = select_output(model(x), output).float()
            y2 = select_output(result(x), output).float()
        report.output_relative_error = float((y2 - y).norm() / y.norm().clamp_min(1e-12))
        report.output_max_abs_error = float((y2 - y).abs().max())
        report.example_input = found.source
        self.report = report
        log.info("factorized %d layers at rank ratio %.2f: %d -> %d parameters, output error %.2e",
                 len(names), rank_ratio, report.params_before, report.params_after, report.output_relative_error)
        return result
