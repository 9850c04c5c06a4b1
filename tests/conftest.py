"""Test set-up: 8 fake CPU devices, set before JAX initialises its backends, and
one XLA compilation cache for the whole session."""
import atexit
import os
import shutil
import tempfile

from subprocess_env import FAST_COMPILE_FLAG

# The tests are compile-bound on CPU: XLA's backend optimisation level 0 halves
# the compile time (tests/test_graph_block.py: 84 s -> 46 s of CPU) and every
# numerical test still holds; the same flag goes to subprocesses.
os.environ["XLA_FLAGS"] = " ".join([
    os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8",
    FAST_COMPILE_FLAG]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# TensorFlow is only used for tf.data/tfds here; keep it off any accelerator and quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# Compiling dominates the end-to-end tests on CPU, and they compile the same
# programs again and again (an uninterrupted, a stopped and a resumed run; the
# same model in several subprocesses). JAX's persistent cache turns every repeat
# into a file read: measured on the Something-Something resume test, 141 s ->
# 95 s. The folder is new for each run (made by the first process, before xdist
# starts its workers, which inherit it; subprocesses get it through
# tests/subprocess_env.py) and removed at the end, so no run reuses another's.
if "PYTEST_XDIST_WORKER" not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="rstg_jax_tests_xla_cache_")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
