# Sourced by check-cuda.sh and gpu-check.sh: a CUDA 13.0 toolkit from NVIDIA's PyPI wheels in
# target/cuda-toolkit (about 1 GB, installed once), a driver stub for the link, and the
# environment a `--features cuda` build needs (its own target directory, target/cuda).
#
# 13.0: the newest release the CUDA bindings Candle builds on (cudarc 0.19) accept is 13.4, and
# 13.0 runs on every CUDA 13 driver. The driver library libcuda.so is in no wheel (it comes with
# the GPU driver): a stub exporting the driver API's entry points takes its place at link time,
# as CUDA's own lib64/stubs/libcuda.so does on build machines; the binary then runs against the
# real driver of a GPU machine.
TK="$PWD/target/cuda-toolkit"
CUDA="$TK/nvidia/cu13"
if ! "$CUDA/bin/nvcc" --version 2>/dev/null | grep -q "release 13.0" || [ ! -d "$CUDA/include/crt" ]; then
  echo "== installing the CUDA 13.0 toolkit wheels into $TK"
  rm -rf "$TK"
  # One pip call: the wheels share the nvidia/cu13 tree and pip --target merges it only then.
  python3 -m pip install --quiet --no-deps --target "$TK" \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*" \
    "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-nvrtc==13.0.*" \
    "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*"
fi

# Unversioned names for the linker, and the driver stub.
STUBS="$TK/stubs"
mkdir -p "$STUBS"
for lib in cudart cublas cublasLt curand nvrtc; do
  ln -sf "$(ls "$CUDA/lib/lib$lib.so."* | head -1)" "$STUBS/lib$lib.so"
done
if [ ! -f "$STUBS/libcuda.so" ] || [ "$STUBS/libcuda.so" -ot "${BASH_SOURCE[0]}" ]; then
  # Every cu* entry point the driver API header declares (also the versioned names, such as
  # cuMemAlloc_v2, that its #defines map the plain ones to), each returning
  # CUDA_ERROR_STUB_LIBRARY (34) should it ever be called.
  {
    grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\(' "$CUDA/include/cuda.h" | tr -d '('
    grep -ohE '^#define\s+cu[A-Za-z0-9_]+\s+cu[A-Za-z0-9_]+' "$CUDA/include/cuda.h" | awk '{ print $3 }'
  } | sort -u | awk '{ printf "int %s(void) { return 34; }\n", $1 }' > "$STUBS/cuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUBS/libcuda.so" "$STUBS/cuda_stub.c"
fi

export PATH="$CUDA/bin:$PATH"
export CUDA_ROOT="$CUDA" CUDA_PATH="$CUDA" CUDA_HOME="$CUDA"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="$STUBS:$CUDA/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
# A target directory of its own: the CPU build's artifacts stay as they are.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/cuda}"
