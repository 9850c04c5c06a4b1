"""rstg_jax: Recurrent Space-time Graph Neural Networks (RSTG) in JAX/Flax."""

__version__ = "0.1.0"
