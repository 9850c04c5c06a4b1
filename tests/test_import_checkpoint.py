"""Import of the original checkpoints: names, layouts, head order, and numerical parity.

Checkpoints are written here in the original's format (tests/tf1_checkpoint_writer.py,
names from spec §11) and the imported model's logits are compared with an independent
forward pass over the same tensors (tests/tf_reference_forward.py: TF ops + NumPy).
The full-size models are marked `slow` (run with `-m slow`).
"""
from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from rstg_configs import common as configs_common
from rstg_jax.tools import import_checkpoint as ic
import tf1_checkpoint_writer as writer
import tf_reference_forward as ref

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMT_CONFIGS = ("smt_c2d", "smt_c2d_rstg_final", "smt_i3d", "smt_i3d_rstg_final",
               "smt_i3d_rstg_res3_res4", "smt_nonlocal", "smt_c2d_from_kinetics",
               "smt_i3d_from_kinetics")
TOLERANCE = 1e-4


def load(name: str, arg: str = ""):
  return configs_common.get_config(f"{name}:{arg}" if arg else name)


def syncmnist_config(width: int):
  """The paper's SyncMNIST model (serial, no norms), optionally narrower."""
  c = load("syncmnist_rstg")
  c.model.backbone.width = width
  c.model.graph.node_feat_dim = c.model.graph.message_dims = width
  return c


def original_for(config) -> writer.OriginalModel:
  """The original's structure of a config, from config values only."""
  if config.task == "sync_mnist":
    g = config.model.graph
    return writer.OriginalModel(
        backbone="simple", width=config.model.backbone.width,
        num_classes=config.model.num_classes,
        place_graph=("final",), graph_dim=g.node_feat_dim, use_att=g.use_att,
        scalewise=g.scalewise_update, use_norm=g.use_norm, pre_graph_bn=g.pre_graph_bn,
        use_pe=g.use_positional_emb)
  m = config.model
  split = lambda s: () if s == "none" else tuple(s.split("-"))
  backbone = "nonlocal" if m.place_nonlocal != "none" else m.backbone
  return writer.OriginalModel(
      backbone=backbone, stage_sizes=tuple(m.stage_sizes), width=m.width,
      num_classes=m.num_classes, place_graph=split(m.place_graph),
      place_nonlocal=split(m.place_nonlocal), graph_dim=m.graph.node_feat_dim,
      use_att=m.graph.use_att, scalewise=m.graph.scalewise_update,
      use_norm=m.graph.use_norm, final_norm=m.final_norm)


def make_checkpoint(tmp_path, config, *, seed=0, edit=None, extras=True):
  """Writes a TF1 checkpoint of `config`'s original model; returns (prefix, values)."""
  orig = original_for(config)
  values = writer.random_values(writer.model_variables(orig), seed)
  tensors = dict(values)
  if extras:
    tensors.update(writer.training_extras(orig, values))
  if edit:
    edit(tensors)
  prefix = writer.write_tf1_checkpoint(str(tmp_path / "src" / "model.ckpt-12345"),
                                       tensors)
  return prefix, values, tensors


def video_for(config, frames=8, size=64, batch=2, seed=1):
  rng = np.random.default_rng(seed)
  if config.task == "sync_mnist":
    return rng.uniform(0, 4, (batch, 10, 64, 64, 1)).astype(np.float32)
  return rng.normal(size=(batch, frames, size, size, 3)).astype(np.float32)


def reference_logits(config, values, video):
  orig = original_for(config)
  if orig.backbone == "simple":
    g = config.model.graph
    return ref.logits(orig, ref.Tensors(values), video, num_iter=g.num_process_iter,
                      image_dim=g.image_dim)
  g = config.model.graph
  return ref.logits(orig, ref.Tensors(values), video, num_iter=g.num_process_iter,
                    image_dim=g.image_dim, pool5=tuple(config.model.pool5_window))


def our_logits(config, variables, video):
  model = ic._build_model(config).model  # pylint: disable=protected-access
  return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, video), np.float64)


def rel_err(a, b):
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def check_parity(tmp_path, config, *, expect_counts=True):
  prefix, values, tensors = make_checkpoint(tmp_path, config)
  out = tmp_path / "out"
  result = ic.import_checkpoint(config, prefix, str(out), print_fn=None)
  variables, report = ic.load_imported(str(out))
  video = video_for(config)
  want = reference_logits(config, values, video)
  got = our_logits(config, variables, video)
  err = rel_err(got, want)
  counts = result.counts()
  print(f"PARITY {config_name(config)}: max rel err {err:.2e}; counts {counts}")
  assert err < TOLERANCE, err
  if expect_counts:
    opaque = sum(n.endswith("/opaque_kernel") for n in values)
    assert counts["source_tensors"] == len(tensors)
    assert counts["consumed"] == len(values) - opaque
    assert counts["skipped"] == len(tensors) - len(values) + opaque
    assert counts["initialised"] == 0
    assert report["counts"] == counts
  return result, variables, values


def config_name(config):
  return config.get("model", {}).get("place_graph", "") if not isinstance(
      config.get("model"), str) else "syncmnist"


# ------------------------------------------------------------------------ parity, tiny


# smt_{c2d,i3d}_from_kinetics:tiny build the same models as smt_{c2d,i3d}:tiny; they are run at
# full size (slow) and through the Caffe2 tests.
@pytest.mark.parametrize("name", [n for n in SMT_CONFIGS if not n.endswith("_from_kinetics")])
def test_tiny_config_parity(tmp_path, name):
  check_parity(tmp_path, load(name, "tiny"))


def test_syncmnist_parity_narrow(tmp_path):
  """The paper's SyncMNIST structure (simple attention, PE, BN, serial) at width 32."""
  check_parity(tmp_path, syncmnist_config(32))


# ------------------------------------------------------------------- parity, full size


@pytest.mark.slow
def test_full_size_i3d_rstg_final_parity(tmp_path):
  """The headline model at full size (27 M backbone + 10 M graph), 30-50 s."""
  check_parity(tmp_path, load("smt_i3d_rstg_final"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SMT_CONFIGS if n != "smt_i3d_rstg_final"])
def test_full_size_config_parity(tmp_path, name):
  check_parity(tmp_path, load(name))


@pytest.mark.slow
def test_syncmnist_parity_full_size(tmp_path):
  check_parity(tmp_path, syncmnist_config(512))


def test_full_size_variable_list_matches_spec_counts():
  """The spec-derived full-size variable lists have the spec's parameter counts (§11.8)."""
  count = lambda v, pred=lambda n: True: sum(int(np.prod(s)) for n, s in v.items()
                                             if pred(n))
  trainable = lambda n: not n.endswith(("moving_mean", "moving_variance", "opaque_kernel"))
  i3d = writer.OriginalModel()
  assert abs(count(writer.backbone_variables(i3d), trainable) / 1e6 - 27.22) < 0.01
  c2d = writer.OriginalModel(backbone="c2d")
  assert abs(count(writer.backbone_variables(c2d), trainable) / 1e6 - 23.51) < 0.01
  final = writer.graph_variables(writer.OriginalModel(place_graph=("final",)), "final")
  graph_only = lambda n: trainable(n) and "after_graph" not in n
  assert abs(count(final, graph_only) / 1e6 - 9.98) < 0.01
  assert count(final, lambda n: "after_graph" in n) == 4096


# ------------------------------------------------------------------ layouts, head, LSTM


def test_opaque_buffer_fallback_gives_the_same_parameters(tmp_path):
  config = load("smt_i3d_rstg_final", "tiny")
  prefix, values, _ = make_checkpoint(tmp_path, config)
  canonical = ic.import_checkpoint(config, prefix, None, print_fn=None).variables

  def drop_canonical(t):
    for name in [n for n in t if writer.LSTM_CELL in n]:
      del t[name]
  prefix2, _, _ = make_checkpoint(tmp_path / "b", config, edit=drop_canonical)
  result = ic.import_checkpoint(config, prefix2, None, print_fn=None)
  assert {r["layout"] for r in result.rows if "lstm" in r["layout"]} == {"lstm-opaque"}
  flat_a = ic._flat(canonical)  # pylint: disable=protected-access
  flat_b = ic._flat(result.variables)  # pylint: disable=protected-access
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_allclose(flat_b[k], flat_a[k], rtol=1e-6, atol=1e-6, err_msg=k)


def test_head_rows_reordered_to_label_ids(tmp_path):
  from rstg_datasets.smt_common import class_names, fake_tree
  config = load("smt_i3d", "tiny")
  ckpt_names = class_names.checkpoint_class_names()
  c = config.model.width * 32

  def mark_rows(t):
    name = "tower/resnet_i3d/pred/kernel"
    t[name] = np.broadcast_to(np.arange(174, dtype=np.float32), (1, 1, 1, c, 174)).copy()
    t["tower/resnet_i3d/pred/bias"] = np.arange(174, dtype=np.float32)
  prefix, _, _ = make_checkpoint(tmp_path, config, edit=mark_rows)
  labels = fake_tree.fake_class_names()
  labels_file = tmp_path / "labels.csv"
  labels_file.write_text("\n".join(labels) + "\n")
  result = ic.import_checkpoint(config, prefix, str(tmp_path / "out"),
                                class_names_path=str(labels_file), print_fn=None)
  bias = result.variables["params"]["pred"]["bias"]
  kernel = result.variables["params"]["pred"]["kernel"]
  for label_id, name in enumerate(labels):
    assert bias[label_id] == ckpt_names.index(name)
    assert np.all(kernel[:, label_id] == ckpt_names.index(name))
  _, report = ic.load_imported(str(tmp_path / "out"))
  assert report["class_names"] == list(labels)
  # Without target names the checkpoint order is kept and recorded.
  kept = ic.import_checkpoint(config, prefix, None, print_fn=None)
  assert kept.class_names == ckpt_names and "checkpoint" in kept.head_order
  np.testing.assert_array_equal(kept.variables["params"]["pred"]["bias"], np.arange(174))


def test_output_resumes_as_a_training_state(tmp_path):
  """DIR/checkpoints restores into the TrainState the training loop builds."""
  from rstg_jax.runtime import checkpointing
  from rstg_jax.train import loop
  config = load("smt_i3d_rstg_final", "tiny")
  prefix, _, _ = make_checkpoint(tmp_path, config)
  out = tmp_path / "out"
  ic.import_checkpoint(config, prefix, str(out), print_fn=None)
  built = ic._build_model(config)  # pylint: disable=protected-access
  init = loop.create_state_fn(built.model, ic._make_tx(config),  # pylint: disable=protected-access
                              (8, 64, 64, 3), jax.random.PRNGKey(0))
  ckpt = checkpointing.Checkpointer(str(out / "checkpoints"), best_metric=None,
                                    async_save=False)
  state, meta = ckpt.restore(jax.eval_shape(init))
  ckpt.close()
  assert int(state.step) == 0
  assert meta["source_format"] == "tf1" and meta["imported_from"].endswith("12345")
  # `--config.init_from=DIR` reads it: every tensor matches the config's model
  # (what mode=eval requires) and fine-tuning loads them all.
  from rstg_jax.train import init_from  # pylint: disable=g-import-not-at-top
  source, name = init_from.load(str(out))
  shapes = jax.eval_shape(init)
  init_from.check_exact(shapes.params, shapes.batch_stats, source, name)
  _, _, report = init_from.merge_for_fine_tuning(shapes.params, shapes.batch_stats,
                                                 source, name)
  assert not report.initialised and not report.reinitialised and not report.dropped


# ------------------------------------------------------------------------------ Caffe2


@pytest.mark.parametrize("name", ("smt_i3d_from_kinetics", "smt_c2d_from_kinetics"))
def test_caffe2_backbone_import(tmp_path, name):
  config = load(name, "tiny")
  orig = original_for(config)
  values = writer.random_values(writer.model_variables(
      writer.OriginalModel(**{**orig.__dict__, "num_classes": 400})), seed=3)
  blobs = writer.to_caffe2_blobs(values, orig.root)
  assert blobs["conv1_w"].shape[:2] == (config.model.width, 3)  # [out, in, kT, kH, kW]
  path = writer.write_caffe2_pickle(str(tmp_path / "k400.pkl"), blobs)
  result = ic.import_checkpoint(config, path, str(tmp_path / "out"), print_fn=None)
  assert result.initialised == ["params/pred/bias", "params/pred/kernel"]
  assert any("Kinetics head" in r for r in result.skipped.values())
  variables, report = ic.load_imported(str(tmp_path / "out"))
  assert report["source_format"] == "caffe2"
  model = ic._build_model(config).model  # pylint: disable=protected-access
  video = video_for(config)
  res5 = jax.jit(lambda v, x: model.backbone.apply(
      {"params": v["params"]["backbone"], "batch_stats": v["batch_stats"]["backbone"]},
      x, train=False)["res5"])(variables, video)
  want = ref.backbone(orig, ref.Tensors(values), video)
  err = rel_err(np.asarray(res5, np.float64), want)
  print(f"PARITY caffe2 {name}: res5 max rel err {err:.2e}")
  assert err < TOLERANCE


# ----------------------------------------------------------------- negative controls


def test_renamed_tensor_is_named_twice(tmp_path):
  config = load("smt_i3d_rstg_final", "tiny")
  old = "tower/resnet_i3d/backbone/res3_0_branch2b/kernel"

  def rename(t):
    t["tower/resnet_i3d/backbone/res3_0_branch2b_typo/kernel"] = t.pop(old)
  prefix, _, _ = make_checkpoint(tmp_path, config, edit=rename)
  out = tmp_path / "out"
  with pytest.raises(ic.CheckpointImportError) as e:
    ic.import_checkpoint(config, prefix, str(out), print_fn=None)
  msg = str(e.value)
  assert "res3_0_branch2b_typo/kernel" in msg and "not consumed" in msg
  assert "params/backbone/res3_0/branch2b/kernel" in msg and "not filled" in msg
  assert "2 problem(s)" in msg
  assert not out.exists()


def test_wrong_shape_is_named(tmp_path):
  config = load("smt_i3d_rstg_final", "tiny")
  name = "tower/resnet_i3d/whole_graph_model_final/send_messages_mlp/send_conv2/kernel"

  def reshape(t):
    t[name] = np.zeros((1, 1, 32, 16), np.float32)
  prefix, _, _ = make_checkpoint(tmp_path, config, edit=reshape)
  with pytest.raises(ic.CheckpointImportError, match="shape mismatch") as e:
    ic.import_checkpoint(config, prefix, None, print_fn=None)
  assert name in str(e.value) and "(1, 1, 32, 16)" in str(e.value)


def test_checkpoint_of_another_model_lists_everything(tmp_path):
  prefix, _, _ = make_checkpoint(tmp_path, load("smt_c2d_rstg_final", "tiny"))
  with pytest.raises(ic.CheckpointImportError) as e:
    ic.import_checkpoint(load("smt_i3d", "tiny"), prefix, None, print_fn=None)
  msg = str(e.value)
  assert "tower/resnet_c2d/whole_graph_model_final" in msg
  assert "params/backbone/conv1/kernel" in msg and "not filled" in msg


def test_backbone_into_rstg_needs_allow_missing(tmp_path):
  prefix, _, _ = make_checkpoint(tmp_path, load("smt_i3d_from_kinetics", "tiny"))
  target = load("smt_i3d_rstg_final", "tiny")
  with pytest.raises(ic.CheckpointImportError, match="graph_final"):
    ic.import_checkpoint(target, prefix, None, print_fn=None)
  result = ic.import_checkpoint(target, prefix, None, allow_missing=["graph"],
                                print_fn=None)
  assert result.initialised and all("graph_final" in k for k in result.initialised)
  scale = result.variables["params"]["graph_final"]["residual"]["after_graph_ln_scale"]
  assert not scale.any()  # the fresh graph branch starts at zero


def test_cli_reports_user_errors_without_traceback(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "rstg_jax.tools.import_checkpoint",
       f"--config={REPO}/configs/smt_i3d.py:tiny", f"--source={tmp_path}/nothing",
       f"--out={tmp_path}/out"], capture_output=True, text=True, cwd=REPO,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  assert "import_checkpoint: error: --source=" in proc.stderr
