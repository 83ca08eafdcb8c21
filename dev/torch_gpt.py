#!/usr/bin/env python3
"""dev/torch_gpt.py: the PyTorch baseline for kvgpt's CUDA benchmarks: the same GPT shapes
(gpt2-124m: learned positions, sequential residual, tied, tanh GELU; pythia-70m: partial NeoX
RoPE, parallel residual, untied, erf GELU; padded vocab 50304; fused qkv with biases), trained
with AdamW in bf16 autocast, attention by F.scaled_dot_product_attention (causal), with or
without torch.compile. Prints one step line per step and a closing JSON line with the median
step time, tok/s and MFU computed with train_gpt's FLOP count (6 x matmul params + attention).

  python3 dev/torch_gpt.py --model gpt2-124m -b 16 -t 1024 --steps 30 [--compile]

Random tokens: the point is speed on the same shapes, not loss. On a GPU: bf16 autocast, fused
AdamW. With --device cpu: fp32, the same step (forward, backward, grad-norm clip at 1.0, AdamW),
torch's own thread count (--threads); the parameter count is asserted against the kvgpt preset's
(124,439,808 / 70,426,624). dev/bench_peers.sh runs it interleaved with ./train_gpt on the CPU.
Works with Debian's torch 1.13 (no scaled_dot_product_attention there: an explicit causal softmax).
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "gpt2-124m": dict(vocab=50257, L=12, C=768, H=12, ff=3072, parallel=False, tied=True, gelu="tanh", pos="learned", rotary_pct=1.0, max_T=1024),
    "pythia-70m": dict(vocab=50304, L=6, C=512, H=8, ff=2048, parallel=True, tied=False, gelu="none", pos="rope", rotary_pct=0.25, max_T=2048),
}
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}


class Rope:
    """NeoX rotate-half on the first `rot` dims of each head (kvgpt attention/position.h)."""

    def __init__(self, rot, T, device, base=10000.0):
        self.rot = rot
        half = rot // 2
        inv = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / rot)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos = ang.cos().float().to(device)
        self.sin = ang.sin().float().to(device)

    def __call__(self, x):  # x (B, heads, T, hd)
        T, half = x.shape[2], self.rot // 2
        c, s = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        x1, x2, rest = x[..., :half], x[..., half:self.rot], x[..., self.rot:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s, rest], dim=-1)


class Block(nn.Module):
    def __init__(self, p, rope):
        super().__init__()
        C, H = p["C"], p["H"]
        self.H, self.hd, self.parallel, self.rope = H, C // H, p["parallel"], rope
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.o = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.fc, self.proj = nn.Linear(C, p["ff"]), nn.Linear(p["ff"], C)
        self.gelu = p["gelu"]

    def attn(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.H, self.hd).permute(2, 0, 3, 1, 4)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0
            T = q.shape[2]
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
            s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool, device=q.device), 1), float("-inf"))
            y = torch.softmax(s, dim=-1) @ v
        return self.o(y.transpose(1, 2).reshape(B, T, C))

    def mlp(self, x):
        return self.proj(F.gelu(self.fc(x), approximate=self.gelu))

    def forward(self, x):
        if self.parallel:
            return x + self.attn(self.ln1(x)) + self.mlp(self.ln2(x))
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, p, device):
        super().__init__()
        self.V, self.Vp = p["vocab"], (p["vocab"] + 63) // 64 * 64
        C = p["C"]
        rope = Rope(int(C // p["H"] * p["rotary_pct"]) & ~1, p["max_T"], device) if p["pos"] == "rope" else None
        self.wte = nn.Embedding(self.Vp, C)
        self.wpe = nn.Embedding(p["max_T"], C) if p["pos"] == "learned" else None
        self.blocks = nn.ModuleList([Block(p, rope) for _ in range(p["L"])])
        self.lnf = nn.LayerNorm(C)
        self.head = nn.Linear(C, self.Vp, bias=False)
        if p["tied"]:
            self.head.weight = self.wte.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx, targets):
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.lnf(x))
        # scored over the real vocab only, as kvgpt does (the padded columns exist for speed)
        return F.cross_entropy(logits[..., :self.V].float().reshape(-1, self.V), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gpt2-124m", choices=sorted(PRESETS))
    ap.add_argument("-b", type=int, default=16)
    ap.add_argument("-t", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--threads", type=int, default=0, help="CPU: torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch_gpt.py: no CUDA device (use --device cpu)")
    dev = a.device
    gpu = dev == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    p = PRESETS[a.model]
    model = GPT(p, dev).to(dev)
    counted = sum(w.numel() for w in model.parameters()) - (model.Vp - p["vocab"]) * p["C"] * (1 if p["tied"] else 2)
    want = {"gpt2-124m": 124439808, "pythia-70m": 70426624}[a.model]
    assert counted == want, f"{a.model}: {counted} parameters, kvgpt's preset has {want}"
    decay = [w for n, w in model.named_parameters() if w.dim() >= 2]
    no_decay = [w for n, w in model.named_parameters() if w.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if gpu else {}))
    step_fn = torch.compile(model) if a.compile else model
    # train_gpt's FLOP count: 6 per matmul weight per token (lookup-only tables excluded) + attention
    n_params = sum(w.numel() for w in model.parameters())
    C, L, H = p["C"], p["L"], p["H"]
    matmul_params = n_params - (0 if p["tied"] else model.Vp * C) - (p["max_T"] * C if p["pos"] == "learned" else 0)
    matmul_params -= (model.Vp - p["vocab"]) * C  # kvgpt counts the real vocab only
    flops_per_token = 6.0 * matmul_params + 6.0 * L * H * (C // H) * a.t
    name = torch.cuda.get_device_name(0) if gpu else f"cpu, {torch.get_num_threads()} threads"
    peak = a.peak_tflops or (next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), 0.0) if gpu else 0.0)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    times = []
    for step in range(a.steps):
        x = torch.randint(0, p["vocab"], (a.b, a.t + 1), device=dev)
        sync()
        t0 = time.perf_counter()
        if gpu:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step_fn(x[:, :-1], x[:, 1:])
        else:  # fp32, as kvgpt's CPU backend
            loss = step_fn(x[:, :-1], x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        dt = time.perf_counter() - t0
        times.append(dt)
        tok_s = a.b * a.t / dt
        mfu = 100 * flops_per_token * tok_s / (peak * 1e12) if peak else float("nan")
        print(f"step {step + 1:4d}/{a.steps} | loss {loss.item():.4f} | {1000 * dt:.1f} ms | {tok_s:.0f} tok/s | mfu {mfu:.1f}%")
    med = statistics.median(times[min(5 if gpu else 1, len(times) - 1):])  # after compile / warm-up
    tok_s = a.b * a.t / med
    print(json.dumps({"impl": "pytorch" + (" + compile" if a.compile else " eager"), "torch": torch.__version__, "device": name,
                      "model": a.model, "B": a.b, "T": a.t, "ms": 1000 * med, "tok_s": tok_s,
                      "mfu": flops_per_token * tok_s / (peak * 1e12) if peak else None, "params": n_params}))


if __name__ == "__main__":
    main()
