"""Self-loop uncertainty and the deep ensemble: their mechanics on tiny inputs, and one short
run of each through the trainer, prediction, and a model file that predicts the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_toy_volume

from napari_segpl.engine import (
    ConfigError,
    StepEvent,
    TrainConfig,
    Trainer,
    predict_volume,
    prepare_data,
)
from napari_segpl.engine.losses import segmentation_loss
from napari_segpl.engine.methods import Batch, Param, get_method
from napari_segpl.engine.methods.ensemble import SEED_STRIDE, Ensemble, logit_of_mean
from napari_segpl.engine.methods.selfloop import SelfLoop, encode, permutations, tile_index
from napari_segpl.engine.model import TrainedModel

TINY = {"base_channels": 4, "depth": 2, "axis": 2, "lr": 0.01, "ema": 0.0}
LABELLED = [3, 8]


def _method(name: str, classes: int = 2, dims: int = 2, seed: int = 0, **extra):
    torch.manual_seed(seed)
    config = TrainConfig(method=name, dims=dims, seed=seed, extra=extra, **TINY)
    return get_method(name)(config.validate(), classes)


def _x(n: int = 3, dims: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, *((3,) if dims == 3 else ()), size, size, generator=g)


def _run(method: str, steps: int, dims: int = 2, ema: float = 0.0, **extra):
    image, labels = make_toy_volume((32, 28, 12))
    config = TrainConfig(method=method, dims=dims, steps=steps, preview_every=3, extra=extra,
                         **{**TINY, "ema": ema})  # fmt: skip
    trainer = Trainer(config, prepare_data(image, labels, config, labelled=LABELLED))
    return trainer, list(trainer.run()), image


def _save_load_predicts_the_same(trainer, image, tmp_path):
    before = predict_volume(trainer.model, image)
    loaded = TrainedModel.load(trainer.model.save(tmp_path / "model.pt"))
    after = predict_volume(loaded, image)
    np.testing.assert_array_equal(before.probabilities, after.probabilities)
    np.testing.assert_array_equal(before.labels, after.labels)
    return before, loaded


# --- the ensemble -------------------------------------------------------------------------


def test_logit_of_the_mean_is_exact_and_has_a_gradient_where_it_saturates():
    """FGSM on an ensemble differentiates this; a clamp at 1e-6 gave a zero gradient (and a
    zero FGSM step) wherever the members agree strongly."""
    z = torch.tensor([[-40.0, -3.0, 0.5, 8.0], [-35.0, 2.0, 0.1, 45.0]], dtype=torch.float64)
    z.requires_grad_(True)
    out = logit_of_mean(z)
    p = torch.sigmoid(z).mean(0)  # independently: the logit of the mean probability
    expected = torch.log(p) - torch.log1p(-p)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-9, atol=1e-9)
    (grad,) = torch.autograd.grad(out.sum(), z)
    # saturated at 0: logit(mean p) ~ log mean exp(z), whose gradient is a softmax (sums to 1)
    assert (grad[:, 0] > 0).all() and float(grad[:, 0].sum()) == pytest.approx(1.0, abs=1e-6)
    assert (grad[:, 3] > 0).all()
    clamped = torch.logit(torch.sigmoid(z).mean(0), eps=1e-6)
    (old,) = torch.autograd.grad(clamped.sum(), z)
    assert (old[:, 0] == 0).all()  # the control: the clamp kills the saturated column


@pytest.mark.parametrize("dims", [2, 3])
def test_ensemble_probability_is_the_mean_of_its_members(dims):
    ensemble = _method("ensemble", dims=dims, members=3)
    ensemble.train(False)
    x = _x(dims=dims)
    with torch.no_grad():
        each = [torch.sigmoid(m.model(x)[0]) for m in ensemble.members]  # independently
        mean, std = ensemble.spread(x)
        p = torch.sigmoid(ensemble.logits(x))
    expected = torch.stack(each).mean(0)
    torch.testing.assert_close(p, expected, atol=2e-6, rtol=0)
    torch.testing.assert_close(mean, expected)
    torch.testing.assert_close(std, torch.stack(each).std(0, unbiased=False))
    assert std.max() > 0  # the members disagree somewhere


def test_members_are_differently_initialised_member_0_as_a_single_model():
    ensemble = _method("ensemble", members=3, seed=4)
    weights = [torch.cat([p.flatten() for p in m.model.parameters()]) for m in ensemble.members]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    alone = _method("supervised", seed=4)  # what the trainer builds for seed 4
    torch.testing.assert_close(weights[0], torch.cat([p.flatten() for p in alone.parameters()]))
    other = _method("supervised", seed=4 + SEED_STRIDE)
    torch.testing.assert_close(weights[1], torch.cat([p.flatten() for p in other.parameters()]))


def test_one_run_trains_each_member_in_turn_with_one_progress(tmp_path):
    members, steps = 2, 3
    trainer, events, image = _run("ensemble", steps, ema=0.9, members=members)
    method = trainer.model.method
    done = [e for e in events if isinstance(e, StepEvent)]
    assert trainer.total_steps == members * steps
    assert [e.step for e in done] == list(range(1, members * steps + 1))
    assert {e.total for e in done} == {members * steps}
    assert method.trained.tolist() == [True, True]
    # Member 0 is exactly the supervised model of this seed, trained alone for ``steps`` (its
    # EMA included), and no later step moved it.
    alone, _, _ = _run("supervised", steps, ema=0.9)
    for a, b in zip(method.members[0].parameters(), alone.model.method.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # one file holds every member; the loaded ensemble predicts the same
    _, loaded = _save_load_predicts_the_same(trainer, image, tmp_path)
    assert len(loaded.method.members) == members
    assert {k.split(".")[0] for k in loaded.method.state_dict()} == {
        "member0",
        "member1",
        "ensemble",
    }
    for a, b in zip(loaded.method.parameters(), method.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_later_members_wait_their_turn_and_a_stop_leaves_untrained_ones_out():
    image, labels = make_toy_volume((32, 28, 12))
    config = TrainConfig(method="ensemble", dims=2, steps=2, extra={"members": 3}, **TINY)
    trainer = Trainer(config, prepare_data(image, labels, config, labelled=LABELLED))
    method = trainer.model.method
    initial = [p.detach().clone() for p in method.members[1].parameters()]
    for event in trainer.run():
        if isinstance(event, StepEvent) and event.step == 2:  # member 0 done, member 1 not begun
            for a, b in zip(method.members[1].parameters(), initial, strict=True):
                torch.testing.assert_close(a, b)
        if isinstance(event, StepEvent) and event.step == 3:
            trainer.stop()
    assert method.trained.tolist() == [True, True, False]
    assert any(
        not torch.equal(a, b) for a, b in zip(method.members[1].parameters(), initial, strict=True)
    )
    method.train(False)
    x = _x()
    with torch.no_grad():
        two = [torch.sigmoid(m.model(x)[0]) for m in method.members[:2]]
        torch.testing.assert_close(
            torch.sigmoid(method.logits(x)), torch.stack(two).mean(0), atol=2e-6, rtol=0
        )


def test_member_method_is_a_checked_choice_with_its_own_parameters():
    check = Ensemble.check_params
    assert check({}) == {"members": 5, "member": "supervised"}
    assert check({"member": "selfloop", "views": "3"})["views"] == 3
    with pytest.raises(ConfigError, match="member must be one of .*supervised.*got 'nope'"):
        check({"member": "nope"})
    with pytest.raises(ConfigError, match="got 'ensemble'"):
        check({"member": "ensemble"})
    with pytest.raises(ConfigError, match="supervised has no parameter views"):
        check({"views": 3})
    fixed = Param("a", "a choice", choices=("a", "b"))
    assert fixed.check("x", "b") == "b" and fixed.options() == ("a", "b")
    with pytest.raises(ConfigError, match="x must be one of a, b, got 3"):
        fixed.check("x", 3)


# --- self-loop uncertainty ----------------------------------------------------------------


def test_jigsaw_moves_tiles_as_the_target_says():
    """By hand: 2 x 2 tiles of a 4 x 4 image; order (1, 0, 3, 2) swaps left and right."""
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    method = _method("selfloop")
    target = permutations(2).index((1, 0, 3, 2))
    shuffled, targets, index = method.shuffle(x, torch.tensor([target]))
    expected = [[2, 3, 0, 1], [6, 7, 4, 5], [10, 11, 8, 9], [14, 15, 12, 13]]
    assert shuffled[0, 0].tolist() == expected and targets.tolist() == [target]
    torch.testing.assert_close(method.restore(shuffled, index), x)
    cycle = torch.tensor([permutations(2).index((1, 2, 0, 3))])  # not its own inverse
    shuffled, _, index = method.shuffle(x, cycle)
    assert shuffled[0, 0, :2].tolist() == [[2, 3, 8, 9], [6, 7, 12, 13]]
    torch.testing.assert_close(method.restore(shuffled, index), x)
    # (3, 2, 1, 0): every tile to the opposite corner; a 5th row and column stay in place
    y = torch.arange(25.0).reshape(5, 5)
    moved = y.flatten()[tile_index(5, 5, 2, (3, 2, 1, 0))].reshape(5, 5)
    assert moved[:2, :2].tolist() == [[12, 13], [17, 18]] and moved[:2, 2:4].tolist() == [
        [10, 11],
        [15, 16],
    ]
    assert torch.equal(moved[4], y[4]) and torch.equal(moved[:, 4], y[:, 4])


@pytest.mark.parametrize("dims", [2, 3])
def test_random_pretext_targets_are_the_orders_applied(dims):
    method = _method("selfloop", dims=dims)
    x = _x(n=6, dims=dims, size=8)
    shuffled, targets, _ = method.shuffle(x)
    for image, out, t in zip(x, shuffled, targets.tolist(), strict=True):
        order = permutations(2)[t]
        tiles = [image[..., r : r + 4, c : c + 4] for r in (0, 4) for c in (0, 4)]
        for j, src in enumerate(order):  # position j shows tile ``order[j]`` (every slice)
            r, c = divmod(j, 2)
            assert torch.equal(out[..., 4 * r : 4 * r + 4, 4 * c : 4 * c + 4], tiles[src])


def test_pretext_head_reads_the_shared_encoders_deepest_features():
    method = _method("selfloop")
    seen = []
    method.model.down[-1].register_forward_hook(lambda m, i, o: seen.append(o))
    x = _x()
    method.model(x)
    torch.testing.assert_close(encode(method.model, x), seen[0])
    assert method.head(seen[0]).shape == (3, 24)
    assert "jigsaw" in method.state_dict()


def test_pseudo_labels_are_the_agreed_mean_of_restored_looks():
    method = _method("selfloop", views=3, max_std=0.05)
    x = _x(n=2)
    torch.manual_seed(7)
    pseudo, mask = method.pseudo_targets(x)
    torch.manual_seed(7)  # the same looks, made by hand
    looks = []
    with torch.no_grad():
        for _ in range(3):
            classes = torch.randint(24, (2,))
            index = torch.stack([tile_index(16, 16, 2, permutations(2)[c]) for c in classes])
            shuffled = torch.stack([im.flatten(-2)[:, i].reshape(im.shape) for im, i in
                                    zip(x, index, strict=True)])  # fmt: skip
            p = torch.sigmoid(method.model(shuffled)[0]).flatten(-2)
            back = torch.empty_like(p)
            for b in range(2):
                back[b][:, index[b]] = p[b]  # pixel index[k] came from output k
            looks.append(back.reshape(2, 2, 16, 16))
    mean, std = torch.stack(looks).mean(0), torch.stack(looks).std(0, unbiased=False)
    torch.testing.assert_close(mask, (std <= 0.05).float())
    torch.testing.assert_close(pseudo, method.cut(mean, 0.5).float())
    assert 0 < mask.mean() < 1 and not pseudo.requires_grad and not mask.requires_grad


def test_no_gradient_reaches_the_pseudo_labels():
    """The gradient equals that of the same loss with the pseudo labels and mask given as
    plain data (cloned outside any graph)."""
    method = _method("selfloop", classes=1)
    g = torch.Generator().manual_seed(3)
    batch = Batch(_x(n=2), (torch.rand(2, 1, 16, 16, generator=g) > 0.6).float(), None, _x(n=3))
    torch.manual_seed(0)
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    out.loss.backward()
    grads = [p.grad.clone() for p in method.parameters()]
    method.model.zero_grad()
    method.head.zero_grad()
    original = method.pseudo_targets
    method.pseudo_targets = lambda x, dtype: tuple(t.detach().clone() for t in original(x, dtype))
    torch.manual_seed(0)
    again = method.compute_loss(batch, 0, lambda s: 1.0)
    again.loss.backward()
    assert again.loss.item() == out.loss.item() and out.pseudo.grad_fn is None
    for a, p in zip(grads, method.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)
    assert set(out.logs) >= {"sup", "ss", "unsup", "kept", "loss"}
    ss = out.logs["loss"] - out.logs["sup"] - out.logs["unsup"]
    assert ss == pytest.approx(0.1 * out.logs["ss"], rel=1e-4)  # ss_weight's default


def test_selfloop_loss_is_supervised_plus_weighted_pretext_plus_alpha_unsupervised():
    """Rebuilt from its parts with alpha 0.3 and ss_weight 0.25, in the step's own order of
    random draws (the pretext shuffle, then the self-loop's looks)."""
    method = _method("selfloop", classes=1, ss_weight=0.25)
    g = torch.Generator().manual_seed(4)
    batch = Batch(_x(n=2), (torch.rand(2, 1, 16, 16, generator=g) > 0.6).float(), None, _x(n=3))
    torch.manual_seed(0)
    with torch.no_grad():
        out = method.compute_loss(batch, 0, lambda s: 0.3)
        torch.manual_seed(0)
        x = torch.cat([batch.x_l, batch.x_u])
        logits = method.model(x)[0]
        sup = segmentation_loss(logits[:2], batch.y_l, method.config.loss)
        shuffled, targets, _ = method.shuffle(x)
        ss = F.cross_entropy(method.head(encode(method.model, shuffled)), targets)
        pseudo, mask = method.pseudo_targets(batch.x_u)
        unsup = segmentation_loss(
            logits[2:], pseudo, method.config.loss, mask,
            per_image=method.config.unsup_dice == "image",
        )  # fmt: skip
    assert float(unsup) > 0 and float(ss) > 0
    expected = float(sup) + 0.25 * float(ss) + 0.3 * float(unsup)
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_selfloop_trains_predicts_and_reloads(tmp_path, dims):
    trainer, events, image = _run("selfloop", 6, dims=dims)
    done = [e for e in events if isinstance(e, StepEvent)]
    assert len(done) == 6 and all(np.isfinite(e.losses["loss"]) for e in done)
    assert isinstance(trainer.model.method, SelfLoop)
    prediction, _ = _save_load_predicts_the_same(trainer, image, tmp_path)
    assert prediction.labels.shape == image.shape
    fill = trainer.pseudo_label_volume()
    assert fill.shape == image.shape


def test_each_member_of_a_pseudo_label_ensemble_has_its_own_gate_and_burn_in(monkeypatch):
    """The trainer's gate and ramp counted the run's steps while a member counts its own:
    a gate opened in member 0 let member 1 use pseudo labels without a gate of its own (and one
    opened in member 1 kept alpha at 0 there). Each member now waits as a lone run does."""
    from napari_segpl.engine.methods.segpl import SegPL

    seen: list[tuple[int, list[bool] | None, float]] = []
    real = SegPL.compute_loss

    def spy(self, batch, step, alpha_fn):
        seen.append((step, list(self.pseudo_classes or []), alpha_fn(step)))
        return real(self, batch, step, alpha_fn)

    monkeypatch.setattr(SegPL, "compute_loss", spy)
    steps = 10
    trainer, _, _ = _run("ensemble", steps, members=2, member="segpl")
    burn_in = trainer.config.burn_in_steps
    assert trainer.config.gate and 0 < burn_in < steps and len(seen) == 2 * steps
    first, second = seen[:steps], seen[steps:]
    assert any(any(classes) for _, classes, _ in first)  # member 0's gate opened
    assert [s for s, _, _ in second] == list(range(steps))  # member 1's own steps
    assert not any(second[0][1])  # and it starts with its own closed gate
    assert all(alpha == 0 for s, _, alpha in second if s < burn_in)  # and its own burn-in
