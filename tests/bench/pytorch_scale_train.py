#!/usr/bin/env python3
"""PyTorch on the shape of `bench op=scale-train` (tests/bench_scale.c),
for comparison only: not part of the build or the tests.

The same training written the way a PyTorch user would write it: two
CLIP-Adapters (bias-free 768 -> 192 -> 768, ReLU after both layers, a
learnable alpha kept in (0, 1) by a sigmoid, init 0.2), 413 images of one
Derm7p criterion (5 combinations), batches of 64, each with its 64 paired
prompts and the 5 canonical ones through the text adapter, Q = x^ t^T, the
loss of Eq. 3 (three cross-entropies with max aggregation, SupCon both ways
over Q and Q^T, mean reduction), Adam lr 1e-3, 150 epochs. Random
embeddings: the time does not depend on their values.

    /usr/bin/python3 tests/bench/pytorch_scale_train.py [threads ...]

prints `bench impl=pytorch op=scale-train ... seconds=... cpu_seconds=...`.
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from pytorch_models import set_threads   # this script's folder is on sys.path

N, C, H, EPOCHS, BATCH = 413, 768, 5, 150, 64
COMBO_CLASS = torch.tensor([0, 0, 0, 1, 1])
COMBO_CONCEPT = torch.tensor([0, 1, 2, 3, 4])
SCALE, TAU = 100.0, 0.07


class Adapter(nn.Module):
    def __init__(self, c, reduction=4, alpha=0.2):
        super().__init__()
        self.down = nn.Linear(c, c // reduction, bias=False)
        self.up = nn.Linear(c // reduction, c, bias=False)
        self.alpha_logit = nn.Parameter(torch.logit(torch.tensor(alpha)))

    def forward(self, f):
        a = torch.sigmoid(self.alpha_logit)
        return a * F.relu(self.up(F.relu(self.down(f)))) + (1 - a) * f


def aggregate(Z, groups, n):
    """z[:, g] = max over the combinations h of group g of Z[:, h]."""
    return torch.stack([Z[:, groups == g].max(dim=1).values for g in range(n)], dim=1)


def supcon(logits, positive):
    """Mean over anchors with a positive of -(1/|P|) sum_p log softmax_p."""
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    count = positive.sum(1)
    has = count > 0
    return -((log_p * positive).sum(1)[has] / count[has]).mean()


def loss_of(x, t, combo_img, combo_txt):
    Q = x @ t.T                                        # (B, B + H)
    first = torch.tensor([int((combo_txt == h).nonzero()[0]) for h in range(H)])
    Z = SCALE * Q[:, first]                            # (B, H)
    G = F.one_hot(combo_img, H).float()
    ce = F.cross_entropy(Z, G)
    ce += F.cross_entropy(aggregate(Z, COMBO_CONCEPT, 5), F.one_hot(COMBO_CONCEPT[combo_img], 5).float())
    ce += F.cross_entropy(aggregate(Z, COMBO_CLASS, 2), F.one_hot(COMBO_CLASS[combo_img], 2).float())
    same = (combo_img[:, None] == combo_txt[None, :]).float()
    return ce + supcon(Q / TAU, same) + supcon(Q.T / TAU, same.T)


def run(threads):
    torch.manual_seed(0)
    set_threads(threads)
    images, prompts = torch.randn(N, C), torch.randn(H, C)
    combo = torch.randint(0, H, (N,))
    image_adapter, text_adapter = Adapter(C), Adapter(C)
    opt = torch.optim.Adam(list(image_adapter.parameters()) + list(text_adapter.parameters()), lr=1e-3)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(EPOCHS):
        order = torch.randperm(N)
        for start in range(0, N, BATCH):
            idx = order[start:start + BATCH]
            combo_txt = torch.cat([combo[idx], torch.arange(H)])
            x = F.normalize(image_adapter(images[idx]), dim=-1)
            t = F.normalize(text_adapter(prompts[combo_txt]), dim=-1)
            loss = loss_of(x, t, combo[idx], combo_txt)
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"bench impl=pytorch op=scale-train n={N} d={C} combos={H} epochs={EPOCHS} batch={BATCH} "
          f"threads={threads} seconds={seconds:.3f} cpu_seconds={cpu:.3f} final_loss={loss.item():.4f}", flush=True)


if __name__ == "__main__":
    print(f"# torch {torch.__version__}")
    for n in [int(a) for a in sys.argv[1:]] or [1, 2]:
        run(n)
