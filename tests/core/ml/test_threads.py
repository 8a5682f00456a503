"""A runtime's thread count reaches torch and numpy's BLAS alike (core.ml.runtime.apply_threads): a serving
process on one thread keeps no idle BLAS threads spinning beside it."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from core.ml import runtime as ml_runtime
from core.ml.errors import MLError
from core.ml.runtime import Runtime, apply_threads


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.fixture
def restored():
    before = torch.get_num_threads()
    yield
    apply_threads(Runtime(threads=before))


def test_the_runtime_threads_set_torch_and_numpy_blas_together(restored):
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's BLAS is loaded
    assert _blas_threads()  # there is one to set
    apply_threads(Runtime(threads=1))
    assert torch.get_num_threads() == 1 and _blas_threads() == {1}
    apply_threads(Runtime(threads=2))
    assert torch.get_num_threads() == 2 and _blas_threads() == {2}
    apply_threads(Runtime(threads=1))  # back: a process that trains, then serves
    assert torch.get_num_threads() == 1 and _blas_threads() == {1}


def test_the_serving_default_leaves_one_blas_thread(restored, settings):
    ml_runtime._blas_threads = None  # as in a new process
    apply_threads(Runtime(threads=settings.ML_SERVE_THREADS))
    assert settings.ML_SERVE_THREADS == 1 and _blas_threads() == {1}


def test_a_thread_count_below_one_is_refused():
    with pytest.raises(MLError, match="at least 1"):
        apply_threads(Runtime(threads=0))


def test_a_web_process_serves_on_the_serving_threads_from_its_start():
    """core.asgi sets them at import: a web process that loads no torch model (the recommender's numpy
    models) must not keep a BLAS thread per core spinning (fails without ``serving_threads_apply``), nor
    faiss's own BLAS, loaded with the first ANN index (fails without ``blas_libraries_loaded``)."""
    import os
    import subprocess
    import sys

    probe = (
        "import numpy as np, torch; from threadpoolctl import threadpool_info; import core.asgi; "
        "np.ones((4, 4)) @ np.ones((4, 4)); "
        "from core.ml.vector_index import VectorIndex; "  # an ANN index: faiss loads a BLAS of its own
        "v = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32); "
        "VectorIndex([str(i) for i in range(400)], v, ann_min=1); "
        "print(torch.get_num_threads(), *sorted(p['num_threads'] for p in threadpool_info() "
        "if p['user_api'] == 'blas'))"
    )
    # two BLAS threads to start with, whatever the machine's cores: what the web process must bring down
    env = {**os.environ, "ML_SERVE_THREADS": "1", "ML_WARMUP": "0", "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    torch_threads, *blas = (int(n) for n in out.stdout.strip().splitlines()[-1].split())
    assert torch_threads == 1 and blas and set(blas) == {1}, out.stdout  # every BLAS library on one thread
