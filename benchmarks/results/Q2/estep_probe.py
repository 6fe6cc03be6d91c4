"""(Q2)'s probe, no rule: SegPL's E-step cuts its pseudo labels with the label decision fitted
to the paint (refitted every ``EVERY`` steps after the burn-in, on the teacher's probabilities
of the painted slices) instead of the threshold rule. Asks whether pseudo labels labelled as
the export labels keep the organs a SegPL run loses. One run of ``benchmarks.accuracy``'s
``run_one`` with the patch; the row is appended to ``benchmarks/results/Q2/estep_probe.jsonl``.

    OMP_NUM_THREADS=1 SEGPL_DATA=../shared/data SEGPL_SAVE_PRED=DIR PYTHONPATH=COPY \
        python benchmarks/results/Q2/estep_probe.py DATASET SEED METHOD
"""

import json
import sys

import numpy as np
import torch

from benchmarks.accuracy import DATASETS, run_one
from napari_segpl.engine.decision import fit_decision
from napari_segpl.engine.methods.base import Method
from napari_segpl.engine.methods.segpl import SegPL
from napari_segpl.engine.trainer import Trainer

EVERY = 20
torch.set_num_threads(1)
name, seed, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fits = []

init, cut, loss = Trainer.__init__, Method.cut, SegPL.compute_loss


def patched_init(self, config, data):
    init(self, config, data)
    self.model.method._trainer = self


def teacher_decision(method):
    tr = method._trainer
    x, (h, w) = tr._slices(tr.data.labelled)
    was = method.model.training
    method.model.train(False)
    with torch.no_grad():
        p = method.e_step_probabilities(x.to(tr.device))
    method.model.train(was)
    p = (p[:, :, 1] if p.ndim == 5 else p)[..., :h, :w]
    prob = p.transpose(0, 1).reshape(p.shape[1], -1).cpu().numpy()
    truth = np.stack([tr.data.labels[s] for s in tr.data.labelled]).reshape(-1)
    step = max(1, -(-truth.size // 262_144))
    return fit_decision(prob[:, ::step], truth[::step], tr.config.threshold)


def patched_loss(self, batch, step, alpha_fn):
    tr = self._trainer
    if step >= tr.config.burn_in_steps and (step - tr.config.burn_in_steps) % EVERY == 0:
        self._decision = teacher_decision(self)
        fits.append(
            [step, self._decision.weight.round(2).tolist(), self._decision.bias.round(2).tolist()]
        )
    return loss(self, batch, step, alpha_fn)


def patched_cut(self, p, threshold):
    d = getattr(self, "_decision", None)
    if d is None or self.config.nested:
        return cut(self, p, threshold)
    z = torch.logit(p.double().clamp(1e-6, 1 - 1e-6))
    weight = torch.from_numpy(d.weight).to(z)
    bias = torch.from_numpy(d.bias).to(z).reshape((1, -1) + (1,) * (z.ndim - 2))
    labels = (torch.einsum("ck,nk...->nc...", weight, z) + bias).argmax(1)
    return torch.stack([labels == k + 1 for k in range(p.shape[1])], 1)


Trainer.__init__, Method.cut, SegPL.compute_loss = patched_init, patched_cut, patched_loss
row = run_one(name, DATASETS[name], method, seed, 3, {})
row["decisions"] = fits
with open("benchmarks/results/Q2/estep_probe.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
print(json.dumps({k: row[k] for k in row if "whole" in k or k in ("dataset", "seed", "method")}))
