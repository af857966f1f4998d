#!/usr/bin/env bash
# Generates the Python stubs and their type stubs from proto/ into segue/v1/ (or into $1).
#   scripts/gen_proto.sh          regenerate in place
#   scripts/gen_proto.sh --check  fail when the committed stubs differ from fresh output
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")

generate() {  # $1: output root (segue/v1 lands under it)
  mkdir -p "$1/segue/v1"
  PATH="$BIN:$PATH" "$PY" -m grpc_tools.protoc -Iproto \
    --python_out="$1" --grpc_python_out="$1" --mypy_out="$1" --mypy_grpc_out="$1" \
    proto/segue/v1/*.proto 2> >(grep -v "^Writing mypy" >&2)
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  stale=0
  for f in "$tmp"/segue/v1/*_pb2*; do
    name=$(basename "$f")
    if ! cmp -s "$f" "segue/v1/$name"; then
      echo "stale generated code: segue/v1/$name differs from proto/ (run 'make proto')" >&2
      stale=1
    fi
  done
  for f in segue/v1/*_pb2*; do
    [ -e "$tmp/segue/v1/$(basename "$f")" ] || { echo "orphan generated file: $f" >&2; stale=1; }
  done
  exit $stale
fi

rm -f segue/v1/*_pb2*.py segue/v1/*_pb2*.pyi
generate .
touch segue/v1/py.typed
