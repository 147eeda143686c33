"""Analyses of trained runs (above training, below the pipeline): what the DML paper measures on its
trained models (§4.8). Their code is a part of its own (rdml.code.MEASURE_CODE), so editing an
analysis re-measures the runs and retrains nothing."""
