"""Command-line entry point: train and evaluate, or evaluate, one experiment config.

  python -m rstg_jax.main --config=configs/syncmnist_rstg.py:tiny --workdir=runs/demo
  python -m rstg_jax.main --config=configs/smt_i3d_rstg_final.py --workdir=runs/i3d \
      --config.data.data_dir=/data/tfds --config.init_from=/ckpt/kinetics_i3d
  python -m rstg_jax.main --config=configs/smt_i3d_rstg_final.py --workdir=runs/eval \
      --config.mode=eval --config.init_from=runs/i3d --config.data.eval_views=11x2
  rstg-train ... (the same flags)

The config is locked: a mistyped `--config.field` fails at start-up. The task
(`config.task`) finds its data (SyncMNIST is generated when absent). Re-running
with the same workdir resumes from its latest checkpoint. The evaluation is
printed at the end and written with the other figures to workdir/summary.json.
"""
from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from rstg_jax import config_check
from rstg_jax import log_filters
from rstg_jax.runtime import distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/syncmnist_rstg.py:tiny.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder: checkpoints, TensorBoard events, summary.json.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # TensorFlow is only the input pipeline here: keep it off accelerators.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  import jax  # pylint: disable=g-import-not-at-top
  # A multi-process job (SLURM, Cloud TPU VM, local_cpu.sh, --coordinator_address
  # ...) is joined before anything starts JAX's backends.
  distributed.initialize_from_flags()
  from rstg_jax.train import loop  # pylint: disable=g-import-not-at-top
  from rstg_jax.runtime import preemption  # pylint: disable=g-import-not-at-top
  log_filters.quiet_library_logs()

  from rstg_jax.runtime import checkpointing  # pylint: disable=g-import-not-at-top
  from rstg_jax.train import optimizers  # pylint: disable=g-import-not-at-top
  from rstg_jax.train import topk  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  try:
    # Checked before anything starts (data generation, the workdir).
    optimizers.learning_rate_schedule(config.optimizer, config.num_train_steps)
  except config_check.ConfigError as e:
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(1)
  logging.info("JAX %s, %d devices (%s), process %d of %d", jax.__version__,
               jax.device_count(), jax.devices()[0].platform,
               jax.process_index(), jax.process_count())
  # SIGTERM (pre-emption, scancel, kill): every process stops at the same
  # step with a checkpoint and exits with status 0; re-running the same
  # command resumes.
  try:
    with preemption.PreemptionWatcher() as watcher:
      summary = loop.train_and_evaluate(config, workdir,
                                        stop_requested=watcher.reached)
  except (loop.NonFiniteLossError, *loop.user_errors(), topk.NonFiniteLogitsError,
          checkpointing.CheckpointDamagedError) as e:
    logging.error("%s", e)
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(1)
  except Exception:  # pylint: disable=broad-except
    if jax.process_count() == 1:
      raise
    # The other processes wait for this one in a collective, and a normal
    # exit would block at JAX's shutdown barrier for minutes: exit at once so
    # that the launcher (srun --kill-on-bad-exit, local_cpu.sh) ends the job.
    logging.exception("process %d failed", jax.process_index())
    logging.flush()
    os._exit(1)  # pylint: disable=protected-access
  if "stopped_at_step" in summary:
    if jax.process_index() == 0:
      print(f"stopped by SIGTERM after step {summary['stopped_at_step']} with a "
            "checkpoint; run the same command again to resume", flush=True)
    return
  if jax.process_index() == 0:
    print(summary["headline"], flush=True)


def run() -> None:
  """Console script `rstg-train`: the same command as `python -m rstg_jax.main`."""
  script = sys.modules["__main__"]
  if script is not sys.modules[__name__]:
    # absl's --help prints __main__'s docstring and the flags of the module named
    # sys.argv[0]; a console script has neither, so lend it this module's.
    script.__doc__ = script.__doc__ or __doc__
    for flag in flags.FLAGS.get_key_flags_for_module(__name__):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main, flags_parser=config_check.parse_flags)


if __name__ == "__main__":
  run()
