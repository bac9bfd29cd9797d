#!/usr/bin/env python3
"""Checks that PEFT reads a Subspace adapter checkpoint and computes our logits.

    .venv/bin/python scripts/check_peft_adapter.py CKPT_DIR --expect-logits FILE

CKPT_DIR is a checkpoint of a run with `--adapter lora` (Swift's `Checkpoint.save` with
adapter settings): a transformers base model plus `adapter_config.json` and
`adapter_model.safetensors`. It is loaded as PEFT users do,
`PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(CKPT_DIR), CKPT_DIR)`, in float32
with eager attention; loading must report no missing or unexpected adapter weights. FILE
holds `input_ids` and Subspace's `logits` for them (`PEFTTests.exportForPEFT` writes both
with `SUBSPACE_PEFT_EXPORT=DIR`). Prints the largest absolute logit difference and exits
non-zero above `--tol`.
"""

import argparse
import sys
import warnings

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import LlamaForCausalLM


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt_dir")
    ap.add_argument("--expect-logits", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    base = LlamaForCausalLM.from_pretrained(args.ckpt_dir, torch_dtype=torch.float32, attn_implementation="eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, args.ckpt_dir)
    bad = [str(w.message) for w in caught if "missing" in str(w.message).lower() or "unexpected" in str(w.message).lower()]
    if bad:
        print("PEFT reported:", *bad, sep="\n  ")
        return 1
    model.eval()
    ref = load_file(args.expect_logits)
    ids = ref["input_ids"].long()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.reshape(ref["logits"].shape).float()
    diff = (logits - ref["logits"]).abs().max().item()
    print(f"max |logits - subspace| = {diff:.3g} ({sum(p.numel() for n, p in model.named_parameters() if 'lora_' in n)} adapter parameters)")
    return 0 if diff <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
