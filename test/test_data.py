"""Python data-prep tests (stdlib only): tokenizer fallback == HF golden ids, shard round trip
and shard errors, the bundled shards' document split. Ends with "N passed, N failed"."""
import json
import os
import sys
import tempfile
import traceback

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "data"))
import shards  # noqa: E402
import tokenizer  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


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


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
            print(f"PASS {fn.__name__}")
            passed += 1
        except Exception:
            print(f"FAIL {fn.__name__}")
            traceback.print_exc()
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
