"""Bad input to :func:`mgelib.graphs.encode` is refused with a clear ``ValueError`` (method §5.1:
"Anything else … raises a clear ValueError naming the module"; CONTRIBUTING: the message names
the bad value)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from mgelib import models
from mgelib.graphs import GraphTooLarge, UnsupportedOperation, encode, estimate_edges

pytestmark = pytest.mark.usefixtures("torch_single_thread")


class _Cat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 2, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


UNSUPPORTED = {
    "layernorm": (
        nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2)),
        (1, 2, 2),
        r"module '2'.*LayerNorm",
    ),
    "transposed conv": (
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 2, 3)),
        (1, 8, 8),
        r"module '1'.*ConvTranspose2d.*transposed",
    ),
}

#: Refused before issue 17 (ATen tracing), encoded now.
NOW_SUPPORTED = {
    "cat": (_Cat(), (1, 4, 4)),
    "dilated conv": (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)), (1, 8, 8)),
    "grouped conv": (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), (4, 8, 8)),
    "upsample": (
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 1)),
        (1, 8, 8),
    ),
}


@pytest.mark.parametrize("case", sorted(NOW_SUPPORTED))
def test_operations_refused_before_the_aten_tracer_now_encode(case):
    model, shape = NOW_SUPPORTED[case]
    assert encode(model, shape).n_edges > 0


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_operation_is_a_value_error_naming_it(case):
    model, shape, pattern = UNSUPPORTED[case]
    with pytest.raises(ValueError, match=pattern) as err:
        encode(model, shape)
    assert isinstance(err.value, UnsupportedOperation)


def test_input_too_small_for_the_model():
    """CONV-6 halves the map three times: a 4×4 input shrinks below 1×1."""
    model = models.build("conv6", 3, 10, 8, seed=0)
    with pytest.raises(ValueError, match=re.escape("(3, 4, 4)")):
        encode(model, (3, 4, 4))


@pytest.mark.parametrize("shape", [(0, 8, 8), (3, 8, 8, 1)])
def test_malformed_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        encode(models.build("resnet20", 3, 10, 8, seed=0), shape)


def test_mge_needs_an_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        encode(models.build("resnet20", 3, 10, 8, seed=0))


def _masks(model: nn.Module) -> dict[str, torch.Tensor]:
    from mgelib.masks import prunable_parameters

    return {k: torch.ones_like(p, dtype=torch.bool) for k, p in prunable_parameters(model).items()}


@pytest.mark.parametrize("encoding", ["mge", "rolled", "rolled_channel"])
def test_masks_that_do_not_fit_the_model(encoding):
    model = models.build("resnet20", 3, 10, 8, seed=0)
    shape = (3, 8, 8) if encoding == "mge" else None
    wrong_key = _masks(model)
    wrong_key["conv9.weight"] = wrong_key.pop("conv1.weight")
    with pytest.raises(ValueError, match="conv9.weight"):
        encode(model, shape, encoding, masks=wrong_key)
    wrong_shape = _masks(model)
    wrong_shape["linear.weight"] = torch.ones(10, 65, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"linear\.weight.*\(10, 65\)"):
        encode(model, shape, encoding, masks=wrong_shape)


def test_weight_mask_buffer_of_the_wrong_shape():
    model = models.build("resnet20", 3, 10, 8, seed=0)
    model.linear.register_buffer("weight_mask", torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="linear.weight"):
        encode(model, (3, 8, 8))


def test_max_edges_exceeded_names_the_estimate():
    model = models.build("resnet20", 3, 10, 8, seed=0)
    n = estimate_edges(model, (3, 8, 8))
    assert encode(model, (3, 8, 8), max_edges=n).n_edges == n
    with pytest.raises(GraphTooLarge, match=f"{n:,} edges"):
        encode(model, (3, 8, 8), max_edges=n - 1)


def test_tiny_memory_budget_is_refused_before_building():
    model = models.build("resnet20", 3, 10, 8, seed=0)
    n = estimate_edges(model, (3, 8, 8))
    with pytest.raises(GraphTooLarge, match=f"{n:,} edges.*memory budget") as err:
        encode(model, (3, 8, 8), memory_budget=1024)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"encoding": "unrolled"}, "encoding.*'unrolled'"),
        ({"compat": "authors"}, "compat.*'authors'"),
        ({"weights": "random"}, "weights.*'random'"),
        ({"weight_precision": "float64"}, "weight_precision.*'float64'"),
        ({"weight_precision": "float64", "encoding": "rolled"}, "weight_precision.*'float64'"),
    ],
)
def test_bad_option_values(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        encode(models.build("resnet20", 3, 10, 8, seed=0), (3, 8, 8), **kwargs)


def test_model_without_prunable_layers():
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        encode(nn.Sequential(nn.ReLU()), (1, 4, 4))


@pytest.mark.parametrize("case", ["layernorm", "transposed conv", "too small"])
def test_error_messages_carry_no_fx_internals(case):
    """BUG (message clarity): torch.fx's Interpreter appends "While executing %node … Original
    traceback: None … Use tlparse to see full graph …" to every exception raised while it runs a
    node, so the ValueError that names the bad op ends in fx internals. The message should be the
    encoder's own sentence only."""
    if case == "too small":
        model, shape = models.build("conv6", 3, 10, 8, seed=0), (3, 4, 4)
    else:
        model, shape, _ = UNSUPPORTED[case]
    with pytest.raises(ValueError) as err:
        encode(model, shape)
    message = str(err.value)
    assert "While executing" not in message and "tlparse" not in message, message
