#!/usr/bin/env python3
"""Create the SentencePiece-style (Llama / Mistral) tokenizer fixtures with Hugging Face `tokenizers`.

Nothing is downloaded: a Llama-style BPE tokenizer is built with `tokenizers` itself.
A BPE model is trained (BpeTrainer, ~600 tokens) on a Shakespeare play with spaces
replaced by "▁" and a "▁" prepended, then rebuilt in Llama's layout: ids 0..2 are
<unk>, <s>, </s>; ids 3..258 the byte-fallback tokens <0x00>..<0xFF>; then the trained
tokens, with the trained merges. The model is `BPE(byte_fallback=True, unk_token="<unk>",
fuse_unk=True)`. Three forms of the same vocabulary are saved:

  spm_normalizer   Llama 2 / Mistral 7B v0.1 layout: normalizer Sequence[Prepend("▁"),
                   Replace(" ", "▁")], no pre-tokenizer, decoder Sequence[Replace("▁", " "),
                   ByteFallback, Fuse, Strip(" ", 1, 0)]
  spm_metaspace    newer transformers conversion: no normalizer, pre-tokenizer
                   Metaspace("▁", prepend_scheme="first", split=False), same decoder
  spm_metaspace_split  Metaspace("▁", prepend_scheme="always", split=True) pre-tokenizer,
                   Metaspace decoder, BPE ignore_merges=True

Each has the post-processor TemplateProcessing(single="<s> $A") that Llama ships.
For each form it writes Tests/SubspaceTests/Fixtures/tokenizer_<form>.json and
tokenizer_<form>_expected.json: {"cases": [{"text", "ids", "ids_special",
"decoded", "decoded_skip"}]} where ids is encode(text, add_special_tokens=False),
ids_special is encode(text, add_special_tokens=True), decoded is
decode(ids, skip_special_tokens=False) and decoded_skip decode(ids_special, skip_special_tokens=True).

Usage: scripts/make_spm_tokenizer_fixtures.py [--play PATH] [--vocab-size N] [--out DIR]
"""

import argparse
import json
import os

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SP = "\u2581"

CASES = [
    "",
    "Hello world",
    "To be, or not to be: that is the question.",
    " leading space",
    "trailing space ",
    "  two leading, three   inside and two trailing  ",
    " ",
    "   ",
    "line one\nline two\n\nend\n",
    "\n",
    "tabs\tand\t\ttabs",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "emoji \U0001F44D\U0001F3FD and \U0001F468\u200d\U0001F469\u200d\U0001F467",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4",
    "Greek \u03a9\u03bb and math \u2211\u222b absent from the vocabulary",
    "control \x00\x01\x7f bytes",
    "<s>Hello</s>",
    "Hello <s> world</s> again",
    "<s> spaced </s>",
    "</s>",
    "<unk> is text too",
    "literal <0x41> is not a byte token",
    SP + "already a metaspace " + SP + SP + "twice",
    "KING HENRY.\n  Once more unto the breach, dear friends, once more;\n",
    "ab" * 120,
]


def llama_layout(trained_json, vocab_size):
    """Vocabulary and merges of a trained BPE, renumbered as Llama's: specials, bytes, rest."""
    model = trained_json["model"]
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for tok, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return vocab, merges


def build(vocab, merges, form):
    model = models.BPE(
        vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True,
        ignore_merges=(form == "spm_metaspace_split"),
    )
    tok = Tokenizer(model)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    sp_decoder = decoders.Sequence([
        decoders.Replace(SP, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    if form == "spm_normalizer":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend(SP), normalizers.Replace(" ", SP)])
        tok.decoder = sp_decoder
    elif form == "spm_metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="first", split=False)
        tok.decoder = sp_decoder
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="always", split=True)
        tok.decoder = decoders.Metaspace(replacement=SP, prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--play", default="/work/shared/data/shakespeare/macbeth_gut.txt")
    ap.add_argument("--vocab-size", type=int, default=600)
    ap.add_argument("--out", default=os.path.join(ROOT, "Tests", "SubspaceTests", "Fixtures"))
    args = ap.parse_args()

    with open(args.play, encoding="utf-8") as f:
        # ASCII lines only, so that CJK, emoji and most symbols need byte fallback.
        lines = [l for l in f.read().splitlines() if l.strip() and l.isascii()]
    lines += ["Caf\u00e9 na\u00efve r\u00e9sum\u00e9"] * 5

    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Sequence([normalizers.Prepend(SP), normalizers.Replace(" ", SP)])
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size - 256, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    trainer_tok.train_from_iterator(lines, trainer)
    vocab, merges = llama_layout(json.loads(trainer_tok.to_str()), args.vocab_size)

    os.makedirs(args.out, exist_ok=True)
    for form in ["spm_normalizer", "spm_metaspace", "spm_metaspace_split"]:
        tok = build(vocab, merges, form)
        tok_path = os.path.join(args.out, f"tokenizer_{form}.json")
        tok.save(tok_path, pretty=True)
        cases = []
        for text in CASES:
            ids = tok.encode(text, add_special_tokens=False).ids
            ids_special = tok.encode(text, add_special_tokens=True).ids
            cases.append({
                "text": text, "ids": ids, "ids_special": ids_special,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip": tok.decode(ids_special, skip_special_tokens=True),
            })
        exp_path = os.path.join(args.out, f"tokenizer_{form}_expected.json")
        with open(exp_path, "w", encoding="utf-8") as f:
            f.write('{\n "tokenizers_version": %s,\n "cases": [\n' % json.dumps(tokenizers.__version__))
            f.write(",\n".join("  " + json.dumps(c, ensure_ascii=True) for c in cases))
            f.write("\n ]\n}\n")
        size = os.path.getsize(tok_path) + os.path.getsize(exp_path)
        print(f"wrote {tok_path} and {exp_path} ({size} bytes, vocab {tok.get_vocab_size()})")


if __name__ == "__main__":
    main()
