"""summarize_runs.py: a Markdown table from train_gpt JSONL logs (one row per run):
variant, position encoding, parameters, KV elements per token per layer, the reduction against
MHA of the same shape, first and final val loss, steps and wall time.
    python3 scripts/summarize_runs.py out/variants/*.jsonl"""
import json
import os
import sys


def main(paths):
    rows = []
    for p in paths:
        ev = [json.loads(l) for l in open(p) if l.strip()]
        start = next(e for e in ev if e.get("event") == "start")
        end = next((e for e in ev if e.get("event") == "end"), {})
        vals = [e for e in ev if "val_loss" in e]
        rows.append((os.path.basename(p)[:-6], start, vals, end))
    print("| run | attention | position | params | KV elems/token/layer | KV vs MHA | val loss (step 0) | val loss (final) | steps | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, s, vals, end in rows:
        mha = s.get("kv_mha_per_layer") or 0
        red = f"{100 * (1 - s['kv_elems_per_token_layer'] / mha):.1f}% less" if mha else "n/a"
        print(f"| {name} | {s['attn']} | {s['pos']} | {s['params'] / 1e6:.2f}M | {s['kv_elems_per_token_layer']} | {red} | "
              f"{vals[0]['val_loss']:.4f} | {vals[-1]['val_loss']:.4f} | {vals[-1]['step']} | {end.get('seconds', float('nan')):.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
