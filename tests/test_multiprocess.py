"""Multi-process training on one machine: two JAX processes with two CPU
devices each (gloo collectives), launched by experiments/launch/local_cpu.sh,
against a single-process four-device run on the same global batches.

One two-process job is pre-empted (SIGTERM to the launcher, forwarded to both
processes as SLURM does) and relaunched; the runs are shared by the tests
below through module fixtures, so the file costs two job launches.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from rstg_configs import common as configs_common
from rstg_jax.data import sliced_input, sync_mnist_input
from rstg_jax.runtime import checkpointing, distributed, parallel
from rstg_jax.runtime import preemption
from rstg_jax.train import loop
import subprocess_env

_REPO = pathlib.Path(__file__).resolve().parents[1]
_LAUNCHER = _REPO / "experiments" / "launch" / "local_cpu.sh"
_WORKER = _REPO / "tests" / "multiprocess_worker.py"
NUM_TRAIN, NUM_TEST = 48, 20
STEPS, SIGTERM_AT = 8, 3
_JOB_TIMEOUT_S = 180

# The micro variant of configs/syncmnist_mean_baseline.py:tiny shared by every
# run here: given to the single-process run as attributes and to the
# two-process job as --config.x=y flags.
_CONFIG_FILE = "configs/syncmnist_mean_baseline.py:tiny"
_OVERRIDES = {
    "model.backbone.width": 8,
    "data.config": "digits3_tiny",
    "data.num_train": NUM_TRAIN,
    "data.num_test": NUM_TEST,
    "data.num_slices": 2,          # the same global batches on 1 or 2 processes
    "batch_size": 8,               # 6 steps per epoch: crosses an epoch boundary
    "eval_batch_size": 8,          # 10 test videos per process: a padded batch
    "num_train_steps": STEPS,
    "optimizer.warmup_steps": 2,
    "log_every_steps": 2,
    "eval_every_steps": 4,
    "checkpoint.every_steps": 2,
    "checkpoint.keep": 2,
}


def _config(data_dir):
  config = configs_common.get_config(_REPO / _CONFIG_FILE)
  for key, value in {**_OVERRIDES, "data.data_dir": str(data_dir)}.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def _flags(data_dir, workdir) -> list[str]:
  return ([f"--config={_CONFIG_FILE}", f"--workdir={workdir}",
           f"--config.data.data_dir={data_dir}"]
          + [f"--config.{k}={v}" for k, v in _OVERRIDES.items()])


def _hash(video: np.ndarray) -> str:   # as in multiprocess_worker.py
  return hashlib.sha1(np.ascontiguousarray(video).tobytes()).hexdigest()[:16]


def _launch(data_dir, workdir, out_dir, **env_extra) -> subprocess.CompletedProcess:
  """local_cpu.sh -n 2 -k 2 running the instrumented main; always cleaned up."""
  env = subprocess_env.without(("JAX_", "SLURM_", "OMPI_"), TF_CPP_MIN_LOG_LEVEL="2",
                               CUDA_VISIBLE_DEVICES="", RSTG_TEST_OUT=str(out_dir),
                               **env_extra)
  cmd = ["bash", str(_LAUNCHER), "-n", "2", "-k", "2", "-g", "20",
         "-t", str(_JOB_TIMEOUT_S - 40), "-p", f"{sys.executable} {_WORKER}",
         "--", *_flags(data_dir, workdir)]
  # A session of its own, so that everything it started can be killed at once.
  proc = subprocess.Popen(cmd, cwd=_REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
  try:
    out, _ = proc.communicate(timeout=_JOB_TIMEOUT_S)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    pytest.fail(f"the job did not end within {_JOB_TIMEOUT_S} s:\n{out[-6000:]}")
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait(timeout=30)
  return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _lines(log: str, process: int) -> list[str]:
  return [l for l in log.splitlines() if l.startswith(f"[p{process}] ")]


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("sync_mnist")
  builder = sync_mnist_input.load_builder(_config(data_dir).data)
  return data_dir, builder


@pytest.fixture(scope="module")
def reference(micro_data, tmp_path_factory):
  """An uninterrupted single-process run on four devices."""
  data_dir, builder = micro_data
  workdir = tmp_path_factory.mktemp("reference")
  mesh = parallel.make_mesh(jax.devices()[:4])
  summary = loop.train_and_evaluate(_config(data_dir), str(workdir), mesh=mesh)
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"))
  params = ckpt.restore_arrays(STEPS)["params"]
  ckpt.close()
  return summary, params


@pytest.fixture(scope="module")
def preempted(micro_data, tmp_path_factory):
  """A two-process job that receives SIGTERM while loading step SIGTERM_AT."""
  data_dir, _ = micro_data
  workdir = tmp_path_factory.mktemp("job")
  out = tmp_path_factory.mktemp("preempted_out")
  run = _launch(data_dir, workdir, out, RSTG_TEST_SIGTERM_AT_STEP=str(SIGTERM_AT))
  return run, workdir


@pytest.fixture(scope="module")
def resumed(micro_data, preempted, tmp_path_factory):
  """The same command relaunched in the same workdir."""
  data_dir, _ = micro_data
  _, workdir = preempted
  out = tmp_path_factory.mktemp("resumed_out")
  run = _launch(data_dir, workdir, out)
  records = []
  for i in range(2):
    with open(out / f"process_{i}.json") as f:
      records.append(json.load(f))
  params = [dict(np.load(out / f"process_{i}.npz")) for i in range(2)]
  return run, workdir, records, params


def _stop_step(log: str, process: int) -> int:
  import re  # pylint: disable=g-import-not-at-top
  found = [int(m.group(1)) for l in _lines(log, process)
           if (m := re.search(r"Stopped after step (\d+) with a checkpoint", l))]
  assert len(found) == 1, f"process {process} did not stop once:\n{log[-3000:]}"
  return found[0]


def test_sigterm_stops_both_processes_at_one_checkpointed_step(preempted):
  run, workdir = preempted
  assert run.returncode == 0, run.stdout[-4000:]
  assert "forwarding SIGTERM to 2 processes" in run.stdout
  step = _stop_step(run.stdout, 0)
  assert _stop_step(run.stdout, 1) == step
  assert SIGTERM_AT <= step < STEPS, "the signal must stop the job mid-training"
  ckpt = checkpointing.Checkpointer(str(workdir / "checkpoints"))
  assert ckpt.latest_step() == step
  ckpt.close()
  assert not (workdir / "summary.json").exists()
  assert f"stopped by SIGTERM after step {step}" in "\n".join(_lines(run.stdout, 0))
  assert "stopped by SIGTERM" not in "\n".join(_lines(run.stdout, 1))


def test_relaunched_job_ends_like_an_uninterrupted_single_process_run(
    preempted, resumed, reference):
  run, workdir, _, _ = resumed
  assert run.returncode == 0, run.stdout[-4000:]
  step = _stop_step(preempted[0].stdout, 0)
  assert f"Resuming from step {step}" in run.stdout
  with open(workdir / "summary.json") as f:
    summary = json.load(f)                       # written by process 0 only
  expected, _ = reference
  assert summary["steps"] == expected["steps"] == STEPS
  assert summary["test_num_examples"] == NUM_TEST
  # Counts are exact; losses differ only by the order of float summation.
  assert summary["test_top1"] == expected["test_top1"]
  assert summary["test_top5"] == expected["test_top5"]
  np.testing.assert_allclose(summary["test_loss"], expected["test_loss"], rtol=1e-5)
  assert [h["step"] for h in summary["eval_history"]] == [4, 8]
  for got, want in zip(summary["eval_history"], expected["eval_history"]):
    assert got["top1"] == want["top1"]
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
  # Only process 0 writes logs and summaries; process 1 repeats none of its metric
  # or progress lines.
  p0, p1 = ("\n".join(_lines(run.stdout, p)) for p in (0, 1))
  assert "test top-1" in p0 and "train_loss=" in p0
  assert "test top-1" not in p1 and "train_loss=" not in p1
  assert "work unit notes" not in p1
  # Known noise is filtered (rstg_jax.log_filters).
  assert "Unable to initialize backend 'tpu'" not in run.stdout
  assert "FeatureConnector.dtype" not in run.stdout
  assert list(workdir.glob("events.out.tfevents*"))


def test_both_processes_hold_identical_parameters(resumed, reference):
  _, _, records, params = resumed
  assert [r["process_count"] for r in records] == [2, 2]
  assert [r["local_devices"] for r in records] == [2, 2]
  p0, p1 = params
  assert sorted(p0) == sorted(p1) and len(p0) > 0
  for name in p0:
    np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
  # Every local device holds the same copy, and it is the single-process result.
  _, want = reference
  want_flat = {jax.tree_util.keystr(path): leaf for path, leaf
               in jax.tree_util.tree_flatten_with_path(want)[0]}
  assert {n.split("/", 1)[1] for n in p0} == set(want_flat)
  for name, value in p0.items():
    dev, leaf = name.split("/", 1)
    np.testing.assert_array_equal(value, p0[f"dev0/{leaf}"], err_msg=name)
    np.testing.assert_allclose(value, want_flat[leaf], rtol=1e-4, atol=1e-6,
                               err_msg=name)


def test_processes_read_disjoint_data_and_evaluation_counts_every_video_once(
    resumed, micro_data):
  _, _, records, _ = resumed
  _, builder = micro_data
  train0, train1 = records[0]["train"], records[1]["train"]
  assert len(train0) == len(train1) > 0
  for step_videos0, step_videos1 in zip(train0, train1):
    assert len(step_videos0) == len(step_videos1) == 4     # 8 rows / 2 processes
    assert not set(step_videos0) & set(step_videos1)
  eval0, eval1 = records[0]["eval"], records[1]["eval"]
  test_videos = [_hash(ex["video"]) for ex in
                 builder.as_dataset(split="test").as_numpy_iterator()]
  assert len(set(test_videos)) == NUM_TEST
  # The resumed job evaluated at step 8 (and at 4 if it resumed before 4);
  # each evaluation counted every test video exactly once over both processes.
  evaluations = len(eval0) // (NUM_TEST // 2)
  assert evaluations >= 1
  assert len(eval0) == len(eval1) == evaluations * NUM_TEST // 2
  per_eval = NUM_TEST // 2
  for e in range(evaluations):
    a = eval0[e * per_eval:(e + 1) * per_eval]
    b = eval1[e * per_eval:(e + 1) * per_eval]
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(test_videos)


def test_sliced_batches_do_not_depend_on_the_process_count(micro_data):
  _, builder = micro_data

  def make(slice_index, num_slices, batch_size, seed):
    return sync_mnist_input.TrainInput(
        builder, split="train", batch_size=batch_size, seed=seed, cache=True,
        process_index=slice_index, process_count=num_slices)

  def batches(process_index, process_count, start=0, n=8):
    it = sliced_input.SlicedTrainInput(
        make, global_batch=8, num_slices=2, seed=3, process_index=process_index,
        process_count=process_count).iterate(start)
    return [next(it) for _ in range(n)]

  single = batches(0, 1)
  first, second = batches(0, 2), batches(1, 2)
  for s, (a, b) in enumerate(zip(first, second)):
    np.testing.assert_array_equal(np.concatenate([a["video"], b["video"]]),
                                  single[s]["video"])
    assert not {_hash(v) for v in a["video"]} & {_hash(v) for v in b["video"]}
  resumed_single = batches(0, 1, start=5, n=3)     # across the epoch boundary
  for s, b in enumerate(resumed_single):
    np.testing.assert_array_equal(b["label"], single[5 + s]["label"])
  with pytest.raises(ValueError, match=r"config.data.num_slices=3 must be a "
                                       r"multiple of the number of processes \(2\)"):
    sliced_input.SlicedTrainInput(make, global_batch=6, num_slices=3, seed=0,
                                  process_index=0, process_count=2)


def test_single_process_sigterm_saves_and_resumes_exactly(micro_data, reference,
                                                          tmp_path, monkeypatch):
  data_dir, builder = micro_data
  mesh = parallel.make_mesh(jax.devices()[:4])
  calls = []

  def host_to_global(batch, mesh_):
    if "mask" not in batch:
      calls.append(1)
      if len(calls) == SIGTERM_AT:
        os.kill(os.getpid(), signal.SIGTERM)   # handled: a flag, then a save
    return original(batch, mesh_)

  original = parallel.host_to_global
  monkeypatch.setattr(parallel, "host_to_global", host_to_global)
  config = _config(data_dir)
  with preemption.PreemptionWatcher() as watcher:       # as rstg_jax.main does
    stopped = loop.train_and_evaluate(config, str(tmp_path),
                                      mesh=mesh, stop_requested=watcher.reached)
  assert stopped == {"stopped_at_step": SIGTERM_AT}
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "handler restored"
  monkeypatch.setattr(parallel, "host_to_global", original)
  summary = loop.train_and_evaluate(config, str(tmp_path), mesh=mesh)
  expected, _ = reference
  for key in ("steps", "test_top1", "test_top5", "test_loss", "eval_history"):
    assert summary[key] == expected[key], key


@pytest.mark.parametrize("mode, expected", [
    ("local", [True, True]),
    ("collective", [False, True]),     # acts on the previous step's all-reduce
])
def test_preemption_watcher_in_one_process(mode, expected):
  with preemption.PreemptionWatcher(mode) as watcher:
    assert not watcher.reached(1)
    watcher.request()                       # a real SIGTERM to this process
    assert watcher.received
    assert [watcher.reached(2), watcher.reached(3)] == expected
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


_SLURM = dict(SLURM_JOB_ID="77", SLURM_STEP_NODELIST="gpu[03-04]", SLURM_NTASKS="16",
              SLURM_PROCID="9", SLURM_LOCALID="1")


@pytest.mark.parametrize("kwargs, env, source", [
    ({}, {}, None),                                              # a laptop
    ({}, {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2",
          "JAX_PROCESS_ID": "1"}, "explicit"),                   # local_cpu.sh
    ({"coordinator_address": "h:1", "num_processes": 4, "process_id": 3}, {},
     "explicit"),                                                # flags
    ({}, _SLURM, "slurm"),                                       # srun, 16 tasks
    ({}, dict(_SLURM, SLURM_NTASKS="1"), None),                  # srun, 1 task
    ({"mode": "off"}, _SLURM, None),
    ({}, {"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "4"}, "ompi"),
    ({"on_tpu_vm": True}, {}, "tpu"),
    ({"mode": "on"}, {}, "forced"),
    ({"num_processes": 1}, _SLURM, None),
])
def test_detect_job(kwargs, env, source):
  kwargs = {"on_tpu_vm": False, **kwargs}
  assert distributed.detect_job(env=env, **kwargs).source == source


@pytest.mark.parametrize("kwargs, env, message", [
    ({"num_processes": 2}, {}, "--num_processes given but --coordinator_address, "
                               "--process_id missing"),
    ({}, {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2",
          "JAX_COORDINATOR_ADDRESS": "h:1"}, r"JAX_PROCESS_ID=2 must be in \[0, 2\)"),
    ({}, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not an integer"),
    ({"local_device_ids": "0,x"}, {}, "--local_device_ids='0,x'"),
])
def test_detect_job_rejects_bad_settings(kwargs, env, message):
  with pytest.raises(ValueError, match=message):
    distributed.detect_job(env=env, on_tpu_vm=False, **kwargs)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


_JOIN = """
import jax
from rstg_jax.runtime import distributed
assert distributed.initialize(distributed.detect_job(on_tpu_vm=False), timeout_s=60)
x = jax.experimental.multihost_utils.process_allgather(jax.numpy.int32(jax.process_index()))
print("joined", jax.process_index(), jax.process_count(), jax.device_count(), x.tolist())
"""


def test_processes_under_slurm_join_one_job_without_flags():
  # What `srun --ntasks=2 python -m rstg_jax.main ...` gives each task; JAX
  # derives the coordinator from the node list and the job id (the port from
  # JAX_COORDINATOR_PORT here, to use a free one).
  port = _free_port()
  procs = []
  try:
    for rank in range(2):
      env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
      env.update(SLURM_JOB_ID="4242", SLURM_STEP_NODELIST="localhost",
                 SLURM_NTASKS="2", SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
                 JAX_COORDINATOR_PORT=str(port), JAX_PLATFORMS="cpu",
                 XLA_FLAGS="--xla_force_host_platform_device_count=1")
      procs.append(subprocess.Popen(
          [sys.executable, "-c", "import jax.experimental.multihost_utils\n" + _JOIN],
          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
          start_new_session=True))
    outs = [p.communicate(timeout=90)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
  for rank, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, out[-3000:]
    assert f"joined {rank} 2 2 [0, 1]" in out, out[-3000:]
