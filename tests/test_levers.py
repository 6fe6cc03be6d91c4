"""Mechanics of the levers beyond the paper (issue: make pseudo labels earn their place).

These test what each lever does, not whether it improves accuracy (that is benchmarks/)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import StepEvent, TrainConfig, Trainer, get_method, prepare_data
from napari_segpl.engine.augment import mix, random_affine, random_boxes, warp
from napari_segpl.engine.config import ConfigError
from napari_segpl.engine.intensity import BINS, IntensityEvidence
from napari_segpl.engine.losses import alpha_at, dice_loss, gaussian_kl, segmentation_loss
from napari_segpl.engine.methods import Batch
from napari_segpl.engine.methods.segpl import partners, perturb_intensity
from napari_segpl.engine.sampling import Sampler, TrainingData, unlabelled_weights


def test_batch_dice_by_hand():
    # Two images, one channel. Image 0: p = [1, 0], y = [1, 0]; image 1: p = [0.5, 0.5], y = 0.
    p = torch.tensor([[[[1.0, 0.0]]], [[[0.5, 0.5]]]])
    y = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]])
    # pooled: sum(p y) = 1, sum p = 2, sum y = 1 -> 1 - (2 + 1) / (3 + 1)
    assert dice_loss(p, y, per_image=False).item() == pytest.approx(1 - 3 / 4)
    # per image: image 0 -> 1 - 3/3 = 0; image 1 -> 1 - 1/2 = 0.5
    assert dice_loss(p, y).item() == pytest.approx(0.25)


def test_burn_in_then_warmup():
    assert [alpha_at(s, 1.0, 4, burn_in_steps=10) for s in (0, 9, 10, 12, 14, 50)] == [
        0.0, 0.0, 0.0, 0.5, 1.0, 1.0,
    ]  # fmt: skip


def _batch(n_l=2, n_u=3, size=16, classes=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.randn(n_l, 1, size, size, generator=g),
        (torch.rand(n_l, classes, size, size, generator=g) > 0.6).float(),
        None,
        torch.randn(n_u, 1, size, size, generator=g),
    )


def _method(name, **config):
    torch.manual_seed(0)
    # from the paper's recipe, so that each test switches on exactly the lever it is about
    cfg = TrainConfig.from_preset("paper", method=name, base_channels=4, depth=2, **config)
    return get_method(name)(cfg, 1)


def test_confidence_band_leaves_uncertain_pixels_out():
    method = _method("segpl", confidence=0.1)
    batch = _batch()
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    with torch.no_grad():
        logits_l = method.model(batch.x_l)[0]
        logits_u = method.model(batch.x_u)[0]
        p = torch.sigmoid(logits_u)
        mask = ((p - 0.5).abs() >= 0.1).float()
        expected = segmentation_loss(logits_l, batch.y_l, "dice") + segmentation_loss(
            logits_u, (p > 0.5).float(), "dice", mask
        )
    assert 0 < mask.mean() < 1  # the band really removes some pixels here
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_batch_dice_option_reaches_the_unlabelled_term():
    method = _method("segpl", unsup_dice="batch")
    batch = _batch()
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    with torch.no_grad():
        logits_u = method.model(batch.x_u)[0]
        expected = segmentation_loss(
            logits_u, (torch.sigmoid(logits_u) > 0.5).float(), "dice", per_image=False
        )
    assert out.logs["unsup"] == pytest.approx(expected.item(), rel=1e-5)


def test_ema_teacher_makes_the_pseudo_labels_and_follows_the_student():
    method = _method("segpl", ema=0.9)
    batch = _batch()
    with torch.no_grad():
        for p in method.teacher.parameters():
            p.add_(0.3)  # make teacher and student differ
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    with torch.no_grad():
        teacher_pseudo = (torch.sigmoid(method.teacher(batch.x_u)[0]) > 0.5).float()
    torch.testing.assert_close(out.pseudo, teacher_pseudo)
    before = [p.clone() for p in method.teacher.parameters()]
    method.after_step()
    for t0, t1, s in zip(
        before, method.teacher.parameters(), method.model.parameters(), strict=True
    ):
        d = 1 / 10  # first update: the decay's ramp (1 + 0) / (10 + 0), below the set 0.9
        torch.testing.assert_close(t1, d * t0 + (1 - d) * s)
    assert all(not p.requires_grad for p in method.teacher.parameters())
    assert set(method.state_dict()) == {"model"}  # the teacher is not saved


def _head_grads(method, batch):
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    method.head.zero_grad()
    method.model.zero_grad()
    out.loss.backward()
    return [p.grad.clone() for p in method.head.parameters()], out


def _kl_only_grads(method, batch):
    method.head.zero_grad()
    n = batch.x_l.shape[0]
    feats = method.model(torch.cat([batch.x_l, batch.x_u]))[1]
    mu, sigma = method.head(feats[n:].detach())
    gaussian_kl(mu, sigma, method.config.prior_mu, method.config.prior_sigma).mean().backward()
    return [p.grad.clone() for p in method.head.parameters()]


def test_threshold_head_gets_a_data_signal_only_when_asked():
    batch = _batch(classes=1)
    paper = _method("segpl-vi")  # the paper preset: threshold_signal "kl"
    torch.manual_seed(5)
    grads, _ = _head_grads(paper, batch)
    for g, k in zip(grads, _kl_only_grads(paper, batch), strict=True):
        torch.testing.assert_close(g, k, rtol=1e-4, atol=1e-8)  # paper: the KL alone
    learnt = _method("segpl-vi", threshold_signal="labelled")
    torch.manual_seed(5)
    grads, out = _head_grads(learnt, batch)
    kl = _kl_only_grads(learnt, batch)
    assert "t_fit" in out.logs
    assert any(not torch.allclose(g, k, atol=1e-6) for g, k in zip(grads, kl, strict=True))
    assert all(p.grad is None or p.grad.abs().sum() > 0 for p in learnt.model.parameters())


@pytest.mark.parametrize(
    "bad",
    [
        {"burn_in": 1.0},
        {"unsup_dice": "pixel"},
        {"confidence": 0.5},
        {"ema": 1.0},
        {"threshold_signal": "x"},
        {"perturb": 1.5},
        {"warp": 1.5},
        {"near": -1.0},
    ],
)
def test_lever_values_are_validated(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad).validate()


def test_perturbation_trains_on_a_changed_view_against_clean_pseudo_labels():
    method = _method("segpl", perturb=0.3)
    batch = _batch()
    torch.manual_seed(3)
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    with torch.no_grad():
        clean = (torch.sigmoid(method.model(batch.x_u)[0]) > 0.5).float()
        torch.manual_seed(3)
        changed = perturb_intensity(batch.x_u, 0.3)
        logits_u = method.model(torch.cat([batch.x_l, changed]))[0][2:]
        expected = segmentation_loss(logits_u, clean, "dice")
    torch.testing.assert_close(out.pseudo, clean)  # the E-step sees the clean images
    assert out.logs["unsup"] == pytest.approx(expected.item(), rel=1e-5)
    assert not torch.equal(changed, batch.x_u)


def test_perturbation_moments():
    torch.manual_seed(0)
    x = torch.zeros(20000, 1, 2, 2)  # zero images: the output is b + noise
    out = perturb_intensity(x, 0.4)
    # b ~ U(-0.4, 0.4): variance 0.4^2 / 3; noise variance 0.2^2, independent
    assert out.mean().item() == pytest.approx(0.0, abs=0.01)
    assert out.var().item() == pytest.approx(0.4**2 / 3 + 0.2**2, rel=0.05)
    ones = perturb_intensity(torch.ones(20000, 1, 1, 1), 0.4)  # (1 + a) + b + noise
    assert ones.mean().item() == pytest.approx(1.0, abs=0.01)
    assert ones.var().item() == pytest.approx(2 * 0.4**2 / 3 + 0.2**2, rel=0.05)


def test_the_averaged_weights_become_the_trained_model(toy_volume):
    image, labels = toy_volume
    cfg = TrainConfig(
        method="supervised", axis=2, steps=3, lr=0.01, ema=0.5, base_channels=4, depth=2,
        preview_every=0,
    )  # fmt: skip
    trainer = Trainer(cfg, prepare_data(image, labels, cfg))
    method = trainer.model.method
    start = [p.detach().clone() for p in method.model.parameters()]
    seen = []
    for event in trainer.run():
        if isinstance(event, StepEvent):
            # on the CPU: the trainer moves the model back there when it ends (a GPU run too)
            seen.append([p.detach().cpu().clone() for p in method.model.parameters()])
    # EMA over the student's weights after each of the 3 steps, the decay ramping up as
    # t / (t + 9) (0.1, 0.18, 0.25) while below the set 0.5
    expected = start
    for t, weights in enumerate(seen, start=1):
        d = min(0.5, t / (t + 9))
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights, strict=True)]
    for got, want in zip(method.model.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want)
    assert not torch.equal(seen[-1][0], expected[0])  # not simply the last student


def _fit_threshold_head(signal: str, steps: int = 120) -> list[float]:
    """Train only the SegPL-VI head on fixed features, against a network whose probabilities
    are 0.35 on the structure and 0.15 elsewhere: the labels say to cut near 0.25, the prior
    N(0.5, 0.1) says 0.5. Returns the mean mu every 20 steps."""
    method = _method("segpl-vi", threshold_signal=signal)
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(2, 1, 16, 16, generator=g) > 0.7).float()
    logits_l = torch.logit(torch.where(y > 0, 0.35, 0.15))
    x = torch.randn(2, 1, 16, 16, generator=g)
    feats = method.model(x)[1].detach()
    batch = Batch(x, y, None, None)
    optimiser = torch.optim.Adam(method.head.parameters(), lr=0.01)
    trace = []
    for step in range(steps):
        optimiser.zero_grad()
        mu, sigma = method.head(feats)
        loss = gaussian_kl(mu, sigma, 0.5, 0.1).mean()
        if signal == "labelled":
            loss = loss + method._threshold_fit(batch, logits_l, feats)
        loss.backward()
        optimiser.step()
        if step % 20 == 19:
            trace.append(mu.mean().item())
    return trace


def _expected_objective(mu: np.ndarray, sigma: np.ndarray, y: torch.Tensor) -> np.ndarray:
    """The head's training loss for a threshold N(mu, sigma) shared by both images, written
    out independently: torch.distributions' KL to the prior N(0.5, 0.1) plus the mean over
    images of 1 - Dice of sigmoid((p - T) / 0.05) against the labels (p = 0.35 on the
    structure, 0.15 elsewhere), the expectation over T taken by Gauss-Hermite quadrature."""
    prior = torch.distributions.Normal(0.5, 0.1)
    q = torch.distributions.Normal(torch.from_numpy(mu), torch.from_numpy(sigma))
    kl = torch.distributions.kl_divergence(q, prior).numpy()
    z, w = np.polynomial.hermite_e.hermegauss(40)
    t = np.clip(mu[..., None] + sigma[..., None] * z, 0.01, 0.99)  # T drawn inside (0, 1)
    on, off = 1 / (1 + np.exp(-(0.35 - t) / 0.05)), 1 / (1 + np.exp(-(0.15 - t) / 0.05))
    dice = 0.0
    for n_in in y.sum(dim=(1, 2, 3)).tolist():  # per image: smooth 1, as in the paper's Dice
        n_out = y[0].numel() - n_in
        dice = dice + 1 - (2 * n_in * on + 1) / (n_in * on + n_out * off + n_in + 1)
    return kl + (dice / len(y)) @ (w / w.sum())


def test_threshold_moves_from_the_prior_when_the_labels_say_so():
    torch.manual_seed(0)
    paper = _fit_threshold_head("kl")
    assert paper == pytest.approx([0.5] * len(paper), abs=1e-3)  # KL only: stays at the prior
    # the minimiser of the same objective over a (mu, sigma) grid, computed without the code
    y = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    mu, sigma = np.meshgrid(np.linspace(0.2, 0.6, 401), np.linspace(0.01, 0.2, 96))
    best = np.unravel_index(np.argmin(_expected_objective(mu, sigma, y)), mu.shape)
    target = mu[best]
    # between the labels' own cut (0.25) and the prior's 0.5, and at least 0.02 from the prior,
    # so the tolerance below tells the two apart
    assert 0.25 < target <= 0.48
    torch.manual_seed(0)
    default = _fit_threshold_head("labelled")
    # each step draws T, so mu wanders around the minimiser; 0.01 is under half of the way
    # from the prior, so landing there means the head followed the labels and the prior
    learnt = float(np.mean(default[-3:]))
    assert abs(learnt - target) < 0.01 and 0.5 - learnt > 0.01, (learnt, target)


def test_warp_moves_the_pseudo_labels_with_the_student_view():
    method = _method("segpl", warp=0.5)
    batch = _batch(size=32)
    torch.manual_seed(5)
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    torch.manual_seed(5)  # the step's first draw is the student's map
    theta = random_affine(3, 0.5, "cpu", torch.float32)
    with torch.no_grad():  # the E-step: clean images, then the student's map
        p = warp(torch.sigmoid(method.model(batch.x_u)[0]), theta)
        expected = (p > 0.5).float()
        low = batch.x_u.amin(dim=(1, 2, 3), keepdim=True)
        seen = warp(batch.x_u - low, theta) + low
        logits_u = method.model(torch.cat([batch.x_l, seen]))[0][2:]
        inside = (warp(torch.ones_like(p), theta) > 0.999).float()
        by_hand = segmentation_loss(logits_u, expected, "dice", inside)
    torch.testing.assert_close(out.pseudo, expected)
    assert out.logs["unsup"] == pytest.approx(by_hand.item(), rel=1e-5)
    assert 0 < inside.mean() < 1  # some corners came from outside and are left out


def test_mix_moves_the_pseudo_labels_with_the_student_view():
    """With CutMix on, the student sees mixed images and the pseudo labels are the teacher's
    clean probabilities mixed by the same boxes and partners."""
    method = _method("segpl", mix=1.0)
    batch = _batch(size=32)
    torch.manual_seed(5)
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    torch.manual_seed(5)  # the step's first draws are the boxes, then the partners
    boxes = random_boxes(3, batch.x_u, 1.0)
    partner = partners(3)
    assert (boxes == 0).any() and not torch.equal(partner, torch.arange(3))
    with torch.no_grad():
        p = mix(torch.sigmoid(method.model(batch.x_u)[0]), boxes, partner)
        expected = (p > 0.5).float()
        logits_u = method.model(torch.cat([batch.x_l, mix(batch.x_u, boxes, partner)]))[0][2:]
        by_hand = segmentation_loss(logits_u, expected, "dice")
        unmixed = (torch.sigmoid(method.model(batch.x_u)[0]) > 0.5).float()
    torch.testing.assert_close(out.pseudo, expected)
    assert not torch.equal(expected, unmixed)  # the boxes changed the pseudo labels
    assert out.logs["unsup"] == pytest.approx(by_hand.item(), rel=1e-5)


def test_near_sampling_weights_by_hand():
    image = np.zeros((10, 4, 4), np.float32)
    data = TrainingData(image, np.zeros((10, 4, 4), np.int32), [2, 7], 1, False, [image[:2]])
    weights = unlabelled_weights(data, 0.2)  # 0.2 of 10 slices: a scale of 2 slices
    own = {s: np.exp(-min(abs(s - 2), abs(s - 7)) / 2.0) for s in range(10) if s not in (2, 7)}
    fill = np.mean(list(own.values()))
    expected = np.array([own[s] for s in sorted(own)] + [fill, fill])
    np.testing.assert_allclose(weights, expected / expected.sum())
    assert unlabelled_weights(data, 0.0) is None
    sampler = Sampler(
        data, TrainConfig(near=0.2, dims=2, patch=16, depth=2), np.random.default_rng(0)
    )
    assert sampler.unlabelled_batch(4).shape == (4, 1, 4, 4)


def test_affine_lever_reaches_the_labelled_batches(toy_volume):
    image, labels = toy_volume
    losses = []
    for affine in (0.0, 0.3):
        cfg = TrainConfig.from_preset(
            "paper", method="supervised", steps=2, base_channels=4, depth=2, patch=32
        )
        cfg.affine, cfg.preview_every = affine, 0
        events = list(Trainer(cfg, prepare_data(image, labels, cfg, labelled=[10])).run())
        losses.append([e.losses["sup"] for e in events if isinstance(e, StepEvent)])
    assert losses[0][0] != losses[1][0]  # same seed and weights: only the batch moved


def test_3d_pseudo_labels_train_only_the_centre_slice():
    """Only the centre slice of a labelled stack is supervised and predicted, so only the
    centre slice of an unlabelled stack takes part in the pseudo-label loss: its outer slices'
    logits get no gradient from it, and the guard watches the centre slices' fractions."""
    method = _method("segpl", dims=3)
    g = torch.Generator().manual_seed(0)
    x_l = torch.randn(2, 1, 3, 16, 16, generator=g)
    y_l = (torch.rand(2, 1, 3, 16, 16, generator=g) > 0.6).float()
    mask_l = torch.zeros(1, 1, 3, 1, 1)
    mask_l[:, :, 1] = 1
    batch = Batch(x_l, y_l, mask_l, torch.randn(3, 1, 3, 16, 16, generator=g))
    logits_l = torch.randn(2, 1, 3, 16, 16, generator=g)
    logits_u = torch.randn(3, 1, 3, 16, 16, generator=g, requires_grad=True)
    out = method._loss(batch, logits_l, logits_u, 0.5, 1.0)
    out.loss.backward()
    grad = logits_u.grad
    assert grad[:, :, [0, 2]].abs().max() == 0
    assert grad[:, :, 1].abs().max() > 0
    centre = logits_u.detach()[:, :, 1]
    assert torch.equal(out.pseudo, (torch.sigmoid(centre) > 0.5).float())
    expected = segmentation_loss(logits_l, y_l, "dice", mask_l) + segmentation_loss(
        centre, (torch.sigmoid(centre) > 0.5).float(), "dice"
    )
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(
    ("exclusive", "nested", "expected"),
    [
        # pixels: (0.9, 0.7) both above, class 1 ahead; (0.6, 0.8) both above, class 2 ahead;
        # (0.3, 0.2) neither; (0.4, 0.55) only class 2
        (True, False, [[1, 0, 0, 0], [0, 1, 0, 1]]),
        (False, False, [[1, 1, 0, 0], [1, 1, 0, 1]]),  # one threshold per channel
        (True, True, [[1, 1, 0, 0], [1, 1, 0, 1]]),  # nested channels may overlap by design
    ],
)
def test_exclusive_pseudo_labels_by_hand(exclusive, nested, expected):
    method = _method("segpl", exclusive=exclusive, nested=nested)
    p = torch.tensor([[0.9, 0.6, 0.3, 0.4], [0.7, 0.8, 0.2, 0.55]]).reshape(1, 2, 1, 4)
    logits_u = torch.log(p / (1 - p))
    x_l = torch.zeros(1, 1, 1, 4)
    batch = Batch(x_l, torch.zeros(1, 2, 1, 4), None, torch.zeros(1, 1, 1, 4))
    out = method._loss(batch, torch.zeros(1, 2, 1, 4), logits_u, 0.5, 1.0)
    assert out.pseudo.reshape(2, 4).tolist() == expected


@pytest.mark.parametrize("weight", [0.0, 0.7])
def test_the_e_step_adds_the_weighted_intensity_evidence_to_the_logits(weight):
    batch = _batch()
    method = _method("segpl", intensity=weight)
    table = torch.linspace(-4.0, 4.0, BINS).reshape(1, BINS)  # bright pixels: class 1
    method.evidence = IntensityEvidence(torch.linspace(-2.0, 2.0, BINS + 1), table)
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    with torch.no_grad():
        logits = method.model(batch.x_u)[0]
        expected = torch.sigmoid(logits + weight * method.evidence(batch.x_u)) > 0.5
    torch.testing.assert_close(out.pseudo, expected.float())
    plain = (torch.sigmoid(logits) > 0.5).float()
    assert torch.equal(out.pseudo, plain) == (weight == 0)
