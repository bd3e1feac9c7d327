#!/usr/bin/env bash
# Builds candle-bcd with `--features cuda` on a machine without a GPU or a CUDA installation:
# the toolkit comes from NVIDIA's PyPI wheels (see scripts/cuda-env.sh), the build goes to
# target/cuda. Extra arguments go to cargo; CUDA_COMPUTE_CAP (default 90, Hopper) picks the
# GPU architecture the kernels are compiled for.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-env.sh
nvcc --version | tail -2
echo "== cargo build --release --features cuda (compute capability $CUDA_COMPUTE_CAP)"
time cargo build --release --features cuda "$@"
echo "== built: $CARGO_TARGET_DIR/release/candle-bcd"
