"""The environment for a test's subprocess: this session's variables without the
prefixes the test must not pass on, but with the shared XLA compilation cache and
conftest's fast-compile flag (not its 8 fake devices)."""
from __future__ import annotations

import os
from collections.abc import Sequence

# XLA's backend optimisation level 0: see conftest.py.
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"
# Set by conftest.py for the whole session (a fresh folder per run).
CACHE_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                   "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES")


def without(prefixes: Sequence[str], **extra: str) -> dict[str, str]:
  """os.environ less every variable starting with one of `prefixes` (the
  compilation-cache variables excepted), plus `extra`."""
  env = {k: v for k, v in os.environ.items()
         if k in CACHE_VARIABLES or not k.startswith(tuple(prefixes))}
  if "XLA_FLAGS" not in env:
    env["XLA_FLAGS"] = FAST_COMPILE_FLAG
  env.update(extra)
  return env
