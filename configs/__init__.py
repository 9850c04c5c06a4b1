"""Experiment configs, one per file, installed as the package `rstg_configs`.

Every file has `get_config(arg)` (ml_collections `config_flags` loads it by path:
`--config=configs/smt_i3d_rstg_final.py:tiny`); what several files share lives
beside them (`common.py`: the schema every experiment follows, `smt_common.py`,
`syncmnist_common.py`), as big_vision's `configs/common.py` does. The folder
installs as `rstg_configs` (like `datasets/` -> `rstg_datasets`) because a
top-level package named `configs` would clash with other projects'.
"""
