"""Oracles for mgelib.dst: exact counts, magnitude drops, top-|grad| growth (brute force), the
cosine schedule, conserved reallocation, static equality at drop fraction 0, determinism, exact
resume of a DST run."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from mgelib import data, dst
from mgelib import train as tr
from mgelib.masks import prunable_parameters
from mgelib.runner.grid import expand_grid

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 64, 10),
    )


@pytest.fixture(scope="module")
def tiny_digits() -> data.Dataset:
    ds = data.load("digits", seed=0)
    return dataclasses.replace(
        ds, x_train=ds.x_train[:192], y_train=ds.y_train[:192], x_test=ds.x_test[:64],
        y_test=ds.y_test[:64],
    )  # fmt: skip


def cfg(epochs: int = 2) -> tr.TrainConfig:
    return tr.TrainConfig(epochs=epochs, milestones=(), batch_size=32, device="cpu", progress=False)


def kept(masks) -> int:
    return sum(int(m.sum()) for m in masks.values())


def random_layers(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = {"a": (8, 5), "b": (6, 4, 3), "c": (30,)}
    weights = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    masks = {k: torch.rand(s, generator=g) < 0.4 for k, s in shapes.items()}
    grads = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    return weights, masks, grads


# --------------------------------------------------------------------------- one update


@pytest.mark.parametrize(
    "growth, redistribution, threshold",
    [
        ("random", None, None),
        ("gradient", None, None),
        ("momentum", {"a": 1.0, "b": 3.0, "c": 0.5}, None),
        ("random", "survivors", 0.5),
    ],
)
def test_one_update_keeps_the_count_and_drops_the_smallest(growth, redistribution, threshold):
    weights, masks, grads = random_layers()
    gen = torch.Generator().manual_seed(0)
    new, info = dst.update_masks(
        weights,
        masks,
        fraction=0.3,
        growth=growth,
        scores=None if growth == "random" else grads,
        redistribution=redistribution,
        threshold=threshold,
        generator=gen,
    )
    assert kept(new) == kept(masks)  # exactly the target, globally
    assert info["dropped"] == info["grown"]
    for k, m in masks.items():
        surv = info["survivors"][k]
        dropped = m & ~surv
        w = weights[k].abs()
        if threshold is None:
            assert int(dropped.sum()) == math.floor(0.3 * int(m.sum()))
            if dropped.any() and surv.any():  # smallest-magnitude ones of their layer
                assert float(w[dropped].max()) <= float(w[surv].min())
            if redistribution is None:
                assert int(new[k].sum()) == int(m.sum())  # per layer too
        else:
            assert torch.equal(dropped, m & (w < threshold))
        assert not (surv & ~new[k]).any()  # survivors stay
    if redistribution is not None:
        moved_between_layers = any(int(new[k].sum()) != int(masks[k].sum()) for k in masks)
        assert moved_between_layers  # reallocation happened, and conserved the global count


def test_selection_breaks_ties_by_index_like_a_stable_sort():
    from mgelib.dst.updates import _k_smallest

    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        n = int(torch.randint(1, 40, (1,), generator=g))
        x = torch.randint(0, 4, (n,), generator=g).float()  # many ties
        k = int(torch.randint(0, n + 1, (1,), generator=g))
        want = sorted(torch.argsort(x, stable=True)[:k].tolist())
        assert sorted(_k_smallest(x, k).tolist()) == want


def test_rigl_grows_the_top_gradients_among_inactive_brute_force():
    weights, masks, grads = random_layers(seed=3)
    new, info = dst.update_masks(weights, masks, fraction=0.5, growth="gradient", scores=grads)
    for k in masks:
        surv = info["survivors"][k].flatten()
        grown = (new[k].flatten() & ~surv).nonzero().flatten().tolist()
        # Brute force: every inactive position, sorted by |g| (descending), ties by index.
        inactive = [i for i in range(surv.numel()) if not surv[i]]
        ranked = sorted(inactive, key=lambda i: (-abs(float(grads[k].flatten()[i])), i))
        assert sorted(grown) == sorted(ranked[: info["grown_by_layer"][k]])


def test_cosine_schedule_and_paper_defaults():
    c = dst.dst_config("rigl")
    total = 1000
    for step in (0, 100, 400, 749):
        want = 0.3 * (1 + math.cos(math.pi * step / 750)) / 2
        assert dst.drop_fraction(c, step, total) == pytest.approx(want)
    assert dst.drop_fraction(c, 750, total) == 0.0
    assert dst.drop_fraction(dst.dst_config("set"), 999, total) == 0.3
    assert (c.update_every, c.end_fraction, c.init) == (100, 0.75, "erk")
    assert dst.dst_config("snfs").redistribution == "momentum"
    assert dst.dst_config("dsr").prune == "threshold"
    with pytest.raises(ValueError, match="unknown DST method 'rig'"):
        dst.dst_config("rig")
    with pytest.raises(ValueError, match="drop_fraction"):
        dst.dst_config("set", drop_fraction=1.5)


# --------------------------------------------------------------------------- in training


class Checked(dst.MaskUpdater):
    """After every update: the kept count, zero regrown weights and zero regrown momentum."""

    def after_step(self, step: int) -> bool:
        before = {k: m.bool().clone() for k, m in self._masks.items()}
        changed = super().after_step(step)
        if changed:
            now = self.masks()
            assert kept(now) == self.target
            info_rows = self.records[-1]
            assert info_rows["dropped"] == info_rows["grown"]
            for k, p in self.params.items():
                assert not p[~now[k]].any(), f"inactive weights of {k} are not zero"
                grown = now[k] & ~before[k]
                assert not p[grown].any(), f"regrown weights of {k} do not start at zero"
                buf = self.optimizer.state[p].get("momentum_buffer")
                assert not buf[grown].any(), f"regrown momentum of {k} is not zero"
        return changed


@pytest.mark.parametrize("method", dst.METHODS)
def test_every_method_keeps_the_count_after_every_update(method, tiny_digits):
    net = tiny_net()
    masks = dst.initial_masks(method, net, 0.8, seed=0)
    extra = {"drop_fraction": 0.2} if method == "dsr" else {}
    hook = Checked(dst.dst_config(method, update_every=2, seed=0, **extra))
    hook.target = kept(masks)
    tr.train(net, masks, tiny_digits, cfg(2), hook=hook)
    assert hook.records, "no mask update happened"
    assert sum(r["moved"] for r in hook.records) > 0
    rows = hook.records
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps) and all(s % 2 == 0 for s in steps)
    total = 2 * 6
    for r in rows:
        assert r["drop_fraction"] == pytest.approx(dst.drop_fraction(hook.config, r["step"], total))
    assert rows[-1]["exploration"] > 0.2  # more than the initial density was ever active


def test_rigl_drop_counts_follow_the_schedule(tiny_digits):
    net = tiny_net()
    masks = dst.initial_masks("rigl", net, 0.8)
    hook = dst.MaskUpdater(dst.dst_config("rigl", update_every=1))
    tr.train(net, masks, tiny_digits, cfg(2), hook=hook)
    per_layer = {k: int(m.sum()) for k, m in masks.items()}  # RigL keeps per-layer counts
    for r in hook.records:
        f = dst.drop_fraction(hook.config, r["step"], 12)
        assert r["dropped"] == sum(math.floor(f * n) for n in per_layer.values())
    assert max(r["step"] for r in hook.records) < 0.75 * 12  # T_end


@pytest.mark.parametrize("method", dst.METHODS)
def test_drop_fraction_zero_is_static_training_bit_for_bit(method, tiny_digits):
    masks = dst.initial_masks(method, tiny_net(), 0.8)
    static, moving = tiny_net(), tiny_net()
    tr.train(static, masks, tiny_digits, cfg(2))
    hook = dst.MaskUpdater(dst.dst_config(method, update_every=1, drop_fraction=0.0))
    tr.train(moving, masks, tiny_digits, cfg(2), hook=hook)
    assert hook.records == []
    for a, b in zip(static.state_dict().values(), moving.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_updates_are_deterministic_for_a_seed(tiny_digits):
    def run(seed: int):
        net = tiny_net()
        masks = dst.initial_masks("set", net, 0.8, seed=seed)
        hook = dst.MaskUpdater(dst.dst_config("set", update_every=2, seed=seed))
        tr.train(net, masks, tiny_digits, cfg(1), hook=hook)
        return hook.masks(), net.state_dict()

    (m1, w1), (m2, w2), (m3, _) = run(0), run(0), run(1)
    assert all(torch.equal(m1[k], m2[k]) for k in m1)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not all(torch.equal(m1[k], m3[k]) for k in m1)


@pytest.mark.parametrize("method", ["snfs", "dsr"])
def test_kill_and_resume_of_a_dst_run_is_bit_identical(method, tiny_digits, tmp_path):
    masks = dst.initial_masks(method, tiny_net(), 0.8)
    c = dst.dst_config(method, update_every=2, drop_fraction=0.3)

    ref = tiny_net()
    ref_hook = dst.MaskUpdater(c)
    tr.train(ref, masks, tiny_digits, cfg(3), hook=ref_hook)

    class Killed(RuntimeError):
        pass

    def kill(epoch, row):
        if epoch == 1:
            raise Killed

    net = tiny_net()
    with pytest.raises(Killed):
        tr.train(
            net,
            masks,
            tiny_digits,
            cfg(3),
            run_dir=tmp_path,
            hook=dst.MaskUpdater(c),
            callback=kill,
        )
    net = tiny_net()  # a fresh process: new model, new updater
    hook = dst.MaskUpdater(c)
    res = tr.train(net, masks, tiny_digits, cfg(3), run_dir=tmp_path, hook=hook)
    assert res.resumed_from == 1
    for a, b in zip(ref.state_dict().values(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert all(torch.equal(ref_hook.masks()[k], hook.masks()[k]) for k in masks)
    assert [r["step"] for r in hook.records] == [r["step"] for r in ref_hook.records]
    assert hook.exploration() == ref_hook.exploration()
    with pytest.raises(ValueError, match="different DST config"):
        other = dst.MaskUpdater(dataclasses.replace(c, seed=5))
        tr.train(tiny_net(), masks, tiny_digits, cfg(3), run_dir=tmp_path, hook=other)
    with pytest.raises(ValueError, match="with a step hook"):
        tr.train(tiny_net(), masks, tiny_digits, cfg(3), run_dir=tmp_path)


# --------------------------------------------------------------------------- topology, grid


def test_probe_matches_the_full_topometrics_on_the_cheap_subset():
    net = tiny_net()
    masks = dst.initial_masks("rigl", net, 0.97)
    probe = dst.topology_probe(net, (1, 8, 8))
    cheap = probe(masks)
    full = dst.full_topometrics(net, (1, 8, 8), masks)
    assert set(dst.CHEAP_METRICS) <= set(cheap)
    for m in dst.CHEAP_METRICS:
        assert cheap[f"raw__{m}"] == full[f"raw__{m}"]
    assert cheap["edges"] == full["edges"]
    assert full["raw__sink_nodes"] + full["raw__source_nodes"] > 0  # 97 %: some dead ends


def test_trajectory_table_rows_and_columns():
    net = tiny_net()
    masks = dst.initial_masks("set", net, 0.8)
    rec = [{"step": 3, "epoch": 1, "dropped": 2, "grown": 2, "moved": 1, "exploration": 0.3}]
    table = dst.trajectory(
        rec, initial={"edges": 1}, final={"edges": 1}, masks_init=masks, masks_final=masks,
        total_steps=6, epochs=2,
    )  # fmt: skip
    assert list(table["kind"]) == ["init", "update", "final"]
    assert list(table.columns[: len(dst.TRAJECTORY_COLUMNS)]) == list(dst.TRAJECTORY_COLUMNS)
    assert any(c.startswith("density:") for c in table.columns)
    assert table["moved"].tolist() == [0, 1, 0]


def test_grid_accepts_dst_methods_and_extra_subgrids():
    grid = {
        "models": ["conv6"],
        "datasets": ["digits"],
        "pruners": ["snip"],
        "sparsities": [0.6, 0.9, 0.98],
        "seeds": [0],
        "extra": [{"pruners": ["rigl", "set"], "sparsities": [0.9, 0.98]}],
    }
    specs = expand_grid(grid)
    assert len(specs) == 1 + 3 + 4
    assert {s.pruner for s in specs} == {"dense", "snip", "rigl", "set"}
    with pytest.raises(ValueError, match="unknown pruner"):
        expand_grid({**grid, "extra": [{"pruners": ["rigel"], "sparsities": [0.9]}]})


def test_initial_masks_use_the_method_allocation():
    net = tiny_net()
    for method in dst.METHODS:
        masks = dst.initial_masks(method, net, 0.9)
        n = sum(p.numel() for p in prunable_parameters(net).values())
        assert kept(masks) == round(0.1 * n)


@pytest.mark.slow
def test_gpu_check_runs_and_says_so_without_cuda(capsys, monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import gpu_check

    if torch.cuda.is_available():  # CI never has one; a GPU machine checks the CUDA path
        pytest.skip("CUDA present: run benchmarks/gpu_check.py itself")
    rows = gpu_check.main(["--quick"])
    out = capsys.readouterr().out
    assert "CUDA is not available" in out and "| train RigL (1 updates) | cpu |" in out
    assert [r["stage"].split(" (")[0] for r in rows] == [
        "prune",
        "train static",
        "train RigL",
        "graph metrics",
    ]
    assert "gpu_check" in sys.modules


def test_updates_on_a_channels_last_model(tiny_digits):
    # The CUDA path trains channels-last: flat indices must follow the logical (NCHW) order of
    # the masks whatever the memory layout. The CPU runs the same layout logic.
    masks = dst.initial_masks("rigl", tiny_net(), 0.8)
    ref, cl = tiny_net(), tiny_net().to(memory_format=torch.channels_last)
    hooks = [Checked(dst.dst_config("rigl", update_every=2)) for _ in range(2)]
    for net, hook in zip((ref, cl), hooks, strict=True):
        hook.target = kept(masks)
        tr.train(net, masks, tiny_digits, cfg(1), hook=hook)
    assert cl[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert len(hooks[0].records) == len(hooks[1].records) > 0
    same = [torch.equal(hooks[0].masks()[k], hooks[1].masks()[k]) for k in masks]
    assert sum(same) >= len(same) - 1  # the same masks, up to float noise of the conv kernels
