"""Analyses of trained runs (above training, below the pipeline): what the DML paper measures on its
trained models (§4.8). A measurement's code identity adds the analysis code to its run's (rdml.dependencies.measure_code), so
editing an analysis re-measures the runs and retrains nothing."""
