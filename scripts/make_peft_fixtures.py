#!/usr/bin/env python3
"""Saves PEFT LoRA adapters on the `hf_tiny` base model, with the logits PEFT computes.

Subspace must load what `peft` writes (`adapter_config.json` + `adapter_model.safetensors`
beside a transformers base model) and compute the same logits; these fixtures are that
reference. The committed `Tests/SubspaceTests/Fixtures/peft_lora` and `peft_rslora` are this
script's default output:

    .venv/bin/python scripts/make_peft_fixtures.py Tests/SubspaceTests/Fixtures

- `peft_lora`: r 4, lora_alpha 8, target_modules [q_proj, v_proj, down_proj];
- `peft_rslora`: r 2, lora_alpha 4, use_rslora, target_modules "all-linear" (which PEFT
  saves expanded into every module path, `model.layers.1.self_attn.o_proj`, ...).

Each adapter is created with `get_peft_model` (PEFT's default initialisation: A
Kaiming-uniform, B zero), then B is drawn from N(0, 0.2^2) so that the adapter changes the
output, and saved with `save_pretrained`. `expected_logits.safetensors` holds the float32
eager logits of the PeftModel on the `input_ids` of `hf_tiny/expected_logits.safetensors`.
"""

import argparse
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

ADAPTERS = {
    "peft_lora": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]),
    "peft_rslora": dict(r=2, lora_alpha=4, use_rslora=True, target_modules="all-linear"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fixtures", type=Path, help="the folder holding hf_tiny")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    base_dir = args.fixtures / "hf_tiny"
    ids = load_file(str(base_dir / "expected_logits.safetensors"))["input_ids"].long()
    for i, (name, kw) in enumerate(ADAPTERS.items()):
        torch.manual_seed(args.seed + i)
        base = LlamaForCausalLM.from_pretrained(str(base_dir), torch_dtype=torch.float32, attn_implementation="eager")
        model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, **kw))
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0.0, 0.2)
        model.eval()
        out = args.fixtures / name
        model.save_pretrained(str(out))
        (out / "README.md").unlink(missing_ok=True)  # PEFT's model card template, not needed
        with torch.no_grad():
            logits = model(input_ids=ids).logits.reshape(-1, base.config.vocab_size).float().contiguous()
        save_file({"input_ids": ids, "logits": logits}, str(out / "expected_logits.safetensors"),
                  metadata={"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__})
        print(f"{out}: {sum(p.numel() for n, p in model.named_parameters() if 'lora_' in n)} adapter parameters")


if __name__ == "__main__":
    main()
