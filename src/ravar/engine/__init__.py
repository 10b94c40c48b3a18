"""Training and evaluation engine (imported by module, so that `ravar --help` stays light):

- `ravar.engine.train.fit`: the `ravar train` engine (run directory, resume, DDP);
- `ravar.engine.evaluate.evaluate_checkpoint`: the `ravar eval` engine;
- `ravar.engine.checkpoint`: the one checkpoint format (`save_checkpoint`, `load_model`);
- `ravar.engine.config`: `TrainConfig` and run-config resolution (YAML, overrides, flags).
"""
