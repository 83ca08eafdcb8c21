"""Writes GPT-2's tokenizer as an HF tokenizer.json (from data/tokenizers/gpt2-encoder.json and
gpt2-vocab.bpe) so make_golden.js can load it: python3 test/golden/make_gpt2_json.py OUT.json"""
import json
import os
import sys

T = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "tokenizers")
enc = json.load(open(os.path.join(T, "gpt2-encoder.json"), encoding="utf-8"))
merges = [l for l in open(os.path.join(T, "gpt2-vocab.bpe"), encoding="utf-8").read().split("\n")[1:] if l.strip()]
byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
json.dump({"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": 50256, "special": True, "content": "<|endoftext|>", "single_word": False,
                             "lstrip": False, "rstrip": False, "normalized": False}],
           "normalizer": None, "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "vocab": enc, "merges": merges}},
          open(sys.argv[1], "w"))
