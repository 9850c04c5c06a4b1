"""experiments/bench_vs_pytorch.py on a stand-in DyReg-GNN checkout (torch only if installed).

The authors' code is not vendored, so the stand-in has the same import-time behaviour
(modules that parse sys.argv, N fixed at 9) and a small RSTG-like module; what is checked
is the loader (argv, N = 14 norms) and the FLOP count (torch's counter misses the LSTM).
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

import subprocess_env

EXPERIMENTS = os.path.join(os.path.dirname(__file__), "..", "experiments")
SCRIPT = os.path.join(EXPERIMENTS, "bench_vs_pytorch.py")

OPTS = """
import argparse
parser = argparse.ArgumentParser()
parser.add_argument('--rnn_type', default='LSTM')
def parse_args():
    return parser.parse_args()
"""
MODELS_UTILS = """
import torch
from torch import nn
from opts import parser, parse_args
args = parse_args()   # fails on any argument it does not know, as the authors' code
recurrent_net = torch.nn.LSTM
class LayerNormAffineXC(nn.Module):
    def __init__(self, num_ch, norm_shape):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_ch))
        self.norm = nn.LayerNorm(norm_shape, elementwise_affine=False)
    def forward(self, x):
        return self.norm(x) * self.scale
"""
RSTG = """
import torch
from torch import nn
from ops.models_utils import *
class RSTG(nn.Module):
    def __init__(self, params, backbone_dim=1024, node_dim=512, project_i3d=True):
        super().__init__()
        self.num_nodes, self.node_dim = 9, node_dim
        self.norm_dict = nn.ModuleDict({})
        self.norm_dict['send_message_norm'] = LayerNormAffineXC(node_dim, (9, 9, node_dim))
        self.norm_dict['update_norm'] = LayerNormAffineXC(node_dim, (9, node_dim))
        self.norm_dict['before_graph_norm'] = LayerNormAffineXC(node_dim, (9, node_dim))
        self.lstm = recurrent_net(batch_first=True, input_size=node_dim, hidden_size=node_dim)
        self.send = nn.Linear(2 * node_dim, node_dim)
    def forward(self, x):                      # [B, T, C, N]
        b, t, c, n = x.shape
        nodes = x.permute(0, 3, 1, 2)          # [B, N, T, C]
        nodes = self.norm_dict['before_graph_norm'](nodes.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        h, _ = self.lstm(nodes.reshape(b * n, t, c))
        pairs = torch.cat([h.reshape(b, n, 1, t, c).expand(b, n, n, t, c),
                           h.reshape(b, 1, n, t, c).expand(b, n, n, t, c)], -1)
        msg = self.norm_dict['send_message_norm'](self.send(pairs).permute(0, 3, 1, 2, 4))
        return msg.mean(2).permute(0, 1, 3, 2)  # [B, T, C, N]
"""


@pytest.fixture
def checkout(tmp_path):
  (tmp_path / "ops").mkdir()
  (tmp_path / "opts.py").write_text(textwrap.dedent(OPTS))
  (tmp_path / "ops" / "models_utils.py").write_text(textwrap.dedent(MODELS_UTILS))
  (tmp_path / "ops" / "rstg.py").write_text(textwrap.dedent(RSTG))
  return tmp_path


def test_missing_checkout_is_one_line_error(tmp_path):
  run = subprocess.run([sys.executable, SCRIPT, f"--dyreg_gnn={tmp_path}"],
                       capture_output=True, text=True, env=subprocess_env.without(()),
                       timeout=300, check=False)
  assert run.returncode != 0
  assert run.stderr.strip().splitlines() == [
      f"--dyreg_gnn={tmp_path}: no ops/rstg.py there (clone "
      "https://github.com/bit-ml/DyReg-GNN)"]


DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
checkout = sys.argv[2]
sys.argv = ["driver", "--an-option-their-parser-does-not-know"]
import bench_vs_pytorch
n, d, b, t = 14, 8, 2, 3
model = bench_vs_pytorch.authors_rstg(checkout, n, d)
step = bench_vs_pytorch.torch_step(model, b, t, n, d)
print(json.dumps({"argv": sys.argv[1:], "loss": step(),
                  "norm": list(model.norm_dict["send_message_norm"].norm.normalized_shape),
                  "gflop": bench_vs_pytorch.torch_gflop(model, step)}))
"""


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_loader_and_flop_count_on_a_stand_in(checkout):
  # In a subprocess: torch and XLA:CPU in one process crash the test worker.
  run = subprocess.run([sys.executable, "-c", DRIVER, EXPERIMENTS, str(checkout)],
                       capture_output=True, text=True, env=subprocess_env.without(()),
                       timeout=300, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  got = json.loads(run.stdout.strip().splitlines()[-1])
  n, d, b, t = 14, 8, 2, 3
  assert got["argv"] == ["--an-option-their-parser-does-not-know"]  # restored
  assert got["norm"] == [n, n, d] and math.isfinite(got["loss"])
  # Linear on the pairs: 2 R K M forward and twice that backward (input and weight
  # gradients); the LSTM: 2 R T (D_in + H) 4H forward, twice that backward.
  pairs = b * n * n * t
  want = 3 * 2 * pairs * 2 * d * d + 3 * 2 * (b * n) * t * 2 * d * 4 * d
  assert got["gflop"] * 1e9 == pytest.approx(want, rel=1e-6)
