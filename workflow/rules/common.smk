# The plan of every study, from params.yaml through rdml.plan (the same code dvc.yaml is written by).
import json
from pathlib import Path

from rdml.plan import plan_study, studies_to_build, with_smoke_studies

config.update(with_smoke_studies(config))  # every study also has a <study>_smoke variant
BUILD = studies_to_build(config)
PLANS = {study: {run.id: run for run in plan_study(config, study)} for study in BUILD}
SRC = sorted(str(p) for p in Path("src/rdml").rglob("*.py"))


wildcard_constraints:
    study="[^/]+",
    dataset="[^/]+",
    run="[^/]+/[^/]+",


def planned(wildcards):
    return PLANS[wildcards.study][wildcards.run]
