"""Backbones: SimpleConv (SyncMNIST) and the ResNet-50 video family: C2D, I3D, Non-Local (spec §8)."""
