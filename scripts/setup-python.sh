#!/usr/bin/env bash
# Creates the git-ignored .venv with the Python peers used to make fixtures and run
# bench/peers (torch pulls about 3 GB). Tests never need it.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install --quiet torch==2.15.0 transformers safetensors tokenizers galore-torch fira==1.0.2 numpy tensorboard peft==0.21.2
