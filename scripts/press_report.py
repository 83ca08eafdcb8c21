#!/usr/bin/env python3
"""press_report.py: the KV-cache press results of ./eval_gpt --press runs as Markdown tables and plots.

    python3 scripts/press_report.py runs/press/*.json --out docs/presses.md --plots docs/presses

Reads the "press" section of each JSON (every other section is ignored) and writes
  - per protocol (prefill, decode, naive) and model: PPL, its change against the full cache, the
    tokens held, the KV bytes held per context token and ms per decoded token, per press and ratio
  - press_ratio_<protocol>.png: PPL against the compression ratio, one panel per model, the full
    cache as a dashed line (and, for prefill, the naive protocol's flat line: the pitfall)
  - press_pareto_<protocol>.png: PPL against the KV bytes held per token of context, for the trained
    cache compression (every model's own full cache: MHA, GQA, MQA, MLA, KVSplice) and the presses
    on top of them: the picture kvgpt exists to draw
The data sets and their token counts are in every table header and plot title; the caps used
(--press-samples) are printed with them, so a partial run never looks like a full one.
"""
import argparse
import json
import os
import sys


def model_name(r):
    return f"{r.get('attn', '?')}/{r.get('pos', '?')}"


def sets_label(p):
    return ", ".join(f"{os.path.basename(s['prefix'])} ({s['tokens']:,} tok)" for s in p.get("sets", []))


def setting(run):
    if run["press"] is None:
        return "none (full cache)", "-"
    return run["press"], (f"{run['ratio']:.2f}" if run.get("ratio") is not None else f"budget {run['budget']}")


def fmt(x, f="{:.3f}"):
    return "n/a" if x is None else f.format(x)


PROTOCOL_TEXT = {
    "prefill": "prefill P tokens, compress the cache, score the next N tokens decoded against it (protocol a)",
    "decode": "streams of S tokens decoded token by token, the cache held at budget + slack (protocol b)",
    "naive": "NAIVE: the prefilled window scores itself and the press runs after it (the earlier work's pitfall: every press and ratio gives the no-press figure, by construction)",
}


def report(runs):
    out = ["# KV-cache presses, measured honestly", ""]
    for proto in ("prefill", "decode", "naive"):
        rows = [r for r in runs if proto in r.get("press", {})]
        if not rows:
            continue
        q = rows[0]["press"][proto]
        out += [f"## {proto}: {PROTOCOL_TEXT[proto]}", "",
                f"P = {q['P']}, N = {q['N']}, S = {q['S']}, streams decoded together {q['batch']}; data: {sets_label(rows[0]['press'])}; "
                f"samples capped at {rows[0]['press'].get('max_samples') or 'none (all)'}", "",
                "| model | press | ratio | PPL | vs full cache | tokens held | of | KV B held per context token | ms/token | samples | tokens scored |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            rr = r["press"][proto]["runs"]
            base = rr[0]["ppl"]
            for run in rr:
                press, ratio = setting(run)
                rel = "" if run["ppl"] is None or base is None else f"{100 * (run['ppl'] / base - 1):+.2f}%"
                out.append(f"| {model_name(r)} | {press} | {ratio} | {fmt(run['ppl'])} | {rel} | {fmt(run['held_tokens'], '{:.1f}')} | "
                           f"{fmt(run['context_tokens'], '{:.1f}')} | {fmt(run['kv_bytes_per_context_token'], '{:.0f}')} | "
                           f"{fmt(run['ms_per_token'])} | {run['samples']} | {run['tokens']} |")
        out.append("")
    return "\n".join(out) + "\n"


def ratios_of(pressed, proto):
    return ", ".join(f"{x:g}" for x in sorted({x["ratio"] for r in pressed for x in r["press"][proto]["runs"] if x["press"] and x.get("ratio") is not None}))


def plots(runs, d):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write(f"note: no plots: matplotlib is not importable by {sys.executable} (Debian: apt-get install python3-matplotlib)\n")
        return []
    os.makedirs(d, exist_ok=True)
    made = []
    markers = "osv^D<>p*h"
    all_presses = sorted({x["press"] for r in runs for v in r["press"].values() if isinstance(v, dict) and "runs" in v for x in v["runs"] if x["press"]})
    color = {n: plt.cm.tab10(i % 10) for i, n in enumerate(all_presses)}  # one colour and marker per press in every plot
    marker = {n: markers[i % len(markers)] for i, n in enumerate(all_presses)}
    for proto in ("prefill", "decode"):
        pressed = [r for r in runs if proto in r.get("press", {}) and len(r["press"][proto]["runs"]) > 1]
        if not pressed:
            continue
        label = sets_label(pressed[0]["press"])
        fig, axes = plt.subplots(1, len(pressed), figsize=(6 * len(pressed), 4.5), squeeze=False)
        for ax, r in zip(axes[0], pressed):
            rr = r["press"][proto]["runs"]
            names = sorted({x["press"] for x in rr if x["press"] and x.get("ratio") is not None})
            for n in names:
                pts = sorted((x["ratio"], x["ppl"]) for x in rr if x["press"] == n and x.get("ratio") is not None and x["ppl"])
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker[n], color=color[n], label=n)
            ax.axhline(rr[0]["ppl"], color="k", ls="--", lw=1, label="full cache")
            if proto == "prefill" and "naive" in r["press"]:
                ax.axhline(r["press"]["naive"]["runs"][0]["ppl"], color="gray", ls=":", lw=1.5, label="naive protocol (every press)")
            ax.set_yscale("log")
            ax.set_xlabel("compression ratio (fraction of the cache evicted)")
            ax.set_ylabel("PPL (log scale)")
            ax.set_title(f"{model_name(r)}: {proto}", fontsize=10)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7, ncol=2)
        q = pressed[0]["press"][proto]
        what = f"P={q['P']} -> N={q['N']}" if proto == "prefill" else f"S={q['S']}"
        fig.suptitle(f"PPL vs compression ratio, {proto} protocol ({what}); {label}", fontsize=10)
        fig.tight_layout()
        path = os.path.join(d, f"press_ratio_{proto}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        made.append(path)
        # the Pareto picture: every model's own cache, and the presses on top
        fig, ax = plt.subplots(figsize=(10, 5.5))
        own = [r for r in runs if proto in r.get("press", {})]
        xs = [r["press"][proto]["runs"][0]["kv_bytes_per_context_token"] for r in own]
        ys = [r["press"][proto]["runs"][0]["ppl"] for r in own]
        ax.scatter(xs, ys, s=70, c="k", marker="*", zorder=3, label="trained compression (each model's full cache)")
        for x, y, r in zip(xs, ys, own):
            ax.annotate(model_name(r), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        for j, r in enumerate(pressed):
            rr = r["press"][proto]["runs"]
            for n in sorted({x["press"] for x in rr if x["press"] and x.get("ratio") is not None}):
                pts = sorted((x["kv_bytes_per_context_token"], x["ppl"]) for x in rr if x["press"] == n and x.get("ratio") is not None and x["ppl"])
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker[n], color=color[n], ms=4, lw=1,
                        ls=["-", "--", ":", "-."][j % 4], label=f"{model_name(r)} + {n}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("KV-cache bytes held per token of context (fp32, all layers; measured from the buffers)")
        ax.set_ylabel("PPL (log scale)")
        ax.set_title(f"PPL vs KV bytes, {proto} protocol; {label}\n(presses at ratios {ratios_of(pressed, proto)}; lines: one per model and press)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = os.path.join(d, f"press_pareto_{proto}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        made.append(path)
    return made


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+")
    ap.add_argument("--out", help="Markdown file (default: stdout)")
    ap.add_argument("--plots", help="directory for PNG plots (default: beside --out)")
    a = ap.parse_args(argv)
    runs = []
    for p in a.json:
        try:
            r = json.load(open(p))
        except (OSError, ValueError) as e:
            sys.exit(f"Error: cannot read {p}: {e}")
        if "press" in r and "error" not in r["press"]:
            runs.append(r)
        elif "press" in r:
            sys.stderr.write(f"note: {p}: its press section failed: {r['press']['error']}\n")
    if not runs:
        sys.exit("Error: no JSON with a press section (run ./eval_gpt --press ...)")
    # a checkpoint measured twice (its baseline alone, then with the presses): keep the fuller run
    size = lambda r: sum(len(v["runs"]) for v in r["press"].values() if isinstance(v, dict) and "runs" in v)
    best = {}
    for r in runs:
        k = (r.get("checkpoint"), json.dumps(r["press"].get("sets")))
        if k not in best or size(r) > size(best[k]):
            best[k] = r
    runs = [r for r in runs if best[(r.get("checkpoint"), json.dumps(r["press"].get("sets")))] is r]
    md = report(runs)
    pdir = a.plots or (os.path.dirname(os.path.abspath(a.out)) if a.out else None)
    made = plots(runs, pdir) if pdir else []
    if made:
        base = os.path.dirname(os.path.abspath(a.out)) if a.out else "."
        md += "\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.relpath(p, base)})" for p in made) + "\n"
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        open(a.out, "w").write(md)
        print(f"wrote {a.out}" + (f" and {len(made)} plot(s)" if made else ""))
    else:
        sys.stdout.write(md)


if __name__ == "__main__":
    main()
