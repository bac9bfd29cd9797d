#!/usr/bin/env python3
"""Saves a small random transformers LLaMA as `save_pretrained` does, plus its logits.

`Checkpoint.loadModel` must read what transformers writes; this script produces such a
checkpoint and the float32, eager-attention logits that the Swift model has to reproduce on
it. The committed `Tests/SubspaceTests/Fixtures/hf_tiny` is this script's default output:

    .venv/bin/python scripts/make_hf_checkpoint.py Tests/SubspaceTests/Fixtures/hf_tiny

OUT_DIR receives `config.json`, `generation_config.json` and `model.safetensors` (or shards
and `model.safetensors.index.json` with `--max-shard-size`), all from `save_pretrained`, and
`expected_logits.safetensors` with `input_ids` (I64 `[batch, seq]`) and `logits`
(F32 `[batch * seq, vocab]`), plus library versions as metadata.

The model is deliberately not a default one: grouped-query attention, untied head (unless
`--tied`), rope theta 50,000, RMSNorm eps 1e-5, weights drawn with std 0.1 so that the
logits are far from uniform, and norm weights `1 + 0.2 * N(0, 1)`. With `--dtype float16` or
`bfloat16` the weights are rounded to that type and saved in it, and the reference logits
are computed in float32 on the rounded weights, so they stay exact references for a reader
that widens the stored values.
"""

import argparse
import os
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

BATCH, SEQ = 2, 12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--tied", action="store_true", help="tie the LM head to the embedding")
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                    help="dtype the weights are stored in")
    ap.add_argument("--max-shard-size", default=None,
                    help="e.g. 40KB, to write a sharded checkpoint with an index")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=64,
        initializer_range=0.1,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
        tie_word_embeddings=args.tied,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.config._attn_implementation = "eager"
    model.eval()
    dtype = getattr(torch, args.dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            # Round to the storage dtype, so the float32 logits below are exact for it.
            p.copy_(p.to(dtype).to(torch.float32))

    gen = torch.Generator().manual_seed(args.seed + 1)
    input_ids = torch.randint(0, config.vocab_size, (BATCH, SEQ), generator=gen)
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits.reshape(BATCH * SEQ, -1).float().contiguous()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    saved = model.to(dtype)
    kwargs = {"max_shard_size": args.max_shard_size} if args.max_shard_size else {}
    saved.save_pretrained(args.out_dir, safe_serialization=True, **kwargs)
    save_file(
        {"input_ids": input_ids.to(torch.int64).contiguous(), "logits": logits},
        os.fspath(args.out_dir / "expected_logits.safetensors"),
        metadata={"torch": torch.__version__, "transformers": transformers.__version__,
                  "dtype": args.dtype, "seed": str(args.seed)},
    )
    files = sorted(p.name for p in args.out_dir.iterdir())
    size = sum(p.stat().st_size for p in args.out_dir.iterdir())
    print(f"wrote {args.out_dir} ({size} bytes): {', '.join(files)}")


if __name__ == "__main__":
    main()
