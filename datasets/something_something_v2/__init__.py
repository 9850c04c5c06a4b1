"""Something-Something v2 (webm videos) tfds builder; importing registers it."""
from rstg_datasets.something_something_v2.something_something_v2 import SomethingSomethingV2

__all__ = ["SomethingSomethingV2"]
