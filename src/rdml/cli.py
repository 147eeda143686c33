"""Command line: `rdml train`, `rdml pipeline …` (Snakemake and DVC), `rdml tables`, `rdml audit`, `rdml eval`.

Each verb imports what it runs when it runs: `rdml --help` and `rdml train --help` never import torch.
"""

from __future__ import annotations

import argparse
import json
import sys

from rdml.keys import ConfigError, count

EXAMPLES = """\
examples:
  rdml train                                   DML, two mlp students, alpha=1
  rdml train alpha=1.5                         RDML with alpha = 1.5
  rdml train method=teacher out=runs/teacher   pretrain a teacher
  rdml train method=kd teacher=runs/teacher alpha=2 epochs=20
"""


def train_help() -> str:
    from rdml.config import describe_keys
    from rdml.methods import METHODS

    methods = "\n".join(f"  {name:12s} {method.description}" for name, method in METHODS.items())
    return (
        "Train one run. With no config file it trains the embedded default (DML on the digits data that ship\n"
        "with scikit-learn). A config file is a YAML mapping of the same keys; key=value overrides it.\n\n"
        f"methods:\n{methods}\n\nkeys (key=default [type]):\n{describe_keys()}\n\n{EXAMPLES}"
    )


class _TrainHelp(argparse.RawDescriptionHelpFormatter):
    """Builds the long key listing only when `rdml train --help` asks for it."""

    def add_text(self, text):
        super().add_text(train_help() if text == "TRAIN_HELP" else text)


def _threads(text: str) -> int:
    """--threads as an argparse type: refused with its value (exit 2) as params.yaml's `threads` is (rdml.keys.count)."""
    try:
        return count("threads", text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Version(argparse.Action):
    """`rdml --version`: the release, and which source tree it is (git commit and whether it is edited, the
    sha256 a run's record holds), with torch's version; read only when asked, since it imports torch."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print rdml's version, git commit and source hash")

    def __call__(self, parser, namespace, values, option_string=None):
        import torch

        from rdml.train.record import code_provenance

        code = code_provenance()
        git = f"git {code['git_commit'][:12]}{', edited' if code['git_dirty'] else ''}" if code["git_commit"] else "not a git checkout"
        print(f"rdml {code['rdml_version']} ({git}; source sha256 {code['src_sha256'][:16]}; torch {torch.__version__})")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rdml", description="Reproducible knowledge distillation: DML, RDML, KD, Rényi KD.")
    parser.add_argument("--version", action=_Version)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more on the console: -v also each job's "
                        "per-epoch lines (DEBUG); they are in the job's log file (results/<study>/logs/) anyway")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less on the console: -q warnings and errors "
                        "only, -qq errors only")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one run", description="TRAIN_HELP", formatter_class=_TrainHelp)
    train.add_argument("items", nargs="*", metavar="[CONFIG] key=value", help="an optional config file, then overrides")
    train.add_argument("--progress", choices=["auto", "on", "off"], default="auto", help="progress bar (auto: on a terminal)")

    pipeline = commands.add_parser("pipeline", help="what Snakemake and DVC call (see workflow/)")
    steps = pipeline.add_subparsers(dest="step", required=True)
    run = steps.add_parser("run", help="train the runs of one job of a study on one GPU slot")
    run.add_argument("study")
    run.add_argument("job_id", metavar="job")
    run_spec = run.add_mutually_exclusive_group()
    run_spec.add_argument("--spec", help="the job as JSON, as Snakemake planned it (default: plan it from --params)")
    run_spec.add_argument("--spec-file", help="the job's spec in a file (what Snakemake writes: results/<study>/specs/<job>.json)")
    measure = steps.add_parser("measure", help="measure a trained run's final models for a study's analysis tables")
    measure.add_argument("study")
    measure.add_argument("run_id", metavar="run")
    measure_spec = measure.add_mutually_exclusive_group()
    measure_spec.add_argument("--spec", help="what to measure as JSON, as Snakemake planned it (default: plan it from --params)")
    measure_spec.add_argument("--spec-file", help="the same in a file (what Snakemake writes: results/<study>/specs/measure/<run>.json)")
    for sub in (run, measure):
        sub.add_argument("--gpus", default=None, help="GPU slots to choose from: auto or a number (default: params.yaml's gpus)")
        sub.add_argument("--threads", type=_threads, default=None, help="CPU threads for torch, an integer >= 1 (default: params.yaml's threads, 1)")
        sub.add_argument("--jobs-per-gpu", default=None, help="jobs that share one GPU: auto (as `make gpu-check` measured this GPU) or a number "
                         "(default: params.yaml's jobs_per_gpu, 1)")
        sub.add_argument("--die-with-parent", action="store_true", help="end when the process that started this one dies "
                         "(what Snakemake's jobs ask for)")
        sub.add_argument("--log", help="the job's log file: its per-epoch lines, warnings and errors (default: "
                         "results/<study>/logs/<job>.log); the console gets one line per finished run")
    prepare = steps.add_parser("prepare", help="download (where that applies) and load a data set once, write its stamp")
    prepare.add_argument("dataset")
    weights = steps.add_parser("weights", help="fetch an architecture's published weights (timm's, or torchvision's) into data/weights, write its stamp")
    weights.add_argument("arch")
    weights.add_argument("--file", help="a local copy of the weights (any format timm reads; torchvision's published .pth) instead of the download")
    dvc = steps.add_parser("dvc-yaml", help="write dvc.yaml from params.yaml")
    dvc.add_argument("--out", default="dvc.yaml", help="file to write, - for stdout")
    dvc.add_argument("--study", action="append", help="study to include (default: params.yaml's build list)")
    code = steps.add_parser("code", help="write the code stamps DVC's stages depend on (rdml.pipeline.dvc)")
    prune = steps.add_parser("prune", help="remove the job files (and tables) of finished jobs whose runs were deleted")
    for sub in (code, prune):
        sub.add_argument("--study", action="append", help="study to include (default: params.yaml's build list)")
    runs = steps.add_parser("runs", help="list the jobs of a study, each with its run ids")
    runs.add_argument("study")
    for sub in (run, measure, dvc, code, prune, runs):
        sub.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")

    status = commands.add_parser("status", help="how far a study is: runs done, running, pending, failed; the time left; "
                                 "the compute used", description="Read-only: safe while Snakemake or SLURM trains the study.")
    status.add_argument("study")
    status.add_argument("--params", default=None, help="the params file (default: params.yaml under --root)")
    status.add_argument("--root", default=".", help="the project the study's results/ are in (default: .)")
    status.add_argument("--json", action="store_true", help="print the status as JSON (for scripts)")

    tables = commands.add_parser("tables", help="write a study's tables (Markdown, LaTeX, CSV, cell sidecars)")
    tables.add_argument("study")
    tables.add_argument("--params", default="params.yaml")
    tables_spec = tables.add_mutually_exclusive_group()
    tables_spec.add_argument("--spec", help="the study's section as JSON, as Snakemake planned it (default: read --params)")
    tables_spec.add_argument("--spec-file", help="the same in a file (what Snakemake writes: results/<study>/specs/tables.json)")

    audit = commands.add_parser("audit", help="show and verify the provenance of one table cell")
    audit.add_argument("table", help="a table file or its .cells.json sidecar")
    audit.add_argument("cell", help='"row|column", as listed in the sidecar')
    audit.add_argument("--evaluate", action="store_true", help="also evaluate each saved model on the test split again")

    evaluate = commands.add_parser("eval", help="score a finished run's models on its test split: top-1, top-5, NLL, ECE",
                                   description="Score the saved students of a finished run (and their ensemble when K >= 2) "
                                   "on the run's own test split: top-1 and top-5 accuracy, NLL (nats) and expected "
                                   "calibration error (15 equal-width confidence bins).")
    evaluate.add_argument("run", metavar="RUN", help="a run directory (record.json and model.pt) or the model.pt inside one")
    evaluate.add_argument("--json", metavar="FILE", help="also write the scores as JSON to FILE (- for stdout; the table "
                          "then goes to stderr)")
    evaluate.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: cpu)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rdml.pipeline.console import configure

    configure(args.verbose - args.quiet)
    try:
        if args.command == "train":
            return _train(args, argv)
        if args.command == "pipeline":
            return _pipeline(args)
        if args.command == "tables":
            from rdml.report.write import write_tables
            from rdml.study.params import check_study, load_params, study_spec

            # checked before write_tables makes the tables folder: a refused command writes nothing
            if args.spec or args.spec_file:
                from rdml.pipeline.specs import read_json_spec

                raw = _json_argument("--spec", args.spec, dict) if args.spec else read_json_spec(args.spec_file)
                spec = check_study(args.study, raw)
            else:
                spec = None
                study_spec(load_params(args.params), args.study)
            from rdml.pipeline.console import LOGGER

            written = write_tables(args.study, args.params, spec=spec)
            for path in written:
                LOGGER.debug("wrote %s", path)
            LOGGER.info("%s: wrote %d files of tables, curves and summary under results/%s (rdml -v lists them)",
                        args.study, len(written), args.study)
            return 0
        if args.command == "eval":
            return _eval(args)
        if args.command == "status":
            return _status(args)
        from rdml.audit import audit_cell

        return 1 if audit_cell(args.table, args.cell, evaluate=args.evaluate) else 0
    except ConfigError as exc:
        print(f"rdml: error: {exc}", file=sys.stderr)
        return 2


def _json_argument(option: str, text: str, kind: type):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{option} is not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise ConfigError(f"{option} must be a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _train(args, argv) -> int:
    from rdml.config import config_from_mapping, load_config, resolve
    from rdml.train import distributed
    from rdml.train.loop import train, train_distributed

    config_file = None
    overrides = list(args.items)
    if overrides and "=" not in overrides[0]:
        config_file = overrides.pop(0)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    handed = distributed.launched_keys()  # a rank of a distributed run that rdml launched: its keys and command
    if handed is not None and not overrides and config_file is None:
        record = train(config_from_mapping(handed["keys"]), argv=handed["argv"], progress=False, replace=handed["replace"],
                       retrain=handed["retrain"], environment_extra=handed["environment_extra"])
    else:
        cfg = load_config(config_file, overrides)
        command = ["rdml", *(sys.argv[1:] if argv is None else argv)]
        if distributed.launched() is None and resolve(cfg).distributed:
            record = train_distributed(cfg, argv=command)  # one process per student, launched from here
        else:
            record = train(cfg, argv=command, progress=progress)
    ranks = distributed.launched()
    if ranks is not None and (not ranks.leader or handed is not None):
        return 0  # one summary: rank 0's, or the launching process's
    print(json.dumps({"run": record["config"]["out"], "status": record["status"], "label": record["label"],
                      "summary": record["summary"]}, indent=1, ensure_ascii=False))
    return 0


def _eval(args) -> int:
    from rdml.analysis.evaluate import evaluate_run, format_table
    from rdml.io import atomic_write_json

    result = evaluate_run(args.run, args.device)
    print(format_table(result), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json == "-":
        print(json.dumps(result, indent=1, ensure_ascii=False))
    elif args.json:
        try:
            atomic_write_json(args.json, result)
        except OSError as exc:
            raise ConfigError(f"rdml eval: --json {args.json}: cannot write there ({exc.strerror})") from None
    return 0


def _status(args) -> int:
    from pathlib import Path

    from rdml.pipeline.status import format_status, study_status
    from rdml.study.params import load_params

    params_path = Path(args.params) if args.params else Path(args.root) / "params.yaml"
    status = study_status(load_params(params_path), args.study, args.root)
    print(json.dumps(status.to_json(), indent=1) if args.json else format_status(status))
    return 0


def _slots(args) -> tuple:
    """GPU slots and jobs per GPU: the command line's, else params.yaml's; `auto` jobs per GPU as measured on
    this GPU (rdml.pipeline.requests), said on stderr."""
    from rdml.pipeline.requests import resolve_jobs_per_gpu
    from rdml.study.params import load_params

    params = load_params(args.params) if args.gpus is None or args.jobs_per_gpu is None else {}
    gpus = args.gpus if args.gpus is not None else params.get("gpus", "auto")
    per_gpu, said = resolve_jobs_per_gpu(args.jobs_per_gpu if args.jobs_per_gpu is not None else params.get("jobs_per_gpu", 1))
    if said:
        from rdml.pipeline.console import LOGGER

        LOGGER.info("%s", said)
    return gpus, per_gpu


def _study_metric(params_path: str, study: str) -> str:
    """The study's metric as params.yaml gives it (what a finished run's console line shows), else final."""
    from rdml.study.params import load_params, metric_of

    try:
        return metric_of(load_params(params_path), study)
    except (ConfigError, OSError):
        return "final"


def _progress(params_path: str, study: str, job_id: str) -> None:
    """After a job, the study's progress in one line (rdml.pipeline.status), planned from params.yaml; said
    only where that plan holds this job (under Snakemake's --configfile with another grid, it may not)."""
    from rdml.pipeline.console import LOGGER
    from rdml.pipeline.status import format_progress, study_status
    from rdml.study.params import load_params

    try:
        status = study_status(load_params(params_path), study)
    except (ConfigError, OSError) as exc:
        LOGGER.debug("no progress line: %s", exc)
        return
    if any(r.job == job_id for r in status.runs):
        LOGGER.info("%s", format_progress(status))


def _pipeline(args) -> int:
    from rdml.study.params import load_params, studies_to_build
    from rdml.study.plan import find_job, plan_jobs

    if args.step == "run":
        if args.die_with_parent:
            from rdml.pipeline.slots import die_with_parent

            die_with_parent()  # first, before the seconds of importing torch
        from rdml.pipeline.console import job_log, job_output
        from rdml.pipeline.jobs import job_threads, run_job
        from rdml.pipeline.specs import read_spec_file

        if args.spec:
            spec = _json_argument("--spec", args.spec, dict)
            if (spec.get("study"), spec.get("job")) != (args.study, args.job_id) or not isinstance(spec.get("runs"), dict):
                raise ConfigError(f"--spec describes job {spec.get('job')!r} of {spec.get('study')!r}, not {args.job_id!r} of {args.study!r}")
        elif args.spec_file:
            spec = read_spec_file(args.spec_file, args.study, args.job_id)
        else:
            spec = find_job(load_params(args.params), args.study, args.job_id).spec()
        threads = job_threads(args.threads, args.params)
        gpus, per_gpu = _slots(args)
        log = args.log or job_log(args.study, args.job_id)
        try:
            with job_output(log, f"rdml pipeline run {args.study} {args.job_id}"):
                run_job(spec, gpus, threads=threads, per_gpu=per_gpu, metric=_study_metric(args.params, args.study))
        except Exception as exc:  # noqa: BLE001  (its traceback is in the log; the console names it and the log)
            if isinstance(exc, ConfigError):
                raise
            from rdml.pipeline.console import LOGGER

            LOGGER.error("job %s of %s failed (%s: %s); its output and traceback: %s", args.job_id, args.study,
                         type(exc).__name__, exc, log)
            return 1
        _progress(args.params, args.study, args.job_id)
    elif args.step == "measure":
        if args.die_with_parent:
            from rdml.pipeline.slots import die_with_parent

            die_with_parent()
        from rdml.pipeline.jobs import job_threads, measure_job
        from rdml.study.plan import plan_measurements

        if args.spec or args.spec_file:
            from rdml.pipeline.specs import read_json_spec

            spec = _json_argument("--spec", args.spec, dict) if args.spec else read_json_spec(args.spec_file)
            if (spec.get("study"), spec.get("run")) != (args.study, args.run_id) or not isinstance(spec.get("measurements"), dict):
                raise ConfigError(f"--spec describes run {spec.get('run')!r} of {spec.get('study')!r}, not {args.run_id!r} of {args.study!r}")
        else:
            planned = plan_measurements(load_params(args.params), args.study)
            if args.run_id not in planned:
                raise ConfigError(f"run {args.run_id!r} is not measured by study {args.study!r} (measured: {', '.join(planned) or 'none'})")
            run, wanted = planned[args.run_id]
            spec = {"study": args.study, "run": run.id, "directory": run.directory, "measurements": wanted}
        from rdml.pipeline.console import LOGGER, job_log, job_output

        threads = job_threads(args.threads, args.params)
        gpus, per_gpu = _slots(args)
        with job_output(args.log or job_log(args.study, f"measure/{args.run_id}"), f"rdml pipeline measure {args.study} {args.run_id}"):
            out = measure_job(spec, gpus, threads=threads, per_gpu=per_gpu)
        LOGGER.info("%s %s: measured (%s)", args.study, args.run_id, out)
    elif args.step == "prepare":
        from rdml.pipeline.jobs import prepare_dataset

        from rdml.pipeline.console import LOGGER

        summary = prepare_dataset(args.dataset)
        LOGGER.info("data set %s ready (%s)", args.dataset, ", ".join(f"{k} {summary[k]}" for k in ("rows", "num_classes") if k in summary)
                    or summary.get("file", ""))
        LOGGER.debug("%s", json.dumps(summary, indent=1))
    elif args.step == "weights":
        from rdml.pipeline.jobs import prepare_weights

        print(json.dumps(prepare_weights(args.arch, source=args.file), indent=1))
    elif args.step == "dvc-yaml":
        from rdml.pipeline.dvc import write_dvc_yaml

        write_dvc_yaml(args.params, args.out, args.study)
    elif args.step == "code":
        from rdml.pipeline.dvc import write_code_stamps

        for path in write_code_stamps(args.params, args.study):
            print(f"{path}: changed")
    elif args.step == "prune":
        from rdml.pipeline.stale import prune_stale_jobs

        params = load_params(args.params)
        for path in prune_stale_jobs(params, studies_to_build(params, args.study)):
            print(f"removed {path}")
    else:
        for job in plan_jobs(load_params(args.params), args.study):
            print(job.id, *(run.id for run in job.runs), sep="\t")
    return 0


if __name__ == "__main__":
    sys.exit(main())
