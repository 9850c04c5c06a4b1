"""Joining a multi-process JAX job (`jax.distributed`) before JAX starts.

A training job on several hosts runs the same program once per process (one
per host, or one per GPU); `jax.distributed.initialize` connects the processes
so that `jax.devices()` lists the devices of all of them and one jitted step
runs over all. This module decides whether the current process is part of such
a job and, if so, initialises it. A plain single-process run calls nothing.

How the job is found (`--distributed=auto`, the default), first match wins:
  1. explicit settings: `--coordinator_address`, `--num_processes`,
     `--process_id` (or the environment variables JAX_COORDINATOR_ADDRESS,
     JAX_NUM_PROCESSES, JAX_PROCESS_ID, which `experiments/launch/local_cpu.sh`
     sets); initialised when the process count is above 1;
  2. SLURM: inside an `srun` step with SLURM_NTASKS > 1 (JAX reads the node
     list, task count and rank itself; one GPU per task by default, see
     `--local_device_ids`);
  3. Open MPI: `mpirun` with OMPI_COMM_WORLD_SIZE > 1;
  4. Cloud TPU VM: JAX's TPU start-up found TPU chips (it then reads the
     workers from the TPU metadata; one process per host).
`--distributed=on` always initialises (JAX auto-detects whatever is not given)
and `--distributed=off` never does.

JAX's own cluster detection fills in the coordinator, process count and rank
under SLURM, Open MPI and Cloud TPU once `jax.distributed.initialize()` runs;
what it has no public answer for is whether to call it at all (a one-task SLURM
step or a single TPU host is not a job to join), and that is all this module
decides.

On CPU the processes exchange data through gloo collectives
(`jax_cpu_collectives_implementation`); set here before initialisation so
that several CPU processes on one machine form a real multi-process job, as
the tests do.

Call `initialize_from_flags()` (or `initialize(...)`) before any JAX
computation, `jax.devices()` included: JAX refuses to join a job after its
backends started.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

from absl import flags
from absl import logging

MODES = ("auto", "on", "off")

_MODE = flags.DEFINE_enum(
    "distributed", "auto", MODES,
    "Multi-process (multi-host) JAX: 'auto' joins a job found from the flags "
    "below, JAX_* environment variables, SLURM, Open MPI or a Cloud TPU VM; "
    "'on' always calls jax.distributed.initialize(); 'off' never does.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "host:port of process 0's coordinator service, reachable from every "
    "process (env JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Number of processes in the job (env JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's rank, 0..num_processes-1 (env JAX_PROCESS_ID).")
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
    "local_device_ids", None,
    "Accelerators this process drives, e.g. 0,1,2,3 (env JAX_LOCAL_DEVICE_IDS). "
    "Default: all; under SLURM / Open MPI JAX's default is one GPU per task "
    "(the task's local rank), so pass all ids when running one task per node.")
_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout_s", 300,
    "Seconds to wait for every process to join the job before failing.")

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "JAX_LOCAL_DEVICE_IDS"

# What jax's own SLURM detection (jax/_src/clusters/slurm_cluster.py) needs.
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS",
               "SLURM_PROCID", "SLURM_LOCALID")


@dataclasses.dataclass(frozen=True)
class JobSpec:
  """How to join (or not) a multi-process job.

  `source` is None for a single-process run, else 'explicit', 'slurm',
  'ompi', 'tpu' or 'forced'; fields left None are auto-detected by JAX.
  """
  source: str | None
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: tuple[int, ...] | None = None


def _env_int(env: Mapping[str, str], name: str) -> int | None:
  value = env.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r} is not an integer"
                     ) from None


def _parse_ids(ids: Sequence[str] | str | None, what: str) -> tuple[int, ...] | None:
  if ids is None or ids == "" or ids == []:
    return None
  if isinstance(ids, str):
    ids = ids.split(",")
  try:
    return tuple(int(i) for i in ids)
  except ValueError:
    raise ValueError(f"{what}={','.join(ids)!r}: expected comma-separated "
                     "integers, e.g. 0,1,2,3") from None


def _running_in_cloud_tpu_vm() -> bool:
  # Set by JAX's own TPU start-up at `import jax` when libtpu finds TPU chips;
  # a private attribute, hence the guarded lookup.
  try:
    from jax._src import cloud_tpu_init  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))


def detect_job(*, mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               local_device_ids: Sequence[int] | str | None = None,
               env: Mapping[str, str] | None = None,
               on_tpu_vm: bool | None = None) -> JobSpec:
  """Decides whether (and how) this process joins a multi-process job.

  Args:
    mode: 'auto', 'on' or 'off' (see the module docstring).
    coordinator_address, num_processes, process_id, local_device_ids: explicit
      settings (flags); None falls back to the JAX_* environment variables.
    env: the environment (default os.environ); a parameter for tests.
    on_tpu_vm: whether this is a Cloud TPU VM (default: ask JAX).

  Returns:
    A JobSpec; `source` None means a single-process run.

  Raises:
    ValueError: inconsistent or malformed settings, naming the flag or
      variable at fault.
  """
  if mode not in MODES:
    raise ValueError(f"--distributed={mode!r}: must be one of {MODES}")
  env = os.environ if env is None else env
  address = coordinator_address or env.get(ENV_COORDINATOR) or None
  count = num_processes if num_processes is not None else _env_int(
      env, ENV_NUM_PROCESSES)
  rank = process_id if process_id is not None else _env_int(env, ENV_PROCESS_ID)
  ids = _parse_ids(local_device_ids, "--local_device_ids")
  if ids is None:
    ids = _parse_ids(env.get(ENV_LOCAL_DEVICE_IDS), ENV_LOCAL_DEVICE_IDS)
  given = dict(coordinator_address=address, num_processes=count,
               process_id=rank, local_device_ids=ids)
  if mode == "off":
    return JobSpec(None)
  if count is not None and count < 1:
    raise ValueError(f"--num_processes / {ENV_NUM_PROCESSES}={count} must be >= 1")
  if rank is not None and count is not None and not 0 <= rank < count:
    raise ValueError(f"--process_id / {ENV_PROCESS_ID}={rank} must be in "
                     f"[0, {count}) for {count} processes")
  if mode == "on":
    return JobSpec("forced", **given)

  cluster = _cluster_env(env, on_tpu_vm)
  explicit = [n for n, v in (("--coordinator_address", address),
                             ("--num_processes", count),
                             ("--process_id", rank)) if v is not None]
  if count == 1:
    return JobSpec(None)
  if explicit:
    missing = sorted({"--coordinator_address", "--num_processes",
                      "--process_id"} - set(explicit))
    if missing and cluster is None:   # nothing for JAX to fill them in from
      raise ValueError(
          f"multi-process settings are incomplete: {', '.join(explicit)} given "
          f"but {', '.join(missing)} missing (flags, or the environment "
          f"variables {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID})")
    return JobSpec("explicit", **given)
  if cluster is not None:
    return JobSpec(cluster, **given)
  return JobSpec(None)


def _cluster_env(env: Mapping[str, str], on_tpu_vm: bool | None) -> str | None:
  """The multi-process launcher JAX can read settings from, if any."""
  if all(v in env for v in _SLURM_VARS) and (_env_int(env, "SLURM_NTASKS") or 1) > 1:
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in env and (
      _env_int(env, "OMPI_COMM_WORLD_SIZE") or 1) > 1:
    return "ompi"
  if _running_in_cloud_tpu_vm() if on_tpu_vm is None else on_tpu_vm:
    return "tpu"
  return None


def _use_cpu_collectives() -> None:
  """Cross-process collectives for the CPU backend (gloo), unless chosen."""
  import jax  # pylint: disable=g-import-not-at-top
  if os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
    return  # the user's choice (e.g. 'mpi'), read by jax at import
  try:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except (AttributeError, KeyError) as e:  # option renamed in a future jax
    logging.warning("could not select gloo CPU collectives: %s", e)


def initialize(spec: JobSpec, *, timeout_s: int = 300) -> bool:
  """Joins the job described by `spec`; returns whether it did.

  Safe to call twice (the second call does nothing) and a no-op for a
  single-process spec.

  Raises:
    RuntimeError: JAX's backends already started in this process.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if spec.source is None:
    return False
  if jax.distributed.is_initialized():
    logging.info("jax.distributed is already initialised")
    return True
  _use_cpu_collectives()
  # SIGTERM belongs to rstg_jax.runtime.preemption (see why there); JAX's
  # pre-emption service would install its own C++ handler over it.
  jax.config.update("jax_enable_preemption_service", False)
  logging.info("Joining a multi-process JAX job (%s): coordinator %s, %s "
               "processes, process id %s, local devices %s", spec.source,
               spec.coordinator_address or "auto", spec.num_processes or "auto",
               "auto" if spec.process_id is None else spec.process_id,
               spec.local_device_ids or "default")
  try:
    jax.distributed.initialize(
        coordinator_address=spec.coordinator_address,
        num_processes=spec.num_processes,
        process_id=spec.process_id,
        local_device_ids=(list(spec.local_device_ids)
                          if spec.local_device_ids else None),
        initialization_timeout=timeout_s)
  except RuntimeError as e:
    if "must be called before" in str(e):
      raise RuntimeError(
          "jax.distributed must be initialised before any JAX computation or "
          "jax.devices() call: call rstg_jax.runtime.distributed.initialize_from_flags() "
          "first thing in main") from e
    raise
  logging.info("Process %d of %d; %d local and %d global devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return True


def initialize_from_flags() -> bool:
  """`initialize(detect_job(...))` from the absl flags (parsed by app.run)."""
  spec = detect_job(mode=_MODE.value,
                    coordinator_address=_COORDINATOR.value,
                    num_processes=_NUM_PROCESSES.value,
                    process_id=_PROCESS_ID.value,
                    local_device_ids=_LOCAL_DEVICE_IDS.value)
  return initialize(spec, timeout_s=_TIMEOUT.value)
