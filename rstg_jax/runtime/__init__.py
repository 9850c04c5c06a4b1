"""How a job runs on its devices and survives interruptions, whatever it trains.

  distributed.py   joining a multi-process job (jax.distributed) before JAX starts
  parallel.py      the device mesh, shardings, host-local -> global arrays, jit
  checkpointing.py Orbax save / restore / retention (the only module that talks to Orbax)
  preemption.py    stopping every process at the same step after a SIGTERM

The rule: nothing here knows the model, the task or the training loop; it never
imports rstg_jax.models, rstg_jax.tasks or rstg_jax.train (train/ imports it).
"""
