"""A PyTorch model's example input and its output tensor, found rather than assumed, so that every
technique works on the user's own models.

The input comes from, in order: an explicit `example_input`, the first sample of the data the technique
was given, the input shape the model declares (`input_shape`, or a Hugging Face config's `image_size` and
`num_channels`), or its first layer when that fixes it (a Conv2d's in_channels at 224x224, then 64 and
32; a Linear's in_features). Each guess must run through the model; when none does, a ModelError names
`example_input` and what was tried.

The output is the model's tensor: itself, a Hugging Face output's `.logits`, a dict's "logits" (or its
first tensor), a tuple's first element, or what `output=` selects (a key, an attribute, an index or a
function of the output)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from optimizers.errors import ModelError

CONV_SIZES = (224, 64, 32)   # spatial sizes tried when only a Conv2d's channel count is known

OutputSelector = str | int | Callable | None


@dataclass
class ExampleInput:
    """The tensor found, and where it came from (said in records and errors)."""

    tensor: object   # torch.Tensor
    source: str
    output_shape: tuple[int, ...] = ()   # the shape of the model's output tensor on it
    guessed: bool = False                # zeros of a guessed shape, not data or an input given

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)


@contextmanager
def evaluating(model) -> Iterator[None]:
    """The model in eval mode without gradients inside the block; its training flag restored after."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def select_output(y, output: OutputSelector = None):
    """The tensor among a model's outputs (see the module docstring)."""
    import torch

    if callable(output):
        return output(y)
    if isinstance(output, int):
        return y[output]
    if isinstance(output, str):
        return y[output] if isinstance(y, Mapping) else getattr(y, output)
    if isinstance(y, torch.Tensor):
        return y
    if hasattr(y, "logits"):
        return y.logits
    if isinstance(y, Mapping):
        return y["logits"] if "logits" in y else next(v for v in y.values() if isinstance(v, torch.Tensor))
    if isinstance(y, (tuple, list)) and y:
        return select_output(y[0])
    raise ModelError(f"the model returned a {type(y).__name__}, not a tensor: say which output to use with "
                     "output= (a key, attribute name, index or function)")


def output_module(model, output: OutputSelector = None):
    """The model with a forward that returns its output tensor (a wrapper module; the model's own modules
    and parameters are shared, so pruning or training the wrapper changes the model)."""
    import torch

    class OutputOf(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return select_output(self.inner(*args), output)

    return OutputOf(model)


def tensor_model(model, example, output: OutputSelector = None):
    """The model itself when it returns a tensor (so exported node names stay the model's own), else
    output_module(model, output)."""
    import torch

    if output is None:
        with evaluating(model):
            if isinstance(model(example), torch.Tensor):
                return model
    return output_module(model, output)


def first_sample(data):
    """The first input of the data a technique was given, as a batch of one; None without data."""
    import torch

    if data is None:
        return None
    if hasattr(data, "feeds") and data.feeds:   # an optimizers.data.feeds.Dataset: feed dicts of one input
        data = next(iter(data.feeds[0].values()))
    if hasattr(data, "x"):
        data = data.x
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (int, float)):
        data = data[0]
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return torch.as_tensor(np.asarray(data[:1]) if isinstance(data, np.ndarray) else data[:1]).float()
    try:
        batch = next(iter(data))
    except (TypeError, StopIteration):
        return None
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return torch.as_tensor(x[:1]).float() if hasattr(x, "__len__") else None


def declared_shape(model) -> tuple[int, ...] | None:
    """An input shape the model states: `input_shape`, or a config's image_size and num_channels."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, (tuple, list)) and all(isinstance(d, int) for d in shape):
        return tuple(shape) if len(shape) == 4 or shape[0] == 1 else (1, *shape)
    config = getattr(model, "config", None)
    size = getattr(config, "image_size", None) or getattr(model, "image_size", None)
    channels = getattr(config, "num_channels", None)
    if isinstance(size, int) and isinstance(channels, int):
        return (1, channels, size, size)
    return None


def first_layer_guesses(model) -> list[tuple[str, tuple[int, ...]]]:
    """Shapes the model's first Conv2d or Linear allows, with what each guess rests on."""
    import torch

    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            return [(f"its first layer {name} (Conv2d, {m.in_channels} channels) at {s}x{s}",
                     (1, m.in_channels, s, s)) for s in CONV_SIZES]
        if isinstance(m, torch.nn.Linear):
            return [(f"its first layer {name} (Linear, {m.in_features} features)", (1, m.in_features))]
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv3d, torch.nn.Embedding, torch.nn.RNNBase)):
            return []   # the length, depth or token ids cannot be guessed
    return []


def find_example_input(model, example_input=None, data=None, output: OutputSelector = None) -> ExampleInput:
    """The example input of `model` (see the module docstring); each guess is checked by a forward pass."""
    import torch

    if example_input is not None:
        x = example_input if isinstance(example_input, torch.Tensor) else torch.as_tensor(np.asarray(example_input))
        return _checked(model, [("example_input", x.float() if x.is_floating_point() else x)], output, strict=True)
    guesses = []
    sample = first_sample(data)
    if sample is not None:
        guesses.append(("the first sample of the data", sample))
    shape = declared_shape(model)
    if shape is not None:
        guesses.append(("the input shape the model declares", torch.zeros(shape)))
    guesses += [(how, torch.zeros(s)) for how, s in first_layer_guesses(model)]
    return _checked(model, guesses, output, strict=False)


def _checked(model, guesses: list[tuple[str, object]], output: OutputSelector, strict: bool) -> ExampleInput:
    tried = []
    with evaluating(model):
        for how, x in guesses:
            try:
                shape = tuple(select_output(model(x), output).shape)
                return ExampleInput(x, how, shape, guessed=how not in ("example_input", "the first sample of the data"))
            except ModelError:
                raise
            except Exception as exc:  # the forward pass of a wrong guess raises whatever the model raises
                tried.append(f"{how}, shape {list(x.shape)}: {type(exc).__name__}: {str(exc).strip()[:160]}")
                if strict:
                    break
    name = type(model).__name__
    if strict:
        raise ModelError(f"{name} does not run on the example_input given ({tried[0]}); give example_input "
                         "of the shape and type the model takes")
    why = "; ".join(tried) if tried else ("no example_input, no data, no declared input_shape/image_size, and its "
                                          "first layer is not a Conv2d or Linear")
    raise ModelError(f"cannot tell what input {name} takes: give example_input= (e.g. torch.randn(1, 3, 224, 224)) "
                     f"or the data; tried: {why}")
