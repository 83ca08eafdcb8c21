"""eval_sets.py: evaluation sets for kvgpt's evaluator.

    python3 data/eval_sets.py wikitext --path wiki.test.raw [--tokenizer T] [--out DIR]
    python3 data/eval_sets.py reversal [--tokenizer T] [--out DIR]
    python3 data/eval_sets.py book --path pg-NNNN.txt [--tokenizer T] [--out DIR]
All write into data/eval/TOKENIZER/ by default, where ./eval_gpt looks for them.

book: a Project Gutenberg book as one long document (PG19's material), for the KV-cache press
protocols (./eval_gpt --press, --press-data data/eval/TOK/book_eval). The Gutenberg header and
license footer (outside the "*** START OF" / "*** END OF" lines), when present, are cut off, as PG19 does; line
breaks are kept. Writes book_eval.bin and book_eval.tsv in the WikiText set's format (one line).

wikitext: lm-eval-style WikiText perplexity. Each article is one document; the model scores the
detokenized article (lm-eval's wikitext detokenizer: " @-@ " -> "-", " , " -> ", ", ...) and
word / byte perplexity divide the summed NLL by the ORIGINAL article's whitespace word count
(len(re.split(r"\\s+", article))) and UTF-8 byte count, as lm-eval does. Writes
wikitext_eval.bin (a shard of all documents back to back, no separators; the evaluator gives each
document the end-of-text token as its first context) and wikitext_eval.tsv (a header line, then
per document: token offset, token count, words, bytes, title). Accepts wiki.test.raw or the
tokenized v1 test file.

reversal: the reversal-curse set from data/reversal/facts.tsv, measured as Berglund et al. do.
Each (relation, subject, object) has a forward sentence ("The capital of France is Paris.") and
a reversed one ("Paris is the capital of France."), each split into a prompt and the answer
entity at its end (" Paris" after "The capital of France is"; " France" after "Paris is the
capital of"). The facts are split in two (alternating within each relation, in an order fixed by a hash of the subject): "trained" facts, whose
FORWARD sentences alone go into training (reversal_train_000000.bin: each sentence a document,
repeated --repeats times in a seeded order; mix it into a run with
-i 'data/tinyshakespeare/TOK/train_*.bin,data/eval/TOK/reversal_train_*.bin', see
scripts/reversal_recipe.sh), and "held-out" facts never seen in either direction. ./eval_gpt
scores the log-likelihood of the correct answer given the prompt against the other answers of
the same relation in the same half (its margin over them, and whether it beats them all), for
the trained and the held-out facts, in both directions: the forward gain (trained minus
held-out margin) shows the facts were learned; the reversed gain is the reversal curse's
measure (about zero when the model cannot answer the reversed question).
Comparing the PPL of two different templates, as an earlier version did, mixes template fluency
with direction. Writes reversal.jsonl (text), reversal.tsv (split, relation, then the four token
id lists: forward prompt, forward answer, reversed prompt, reversed answer) and the training shard.
"""
import argparse
import json
import os
import random
import re
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from prepare import PrepError, read_text, run_cli, strip_gutenberg, wikitext_articles  # noqa: E402
from shards import write_shard  # noqa: E402
from tokenizer import TOKENIZER_IDS, load_tokenizer  # noqa: E402


def wikitext_detokenize(s):
    """Undoes WikiText's tokenization (the rules lm-eval applies before scoring)."""
    s = s.replace("s '", "s'")
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    for a, b in ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" : ", ": "), (" ; ", "; "), (" . ", ". "),
                 (" ! ", "! "), (" ? ", "? "), (" , ", ", ")):
        s = s.replace(a, b)
    s = re.sub(r"\( ([^\(\)]*) \)", r"(\1)", s)
    s = re.sub(r"\[ ([^\[\]]*) \]", r"[\1]", s)
    s = re.sub(r"{ ([^{}]*) }", r"{\1}", s)
    s = re.sub(r"\" ([^\"]*) \"", r'"\1"', s)
    s = re.sub(r"' ([^']*) '", r"'\1'", s)
    for a, b in (("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" " + chr(176) + " ", chr(176)), (" \n", "\n"),
                 ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s")):
        s = s.replace(a, b)
    return s


def count_words(doc):
    return len(re.split(r"\s+", doc))


def write_wikitext_eval(path, tokenizer, out):
    tok = load_tokenizer(tokenizer)
    text = read_text(path, {})
    docs, tokens = [], []
    for art in wikitext_articles(text):
        ids = tok.encode(wikitext_detokenize(art))
        title = art.strip().splitlines()[0].strip(" =") if art.strip() else ""
        docs.append({"offset": len(tokens), "n_tokens": len(ids), "words": count_words(art),
                     "bytes": len(art.encode("utf-8")), "title": title})
        tokens.extend(ids)
    if not docs:
        raise PrepError(f"{path}: no WikiText articles found (expected ' = Title = ' headings)")
    os.makedirs(out, exist_ok=True)
    write_shard(os.path.join(out, "wikitext_eval.bin"), tokens, TOKENIZER_IDS[tokenizer], tok.vocab_size, tok.eos_id, len(docs))
    with open(os.path.join(out, "wikitext_eval.tsv"), "w", encoding="utf-8") as f:
        f.write("offset\tn_tokens\twords\tbytes\ttitle\n")
        for d in docs:
            f.write(f"{d['offset']}\t{d['n_tokens']}\t{d['words']}\t{d['bytes']}\t{d['title'].replace(chr(9), ' ')}\n")
    print(f"{len(docs)} documents, {len(tokens):,} tokens, {sum(d['words'] for d in docs):,} words, "
          f"{sum(d['bytes'] for d in docs):,} bytes -> {out}/wikitext_eval.{{bin,tsv}}")
    return docs


# relation -> (forward, backward); {s} subject, {o} object; a sentence-initial slot is capitalised
TEMPLATES = {
    "capital": ("The capital of {s} is {o}.", "{o} is the capital of {s}."),
    "inventor": ("{s} was invented by {o}.", "{o} invented {s}."),
    "author": ("{s} was written by {o}.", "{o} wrote {s}."),
    "founder": ("{s} was founded by {o}.", "{o} founded {s}."),
    "director": ("{s} was directed by {o}.", "{o} directed {s}."),
}


def fill(template, s, o):
    out = template.format(s=s, o=o)
    return out[0].upper() + out[1:]


def load_facts(path=os.path.join(HERE, "reversal", "facts.tsv")):
    facts = []
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3 or parts[0] not in TEMPLATES or not parts[1] or not parts[2]:
            raise PrepError(f"{path}:{n}: expected 'relation<TAB>subject<TAB>object' with a relation in {sorted(TEMPLATES)}")
        facts.append(tuple(parts))
    return facts


def fact_splits(facts):
    """{subject: 'trained' | 'heldout'}: within each relation, the facts ordered by a hash of the
    subject alternate, so both halves hold every relation equally and the split is fixed by the
    facts file alone."""
    out = {}
    for rel in sorted({f[0] for f in facts}):
        subjects = sorted((f[1] for f in facts if f[0] == rel), key=lambda x: (zlib.crc32(x.encode("utf-8")), x))
        for i, subj in enumerate(subjects):
            out[subj] = "trained" if i % 2 == 0 else "heldout"
    return out


def split_answer(template, s, o):
    """(prompt, answer) of a filled template whose last slot is the answer: 'X is {o}.' -> ('X is', ' o')."""
    assert template.endswith("{o}.") or template.endswith("{s}."), template
    answer = o if template.endswith("{o}.") else s
    full = fill(template, s, o)
    prompt = full[: len(full) - len(answer) - 1].rstrip(" ")
    assert prompt + " " + answer + "." == full, (prompt, answer, full)
    return prompt, " " + answer


def reversal_set(facts=None):
    out = []
    facts = facts or load_facts()
    splits = fact_splits(facts)
    for rel, s, o in facts:
        fwd, bwd = TEMPLATES[rel]
        fp, fa = split_answer(fwd, s, o)
        bp, ba = split_answer(bwd, s, o)
        out.append({"relation": rel, "subject": s, "object": o, "forward": fill(fwd, s, o), "backward": fill(bwd, s, o),
                    "forward_prompt": fp, "forward_answer": fa, "reversed_prompt": bp, "reversed_answer": ba,
                    "split": splits[s], "synthetic": rel == "director"})
    return out


def write_reversal(tokenizer, out, repeats=50, seed=1):
    rows = reversal_set()
    tok = load_tokenizer(tokenizer)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "reversal.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    ids = lambda text: " ".join(map(str, tok.encode(text)))  # noqa: E731
    with open(os.path.join(out, "reversal.tsv"), "w", encoding="utf-8") as f:
        f.write("split\trelation\tforward_prompt_ids\tforward_answer_ids\treversed_prompt_ids\treversed_answer_ids\n")
        for r in rows:
            f.write(f"{r['split']}\t{r['relation']}\t{ids(r['forward_prompt'])}\t{ids(r['forward_answer'])}\t"
                    f"{ids(r['reversed_prompt'])}\t{ids(r['reversed_answer'])}\n")
    # training data: the forward sentences of the trained facts only, each a document
    docs = [r["forward"] for r in rows if r["split"] == "trained"] * repeats
    random.Random(seed).shuffle(docs)
    tokens = []
    for d in docs:
        tokens += tok.encode(d) + [tok.eos_id]
    write_shard(os.path.join(out, "reversal_train_000000.bin"), tokens, TOKENIZER_IDS[tokenizer], tok.vocab_size, tok.eos_id, len(docs))
    n_tr = sum(r["split"] == "trained" for r in rows)
    print(f"{len(rows)} facts ({n_tr} trained, {len(rows) - n_tr} held out) -> {out}/reversal.{{jsonl,tsv}}; "
          f"{len(docs)} forward sentences ({len(tokens):,} tokens) -> {out}/reversal_train_000000.bin")
    return rows


def write_book_eval(path, tokenizer, out):
    tok = load_tokenizer(tokenizer)
    raw = read_text(path, {})
    body = strip_gutenberg(raw).lstrip("\ufeff \n")
    title = next((l[len("Title:"):].strip() for l in raw.splitlines() if l.startswith("Title:")), os.path.basename(path))
    ids = tok.encode(body)
    os.makedirs(out, exist_ok=True)
    write_shard(os.path.join(out, "book_eval.bin"), ids, TOKENIZER_IDS[tokenizer], tok.vocab_size, tok.eos_id, 1)
    with open(os.path.join(out, "book_eval.tsv"), "w", encoding="utf-8") as f:
        f.write("offset\tn_tokens\twords\tbytes\ttitle\n")
        f.write(f"0\t{len(ids)}\t{count_words(body)}\t{len(body.encode('utf-8'))}\t{title}\n")
    print(f"book: {title}: {len(ids)} tokens -> {out}/book_eval.bin, book_eval.tsv")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", choices=["wikitext", "reversal", "book"])
    ap.add_argument("--path")
    ap.add_argument("--tokenizer", default="gpt-neox-20b", choices=sorted(TOKENIZER_IDS))
    ap.add_argument("--out")
    ap.add_argument("--repeats", type=int, default=50, help="reversal: times each trained fact's forward sentence is repeated")
    return run_cli(write_set, ap.parse_args(argv))


def write_set(a):
    out = a.out or os.path.join(HERE, "eval", a.tokenizer)
    if a.set == "reversal":
        if a.repeats < 1:
            raise PrepError("--repeats must be >= 1")
        return write_reversal(a.tokenizer, out, a.repeats)
    if a.set == "book":
        if not a.path:
            raise PrepError("book needs --path to a Project Gutenberg text file")
        return write_book_eval(a.path, a.tokenizer, out)
    if not a.path:
        raise PrepError("wikitext needs --path to wiki.test.raw (or the tokenized v1 test file)")
    return write_wikitext_eval(a.path, a.tokenizer, out)


if __name__ == "__main__":
    sys.exit(main())
