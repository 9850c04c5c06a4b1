"""tfds builders of rstg_jax, installed as the package `rstg_datasets`."""
