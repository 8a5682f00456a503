"""Import hygiene: the public core.ml modules load no torch, weights or web framework at import time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PUBLIC = [
    "errors",
    "runtime",
    "train",
    "evaluate",
    "artifact",
    "serving",
    "search",
    "predictions",
    "batching",
]


def test_public_modules_import_without_torch_or_django():
    imports = "; ".join(f"import core.ml.{name}" for name in PUBLIC)
    code = (
        f"import sys; import core.ml; {imports}; "
        "bad = [m for m in ('torch', 'transformers', 'peft', 'optuna', 'rest_framework', 'channels') "
        "if m in sys.modules]; print(bad)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
