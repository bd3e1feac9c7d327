#!/usr/bin/env bash
# The GPU check, in two steps:
#
#   scripts/gpu-check.sh build    on a machine with Rust (no GPU needed): builds the CUDA binary
#                                 and the device test (scripts/check-cuda.sh), strips them and
#                                 packs them with the MNIST files ($BCD_MNIST_DIR) into
#                                 gpu-bundle.tar.xz (about 30 MB: small enough to carry).
#   scripts/gpu-check.sh run      on the GPU machine, from the repository root, with
#                                 gpu-bundle.tar.xz (or gpu-bundle/) there: runs the device test
#                                 on the GPU (the device path
#                                 against the CPU path, BCD_TEST_DEVICE=cuda) and times three
#                                 sweeps of the paper configuration (784-1500×3-10, 60,000 rows):
#                                 seconds per sweep, GFLOP/s, peak device memory.
#
# The run step needs the CUDA 13 runtime libraries (cuBLAS, cuRAND, NVRTC) and the driver; it
# finds them on LD_LIBRARY_PATH, under /usr/local/cuda, or in a Python environment's nvidia
# packages.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="$PWD/gpu-bundle"
PACKED="$PWD/gpu-bundle.tar.xz"

build() {
  bash scripts/check-cuda.sh
  source scripts/cuda-env.sh
  local out
  out=$(cargo test --release --features cuda --test device_path --no-run --message-format=json |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "device_path":
        print(m["executable"])')
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/mnist"
  cp "$CARGO_TARGET_DIR/release/candle-bcd" "$out" "$BUNDLE/"
  mv "$BUNDLE/$(basename "$out")" "$BUNDLE/device_path"
  cp -r tests/data/mnist-slice "$BUNDLE/slice"
  cp "${BCD_MNIST_DIR:-../shared/data/mnist}"/*-ubyte* "$BUNDLE/mnist/"
  strip "$BUNDLE/candle-bcd" "$BUNDLE/device_path"
  tar -cJf "$PACKED" -C "$BUNDLE" .
  du -sh "$BUNDLE" "$PACKED"
}

run() {
  if [ -f "$PACKED" ] && [ ! -x "$BUNDLE/candle-bcd" ]; then
    mkdir -p "$BUNDLE" && tar -xJf "$PACKED" -C "$BUNDLE"
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  for d in /usr/local/cuda/lib64 $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null); do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  echo "== device test on the GPU"
  BCD_TEST_DEVICE=cuda BCD_TEST_SLICE_DIR="$BUNDLE/slice" "$BUNDLE/device_path" --nocapture
  echo "== paper configuration, 3 sweeps on the GPU"
  local peak="$BUNDLE/peak-memory.txt"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$peak" &
  local smi=$!
  "$BUNDLE/candle-bcd" train --device cuda --data-dir "$BUNDLE/mnist" --iterations 3 \
    --eval-every 0 --metrics "$BUNDLE/paper.jsonl"
  kill "$smi"
  python3 - "$BUNDLE/paper.jsonl" "$peak" <<'PY'
import json, sys
flops = 2.856e12  # cost::sweep_flops of 784-1500x3-10 on 60,000 rows
sweeps = [json.loads(l)["seconds"] for l in open(sys.argv[1])]
peak = max(int(x) for x in open(sys.argv[2]) if x.strip())
for k, s in enumerate(sweeps, 1):
    print(f"sweep {k}: {s:.3f} s, {flops / s / 1e9:.0f} GFLOP/s")
print(f"peak device memory: {peak} MiB")
PY
}

case "${1:-}" in
  build) build ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh build|run" >&2; exit 2 ;;
esac
