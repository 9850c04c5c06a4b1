"""SyncMNIST (spec §10.1) as a tfds builder; importing this registers `sync_mnist`."""
from rstg_datasets.sync_mnist.build import build_if_missing
from rstg_datasets.sync_mnist.sync_mnist import SyncMnist
from rstg_datasets.sync_mnist.sync_mnist import SyncMnistConfig

__all__ = ["SyncMnist", "SyncMnistConfig", "build_if_missing"]
