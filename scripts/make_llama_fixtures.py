#!/usr/bin/env python3
"""Builds the reference fixtures for `LlamaParityTests`.

For each small configuration this script builds transformers' `LlamaForCausalLM` in float32
with eager attention, runs one batch forward and backward, and writes
`Tests/SubspaceTests/Fixtures/llama_<name>.safetensors` holding:

- every parameter under its Hugging Face name (`named_parameters()`, so a tied model has no
  `lm_head.weight`). To keep the files small the weights are first rounded to a 16-bit float
  format (F16 for `mha`, BF16 for `gqa`) and stored in it; the model then runs on exactly
  those rounded values, so the fixture is lossless and also exercises the reader's F16 and
  BF16 conversions;
- `inputs` and `targets` as I32 `[batch, seq]`; `targets[b, t]` is the token that follows
  `inputs[b, t]` (not shifted again, as Subspace's `TokenBatch`);
- `logits` F32 `[batch * seq, vocab]` and `loss` F32 `[1]`, the mean cross-entropy
  `cross_entropy(logits.view(-1, V), targets.view(-1))` computed here rather than through
  the model's `labels=` path (which would shift the labels a second time);
- `grad.<name>` F32 for every parameter (for tied embeddings the embedding gradient includes
  the LM head's contribution, as autograd accumulates it);
- metadata: `config` (JSON with the keys of Subspace's `LlamaConfig` initialiser plus
  `batch` and `seq`), `hf_config` (transformers' config JSON) and library versions.

RMSNorm weights, which transformers initialises to one, are set to `1 + 0.2 * N(0, 1)` so
that the fixture also checks how each norm weight is applied and differentiated.

Usage: `.venv/bin/python scripts/make_llama_fixtures.py [--out DIR]`
"""

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

BATCH, SEQ = 2, 16

CONFIGS = {
    "mha": dict(dim=64, layers=2, heads=4, kvHeads=4, ffnDim=172, vocab=128, maxSeq=32,
                tiedEmbeddings=False, seed=1234, weight_dtype=torch.float16),
    "gqa": dict(dim=64, layers=2, heads=8, kvHeads=2, ffnDim=160, vocab=96, maxSeq=32,
                tiedEmbeddings=True, seed=5678, weight_dtype=torch.bfloat16),
}
ROPE_THETA = 10000.0
NORM_EPS = 1e-6
INIT_STD = 0.02


def build(name: str, spec: dict, out_dir: Path) -> Path:
    torch.manual_seed(spec["seed"])
    hf = LlamaConfig(
        vocab_size=spec["vocab"],
        hidden_size=spec["dim"],
        intermediate_size=spec["ffnDim"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kvHeads"],
        hidden_act="silu",
        max_position_embeddings=spec["maxSeq"],
        initializer_range=INIT_STD,
        rms_norm_eps=NORM_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        tie_word_embeddings=spec["tiedEmbeddings"],
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
        use_cache=False,
    )
    hf._attn_implementation = "eager"
    model = LlamaForCausalLM(hf).to(torch.float32)
    model.config._attn_implementation = "eager"
    model.eval()  # no dropout anywhere; gradients are still computed

    wdtype = spec["weight_dtype"]
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("layernorm.weight") or pname == "model.norm.weight":
                p.copy_(1 + 0.2 * torch.randn_like(p))
            # Round to the storage format so that the stored weights are exact.
            p.copy_(p.to(wdtype).to(torch.float32))

    if spec["tiedEmbeddings"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    ids = torch.randint(0, spec["vocab"], (BATCH, SEQ + 1), dtype=torch.int64)
    inputs, targets = ids[:, :SEQ].contiguous(), ids[:, 1:].contiguous()

    model.zero_grad(set_to_none=True)
    out = model(input_ids=inputs, use_cache=False)
    logits = out.logits.reshape(-1, spec["vocab"])
    loss = F.cross_entropy(logits, targets.reshape(-1))
    loss.backward()

    tensors = {}
    names = [n for n, _ in model.named_parameters()]
    for pname, p in model.named_parameters():
        tensors[pname] = p.detach().to(wdtype).contiguous()
        assert p.grad is not None, pname
        tensors["grad." + pname] = p.grad.detach().to(torch.float32).contiguous()
    tensors["inputs"] = inputs.to(torch.int32)
    tensors["targets"] = targets.to(torch.int32)
    tensors["logits"] = logits.detach().to(torch.float32).contiguous()
    tensors["loss"] = loss.detach().to(torch.float32).reshape(1)

    config = {k: spec[k] for k in ("dim", "layers", "heads", "kvHeads", "ffnDim", "vocab", "maxSeq", "tiedEmbeddings")}
    config.update(ropeTheta=ROPE_THETA, normEps=NORM_EPS, initStd=INIT_STD, batch=BATCH, seq=SEQ)
    metadata = {
        "config": json.dumps(config, sort_keys=True),
        "hf_config": hf.to_json_string(use_diff=False),
        "parameters": json.dumps(names),
        "weights_dtype": str(wdtype).replace("torch.", ""),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "seed": str(spec["seed"]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"llama_{name}.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(names)} parameters, loss {loss.item():.6f}")
    return path


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=root / "Tests" / "SubspaceTests" / "Fixtures")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    total = sum(os.path.getsize(build(n, s, args.out)) for n, s in CONFIGS.items())
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
