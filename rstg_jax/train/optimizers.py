"""Optimisers and learning-rate schedules from a config (optax).

Config fields (`config.optimizer`):
  name: 'nesterov' (the paper: momentum 0.9 with Nesterov, spec §9.1),
    'momentum' (heavy ball), 'adam' or 'adamw'.
  learning_rate: peak learning rate.
  schedule: 'constant' (the paper) or 'warmup_cosine' (linear warm-up to the
    peak, then cosine decay to `end_lr_factor * learning_rate` at the last
    step); `warmup_steps` also applies to 'constant' (linear warm-up, then flat).
  momentum: for 'nesterov' / 'momentum'. b1, b2, eps: for 'adam' / 'adamw'.
  weight_decay: 0 disables. Decoupled (AdamW) for 'adamw'; for the others it is
    added to the gradient (L2) before the optimiser. Never applied to biases or
    normalisation parameters: only leaves named `kernel` / `embedding` decay.
  grad_clip_norm: clip the global gradient norm to this value; 0 disables.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import optax

from rstg_jax.config_check import ConfigError
from rstg_jax.config_check import check_num_train_steps

OPTIMIZERS = ("nesterov", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine")
_DECAYED_LEAF_NAMES = ("kernel", "embedding")


def learning_rate_schedule(cfg: Mapping[str, Any],
                           num_train_steps: int) -> optax.Schedule:
  """Returns step -> learning rate for `config.optimizer`.

  Raises:
    ConfigError (a ValueError) naming the field: num_train_steps < 1, an
      unknown schedule, warm-up steps out of range.
  """
  num_train_steps = check_num_train_steps(num_train_steps)
  lr = float(cfg["learning_rate"])
  warmup = int(cfg.get("warmup_steps", 0))
  schedule = cfg.get("schedule", "constant")
  if schedule not in SCHEDULES:
    raise ConfigError(
        f"config.optimizer.schedule={schedule!r} is not one of {SCHEDULES}")
  if warmup < 0 or warmup > num_train_steps:
    raise ConfigError(
        f"config.optimizer.warmup_steps={warmup} must be in [0, "
        f"num_train_steps={num_train_steps}]")
  if schedule == "warmup_cosine":
    if warmup >= num_train_steps:
      raise ConfigError(
          f"config.optimizer.warmup_steps={warmup} leaves no steps for the "
          f"cosine decay of schedule 'warmup_cosine': it must be below "
          f"num_train_steps={num_train_steps}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup,
        decay_steps=max(num_train_steps, 1),
        end_value=lr * float(cfg.get("end_lr_factor", 0.0)))
  if warmup == 0:
    return optax.constant_schedule(lr)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)],
      boundaries=[warmup])


def weight_decay_mask(params: Any) -> Any:
  """True for the leaves that decay: kernels and embeddings, not norms/biases."""
  def decays(path, _):
    last = path[-1]
    name = getattr(last, "key", getattr(last, "name", str(last)))
    return str(name) in _DECAYED_LEAF_NAMES
  return jax.tree_util.tree_map_with_path(decays, params)


def graph_mask(params: Any) -> Any:
  """True for the leaves of the RSTG graph modules (named 'graph', 'graph_*')."""
  def in_graph(path, _):
    # path[-1] is the parameter itself; only module names count.
    return any(str(getattr(k, "key", "")).startswith("graph") for k in path[:-1])
  return jax.tree_util.tree_map_with_path(in_graph, params)


def make_optimizer(cfg: Mapping[str, Any],
                   learning_rate: float | Callable[[Any], Any]
                   ) -> optax.GradientTransformation:
  """Builds the optax transformation of `config.optimizer`."""
  name = cfg["name"]
  if name not in OPTIMIZERS:
    raise ConfigError(f"config.optimizer.name={name!r} is not one of {OPTIMIZERS}")
  wd = float(cfg.get("weight_decay", 0.0))
  clip = float(cfg.get("grad_clip_norm", 0.0))
  chain = []
  if clip > 0:
    chain.append(optax.clip_by_global_norm(clip))
  if name == "adamw":
    chain.append(optax.adamw(learning_rate, b1=cfg.get("b1", 0.9),
                             b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8),
                             weight_decay=wd, mask=weight_decay_mask))
  elif wd > 0:
    chain.append(optax.add_decayed_weights(wd, mask=weight_decay_mask))
  if name == "adam":
    chain.append(optax.adam(learning_rate, b1=cfg.get("b1", 0.9),
                            b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8)))
  elif name != "adamw":
    # TF's MomentumOptimizer(use_nesterov=True) and optax's nesterov trace
    # compute the same update: v = m v + g; step = -lr (g + m v).
    chain.append(optax.sgd(learning_rate, momentum=cfg.get("momentum", 0.9),
                           nesterov=name == "nesterov"))
  graph_factor = float(cfg.get("graph_lr_factor", 1.0))
  if graph_factor != 1.0:
    # The graph's dense layers need far smaller steps than the convs: with
    # Adam at 3e-3 on SyncMNIST the graph output becomes the same for every
    # video within ~100 steps (experiments/syncmnist/README.md).
    chain.append(optax.masked(optax.scale(graph_factor), graph_mask))
  return optax.chain(*chain)
