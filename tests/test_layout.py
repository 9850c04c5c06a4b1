"""The package layout's one import rule: runtime/ never imports what it runs."""
from __future__ import annotations

import ast
import pathlib

import pytest

_PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "rstg_jax"
_FORBIDDEN = ("rstg_jax.models", "rstg_jax.tasks", "rstg_jax.train")


def _imported_modules(path: pathlib.Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


@pytest.mark.parametrize("path", sorted((_PACKAGE / "runtime").glob("*.py")),
                         ids=lambda p: p.name)
def test_runtime_imports_no_model_task_or_training_code(path):
  bad = sorted(m for m in _imported_modules(path)
               if any(m == f or m.startswith(f + ".") for f in _FORBIDDEN))
  assert not bad, f"{path.name} imports {bad}"
