"""Our graph against the authors' PyTorch RSTG (bit-ml/DyReg-GNN, `ops/rstg.py`) on a CPU.

  git clone https://github.com/bit-ml/DyReg-GNN /tmp/DyReg-GNN   # not vendored here
  pip install torch                                             # CPU build is enough
  python experiments/bench_vs_pytorch.py --dyreg_gnn=/tmp/DyReg-GNN
  python experiments/bench_vs_pytorch.py --dyreg_gnn=/tmp/DyReg-GNN --shape=small --threads=2

Both graphs run forward + backward (gradients w.r.t. parameters and input nodes) on
random node features at the paper shape (B=8, T=16, N=14, D=512) and the small one (B=2,
T=8), alternating one step of each per round so that both see the same load; the
speed-up is the median of per-round time ratios, printed against issue 16's target (3x).
Each side's FLOPs per step (ours: XLA's cost analysis; theirs: torch's FlopCounterMode
plus the LSTMs it does not see) and achieved GFLOP/s show where the speed-up comes from:
fewer FLOPs (our first message layer runs per node, not per pair) or a faster rate.

What runs on each side:
- ours: `RSTGGraph` with the default `GraphConfig` (the Something-Something graph: dot
  attention, scalewise update, LayerNorm, K = 3), each scan form;
- the authors': their `RSTG` module as published (send/update MLPs of 2 layers on
  concatenated pairs, dot attention, LayerNorm, K = 3, cuDNN-style LSTMs), built with
  their own defaults and N = 14 nodes (their file fixes N = 9: the three norms are rebuilt
  for 14 with their own `LayerNormAffineXC`). Their code parses the command line when
  imported, so it is imported with an empty argv. torch uses --threads threads (JAX
  uses every core of the machine; pin both with taskset to compare per core).
The two graphs are the same algorithm but not the same arithmetic (e.g. their message
LayerNorm spans all pairs of a frame, ours each message as the original TF code), so
only the times are compared.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
import types

import jax

from bench_graph import SHAPES, prepared_step, seconds_of
from rstg_jax.models.graph.graph_config import GraphConfig

TARGET_SPEEDUP = 3.0  # issue 16, at both shapes


def authors_rstg(checkout: str, nodes: int, dim: int):
  """The authors' RSTG module from a DyReg-GNN checkout, for N = `nodes`, D = `dim`."""
  argv, sys.argv = sys.argv, sys.argv[:1]  # their modules parse sys.argv on import
  sys.path.insert(0, checkout)
  try:
    from ops import models_utils  # pylint: disable=import-outside-toplevel
    from ops import rstg  # pylint: disable=import-outside-toplevel
  finally:
    sys.argv = argv
  params = types.SimpleNamespace(send_layers=2, update_layers=2, combine_by_sum=False,
                                 aggregation_type="dot")
  model = rstg.RSTG(params, backbone_dim=dim, node_dim=dim, project_i3d=False)
  model.num_nodes = nodes
  norm = models_utils.LayerNormAffineXC
  model.norm_dict["send_message_norm"] = norm(dim, (nodes, nodes, dim))
  model.norm_dict["update_norm"] = norm(dim, (nodes, dim))
  model.norm_dict["before_graph_norm"] = norm(dim, (nodes, dim))
  return model


def torch_step(model, batch: int, frames: int, nodes: int, dim: int):
  import torch  # pylint: disable=import-outside-toplevel
  x = torch.randn(batch, frames, dim, nodes, requires_grad=True)  # their [B, T, C, N]

  def step():
    model.zero_grad(set_to_none=True)
    x.grad = None
    loss = model(x).square().mean()
    loss.backward()
    return loss.item()
  return step


def torch_gflop(model, step) -> float:
  """GFLOP of one forward + backward of the authors' module.

  torch's FlopCounterMode counts the matmuls but not the fused CPU LSTM, so each LSTM
  call (input [R, T, D_in], H units) adds 2 R T (D_in + H) 4H forward, twice that
  backward.
  """
  from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  lstm = []

  def hook(module, inputs, _):
    r, t, d_in = inputs[0].shape
    lstm.append(3 * 2 * r * t * (d_in + module.hidden_size) * 4 * module.hidden_size)
  hooks = [m.register_forward_hook(hook) for m in model.modules()
           if isinstance(m, torch.nn.LSTM)]
  try:
    with FlopCounterMode(display=False) as counter:
      step()
  finally:
    for h in hooks:
      h.remove()
  return (counter.get_total_flops() + sum(lstm)) / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dyreg_gnn", required=True,
                      help="path of a bit-ml/DyReg-GNN checkout")
  parser.add_argument("--shape", choices=["paper", "small", "tiny", "both"], default="both",
                      help="'tiny': B=2, T=4, D=32, a smoke test of the script")
  parser.add_argument("--scan", choices=["fused", "k_pass", "both"], default="both")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--threads", type=int, default=os.cpu_count(),
                      help="torch intra-op threads (default: every core, as JAX)")
  args = parser.parse_args()
  if not os.path.isfile(os.path.join(args.dyreg_gnn, "ops", "rstg.py")):
    raise SystemExit(f"--dyreg_gnn={args.dyreg_gnn}: no ops/rstg.py there (clone "
                     "https://github.com/bit-ml/DyReg-GNN)")
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise SystemExit("bench_vs_pytorch needs torch: pip install torch") from None
  torch.set_num_threads(args.threads)

  base = GraphConfig()  # dot attention, scalewise, LN, K = 3, D = 512
  if args.shape == "tiny":
    base = GraphConfig(node_feat_dim=32, message_dims=32)
  n, d = base.num_nodes, base.node_feat_dim
  model = authors_rstg(args.dyreg_gnn, n, d)
  print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; jax "
        f"{jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; "
        f"load {os.getloadavg()[0]:.1f}", flush=True)
  shapes = ["paper", "small"] if args.shape == "both" else [args.shape]
  scans = ["fused", "k_pass"] if args.scan == "both" else [args.scan]
  for name in shapes:
    batch, frames = SHAPES[name]
    theirs = torch_step(model, batch, frames, n, d)
    theirs()  # warm-up
    their_gflop = torch_gflop(model, theirs)
    for scan in scans:
      ours, params, x, flops = prepared_step(dataclasses.replace(base, scan=scan),
                                             batch, frames)
      our_gflop = flops / 1e9
      t_ours, t_theirs = [], []
      for _ in range(args.repeats):
        t_ours.append(seconds_of(ours, params, x))
        t0 = time.perf_counter()
        theirs()
        t_theirs.append(time.perf_counter() - t0)
      speedup = statistics.median(b / a for a, b in zip(t_ours, t_theirs))
      mine, yours = statistics.median(t_ours), statistics.median(t_theirs)
      print(f"{name:5s} B={batch} T={frames} scan={scan:6s} ours {mine:.3f} s/step "
            f"({our_gflop:.0f} GFLOP, {our_gflop / mine:.0f} GFLOP/s)  authors' PyTorch "
            f"{yours:.3f} s/step ({their_gflop:.0f} GFLOP, {their_gflop / yours:.0f} "
            f"GFLOP/s)  speed-up {speedup:.2f}x = {speedup / TARGET_SPEEDUP:.2f} x target "
            f"{TARGET_SPEEDUP:.0f}x", flush=True)


if __name__ == "__main__":
  main()
