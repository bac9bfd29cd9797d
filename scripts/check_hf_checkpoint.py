#!/usr/bin/env python3
"""Checks that transformers reads a Subspace checkpoint and computes our logits.

    .venv/bin/python scripts/check_hf_checkpoint.py CKPT_DIR --expect-logits FILE

CKPT_DIR is a checkpoint written by `Checkpoint.save` (Swift). It is loaded with
`LlamaForCausalLM.from_pretrained` in float32 with eager attention; loading must report no
missing, unexpected or mismatched weights. FILE is a safetensors file with `input_ids`
(`[batch, seq]`, any integer or float dtype holding token ids) and `logits`
(`[batch * seq, vocab]` or `[batch, seq, vocab]`) as computed by Subspace for those tokens.
The script prints the largest absolute logit difference and exits non-zero when it exceeds
`--tol`.
"""

import argparse
import sys

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt_dir")
    ap.add_argument("--expect-logits", required=True, help="safetensors with input_ids and logits")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest accepted |difference|")
    args = ap.parse_args()

    model, info = LlamaForCausalLM.from_pretrained(
        args.ckpt_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"FAIL: transformers reported loading problems: {problems}")
        return 1

    expected = load_file(args.expect_logits)
    input_ids = expected["input_ids"].round().to(torch.long)
    want = expected["logits"].float()
    with torch.no_grad():
        got = model(input_ids=input_ids).logits.float().reshape(want.shape)
    diff = (got - want).abs().max().item()
    scale = want.abs().max().item()
    cfg = model.config
    print(f"{args.ckpt_dir}: hidden {cfg.hidden_size}, layers {cfg.num_hidden_layers}, "
          f"heads {cfg.num_attention_heads}/{cfg.num_key_value_heads}, vocab {cfg.vocab_size}, "
          f"tied {cfg.tie_word_embeddings}")
    print(f"max |logits(transformers) - logits(subspace)| = {diff:.3e} (max |logit| {scale:.3f}, "
          f"{input_ids.numel()} positions)")
    if not diff <= args.tol:
        print(f"FAIL: difference exceeds {args.tol}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
