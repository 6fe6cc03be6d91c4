"""CCT and CPS (issue 24): the mechanics each paper names, on tiny networks, and a short run of
each through the Trainer that predicts, saves and loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_batch, make_toy_volume

from napari_segpl.engine import TrainConfig, TrainedModel, Trainer, predict_volume, prepare_data
from napari_segpl.engine.cct_network import CCTNetwork
from napari_segpl.engine.losses import segmentation_loss
from napari_segpl.engine.methods import Batch, StepOutput, get_method
from napari_segpl.engine.networks import UNet
from napari_segpl.engine.trainer import FinishedEvent, StepEvent


def _batch(dims: int = 2, n_l: int = 2, n_u: int = 3, size: int = 16, classes: int = 2) -> Batch:
    return make_batch(dims, n_l, n_u, size, classes, seed=0)


def _method(name: str, classes: int = 2, **config: object):
    torch.manual_seed(0)
    cfg = TrainConfig.from_preset("paper", method=name, base_channels=4, depth=2, **config)
    return get_method(name)(cfg, classes)


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()]


# ---------------------------------------------------------------- CPS


def test_cps_networks_start_different_and_are_saved_together():
    method = _method("cps")
    assert set(method.modules()) == set(method.state_dict()) == {"model", "model2"}
    pairs = zip(method.model.parameters(), method.model2.parameters(), strict=True)
    weights = [(a, b) for a, b in pairs if a.ndim > 1]  # convolutions (norms start at 1 and 0)
    assert weights and all(not torch.equal(a, b) for a, b in weights)
    # the first network is the one a supervised run of the same seed starts from
    torch.testing.assert_close(method.model.state_dict(), _method("supervised").model.state_dict())


@pytest.mark.parametrize("exclusive", [False, True])
def test_cps_loss_is_each_network_on_the_others_hard_labels(exclusive):
    method = _method("cps", exclusive=exclusive)
    batch, n = _batch(), 2
    step = method.config.warmup_steps  # the ramp's end: the full weight
    out = method.compute_loss(batch, step, lambda s: 0.0)
    assert method.weight(step) == 1.5 and out.logs["alpha"] == 1.5
    x = torch.cat([batch.x_l, batch.x_u])
    with torch.no_grad():
        l1, l2 = method.model(x)[0], method.model2(x)[0]

    def hard(logits: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        y = p > 0.5
        if exclusive:  # the most probable class only, as inference labels a pixel
            y &= F.one_hot(p.argmax(1), p.shape[1]).movedim(-1, 1).bool()
        return y.float()

    y1, y2 = hard(l1), hard(l2)
    assert not torch.equal(y1, y2)  # two different networks: different pseudo labels

    def dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(logits, target, "dice")

    def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target)

    sup = dice(l1[:n], batch.y_l) + dice(l2[:n], batch.y_l)
    cross = sup + 1.5 * (ce(l1, y2) + ce(l2, y1))
    own = sup + 1.5 * (ce(l1, y1) + ce(l2, y2))  # self-training: what CPS is not
    assert out.loss.item() == pytest.approx(cross.item(), rel=1e-5)
    assert abs(out.loss.item() - own.item()) > 1e-3
    assert out.pseudo is None  # the trainer's guard and gate are SegPL's (see cps.py)


def test_cps_gradients_come_from_the_other_networks_labels_as_constants():
    """Each network's gradient is that of its supervised loss plus lambda times its loss on the
    other network's pseudo labels supplied as plain data: no gradient reaches a pseudo label."""
    method = _method("cps")
    batch, n, step = _batch(), 2, 10**6
    out = method.compute_loss(batch, step, lambda s: 0.0)
    out.loss.backward()
    total = [_grads(method.model), _grads(method.model2)]
    x = torch.cat([batch.x_l, batch.x_u])
    labels = [method.hard_labels(net(x)[0]) for net in (method.model, method.model2)]
    assert not any(y.requires_grad for y in labels)
    for i, net in enumerate((method.model, method.model2)):
        net.zero_grad()
        logits = net(x)[0]
        other = labels[1 - i].clone()
        loss = segmentation_loss(logits[:n], batch.y_l, "dice") + 1.5 * segmentation_loss(
            logits, other, "bce"
        )
        loss.backward()
        for g, p in zip(total[i], net.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


def test_cps_weight_ramps_up_and_ema_averages_the_first_network_only():
    method = _method("cps", ema=0.5, steps=100, warmup=0.2)
    assert method.weight(0) == pytest.approx(1.5 * np.exp(-5)) and method.weight(20) == 1.5
    burnt = _method("cps", steps=100, warmup=0.2, burn_in=0.4)  # the run's schedule
    assert burnt.weight(39) == 0.0 and burnt.weight(40) == pytest.approx(1.5 * np.exp(-5))
    assert burnt.weight(60) == 1.5
    second = {k: v.clone() for k, v in method.model2.state_dict().items()}
    first = [p.detach().clone() for p in method.model.parameters()]
    for p in method.parameters():
        p.data.add_(1.0)
    method.after_step()
    # the first update's decay is min(0.5, 1 / 10) = 0.1: 0.1 w + 0.9 (w + 1) = w + 0.9
    for t, w in zip(method.teacher.parameters(), first, strict=True):
        torch.testing.assert_close(t, w + 0.9)
    method.finish()
    torch.testing.assert_close(method.model.state_dict(), method.teacher.state_dict())
    torch.testing.assert_close(method.model2.state_dict(), {k: v + 1 for k, v in second.items()})


# ---------------------------------------------------------------- CCT


def test_cct_main_path_is_the_unet_and_the_parameter_counts():
    torch.manual_seed(0)
    unet, cct = UNet(2, 1, 2, 4, 2), CCTNetwork(2, 1, 2, 4, 2, aux=3)
    missing, unexpected = cct.load_state_dict(unet.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("aux.") for k in missing)
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(cct(x)[0], unet(x)[0])
    # the paper's backbone width: three copies of the last block and head on top of the U-net
    plain = sum(p.numel() for p in UNet(2, 1, 1, 16, 4).parameters())
    with_aux = sum(p.numel() for p in CCTNetwork(2, 1, 1, 16, 4, aux=3).parameters())
    assert (plain, with_aux) == (1_943_761, 1_964_836)


def _capture(method) -> tuple[dict[str, list[torch.Tensor]], int]:
    """Inputs of the main decoder's block and of each auxiliary decoder, from one step."""
    seen: dict[str, list[torch.Tensor]] = {"main": [], "aux": []}
    net = method.model
    net.merge[-1].register_forward_pre_hook(lambda m, a: seen["main"].append(a[0].detach()))
    for decoder in net.aux:
        decoder.block.register_forward_pre_hook(lambda m, a: seen["aux"].append(a[0].detach()))
    calls: list[int] = []
    net.down[0].register_forward_hook(lambda *a: calls.append(1))
    method.compute_loss(_batch(), 10**6, lambda s: 0.0)
    return seen, len(calls)


def test_cct_aux_decoders_see_perturbed_copies_of_the_shared_features():
    method = _method("cct", extra={"aux_decoders": 3})
    seen, trunk_passes = _capture(method)
    assert trunk_passes == 1  # one encoder pass feeds every decoder: its weights are shared
    assert not any("down" in name for name, _ in method.model.aux.named_parameters())
    f = seen["main"][0][2:]  # the unlabelled images' features, as the main decoder reads them
    noise, dropout, drop = seen["aux"]
    for g in (noise, dropout, drop):
        assert g.shape == f.shape and not torch.equal(g, f)
    # feature noise: f (1 + u), |u| <= 0.3, one u for the batch
    big = f.abs() > 1e-3
    ratio = noise[big] / f[big]
    assert ((ratio >= 0.7 - 1e-5) & (ratio <= 1.3 + 1e-5)).all()
    # dropout: whole channels zeroed, the rest doubled
    kept = dropout.flatten(2).abs().sum(-1) > 0
    assert (~kept).any() and kept.any()
    torch.testing.assert_close(dropout[kept], 2 * f[kept])
    # feature drop: the most activated positions zeroed in every channel, the rest kept
    zeroed = (drop == 0).all(dim=1, keepdim=True) & (f != 0).any(dim=1, keepdim=True)
    assert zeroed.any()
    torch.testing.assert_close(drop, f * (~zeroed))
    attention = f.mean(dim=1, keepdim=True)
    for a, z in zip(attention, zeroed, strict=True):  # each image's own peak sets its cut
        assert not z.any() or a[z].min() > a[~z].max() - 1e-6


def _cct_step_and_reference(method, batch, n: int, step: int):
    """One CCT step (seeded) and, with the same perturbations, the main decoder's logits, its
    detached probabilities of the unlabelled images and each auxiliary decoder's."""
    torch.manual_seed(5)
    out = method.compute_loss(batch, step, lambda s: 0.0)
    net = method.model
    torch.manual_seed(5)  # the same perturbations
    with torch.no_grad():
        feats = net.trunk(torch.cat([batch.x_l, batch.x_u]))
        logits = net.main(feats)[0]
        target = torch.sigmoid(logits[n:])
        aux = [torch.sigmoid(a) for a in net.auxiliary(feats[n:])]
    return out, logits, target, aux


def test_cct_loss_and_no_gradient_to_the_main_prediction():
    """The loss is sup + w * mean of the auxiliary MSEs; the main decoder's last block and
    head get the supervised gradient only (their prediction is a detached target), the
    auxiliary decoders the consistency's, the shared encoder both."""
    method = _method("cct")
    batch, n, step = _batch(), 2, 10**6
    out, logits, target, aux = _cct_step_and_reference(method, batch, n, step)
    net = method.model
    cons = sum(F.mse_loss(a, target) for a in aux) / 3
    sup = segmentation_loss(logits[:n], batch.y_l, "dice")
    assert method.weight(step) == 30.0
    assert out.loss.item() == pytest.approx((sup + 30.0 * cons).item(), rel=1e-5)
    out.loss.backward()
    main_decoder = torch.nn.ModuleList([net.merge[-1], net.head])
    main_total, encoder_total = _grads(main_decoder), _grads(net.down)
    assert all(g.abs().sum() > 0 for g in _grads(net.aux))
    net.zero_grad()
    segmentation_loss(net(batch.x_l)[0], batch.y_l, "dice").backward()
    for g, p in zip(main_total, main_decoder.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)
    encoder = zip(encoder_total, net.down.parameters(), strict=True)
    assert any(not torch.allclose(g, p.grad) for g, p in encoder)  # the consistency's share


def test_cct_weight_ramps_and_parameters_are_checked():
    method = _method("cct", steps=100, warmup=0.2, extra={"consistency_weight": 2.0})
    assert method.weight(0) == pytest.approx(2.0 * np.exp(-5))
    assert method.weight(10) == pytest.approx(2.0 * np.exp(-5 * 0.25))
    assert method.weight(20) == method.weight(99) == 2.0
    burnt = _method("cct", steps=100, warmup=0.2, burn_in=0.4)
    assert burnt.weight(39) == 0.0 and burnt.weight(60) == 30.0
    assert len(_method("cct", extra={"aux_decoders": 5}).model.aux) == 5
    with pytest.raises(ValueError, match="aux_decoders must be in"):
        _method("cct", extra={"aux_decoders": 0})


@pytest.mark.parametrize("name", ["cct", "cps"])
def test_runs_in_3d(name):
    method = _method(name, dims=3)
    out: StepOutput = method.compute_loss(_batch(dims=3), 10**6, lambda s: 0.0)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is not None for p in method.parameters())


def test_cct_consistency_in_3d_is_the_centre_slice_only():
    """In 3-slice stacks each auxiliary decoder is pulled towards the main decoder on the
    centre slice only: the outer slices, unsupervised and never predicted, do not count."""
    method = _method("cct", dims=3)
    batch, n, step = _batch(dims=3), 2, 10**6
    out, logits, target, aux = _cct_step_and_reference(method, batch, n, step)
    assert len(aux) == 3 and all(a.shape == target.shape == (3, 2, 3, 16, 16) for a in aux)
    centre = sum(((a[:, :, 1] - target[:, :, 1]) ** 2).mean() for a in aux) / 3
    every = sum(((a - target) ** 2).mean() for a in aux) / 3
    assert out.logs["unsup"] == pytest.approx(centre.item(), rel=1e-5)
    assert abs(centre - every) > 1e-3 * centre  # so the two could not be confused
    sup = segmentation_loss(logits[:n], batch.y_l, "dice", batch.mask_l)
    assert out.loss.item() == pytest.approx((sup + 30.0 * centre).item(), rel=1e-5)


def test_cps_in_3d_trains_the_centre_slice_on_pseudo_labels():
    method = _method("cps", dims=3)
    batch, n = _batch(dims=3), 2
    out = method.compute_loss(batch, 10**6, lambda s: 0.0)
    x = torch.cat([batch.x_l, batch.x_u])
    with torch.no_grad():
        l1, l2 = (net(x)[0][:, :, 1] for net in (method.model, method.model2))
    y1, y2 = ((torch.sigmoid(v) > 0.5).float() for v in (l1, l2))
    loss = segmentation_loss
    sup = loss(l1[:n], batch.y_l[:, :, 1], "dice") + loss(l2[:n], batch.y_l[:, :, 1], "dice")
    expected = sup + 1.5 * (loss(l1, y2, "bce") + loss(l2, y1, "bce"))
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("name", ["cct", "cps"])
def test_trains_predicts_saves_and_loads(tmp_path, name):
    image, labels = make_toy_volume((32, 28, 12))
    cfg = TrainConfig(
        method=name, dims=2, axis=2, base_channels=4, depth=2, steps=6, patch=32, lr=0.01,
        preview_every=3,
    )  # fmt: skip
    data = prepare_data(image, labels, cfg, labelled=[3, 6, 9])
    trainer = Trainer(cfg, data)
    events = list(trainer.run())
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) == 6 and isinstance(events[-1], FinishedEvent)
    assert all(np.isfinite(e.losses["loss"]) and e.losses["unsup"] >= 0 for e in steps)
    before = predict_volume(trainer.model, image, device="cpu")
    assert before.labels.shape == image.shape
    loaded = TrainedModel.load(trainer.model.save(tmp_path / "m.pt"))
    after = predict_volume(loaded, image, device="cpu")
    np.testing.assert_array_equal(before.labels, after.labels)
    np.testing.assert_array_equal(before.probabilities, after.probabilities)
