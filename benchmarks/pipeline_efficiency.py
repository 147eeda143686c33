"""The default study end to end: wall time of `snakemake all_tables`, and how much of it was training.

Pipeline efficiency = (sum over runs of their training-loop seconds, from each record's epoch_seconds)
/ (wall seconds of the whole `snakemake all_tables`, data preparation, tables and `dvc commit` included).
With C cores running jobs side by side it can exceed 1; per-job start-up, scheduling and idle cores
pull it down. The study runs in a fresh clone of this repository's HEAD in a temporary folder, so
the project's own results/ are left alone.

    .venv/bin/python benchmarks/pipeline_efficiency.py [--cores 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--out", help="where to write the results as JSON (default: benchmarks/results/pipeline_efficiency_<device>.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rdml-pipeline-") as scratch:
        clone = Path(scratch) / "rdml"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        bin_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "PYTHONPATH": str(clone / "src")}
        started = time.perf_counter()
        done = subprocess.run(["snakemake", "all_tables", "--cores", str(args.cores)], cwd=clone, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"snakemake failed ({done.returncode}):\n{done.stderr[-3000:]}")
        records = [json.loads(p.read_text()) for p in sorted((clone / "results").glob("*/runs/*/*/record.json"))]
        jobs = len(list((clone / "results").glob("*/jobs/*/*.json")))
    training = sum(sum(r["epoch_seconds"]) for r in records)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = {
        "device": device,
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "cores": args.cores,
        "runs": len(records),
        "jobs": jobs,
        "wall_seconds": wall,
        "training_seconds": training,
        "efficiency": training / wall,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"{len(records)} runs in {jobs} jobs on {args.cores} cores: wall {wall:.1f} s, training loops {training:.1f} s, "
          f"efficiency {training / wall:.2f}")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"pipeline_efficiency_{device}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
