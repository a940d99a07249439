import ctypes
import os
import sys

# Test helpers (video generation, fixture weights) live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))


def _threads_per_process() -> int | None:
    """Intra-op threads for each pytest-xdist worker: the cores shared out, at least one.

    Two workers with two OpenMP threads each on two cores oversubscribe them, and spinning OpenMP
    threads then slow every small operation. None outside xdist, or where OMP_NUM_THREADS is set.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 1 or "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


# `--backend auto` would convert every freshly initialised model for OpenVINO (seconds each, cached by
# weights); the suite runs the eager path unless a test asks otherwise (tests/test_openvino.py).
os.environ.setdefault("VIDEOZOO_BACKEND", "torch")

_THREADS = _threads_per_process()
if _THREADS is not None:
    # Before torch is imported, so that OpenMP starts with this many threads; subprocesses inherit it.
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)

import pytest  # noqa: E402
import torch  # noqa: E402

if _THREADS is not None:
    torch.set_num_threads(_THREADS)


def _keep_freed_memory() -> None:
    # As the videozoo commands do: glibc maps every block over 32 MiB afresh and unmaps it on free,
    # so each full-size forward pass of the parity tests would fault in and zero its activations
    # again (a third of their time as system time). The process keeps its peak memory instead.
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    m_trim_threshold, m_mmap_max = -1, -4
    mallopt(m_mmap_max, 0)
    mallopt(m_trim_threshold, 2**31 - 1)


_keep_freed_memory()


@pytest.fixture(scope="session")
def official_checkpoint(tmp_path_factory):
    """(stem, numpy_module=None) -> a file of the fixture's weights in the official format and layout.

    Written once per session and shared: the Caffe2 pickles of the I3D fixtures are 350 MB each.
    Tests must not change the file.
    """
    from fixtures_util import load_fixture, native_numpy_module, write_official_checkpoint

    files = {}

    def get(stem: str, numpy_module: str | None = None):
        key = (stem, numpy_module or native_numpy_module())
        if key not in files:
            fx = load_fixture(stem)
            suffix = ".pkl" if "Caffe2" in fx["checkpoint_format"] else ".pth"
            folder = tmp_path_factory.mktemp("official")
            files[key] = write_official_checkpoint(fx, folder / f"checkpoint{suffix}", numpy_module=numpy_module)
        return files[key]

    return get


def pytest_collection_modifyitems(config, items):
    # The tests marked slow (full-size parity, training from scratch; `make test-all`) get a longer
    # limit than pyproject's per-test one; a hang still ends as one failed test.
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(1800))
