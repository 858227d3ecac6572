"""A bound on Torch-Pruning's dependency search. For some layers the search never ends: a Linear whose output
is split into parts of unequal size feeding one another (FocalNet's focal modulation, YOLOv10's attention:
VainF/Torch-Pruning#430) makes `get_pruning_group` add the same layers with new index sets forever. In a
legitimate group each layer appears a few times at most (on FocalNet: groups of up to 31 entries, found in
2 ms); a search that reaches one layer with one pruning function more than MAX_REPEATS times has not
converged (FocalNet's stuck searches had reached one 239 times after 3 s), and none may run longer than
MAX_SECONDS. `bounded_group_search` stops such a search and names its root layer and the layers it had
reached, which the pruner then keeps whole (with the reason) before it tries again."""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator

from optimizers.pytorch.pruning_safety import layer_kinds

MAX_REPEATS = 32      # one layer + pruning function reached this often: the search is going round
MAX_SECONDS = 10.0    # and whatever happens, no group search runs silently longer than this
REASON = ("Torch-Pruning's dependency search for this layer's channels did not converge (its output is split "
          "into unequal parts that feed one another, VainF/Torch-Pruning#430): kept whole")

_lock = threading.RLock()   # one swap at a time; nested blocks (iterative pruning) allowed


class GroupDidNotConverge(Exception):
    """Torch-Pruning's group search from the layer `name` (its name in the model) did not converge;
    `coupled`: the Conv/Linear layers it had reached (their own searches run into the same loop)."""

    def __init__(self, name: str, coupled: list[str]) -> None:
        super().__init__(f"the dependency search from {name} did not converge")
        self.name, self.coupled = name, coupled


def _name(node) -> str:
    """A Torch-Pruning graph node's module name in the model (what `ignored_layers` and our `keep` use)."""
    return getattr(node, "_name", None) or str(node.module)


@contextlib.contextmanager
def bounded_group_search(max_repeats: int = MAX_REPEATS, max_seconds: float = MAX_SECONDS) -> Iterator[None]:
    """While inside, a Torch-Pruning group search that goes round (a layer reached more than `max_repeats`
    times) or runs longer than `max_seconds` raises GroupDidNotConverge. (Torch-Pruning's graph module builds
    each group with the `Group` class it imported; it gets a subclass that counts as the group grows, for
    the duration of the block only.)"""
    from torch_pruning.dependency import graph

    layers = layer_kinds()
    base = graph.Group

    class BoundedGroup(base):
        def __init__(self) -> None:
            super().__init__()
            self._started = time.monotonic()
            self._reached: collections.Counter = collections.Counter()

        def add_dep(self, dep, idxs) -> None:
            key = (id(dep.target), dep.handler)
            self._reached[key] += 1
            if self._group and (self._reached[key] > max_repeats or time.monotonic() - self._started > max_seconds):
                raise GroupDidNotConverge(_name(self._group[0].dep.target), sorted(
                    {_name(item.dep.target) for item in self._group if isinstance(item.dep.target.module, layers)}))
            super().add_dep(dep, idxs)

    with _lock:
        graph.Group = BoundedGroup
        try:
            yield
        finally:
            graph.Group = base
