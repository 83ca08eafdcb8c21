"""hf_reference.py: an independent PyTorch forward of the two Hugging Face architectures kvgpt
imports, written from transformers' module structure and state-dict names (GPTNeoXForCausalLM,
GPT2LMHeadModel), not from kvgpt's code. float64 throughout, so the comparison measures kvgpt's
float32 error alone. Used by test/test_hf.py; also the random HF-named weights it saves.

GPT-NeoX layer (transformers' GPTNeoXLayer / GPTNeoXAttention):
    qkv = query_key_value(input_layernorm(x)).view(B, T, H, 3 * hd)   -> q, k, v = the three hd slices
    q[..., :rot], k[..., :rot] rotated: x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1),
        inv_freq = 1 / base^(arange(0, rot, 2) / rot), cos/sin of cat(freqs, freqs)
    attn = dense(softmax(q k^T / sqrt(hd) + causal) v)
    parallel: x + attn + mlp(post_attention_layernorm(x));  else h = x + attn; h + mlp(post_attention_layernorm(h))
    mlp = dense_4h_to_h(act(dense_h_to_4h(.)));  logits = embed_out(final_layer_norm(x))
GPT-2 block: x + c_proj(attn(ln_1(x))), then + mlp(ln_2(.)); Conv1D y = x @ W + b (W is (in, out));
    c_attn's output split into q | k | v of n_embd each; logits = ln_f(x) @ wte^T (tied)
"""
import math

import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def _ln(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def _act(name, x):
    if name == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    raise ValueError(name)


def _causal_attention(q, k, v):  # (H, T, d) each
    T = q.shape[1]
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def neox_logits(sd, cfg, ids):
    g = lambda n: torch.as_tensor(np.asarray(sd[n]), dtype=torch.float64)
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = C // H
    rot = int(hd * cfg.get("rotary_pct", 0.25))
    base = cfg.get("rotary_emb_base", 10000)
    eps = cfg.get("layer_norm_eps", 1e-5)
    T = len(ids)
    inv_freq = 1.0 / (base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos(), emb.sin()

    def rotate(x):  # (H, T, hd)
        xr, xp = x[..., :rot], x[..., rot:]
        x1, x2 = xr[..., :rot // 2], xr[..., rot // 2:]
        return torch.cat([xr * cos + torch.cat([-x2, x1], dim=-1) * sin, xp], dim=-1)

    x = g("gpt_neox.embed_in.weight")[torch.as_tensor(ids)]
    for l in range(cfg["num_hidden_layers"]):
        p = f"gpt_neox.layers.{l}."
        h = _ln(x, g(p + "input_layernorm.weight"), g(p + "input_layernorm.bias"), eps)
        qkv = (h @ g(p + "attention.query_key_value.weight").T + g(p + "attention.query_key_value.bias")).view(T, H, 3 * hd)
        q, k, v = (qkv[..., i * hd:(i + 1) * hd].permute(1, 0, 2) for i in range(3))
        y = _causal_attention(rotate(q), rotate(k), v).permute(1, 0, 2).reshape(T, C)
        attn = y @ g(p + "attention.dense.weight").T + g(p + "attention.dense.bias")

        def mlp(z):
            z = _ln(z, g(p + "post_attention_layernorm.weight"), g(p + "post_attention_layernorm.bias"), eps)
            z = _act(cfg.get("hidden_act", "gelu"), z @ g(p + "mlp.dense_h_to_4h.weight").T + g(p + "mlp.dense_h_to_4h.bias"))
            return z @ g(p + "mlp.dense_4h_to_h.weight").T + g(p + "mlp.dense_4h_to_h.bias")
        if cfg.get("use_parallel_residual", True):
            x = x + attn + mlp(x)
        else:
            x = x + attn
            x = x + mlp(x)
    x = _ln(x, g("gpt_neox.final_layer_norm.weight"), g("gpt_neox.final_layer_norm.bias"), eps)
    return (x @ g("embed_out.weight").T).numpy()


def gpt2_logits(sd, cfg, ids):
    g = lambda n: torch.as_tensor(np.asarray(sd[n]), dtype=torch.float64)
    C, H = cfg["n_embd"], cfg["n_head"]
    hd = C // H
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    T = len(ids)
    x = g("transformer.wte.weight")[torch.as_tensor(ids)] + g("transformer.wpe.weight")[:T]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        h = _ln(x, g(p + "ln_1.weight"), g(p + "ln_1.bias"), eps)
        qkv = h @ g(p + "attn.c_attn.weight") + g(p + "attn.c_attn.bias")
        q, k, v = (qkv[:, i * C:(i + 1) * C].view(T, H, hd).permute(1, 0, 2) for i in range(3))
        y = _causal_attention(q, k, v).permute(1, 0, 2).reshape(T, C)
        x = x + y @ g(p + "attn.c_proj.weight") + g(p + "attn.c_proj.bias")
        h = _ln(x, g(p + "ln_2.weight"), g(p + "ln_2.bias"), eps)
        h = _act(cfg.get("activation_function", "gelu_new"), h @ g(p + "mlp.c_fc.weight") + g(p + "mlp.c_fc.bias"))
        x = x + h @ g(p + "mlp.c_proj.weight") + g(p + "mlp.c_proj.bias")
    x = _ln(x, g("transformer.ln_f.weight"), g("transformer.ln_f.bias"), eps)
    w_out = g("lm_head.weight") if "lm_head.weight" in sd else g("transformer.wte.weight")
    return (x @ w_out.T).numpy()


def random_state_dict(arch, cfg, seed):
    """HF-named float32 weights for a config, large enough (std 0.2 to 0.5, LayerNorm weights
    around 1, non-zero biases) that attention is far from uniform and every tensor matters."""
    r = np.random.default_rng(seed)
    n = lambda *s, std=0.2: (r.standard_normal(s) * std).astype(np.float32)
    ln = lambda C: (1.0 + n(C, std=0.3), n(C, std=0.2))
    sd = {}
    if arch == "neox":
        C, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
        sd["gpt_neox.embed_in.weight"] = n(V, C, std=0.5)
        for l in range(cfg["num_hidden_layers"]):
            p = f"gpt_neox.layers.{l}."
            sd[p + "input_layernorm.weight"], sd[p + "input_layernorm.bias"] = ln(C)
            sd[p + "post_attention_layernorm.weight"], sd[p + "post_attention_layernorm.bias"] = ln(C)
            sd[p + "attention.query_key_value.weight"], sd[p + "attention.query_key_value.bias"] = n(3 * C, C, std=0.5 / math.sqrt(C) * 4), n(3 * C)
            sd[p + "attention.dense.weight"], sd[p + "attention.dense.bias"] = n(C, C, std=1 / math.sqrt(C)), n(C)
            sd[p + "mlp.dense_h_to_4h.weight"], sd[p + "mlp.dense_h_to_4h.bias"] = n(F, C, std=1 / math.sqrt(C)), n(F)
            sd[p + "mlp.dense_4h_to_h.weight"], sd[p + "mlp.dense_4h_to_h.bias"] = n(C, F, std=1 / math.sqrt(F)), n(C)
        sd["gpt_neox.final_layer_norm.weight"], sd["gpt_neox.final_layer_norm.bias"] = ln(C)
        if cfg.get("tie_word_embeddings", False):
            sd["embed_out.weight"] = sd["gpt_neox.embed_in.weight"]
        else:
            sd["embed_out.weight"] = n(V, C, std=0.5)
        # the buffers older checkpoints carry, which the importer must skip (the mask is BOOL in safetensors)
        sd["gpt_neox.layers.0.attention.rotary_emb.inv_freq"] = np.ones(4, np.float32)
        sd["gpt_neox.layers.0.attention.bias"] = np.tril(np.ones((1, 1, 8, 8), bool))
    else:
        C, V = cfg["n_embd"], cfg["vocab_size"]
        F = cfg.get("n_inner") or 4 * C
        sd["transformer.wte.weight"], sd["transformer.wpe.weight"] = n(V, C, std=0.5), n(cfg["n_positions"], C, std=0.3)
        for l in range(cfg["n_layer"]):
            p = f"transformer.h.{l}."
            sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = ln(C)
            sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = ln(C)
            sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"] = n(C, 3 * C, std=0.5 / math.sqrt(C) * 4), n(3 * C)
            sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"] = n(C, C, std=1 / math.sqrt(C)), n(C)
            sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"] = n(C, F, std=1 / math.sqrt(C)), n(F)
            sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"] = n(F, C, std=1 / math.sqrt(F)), n(C)
            sd[p + "attn.bias"] = np.tril(np.ones((1, 1, 8, 8), np.float32))  # the causal-mask buffer old files carry
        sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"] = ln(C)
        if not cfg.get("tie_word_embeddings", True):
            sd["lm_head.weight"] = n(V, C, std=0.5)
    return sd
