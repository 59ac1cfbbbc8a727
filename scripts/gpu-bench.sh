#!/usr/bin/env bash
# Runs wgrad's bench on a machine with an NVIDIA GPU that has no Rust toolchain and no network,
# beside PyTorch CUDA on the same workloads (scripts/torch_bench.py).
#
# Build here, then carry the binary and the Vulkan loader to that machine:
#     cargo build --release --example bench
#     mkdir -p gpu-bench && cp target/release/examples/bench gpu-bench/ \
#         && cp "$(ldconfig -p | awk '/libvulkan.so.1 /{print $NF; exit}')" gpu-bench/
#     cp scripts/gpu-bench.sh scripts/torch_bench.py gpu-bench/
# There:
#     gpu-bench/gpu-bench.sh [OUT_DIR]
#
# It says which way to the GPU the machine offers (NVIDIA's Vulkan driver: ICD json and
# library; or EGL for wgpu's GL backend) and stops plainly when there is neither. It then runs
# the bench with both kernel sets (the GPU ones, and those for CPU-type adapters), each writing
# JSON, and times PyTorch CUDA on the same workloads. Everything lands in OUT_DIR (default
# ./gpu-bench-out): bench-gpu.json, bench-cpu-kernels.json, torch.json and the logs.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-./gpu-bench-out}"
mkdir -p "$out"
bench="$here/bench"
[ -x "$bench" ] || bench="$here/../target/release/examples/bench"
if [ ! -x "$bench" ]; then
    echo "no bench binary next to this script nor in target/release/examples" >&2
    exit 2
fi
# The carried Vulkan loader, when the machine has none of its own.
if [ -e "$here/libvulkan.so.1" ] && ! ldconfig -p 2>/dev/null | grep -q "libvulkan.so.1 "; then
    export LD_LIBRARY_PATH="$here${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

echo "== the machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
    || echo "nvidia-smi: not found or no GPU"

echo "== ways to the GPU"
icds=""
for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    for f in "$d"/*nvidia*.json; do
        [ -e "$f" ] && icds="$icds $f"
    done
done
vulkan=no
if [ -n "$icds" ]; then
    echo "NVIDIA Vulkan ICD:$icds"
    lib=$(grep -ho '"library_path"[^,]*' $icds | head -1 | sed 's/.*: *"\(.*\)"/\1/')
    if [ -n "$lib" ] && { [ -e "$lib" ] || ldconfig -p | grep -q "$(basename "$lib")"; }; then
        echo "its library: $lib (found)"
        vulkan=yes
    else
        echo "its library: ${lib:-unnamed} (NOT found)"
    fi
else
    echo "no NVIDIA Vulkan ICD json under /usr/share/vulkan/icd.d, /etc/vulkan/icd.d"
fi
egl=no
if ldconfig -p 2>/dev/null | grep -q "libEGL_nvidia.so"; then
    echo "NVIDIA EGL: libEGL_nvidia found (wgpu's GL backend can use it)"
    egl=yes
else
    echo "no NVIDIA EGL library (libEGL_nvidia)"
fi
if [ "$vulkan" = no ] && [ "$egl" = no ]; then
    echo "Neither NVIDIA's Vulkan driver nor its EGL is installed: wgrad cannot reach this GPU." >&2
    echo "Install the driver's Vulkan ICD (e.g. the libnvidia-gl package) and run this again." >&2
    backend=""
else
    backend=$([ "$vulkan" = yes ] && echo vulkan || echo gl)
    echo "wgrad will use: $backend"
fi

if [ -n "$backend" ]; then
    export WGRAD_BACKEND="$backend" WGRAD_CACHE_DIR="$out/tuning" RUST_LOG="${RUST_LOG:-wgrad=info}"
    echo "== wgrad, GPU kernels"
    WGRAD_KERNELS=gpu "$bench" --big --skip-cpu --json "$out/bench-gpu.json" 2>&1 \
        | tee "$out/bench-gpu.log"
    echo "== wgrad, kernels for CPU-type adapters (for comparison)"
    WGRAD_KERNELS=cpu "$bench" --skip-cpu --json "$out/bench-cpu-kernels.json" 2>&1 \
        | tee "$out/bench-cpu-kernels.log"
    echo "== wgrad, device time per kernel of the CNN step"
    WGRAD_KERNELS=gpu WGRAD_PROFILE=gpu "$bench" --skip-cpu --only cnn_step,matmul_2048 2>&1 \
        | tee "$out/profile-gpu.log"
fi

echo "== PyTorch CUDA, the same workloads"
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    python3 "$here/torch_bench.py" --json "$out/torch.json" 2>&1 | tee "$out/torch.log"
else
    echo "PyTorch with CUDA is not importable here; skipped" | tee "$out/torch.log"
fi
echo "== results in $out"
ls -l "$out"
