"""Training one run: prepare (validate everything, load data and teacher), the loop with per-epoch
checkpoints, evaluation, optimisers, execution on the device, and the run record."""
