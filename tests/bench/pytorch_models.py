#!/usr/bin/env python3
"""PyTorch on the shapes of tests/bench_models.c, for comparison only.

Not part of the build or the tests. Needs PyTorch (Debian: python3-torch,
1.13 here); the transformers library is not needed: the four towers are
written below the way Hugging Face's modeling_clip / modeling_swin /
modeling_bert compute them (separate q, k, v Linear layers, explicit
matmul + softmax attention), with random weights.

    /usr/bin/python3 tests/bench/pytorch_models.py [model ...]

prints lines in the format of `make bench BENCH=models`:
    bench impl=pytorch model=vit-l-14 batch=8 threads=2 ms_per_item=... gflops=...
gflops uses the same operation counts as bench_models.c.
"""
import ctypes
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H, self.D = H, C // H
        self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))

    def forward(self, x, bias=None):                     # x (B, T, C)
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.H, self.D).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        s = q @ k.transpose(-1, -2) / math.sqrt(self.D)
        if bias is not None:
            s = s + bias
        p = F.softmax(s, dim=-1)
        return self.o((p @ v).transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-LN (CLIP, Swin) or post-LN (BERT) transformer block."""

    def __init__(self, C, H, Fw, act, post_ln=False, eps=1e-5):
        super().__init__()
        self.attn, self.post_ln, self.act = Attention(C, H), post_ln, act
        self.ln1, self.ln2 = nn.LayerNorm(C, eps=eps), nn.LayerNorm(C, eps=eps)
        self.fc1, self.fc2 = nn.Linear(C, Fw), nn.Linear(Fw, C)

    def forward(self, x, bias=None):
        if self.post_ln:
            x = self.ln1(x + self.attn(x, bias))
            return self.ln2(x + self.fc2(self.act(self.fc1(x))))
        x = x + self.attn(self.ln1(x), bias)
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class ViT(nn.Module):
    def __init__(self, S=224, P=14, C=1024, L=24, H=16, E=768):
        super().__init__()
        self.P, G = P, S // P
        self.conv = nn.Conv2d(3, C, P, P, bias=False)
        self.cls = nn.Parameter(torch.randn(C) * 0.02)
        self.pos = nn.Parameter(torch.randn(1 + G * G, C) * 0.02)
        self.ln_pre, self.ln_post = nn.LayerNorm(C), nn.LayerNorm(C)
        self.blocks = nn.ModuleList(Block(C, H, 4 * C, quick_gelu) for _ in range(L))
        self.proj = nn.Linear(C, E, bias=False)

    def forward(self, px):
        x = self.conv(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], 1) + self.pos
        x = self.ln_pre(x)
        for b in self.blocks:
            x = b(x)
        return self.proj(self.ln_post(x[:, 0]))


class ClipText(nn.Module):
    def __init__(self, V=49408, T=77, C=768, L=12, H=12, E=768):
        super().__init__()
        self.tok, self.pos = nn.Embedding(V, C), nn.Parameter(torch.randn(T, C) * 0.01)
        self.blocks = nn.ModuleList(Block(C, H, 4 * C, quick_gelu) for _ in range(L))
        self.ln, self.proj = nn.LayerNorm(C), nn.Linear(C, E, bias=False)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.tok(ids) + self.pos[:T]
        causal = torch.full((T, T), torch.finfo(x.dtype).min).triu(1)
        for b in self.blocks:
            x = b(x, causal)
        x = self.ln(x)
        return self.proj(x[torch.arange(x.shape[0]), ids.argmax(-1)])


class Bert(nn.Module):
    def __init__(self, V=28996, T=512, C=768, L=12, H=12, E=512):
        super().__init__()
        self.word, self.pos, self.types = nn.Embedding(V, C), nn.Embedding(T, C), nn.Embedding(2, C)
        self.ln = nn.LayerNorm(C, eps=1e-12)
        self.blocks = nn.ModuleList(Block(C, H, 4 * C, F.gelu, post_ln=True, eps=1e-12) for _ in range(L))
        self.proj = nn.Linear(C, E, bias=False)

    def forward(self, ids, mask):
        B, T = ids.shape
        x = self.ln(self.word(ids) + self.types(torch.zeros_like(ids)) + self.pos(torch.arange(T)))
        bias = ((1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min)
        hs = [x]
        for b in self.blocks:
            x = b(x, bias)
            hs.append(x)
        pooled = torch.stack([hs[1], hs[2], hs[-1]]).permute(1, 0, 2, 3).mean(2).mean(1)
        return self.proj(pooled)


def window_partition(x, M):                             # (B, H, W, C) -> (B·nW, M², C)
    B, H, W, C = x.shape
    x = x.view(B, H // M, M, W // M, M, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, M * M, C)


def window_reverse(w, M, H, W):
    B = w.shape[0] // ((H // M) * (W // M))
    x = w.view(B, H // M, W // M, M, M, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, -1)


class SwinBlock(Block):
    def __init__(self, C, H, M, shift):
        super().__init__(C, H, 4 * C, F.gelu)
        self.M, self.shift = M, shift
        self.table = nn.Parameter(torch.randn((2 * M - 1) ** 2, H) * 0.02)
        c = torch.stack(torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")).flatten(1)
        r = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + (M - 1)
        self.register_buffer("index", r[:, :, 0] * (2 * M - 1) + r[:, :, 1])

    def forward(self, x, hw):
        Hs, Ws = hw
        B, N, C = x.shape
        M, s = self.M, self.shift
        h = self.ln1(x).view(B, Hs, Ws, C)
        if s:
            h = torch.roll(h, (-s, -s), (1, 2))
        w = window_partition(h, M)
        bias = self.table[self.index.view(-1)].view(M * M, M * M, -1).permute(2, 0, 1)[None]
        if s:
            lab = torch.zeros(Hs, Ws)
            cnt = 0
            for a in (slice(0, -M), slice(-M, -s), slice(-s, None)):
                for b in (slice(0, -M), slice(-M, -s), slice(-s, None)):
                    lab[a, b] = cnt
                    cnt += 1
            lw = window_partition(lab[None, :, :, None], M).squeeze(-1)
            mask = (lw[:, None, :] - lw[:, :, None]).ne(0).float() * -100.0
            nW = mask.shape[0]
            bias = (bias + mask[:, None]).repeat(B, 1, 1, 1)   # (B·nW, H, T, T)
        a = window_reverse(self.attn(w, bias), M, Hs, Ws)
        if s:
            a = torch.roll(a, (s, s), (1, 2))
        x = x + a.reshape(B, N, C)
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class Swin(nn.Module):
    def __init__(self, C=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), M=7, E=512, S=224):
        super().__init__()
        self.patch, self.norm = nn.Conv2d(3, C, 4, 4), nn.LayerNorm(C)
        self.stages, self.merges = nn.ModuleList(), nn.ModuleList()
        res = S // 4
        for i, (d, h) in enumerate(zip(depths, heads)):
            m = min(M, res)
            self.stages.append(nn.ModuleList(
                SwinBlock(C, h, m, 0 if j % 2 == 0 or res <= M else M // 2) for j in range(d)))
            if i + 1 < len(depths):
                self.merges.append(nn.Sequential(nn.LayerNorm(4 * C), nn.Linear(4 * C, 2 * C, bias=False)))
                C, res = 2 * C, res // 2
        self.ln, self.proj = nn.LayerNorm(C), nn.Linear(C, E, bias=False)

    def forward(self, px):
        x = self.norm(self.patch(px).flatten(2).transpose(1, 2))
        Hs = Ws = px.shape[-1] // 4
        for i, blocks in enumerate(self.stages):
            for b in blocks:
                x = b(x, (Hs, Ws))
            if i < len(self.merges):
                B, N, C = x.shape
                g = x.view(B, Hs, Ws, C)
                g = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], -1)
                Hs, Ws = Hs // 2, Ws // 2
                x = self.merges[i](g.view(B, Hs * Ws, 4 * C))
        return self.proj(self.ln(x).mean(1))


# Operation counts: identical to bench_models.c.
def block_macs(R, T, C, Fw):
    return 4 * R * C * C + 2 * R * C * Fw + 2 * R * T * C


def vit_flops(B, S=224, P=14, C=1024, L=24, E=768):
    G = S // P
    N = 1 + G * G
    return 2 * (B * G * G * 3 * P * P * C + L * block_macs(B * N, N, C, 4 * C) + B * C * E)


def text_flops(B, T, C=768, L=12, E=768):
    return 2 * (L * block_macs(B * T, T, C, 4 * C) + B * C * E)


def swin_flops(B, S=224, C=96, depths=(2, 2, 6, 2), M=7, E=512):
    side, macs = S // 4, B * (S // 4) ** 2 * 3 * 16 * C
    for i, d in enumerate(depths):
        m = min(side, M)
        macs += d * block_macs(B * side * side, m * m, C, 4 * C)
        if i + 1 < len(depths):
            side //= 2
            macs += B * side * side * 4 * C * 2 * C
            C *= 2
    return 2 * (macs + B * C * E)


def set_threads(n):
    """torch.set_num_threads does not reach Debian's OpenBLAS (pthread
    build), which PyTorch calls for its matrix products and which otherwise
    uses every core: set both."""
    torch.set_num_threads(n)
    for lib in ("libopenblas.so.0", "libblas.so.3"):
        try:
            ctypes.CDLL(lib).openblas_set_num_threads(n)
        except (OSError, AttributeError):
            pass


def measure(name, model, inputs, B, flops, reps):
    with torch.inference_mode():
        set_threads(2)
        model(*inputs)
        for threads in (1, 2):
            set_threads(threads)
            best, best_cpu = float("inf"), float("inf")
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                model(*inputs)
                best = min(best, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
            print(f"bench impl=pytorch model={name} batch={B} threads={threads} "
                  f"ms_per_item={1e3 * best / B:.2f} gflops={flops / best * 1e-9:.1f} "
                  f"cpu_ms_per_item={1e3 * best_cpu / B:.2f}", flush=True)


def text_ids(B, T, V, seed=8):
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        n = 8 + int(torch.randint(T - 8, (1,), generator=g))
        ids[b, :n] = torch.randint(1, V - 1, (n,), generator=g)
        ids[b, n - 1] = V - 1
        mask[b, :n] = 1
    return ids, mask


def main():
    only = set(sys.argv[1:])
    torch.manual_seed(0)
    want = lambda n: not only or n in only
    print(f"# torch {torch.__version__}, {torch.__config__.parallel_info().splitlines()[0]}", flush=True)
    if want("vit-l-14"):
        m = ViT().eval()
        for B, reps in ((1, 2), (8, 1)):
            measure("vit-l-14", m, (torch.randn(B, 3, 224, 224),), B, vit_flops(B), reps)
        del m
    if want("vit-l-14-text"):
        m = ClipText().eval()
        measure("vit-l-14-text", m, (text_ids(32, 77, 49408)[0],), 32, text_flops(32, 77), 1)
        del m
    if want("swin-t"):
        m = Swin().eval()
        measure("swin-t", m, (torch.randn(8, 3, 224, 224),), 8, swin_flops(8), 2)
        del m
    if want("bert-base"):
        m = Bert().eval()
        measure("bert-base", m, text_ids(32, 77, 28996), 32, text_flops(32, 77), 1)
    print(f"bench impl=pytorch peak_rss_mib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
