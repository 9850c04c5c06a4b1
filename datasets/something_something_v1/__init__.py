"""Something-Something v1 (frames) tfds builder; importing registers it."""
from rstg_datasets.something_something_v1.something_something_v1 import SomethingSomethingV1

__all__ = ["SomethingSomethingV1"]
