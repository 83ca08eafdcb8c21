"""summarize_runs.py: Markdown tables from train_gpt JSONL logs.

    python3 scripts/summarize_runs.py out/variants/*.jsonl

First one row per run: variant, position encoding, parameters, KV elements per token per layer,
the reduction against MHA of the same shape, first and final val loss (the final one of the
weights train_gpt keeps: the best seen), steps and wall time.
Then, for runs named NAME_sSEED (scripts/compare_variants.sh), one row per NAME: the number of
seeds, the mean final val loss, its standard deviation and its range (min to max), so a
difference between variants can be read against the seed-to-seed spread."""
import json
import math
import os
import re
import sys


def load(p):
    ev = []
    for n, line in enumerate(open(p), 1):
        if line.strip():
            try:
                ev.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"warning: {p}:{n}: not JSON, skipped", file=sys.stderr)
    starts = [i for i, e in enumerate(ev) if e.get("event") == "start"]
    if not starts:
        raise SystemExit(f"Error: {p}: no start event: not a ./train_gpt log")
    start = ev[starts[0]]
    end = next((e for e in reversed(ev) if e.get("event") == "end"), {})
    vals = [e for e in ev if "val_loss" in e]
    name = os.path.basename(p)
    for suffix in (".jsonl", ".ckpt"):  # -L NAME.jsonl, or train_gpt's default NAME.ckpt.jsonl
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name, start, vals, end


def main(paths):
    rows = [load(p) for p in paths]
    print("| run | attention | position | params | KV elems/token/layer | KV vs MHA | val loss (step 0) | val loss (final) | steps | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, s, vals, end in rows:
        mha = s.get("kv_mha_per_layer") or 0
        red = f"{100 * (1 - s['kv_elems_per_token_layer'] / mha):.1f}% less" if mha else "n/a"
        first = f"{vals[0]['val_loss']:.4f}" if vals else "n/a"
        fin = end.get("final_val_loss", vals[-1]["val_loss"] if vals else None)
        last = f"{fin:.4f}" if fin is not None else "n/a"
        print(f"| {name} | {s['attn']} | {s['pos']} | {s['params'] / 1e6:.2f}M | {s['kv_elems_per_token_layer']} | {red} | "
              f"{first} | {last} | {vals[-1]['step'] if vals else 'n/a'} | {end.get('seconds', float('nan')):.0f} |")
    groups = {}
    for name, s, vals, end in rows:
        m = re.match(r"^(.*)_s(\d+)$", name)
        if m and vals:
            groups.setdefault(m.group(1), []).append((int(m.group(2)), s, end.get("final_val_loss", vals[-1]["val_loss"])))
    if any(len(g) > 1 for g in groups.values()):
        print()
        print("| variant | attention | position | KV elems/token/layer | seeds | final val loss: mean | std | min to max |")
        print("|---|---|---|---|---|---|---|---|")
        for name, g in groups.items():
            xs = [x for _, _, x in g]
            mean = sum(xs) / len(xs)
            std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
            s = g[0][1]
            print(f"| {name} | {s['attn']} | {s['pos']} | {s['kv_elems_per_token_layer']} | {','.join(str(k) for k, _, _ in sorted(g, key=lambda t: t[0]))} | "
                  f"{mean:.4f} | {std:.4f} | {min(xs):.4f} to {max(xs):.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
