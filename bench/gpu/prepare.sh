#!/usr/bin/env bash
# Prepare, on the development machine, what the GPU benchmark needs on the device machine (which reaches no
# network and takes at most 64 MiB of files): .gpu/ holds the BANKING77 CSVs, MiniLM-L6 with its weights rounded
# to float16 (45 MB instead of 90; run.sh widens them back to float32 there) and pure-Python wheels of the
# packages core imports that the device image lacks (Celery and its dependencies).
# Then: device run, command "bash bench/gpu/run.sh", carry [".gpu"].
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-/work/shared/data/banking77}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/banking77 .gpu/whl .gpu/minilm-fp16
cp "$DATA/train.csv" "$DATA/test.csv" .gpu/banking77/
"$PY" - <<'PYEOF'
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.ml.runtime import base_model_path

source, target = base_model_path(None), Path(".gpu/minilm-fp16")
for file in source.iterdir():
    if file.is_file() and file.suffix != ".safetensors" and file.suffix != ".bin":
        shutil.copy(file, target / file.name)
weights = load_file(str(source / "model.safetensors"))
save_file({k: v.to(torch.float16) for k, v in weights.items()}, str(target / "model.safetensors"))
PYEOF
"$PY" -m pip download --quiet --no-deps --only-binary=:all: -d .gpu/whl \
  celery==5.7.0 kombu==5.7.0 billiard==4.3.2 vine==5.1.0 amqp==5.4.2 click-didyoumean==0.3.1 \
  click-repl==0.4.1 click-plugins==1.1.1.2 prompt-toolkit wcwidth tzlocal tzdata
du -sh .gpu
