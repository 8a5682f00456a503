#!/usr/bin/env bash
# On the device machine (after bench/gpu/prepare.sh here; carry [".gpu"]): BANKING77 training on the GPU, the
# default fast model (head + TF-IDF), a 2-epoch and a 4-epoch full fine-tune, each beside the TF-IDF peer. Results in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}  # e.g. "--limit 50" for a smoke test on a CPU
mkdir -p "$OUT" /tmp/minilm
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:. HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt" || true
"$PY" - <<'PYEOF'
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

source, target = Path(".gpu/minilm-fp16"), Path("/tmp/minilm")
for file in source.iterdir():
    if file.suffix != ".safetensors":
        shutil.copy(file, target / file.name)
weights = load_file(str(source / "model.safetensors"))
save_file({k: v.float() for k, v in weights.items()}, str(target / "model.safetensors"))
print("torch", torch.__version__, "cuda", torch.cuda.is_available())
PYEOF
"$PY" bench/banking77.py --device "$DEVICE" --threads 8 --data .gpu/banking77 --base-model /tmp/minilm $EXTRA \
  --out "$OUT/head.json" 2>&1 | tee "$OUT/head.log"
"$PY" bench/banking77.py --device "$DEVICE" --threads 8 --data .gpu/banking77 --base-model /tmp/minilm $EXTRA \
  --skip-head --finetune full --epochs 2 --lr 1e-4 --budget-min 6 --out "$OUT/full.json" 2>&1 | tee "$OUT/full.log"
"$PY" bench/banking77.py --device "$DEVICE" --threads 8 --data .gpu/banking77 --base-model /tmp/minilm $EXTRA \
  --skip-head --finetune full --epochs 4 --lr 1e-4 --budget-min 4 --out "$OUT/full4.json" 2>&1 | tee "$OUT/full4.log"
