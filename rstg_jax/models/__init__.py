"""Flax Linen modules.

  graph/        the Recurrent Space-time Graph: config, node layout, space and time
                stages, the recurrent graph, readouts, the block inserted in a backbone
  backbones/    SimpleConv (SyncMNIST) and the ResNet-50 video family (C2D, I3D,
                Non-Local), with their BatchNorm factory
  classifiers/  whole models per task: backbone + graph + prediction layer
"""
