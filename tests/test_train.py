"""Tests for mgelib.train: masked training, exact resume, the paper's protocol, input checks."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from mgelib import data, models
from mgelib import train as tr
from mgelib.masks import prunable_parameters

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def random_masks(model: torch.nn.Module, density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Keep ``density`` of every layer's weights at random (at least one per layer)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, p in prunable_parameters(model).items():
        n = p.numel()
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=g)[: max(1, round(density * n))]] = True
        out[key] = flat.view(p.shape)
    return out


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load("digits", seed=0)


@pytest.fixture(scope="module")
def small_digits(digits) -> data.Dataset:
    """A 256/128 subset of digits: enough to exercise training, fast enough for resume tests."""
    return dataclasses.replace(
        digits,
        x_train=digits.x_train[:256],
        y_train=digits.y_train[:256],
        x_test=digits.x_test[:128],
        y_test=digits.y_test[:128],
    )


def _pruned_are_zero(model, masks) -> bool:
    return all(bool((p[~masks[k]] == 0).all()) for k, p in prunable_parameters(model).items())


def test_resnet20_at_90_percent_sparsity_learns_digits(digits):
    net = models.build("resnet20", 1, 10, 8, seed=0)
    masks = random_masks(net, 0.1)
    cfg = tr.paper_config(
        "resnet20", "digits", epochs=2, batch_size=64, device="cpu", progress=False
    )
    result = tr.train(net, masks, digits, cfg)
    assert _pruned_are_zero(net, masks)
    assert result.final_acc > 0.1 and result.best_acc >= result.final_acc
    assert result.sparsity == pytest.approx(0.9, abs=0.01)
    assert result.epochs_run == 2 and result.device == "cpu" and result.resumed_from == 0
    assert list(result.history["epoch"]) == [1, 2]
    assert list(result.history["lr"]) == pytest.approx([0.1, 0.01])  # milestone scaled to 1
    assert result.wall_time_s == pytest.approx(result.history["seconds"].sum())


def test_momentum_and_biases_stay_off_pruned_weights(small_digits):
    net = models.build("conv6", 1, 10, 8, seed=1)
    masks = random_masks(net, 0.2, seed=1)
    cfg = tr.TrainConfig(epochs=1, milestones=(), batch_size=64, device="cpu", progress=False)
    tr.train(net, masks, small_digits, cfg)
    assert _pruned_are_zero(net, masks)
    for module in net.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
            assert not module.bias.requires_grad and torch.count_nonzero(module.bias) == 0
    # Kept weights did move.
    fresh = models.build("conv6", 1, 10, 8, seed=1)
    moved = (
        net.linear[0].weight[masks["linear.0.weight"]]
        != fresh.linear[0].weight[masks["linear.0.weight"]]
    )
    assert bool(moved.any())


def test_kill_and_resume_gives_identical_weights(small_digits, tmp_path):
    cfg = tr.TrainConfig(
        epochs=3, milestones=(2,), batch_size=64, seed=5, device="cpu", progress=False
    )

    def fresh():
        net = models.build("resnet20", 1, 10, 8, seed=3)
        return net, random_masks(net, 0.3, seed=3)

    net, masks = fresh()
    straight = tr.train(net, masks, small_digits, cfg)
    expected = {k: v.clone() for k, v in net.state_dict().items()}

    class Killed(RuntimeError):
        pass

    def kill_after_first(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise Killed

    run_dir = tmp_path / "run"
    net, masks = fresh()
    with pytest.raises(Killed):
        tr.train(net, masks, small_digits, cfg, run_dir=run_dir, callback=kill_after_first)
    assert (run_dir / tr.CHECKPOINT_NAME).is_file()
    assert len(pd.read_parquet(run_dir / tr.HISTORY_NAME)) == 1
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]

    net, masks = fresh()
    resumed = tr.train(net, masks, small_digits, cfg, run_dir=run_dir)
    assert resumed.resumed_from == 1 and resumed.epochs_run == 3
    state = net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    cols = ["epoch", "loss", "train_acc", "test_acc", "lr"]
    pd.testing.assert_frame_equal(resumed.history[cols], straight.history[cols])
    assert len(pd.read_parquet(run_dir / tr.HISTORY_NAME)) == 3

    # A finished run returns at once with the stored result.
    net, masks = fresh()
    again = tr.train(net, masks, small_digits, cfg, run_dir=run_dir)
    assert again.resumed_from == 3 and again.final_acc == resumed.final_acc
    assert torch.equal(net.linear.weight, expected["linear.weight"])

    # A checkpoint from another config or other masks is refused.
    net, masks = fresh()
    with pytest.raises(ValueError, match="lr"):
        tr.train(net, masks, small_digits, dataclasses.replace(cfg, lr=0.05), run_dir=run_dir)
    with pytest.raises(ValueError, match="different masks"):
        tr.train(net, random_masks(net, 0.3, seed=4), small_digits, cfg, run_dir=run_dir)


def test_bad_masks_rejected(small_digits):
    net = models.build("resnet20", 1, 10, 8, seed=0)
    cfg = tr.TrainConfig(epochs=1, device="cpu", progress=False)
    good = random_masks(net, 0.5)
    missing = dict(good)
    missing.pop("linear.weight")
    with pytest.raises(ValueError, match="linear.weight"):
        tr.train(net, missing, small_digits, cfg)
    wrong = dict(good, **{"conv1.weight": torch.ones(16, 1, 1, 1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="conv1.weight"):
        tr.train(net, wrong, small_digits, cfg)
    with pytest.raises(ValueError, match="boolean"):
        tr.train(net, dict(good, **{"linear.weight": torch.full((10, 64), 2.0)}), small_digits, cfg)
    empty = {k: torch.zeros_like(v) for k, v in good.items()}
    with pytest.raises(ValueError, match="sparsity"):
        tr.train(net, empty, small_digits, cfg)
    cifar_net = models.build("resnet20", 1, 100, 8)
    with pytest.raises(ValueError, match="num_classes=10"):
        tr.train(cifar_net, None, small_digits, cfg)


def test_paper_config_protocol():
    c = tr.paper_config("resnet20", "cifar10")
    assert (c.epochs, c.milestones, c.lr, c.momentum, c.weight_decay, c.batch_size, c.gamma) == (
        160,
        (80, 120),
        0.1,
        0.9,
        1e-4,
        128,
        0.1,
    )
    assert tr.paper_config("wrn28_2", "cifar100").weight_decay == 5e-4
    assert tr.paper_config("wrn28_2", "tinyimagenet").milestones == (30, 60, 80)
    assert tr.paper_config("conv6", "tinyimagenet").milestones == (20, 60, 80)
    assert tr.paper_config("resnet32", "tinyimagenet").epochs == 100
    d = tr.paper_config("resnet20", "digits")
    assert (d.epochs, d.milestones) == (30, (15, 23))
    assert tr.paper_config("resnet20", "cifar10", epochs=40).milestones == (20, 30)
    assert tr.paper_config("resnet20", "cifar10", epochs=40, milestones=(5,)).milestones == (5,)
    assert tr.scale_milestones((30, 60, 80), 100, 10) == (3, 6, 8)
    assert tr.scale_milestones((80, 120), 160, 1) == (1,)


def test_unknown_names_and_bad_config():
    with pytest.raises(ValueError, match="conv6, resnet20"):
        tr.paper_config("vgg16", "cifar10")
    with pytest.raises(ValueError, match="digits, cifar10"):
        tr.paper_config("resnet20", "imagenet")
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        tr.paper_config("resnet20", "cifar10", learning_rate=0.1)
    with pytest.raises(ValueError, match="amp"):
        tr.TrainConfig(amp="fp16")
    with pytest.raises(ValueError, match="epochs"):
        tr.TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="milestones"):
        tr.TrainConfig(milestones=(0, 3))


def test_resolve_device():
    assert tr.resolve_device("cpu") == torch.device("cpu")
    assert tr.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        tr.resolve_device("tpu-9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            tr.resolve_device("cuda")


def test_cuda_only_options_warn_on_cpu(small_digits):
    net = models.build("resnet20", 1, 10, 8, seed=0)
    cfg = tr.TrainConfig(
        epochs=1, milestones=(), amp="bf16", channels_last=True, device="cpu", progress=False
    )
    with pytest.warns(UserWarning, match="CUDA only"):
        result = tr.train(net, None, small_digits, cfg)
    assert result.device == "cpu"


def test_step_hook_sees_dense_gradients_then_masked_weights(small_digits):
    net = models.build("conv6", 1, 10, 8, seed=2)
    masks = random_masks(net, 0.2, seed=2)
    calls = []

    class Recorder:
        def attach(self, model, optimizer, masks, total_steps, steps_per_epoch):
            self.params = prunable_parameters(model)
            calls.append(("attach", total_steps, steps_per_epoch))

        def before_step(self, step):
            g = self.params["linear.0.weight"].grad
            calls.append(("before", step, bool(g[~masks["linear.0.weight"]].any())))

        def after_step(self, step):
            w = self.params["linear.0.weight"]
            calls.append(("after", step, bool(w[~masks["linear.0.weight"]].any())))
            return False

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    cfg = tr.TrainConfig(epochs=1, milestones=(), batch_size=64, device="cpu", progress=False)
    tr.train(net, masks, small_digits, cfg, hook=Recorder())
    assert calls[0] == ("attach", 4, 4)
    assert [c[:2] for c in calls[1:3]] == [("before", 1), ("after", 1)]
    assert all(c[2] for c in calls if c[0] == "before")  # dense: pruned positions have gradients
    assert not any(c[2] for c in calls if c[0] == "after")  # masked: pruned weights are zero
