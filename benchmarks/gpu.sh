#!/usr/bin/env bash
# The GPU checks, in a few minutes on a machine with CUDA (run from anywhere; needs the engine
# installed, e.g. .venv from the README, or PYTHON=python):
#   1. the engine against the slow reference, with the engine on the GPU (tests/engine/test_engine.py);
#   2. the GPT-2 stand-in's verification on the CPU and on the GPU in float32, float16 and
#      bfloat16: time, rows per forward, and each configuration's largest difference from the CPU;
#   3. with more than one GPU visible, the same verification split over every GPU by
#      `--device-map auto` (each GPU's budget $SPLIT_MEMORY, 300MB: the stand-in spans two GPUs),
#      against the CPU (docs/scale.md).
# Results go to $OUT (default benchmarks/gpu-results/): the pytest log, devices.json, split.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-benchmarks/gpu-results}
PROMPTS=${PROMPTS:-0}  # 0: every prompt of the spec
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check here')"
"$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(), '| torch', torch.__version__)"

echo "== the engine on CUDA against the reference on the CPU"
CIRCUITLANG_TEST_DEVICE=cuda "$PYTHON" -m pytest -q -p no:cacheprovider tests/engine/test_engine.py 2>&1 | tee "$OUT/engine-tests.log"

echo "== verify specs/incr_digits.circ on the GPT-2 stand-in: CPU and GPU, three precisions"
"$PYTHON" benchmarks/devices.py --prompts "$PROMPTS" --json "$OUT/devices.json" \
    --config cpu:float32 --config cuda:float32 --config cuda:float16 --config cuda:bfloat16

GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -gt 1 ]; then
    echo "== verify split over $GPUS GPUs with --device-map auto, against the CPU"
    "$PYTHON" benchmarks/devices.py --prompts "$PROMPTS" --json "$OUT/split.json" --split-memory "${SPLIT_MEMORY:-300MB}" \
        --config cpu:float32 --config cuda-split:float32 --config cuda-split:bfloat16
else
    echo "== one GPU visible: the split over several GPUs (--device-map auto) is not checked here"
fi
