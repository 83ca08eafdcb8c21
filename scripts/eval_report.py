"""eval_report.py: several ./eval_gpt JSON files side by side, as a Markdown report plus PNG
plots (PPL by position, PPL vs evaluation length) when matplotlib is importable.

    python3 scripts/eval_report.py out/a.eval.json out/b.eval.json [--out report.md] [--plots DIR]
"""
import argparse
import json
import os
import sys


def name(r):
    if "_name" in r:
        return r["_name"]
    return os.path.basename(r["checkpoint"]).replace(".ckpt.best", "").replace(".ckpt", "")


def fmt(x, spec=".3f"):
    return "n/a" if x is None else format(x, spec)


def coverage(r, key):
    """'3,200 tokens (capped: 50 windows)' for a section, from its own record and the run's caps"""
    sec = r.get(key)
    if not isinstance(sec, dict) or "tokens" not in sec:
        return "n/a"
    caps = r.get("caps", {})
    cap = {"disjoint": ("max_windows", "windows"), "sliding": ("max_tokens", "tokens"), "wikitext": ("wiki_docs", "documents")}[key]
    n = caps.get(cap[0], sec.get(cap[0], 0)) or 0
    text = f"{sec['tokens']:,} tokens"
    if key == "wikitext" and "docs" in sec:
        text += f", {sec['docs']} of {sec.get('docs_total', '?')} docs"
    return text + (f" (**capped**: {n:,} {cap[1]})" if n else "")


def commit(r):
    g = (r.get("run") or {}).get("git")
    if not g:
        return "n/a"
    return g["commit"][:10] + (" (modified)" if g.get("dirty") else "")


def report(runs):
    out = ["# kvgpt evaluation report", ""]
    out.append("Every checkpoint in the tables passed the leak guard (later tokens never change earlier logits).")
    out.append("")
    refused = [r for r in runs if r.get("leak_guard") != "passed"]
    if refused:
        out.append("Refused by the leak guard (they see the future; no figure of theirs is shown): " + ", ".join(name(r) for r in refused))
        out.append("")
    runs = [r for r in runs if r.get("leak_guard") == "passed"]
    failed = [(name(r), k, v["error"]) for r in runs for k, v in r.items() if isinstance(v, dict) and "error" in v]
    for n, k, e in failed:
        out.append(f"- {n}: section `{k}` failed: {e}")
    if failed:
        out.append("")
    out.append("Reversal gains (Berglund et al.): the correct answer's log-likelihood margin over the other answers of its relation, trained minus held-out facts, forward / reversed; "
               "a reversed gain near 0 beside a large forward gain is the reversal curse.")
    out.append("")
    out.append("| run | attention | position | params | step | KV elems/token/layer | KV vs MHA | PPL (disjoint) | PPL (sliding) | WikiText word PPL | bits/byte | reversal gain fwd / rev |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        rev = r.get("reversal", {})
        red = 100 * (1 - r["kv_elems_per_token_layer"] / r["kv_mha_per_layer"])
        out.append(f"| {name(r)} | {r['attn']} | {r['pos']} | {r['params'] / 1e6:.2f}M | {r['step']} | {r['kv_elems_per_token_layer']} | "
                   f"{red:.1f}% less | {fmt(r.get('disjoint', {}).get('ppl'))} | {fmt(r.get('sliding', {}).get('ppl'))} | "
                   f"{fmt(r.get('wikitext', {}).get('word_ppl'), '.1f')} | {fmt(r.get('wikitext', {}).get('bits_per_byte'), '.4f')} | "
                   f"{fmt(rev.get('forward', {}).get('gain'), '+.2f')} / {fmt(rev.get('reversed', {}).get('gain'), '+.2f')} |")
    out += ["", "## What each figure was measured on", "",
            "Token counts are the scored targets; a cap (set with eval_gpt's flags) marks a partial measurement.", "",
            "| run | eval T | disjoint | sliding | WikiText | validation data | code |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        out.append(f"| {name(r)} | {r.get('eval_T', 'n/a')} | {coverage(r, 'disjoint')} | {coverage(r, 'sliding')} | {coverage(r, 'wikitext')} | "
                   f"`{r.get('data', {}).get('val', r.get('val_data', '?'))}` | {commit(r)} |")
    if any("positions" in r for r in runs):
        out += ["", "## PPL by position", ""]
        spans = sorted({(b["from"], b["to"]) for r in runs for b in r.get("positions", [])})
        out.append("| positions | " + " | ".join(name(r) for r in runs) + " |")
        out.append("|---" * (len(runs) + 1) + "|")
        for lo, hi in spans:
            cells = []
            for r in runs:
                b = next((b for b in r.get("positions", []) if (b["from"], b["to"]) == (lo, hi)), None)
                cells.append(fmt(b["ppl"]) if b else "")
            out.append(f"| {lo}-{hi} | " + " | ".join(cells) + " |")
    if any("extrapolation" in r for r in runs):
        out += ["", "## Length extrapolation (PPL at multiples of the training length)", ""]
        lengths = sorted({e["length"] for r in runs for e in r.get("extrapolation", [])})
        out.append("| eval length | " + " | ".join(name(r) for r in runs) + " |")
        out.append("|---" * (len(runs) + 1) + "|")
        for L in lengths:
            cells = []
            for r in runs:
                e = next((e for e in r.get("extrapolation", []) if e["length"] == L), None)
                cells.append(fmt(e["ppl"]) if e else "n/a")
            out.append(f"| {L} | " + " | ".join(cells) + " |")
    if any("qk" in r for r in runs):
        out += ["", "## Q/K statistics after the position encoding", "",
                "RoPE bands use the NeoX pairing (dims j and j + r/2 share a frequency); low/high compares mean |x| of the slow and fast halves.", "",
                "| run | layer.view | max abs | mean abs | std | high band | low band | pass-through | low/high |", "|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            for q in r.get("qk", []):
                rotated = bool(q["rot"])
                hi, lo = (q["high_mean_abs"], q["low_mean_abs"]) if rotated else (None, None)
                # a band with no dims has no mean (older JSON wrote 0 for it)
                passthrough = q["pass_mean_abs"] if q["rot"] < len(q.get("dim_max", [])) or not rotated else None
                ratio = lo / hi if hi and lo is not None else None
                out.append(f"| {name(r)} | {q['name']} | {q['max_abs']:.3f} | {q['mean_abs']:.3f} | {q['std']:.3f} | "
                           f"{fmt(hi)} | {fmt(lo)} | {fmt(passthrough)} | {fmt(ratio)} |")
    if any("kv_cache" in r for r in runs):
        out += ["", "## KV cache, measured from the cache buffers", "", "| run | floats/token (all layers) | fp32 bytes/token | MiB fp32 at ctx |", "|---|---|---|---|"]
        for r in (r for r in runs if "kv_cache" in r):
            k = r["kv_cache"]
            out.append(f"| {name(r)} | {k['floats_per_token']} | {4 * k['floats_per_token']} | {k['bytes_fp32'] / 2**20:.2f} (ctx {k['ctx']}) |")
    return "\n".join(out) + "\n"


def plots(runs, d):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print(f"note: no plots: matplotlib is not importable by {sys.executable} (Debian: apt-get install python3-matplotlib, "
              f"then run this script with /usr/bin/python3)", file=sys.stderr)
        return []
    os.makedirs(d, exist_ok=True)
    data = sorted({os.path.basename(r.get("data", {}).get("val", r.get("val_data", "?"))) for r in runs})
    made = []

    def finish(fig, ax, title, fname):
        ax.set_yscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.4g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_ylabel("PPL (log scale)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncol=2 if len(runs) > 6 else 1)
        fig.tight_layout()
        path = os.path.join(d, fname)
        fig.savefig(path, dpi=130)
        plt.close(fig)
        made.append(path)

    with_pos = [r for r in runs if r.get("positions")]
    if with_pos:  # each bucket drawn as a horizontal segment over its positions: the widths show
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for r in with_pos:
            b = r["positions"]
            line, = ax.plot([(p["from"] + p["to"]) / 2 for p in b], [p["ppl"] for p in b], marker="o", label=name(r))
            ax.hlines([p["ppl"] for p in b], [p["from"] for p in b], [p["to"] for p in b], colors=line.get_color(), alpha=0.5, lw=3)
        ax.set_xlabel("position in the window (bars: bucket widths)")
        tok = sum(p["tokens"] for p in with_pos[0]["positions"])
        finish(fig, ax, f"PPL by position: {', '.join(data)}, {tok:,} tokens per run, T = {with_pos[0].get('eval_T')}", "ppl_by_position.png")
    with_ext = [r for r in runs if r.get("extrapolation")]
    if with_ext:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for r in with_ext:
            pts = [p for p in r["extrapolation"] if p.get("ppl") is not None]
            line, = ax.plot([p["length"] for p in pts], [p["ppl"] for p in pts], marker="o", label=name(r))
            if r.get("train_T"):
                ax.axvline(r["train_T"], color=line.get_color(), ls=":", alpha=0.7)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("evaluation length in tokens (dotted: each model's training length)")
        tok = min(p["tokens"] for p in with_ext[0]["extrapolation"] if p.get("tokens"))
        finish(fig, ax, f"PPL vs evaluation length: {', '.join(data)}, >= {tok:,} tokens per point", "ppl_vs_length.png")
    return made


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+")
    ap.add_argument("--out", help="Markdown file (default: stdout)")
    ap.add_argument("--plots", help="directory for PNG plots (default: beside --out)")
    a = ap.parse_args(argv)
    runs = [json.load(open(p)) for p in a.json]
    seen = {}
    for p, r in zip(a.json, runs):  # two evaluations of one checkpoint: tell them apart by their JSON file
        n = name(r)
        seen[n] = seen.get(n, 0) + 1
        if sum(name(x) == n for x in runs) > 1:
            r["_name"] = f"{n} ({os.path.basename(p)})"
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    md = report(runs)
    pdir = a.plots or (os.path.dirname(os.path.abspath(a.out)) if a.out else None)
    made = plots(runs, pdir) if pdir else []
    if made:
        md += "\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.relpath(p, os.path.dirname(os.path.abspath(a.out)) if a.out else '.')})" for p in made) + "\n"
    if a.out:
        open(a.out, "w").write(md)
        print(f"wrote {a.out}" + (f" and {len(made)} plot(s)" if made else " (no plots: matplotlib is not importable)"))
    else:
        sys.stdout.write(md)


if __name__ == "__main__":
    main()
