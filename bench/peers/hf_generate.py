#!/usr/bin/env python3
"""transformers peer of `subspace sample`: greedy `generate` with its key/value cache on the
same checkpoint, prompt and thread count, printing one JSON line.

Usage: bench/peers/hf_generate.py --checkpoint DIR --prompt "ROMEO:" --tokens 200 [--threads 2] [--rounds 3]

What is timed is `model.generate(input_ids, max_new_tokens=N, min_new_tokens=N,
do_sample=False, use_cache=True)` alone (the default DynamicCache; min_new_tokens keeps an
end-of-text token from ending it early), after one untimed warm-up call; the median of
`--rounds` calls is reported. The prompt is encoded with the checkpoint's tokenizer.json
(`tokenizers`), as `subspace sample` encodes it. `text` is the decoded continuation, for
comparing greedy outputs.
"""
import argparse, json, os, statistics, time

import torch
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--prompt", default="ROMEO:")
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = Tokenizer.from_file(os.path.join(a.checkpoint, "tokenizer.json"))
    ids = tok.encode(a.prompt).ids or [0]
    model = LlamaForCausalLM.from_pretrained(a.checkpoint, dtype=torch.float32).eval()
    x = torch.tensor([ids])
    kw = dict(do_sample=False, use_cache=True, pad_token_id=model.config.eos_token_id)
    with torch.inference_mode():
        model.generate(x, max_new_tokens=8, min_new_tokens=8, **kw)
        times, out = [], None
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            out = model.generate(x, max_new_tokens=a.tokens, min_new_tokens=a.tokens, **kw)
            times.append(time.perf_counter() - t0)
    new = out[0, len(ids):].tolist()
    s = statistics.median(times)
    print(json.dumps({"peer": "transformers", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "prompt_tokens": len(ids), "new_tokens": len(new), "seconds": s,
                      "tokens_per_s": len(new) / s, "text": tok.decode(new)}))


if __name__ == "__main__":
    main()
