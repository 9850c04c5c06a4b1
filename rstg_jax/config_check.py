"""Checks of a config and of its `--config.a.b=value` overrides, with one-line errors.

`check_overrides(config, argv)` looks at every override of argv against the
loaded, locked config before ml_collections applies them, so a typo or a value
of the wrong type gives one line naming the flag as typed:

  --config.optimzer.learning_rate: no such config field; did you mean --config.optimizer.learning_rate?
  --config.batch_size=abc: expected an int

`ConfigError` is the error of a config value that the run cannot use (raised
by e.g. rstg_jax.train.optimizers); rstg_jax.main prints it as one line.
Light on purpose (no JAX): flags are checked before anything starts.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
import sys
from typing import Any

from absl import flags
import ml_collections


class ConfigError(ValueError):
  """A config field holds a value the run cannot use; the message names the field."""


# ml_collections' own pattern of an override (config_flags._GetOverrides).
_OVERRIDE = re.compile(r"^-{1,2}(no)?config\.([^=]*)(=(.*))?$", re.DOTALL)

# The parsers ml_collections uses for these field types.
_PARSERS = {
    bool: (flags.BooleanParser(), "a bool (true/false)"),
    int: (flags.IntegerParser(), "an int"),
    float: (flags.FloatParser(), "a float"),
}


def is_override(arg: str) -> bool:
  return _OVERRIDE.match(arg) is not None


def dotted_paths(config: Any, prefix: str = "") -> list[str]:
  """Every field path of `config`, inner nodes included ('optimizer', 'optimizer.name')."""
  out = []
  for key in config.keys():
    path = f"{prefix}{key}"
    out.append(path)
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      out.extend(dotted_paths(value, path + "."))
  return out


def _lookup(config: Any, path: str) -> tuple[bool, Any]:
  node = config
  for part in path.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node.keys():
      return False, None
    node = node[part]
  return True, node


def _did_you_mean(path: str, paths: Sequence[str]) -> str:
  depth = path.count(".")
  same_depth = [p for p in paths if p.count(".") == depth]
  best = (difflib.get_close_matches(path, same_depth, n=1, cutoff=0.6)
          or difflib.get_close_matches(path, paths, n=1, cutoff=0.6))
  return f"; did you mean --config.{best[0]}?" if best else ""


def check_overrides(config: Any, argv: Sequence[str]) -> str | None:
  """The one-line error of the first bad `--config.x` override of argv, or None.

  Checks that each override names an existing field and, for bool / int /
  float fields, that its value parses as that type. Other types (strings,
  tuples, None-valued fields) are left to ml_collections.
  """
  paths = None
  for i, arg in enumerate(argv):
    match = _OVERRIDE.match(arg)
    if not match:
      continue
    negated, path, has_value, value = match.groups()
    typed = arg.split("=", 1)[0]
    found, field = _lookup(config, path)
    if not found:
      paths = paths if paths is not None else dotted_paths(config)
      return f"{typed}: no such config field{_did_you_mean(path, paths)}"
    kind = type(field)
    if kind not in _PARSERS:
      continue
    if negated:
      if kind is not bool:
        return f"{typed}: --no only applies to bool fields; {path} is {_PARSERS[kind][1]}"
      continue
    if not has_value:
      if kind is bool:
        continue  # `--config.flag` sets True
      if i + 1 >= len(argv):
        return f"{typed}: missing value (expected {_PARSERS[kind][1]})"
      value = argv[i + 1]  # absl takes the next argument as the value
      shown = f"{typed} {value}"
    else:
      shown = arg
    parser, expected = _PARSERS[kind]
    try:
      parser.parse(value)
    except (ValueError, TypeError):
      return f"{shown}: expected {expected}"
  return None


def check_num_train_steps(num_train_steps: Any) -> int:
  """`config.num_train_steps` as an int >= 1, or ConfigError."""
  try:
    steps = int(num_train_steps)
  except (TypeError, ValueError):
    raise ConfigError(f"config.num_train_steps={num_train_steps!r} must be an int "
                      ">= 1") from None
  if steps != num_train_steps or steps < 1:
    raise ConfigError(f"config.num_train_steps={num_train_steps!r} must be a positive "
                      "number of training steps (>= 1)")
  return steps


def _fail(error: BaseException | str) -> None:
  """Prints one line and exits 1.

  A multi-line message (ml_collections puts the config file's traceback in
  it) is shortened to its first line and its last, the actual error.
  """
  lines = [l.strip() for l in str(error).splitlines() if l.strip()] or [
      type(error).__name__]
  line = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
  print(f"FATAL Flags parsing error: {line}", file=sys.stderr)
  sys.exit(1)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing (`app.run(..., flags_parser=parse_flags)`), with every
  --config.x override checked first, for any command whose config flag is
  `--config` (`rstg_jax.main`, `rstg_jax.predict`, `rstg_jax.tools.explain`).

  The config is loaded once without the overrides (ml_collections reads them
  from sys.argv, so that is swapped for the call), each override is checked
  against it (config_check.check_overrides: unknown path -> nearest existing
  one; bool/int/float value that does not parse), and only then is the
  command line parsed for real. Any bad flag is one line, no traceback.
  """
  base = [a for a in argv if not is_override(a)]
  if len(base) != len(argv):
    saved = sys.argv
    sys.argv = base
    try:
      flags.FLAGS(base)
    except flags.Error as e:
      _fail(e)
    finally:
      sys.argv = saved
    config = flags.FLAGS["config"].value
    flags.FLAGS.unparse_flags()
    if config is not None:
      problem = check_overrides(config, argv[1:])
      if problem:
        _fail(problem)
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError) as e:
    # What the check above does not cover (e.g. a string override of a tuple
    # field) still fails in one line.
    _fail(e)
  return []  # not reached
