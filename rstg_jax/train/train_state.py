"""The training state: params, batch_stats, opt_state and step in one pytree."""
from __future__ import annotations

from typing import Any

from flax.training import train_state
import jax.numpy as jnp


class TrainState(train_state.TrainState):
  """flax TrainState plus the mutable `batch_stats` collection.

  `batch_stats` is an empty dict for models without BatchNorm. `apply_fn` and
  `tx` are static (not pytree leaves), so the state is a plain pytree of
  arrays for jit, sharding and Orbax.
  """

  batch_stats: Any = None

  @classmethod
  def create(cls, *, apply_fn, params, tx, **kwargs) -> "TrainState":
    """Like flax's, but `step` is a strongly typed int32 array.

    flax starts from the Python int 0, whose weak type differs from the int32
    the step returns, so the jitted step would be traced (compiled) twice.
    """
    state = super().create(apply_fn=apply_fn, params=params, tx=tx, **kwargs)
    return state.replace(step=jnp.zeros((), jnp.int32))

  def variables(self, params: Any = None) -> dict[str, Any]:
    """The variables dict for `apply_fn` (optionally with other params)."""
    v = {"params": self.params if params is None else params}
    if self.batch_stats:
      v["batch_stats"] = self.batch_stats
    return v

  def checkpoint_items(self) -> dict[str, Any]:
    """The arrays worth saving, as a plain dict (no functions)."""
    return {"step": self.step, "params": self.params,
            "batch_stats": self.batch_stats, "opt_state": self.opt_state}

  def replace_from_checkpoint(self, items: dict[str, Any]) -> "TrainState":
    return self.replace(step=items["step"], params=items["params"],
                        batch_stats=items["batch_stats"],
                        opt_state=items["opt_state"])
