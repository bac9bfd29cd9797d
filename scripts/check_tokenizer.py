#!/usr/bin/env python3
"""Check Subspace's tokenizer against Hugging Face `tokenizers`.

Usage: scripts/check_tokenizer.py TOKENIZER_JSON TEXT_FILE IDS_FILE

Loads TOKENIZER_JSON (a tokenizer.json saved by Subspace) with the Python `tokenizers`
package, encodes TEXT_FILE, and compares the ids with IDS_FILE, the ids Subspace wrote for
the same text: raw little-endian uint16 when the vocabulary has at most 65535 ids, else
uint32. Also checks that decoding gives the text back. Exits 0 when identical, 1 if not.
"""

import sys
from array import array

from tokenizers import Tokenizer


def read_ids(path, vocab_size):
    typecode = "H" if vocab_size <= 65535 else "I"
    ids = array(typecode)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % ids.itemsize:
        sys.exit(f"{path}: size {len(data)} is not a multiple of {ids.itemsize}")
    ids.frombytes(data)
    if sys.byteorder != "little":
        ids.byteswap()
    return ids.tolist()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().split("\n\n")[1])
    tok_path, text_path, ids_path = sys.argv[1:]
    tok = Tokenizer.from_file(tok_path)
    with open(text_path, encoding="utf-8", newline="") as f:
        text = f.read()
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    ours = read_ids(ids_path, vocab_size)
    theirs = tok.encode(text).ids

    ok = True
    if ours == theirs:
        print(f"ids identical: {len(theirs)} tokens for {len(text.encode('utf-8'))} bytes "
              f"(vocab {vocab_size})")
    else:
        ok = False
        n = min(len(ours), len(theirs))
        first = next((i for i in range(n) if ours[i] != theirs[i]), n)
        print(f"ids DIFFER: subspace {len(ours)} tokens, tokenizers {len(theirs)} tokens; "
              f"first difference at index {first}")
        lo = max(0, first - 5)
        print(f"  subspace:   {ours[lo:first + 5]} {tok.decode(ours[lo:first + 5])!r}")
        print(f"  tokenizers: {theirs[lo:first + 5]} {tok.decode(theirs[lo:first + 5])!r}")
    decoded = tok.decode(ours, skip_special_tokens=False)
    if decoded == text:
        print("decode(subspace ids) == text")
    else:
        ok = False
        print("decode(subspace ids) != text")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
