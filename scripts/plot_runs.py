"""plot_runs.py: loss curves from one or several ./train_gpt JSONL logs.

    python3 scripts/plot_runs.py out/variants/*.jsonl -o loss.png [--x tokens] [--logy] [--smooth 20]

One line per run for the training loss (thin, smoothed by a running mean over --smooth steps)
and markers for the validation loss, against optimizer steps (--x steps, the default) or
training tokens (--x tokens). The title names the training data and the tokens seen. A log
that holds several runs (a resumed one appends) is drawn from its last start event on.
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import json
import os
import sys


def load(path):
    """(start event, train points [(step, tokens, loss)], val points [(step, tokens, val_loss)])"""
    start, train, val = None, [], []
    tokens_per_step = None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                print(f"warning: {path}:{n}: not JSON, skipped", file=sys.stderr)
                continue
            if e.get("event") == "start":
                if start is not None and e.get("start_step", 0) == 0:  # a fresh run in the same file: start over
                    train, val = [], []
                start = e
                tokens_per_step = e.get("tokens_per_step") or e.get("B", 0) * e.get("T", 0) * e.get("accum", 1)
            elif "loss" in e and "step" in e:
                train.append((e["step"], e.get("tokens", e["step"] * (tokens_per_step or 0)), e["loss"]))
            elif "val_loss" in e:
                val.append((e["step"], e.get("tokens", e["step"] * (tokens_per_step or 0)), e["val_loss"]))
    if start is None:
        raise ValueError(f"{path}: no start event: not a ./train_gpt log")
    return start, train, val


def label(path, start):
    base = os.path.basename(path)
    for suf in (".jsonl", ".ckpt"):
        base = base[: -len(suf)] if base.endswith(suf) else base
    return f"{base} ({start.get('attn')}/{start.get('pos')})"


def smooth(ys, k):
    if k <= 1:
        return ys
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y
        if i >= k:
            acc -= ys[i - k]
        out.append(acc / min(i + 1, k))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", help="train_gpt JSONL logs (-L, or <out>.jsonl)")
    ap.add_argument("-o", "--out", default="loss.png", help="PNG to write")
    ap.add_argument("--x", choices=("steps", "tokens"), default="steps")
    ap.add_argument("--logy", action="store_true", help="log-scale loss axis")
    ap.add_argument("--smooth", type=int, default=10, help="running mean over this many steps for the training loss (1: none)")
    ap.add_argument("--title", help="title (default: the data and tokens)")
    a = ap.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"Error: matplotlib is not importable by {sys.executable}\n"
              "HINT: apt-get install python3-matplotlib, then run this script with /usr/bin/python3", file=sys.stderr)
        return 1
    runs = []
    for p in a.logs:
        try:
            runs.append((p,) + load(p))
        except (OSError, ValueError) as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
    xi = 0 if a.x == "steps" else 1
    fig, ax = plt.subplots(figsize=(8, 4.8))
    data, seen = set(), 0
    for p, start, train, val in runs:
        data.add(start.get("train_data", "?"))
        lab = label(p, start)
        color = None
        if train:
            line, = ax.plot([t[xi] for t in train], smooth([t[2] for t in train], a.smooth), lw=1.0, alpha=0.8, label=f"{lab} train")
            color = line.get_color()
            seen = max(seen, train[-1][1])
        if val:
            ax.plot([v[xi] for v in val], [v[2] for v in val], marker="o", ms=4, ls="--", lw=1.2, color=color, label=f"{lab} val")
    if a.logy:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer steps" if a.x == "steps" else "training tokens")
    ax.set_ylabel("loss (nats/token" + (", log scale)" if a.logy else ")"))
    title = a.title or (f"loss: {', '.join(sorted(os.path.basename(d) for d in data))}, up to {seen:,} training tokens"
                        + (f" (train smoothed over {a.smooth} steps)" if a.smooth > 1 else ""))
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(runs) > 4 else 1)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out, dpi=130)
    print(f"wrote {a.out} ({len(runs)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
