# Sourced (from the repository root) by the GPU benchmark scripts. The benchmarks are this
# tree's scripts, so they import this tree's packages, under the names setup.py installs
# them as, whether or not (and whichever copy of) rstg_jax is installed: a temporary folder
# of links, first on PYTHONPATH and removed on exit. Carried wheels go there too.
tree_site="$(mktemp -d)"
trap 'rm -rf "$tree_site"' EXIT
ln -s "$PWD/rstg_jax" "$tree_site/rstg_jax"
ln -s "$PWD/datasets" "$tree_site/rstg_datasets"
ln -s "$PWD/configs" "$tree_site/rstg_configs"
export PYTHONPATH="$tree_site${PYTHONPATH:+:$PYTHONPATH}"
