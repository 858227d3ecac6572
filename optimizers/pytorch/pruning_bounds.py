"""A time bound on Torch-Pruning's dependency search. For some layers the search never ends: a Linear whose
output is split into parts of unequal size feeding one another (FocalNet's focal modulation, YOLOv10's
attention: VainF/Torch-Pruning#430) makes `get_pruning_group` add the same layers with new index sets
forever. A legitimate group is found in milliseconds; `bounded_group_search` stops one that takes longer
than GROUP_SECONDS and names its root layer, which the pruner then keeps whole (with the reason) before it
tries again."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

GROUP_SECONDS = 3.0   # a group search this long has not converged (legitimate ones take milliseconds)
REASON = ("Torch-Pruning's dependency search for this layer's channels did not finish in {s:g} s (its output "
          "is split into unequal parts that feed one another, VainF/Torch-Pruning#430): kept whole")

LAYERS: tuple = ()   # the layer types a group is rooted at (set on first use: torch is imported lazily)
_lock = threading.RLock()   # one swap at a time; nested blocks (iterative pruning) allowed


class GroupDidNotConverge(Exception):
    """Torch-Pruning's group search from the layer `name` (its name in the model) ran past the bound;
    `coupled`: the Conv/Linear layers it had reached (their own searches run into the same loop)."""

    def __init__(self, name: str, coupled: list[str]) -> None:
        super().__init__(f"the dependency search from {name} did not converge")
        self.name, self.coupled = name, coupled


def _name(node) -> str:
    """A Torch-Pruning graph node's module name in the model (what `ignored_layers` and our `keep` use)."""
    return getattr(node, "_name", None) or str(node.module)


@contextlib.contextmanager
def bounded_group_search(seconds: float = GROUP_SECONDS) -> Iterator[None]:
    """While inside, a Torch-Pruning group search running longer than `seconds` raises GroupDidNotConverge.
    (Torch-Pruning's graph module builds each group with the `Group` class it imported; it gets a subclass
    that checks the clock as the group grows, for the duration of the block only.)"""
    import torch
    from torch_pruning.dependency import graph

    global LAYERS
    LAYERS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)

    base = graph.Group

    class BoundedGroup(base):
        def __init__(self) -> None:
            super().__init__()
            self._started = time.monotonic()

        def add_dep(self, dep, idxs) -> None:
            if self._group and time.monotonic() - self._started > seconds:
                raise GroupDidNotConverge(_name(self._group[0].dep.target), sorted(
                    {_name(item.dep.target) for item in self._group if isinstance(item.dep.target.module, LAYERS)}))
            super().add_dep(dep, idxs)

    with _lock:
        graph.Group = BoundedGroup
        try:
            yield
        finally:
            graph.Group = base
