"""Command line: `rdml train [CONFIG] [key=value ...]`."""

from __future__ import annotations

import argparse
import json
import sys

from rdml.config import METHODS, ConfigError, describe_keys, load_config
from rdml.trainer import train

TRAIN_HELP = f"""\
Train one run. With no config file it trains the embedded default (DML on the digits data that ship
with scikit-learn). A config file is a YAML mapping of the same keys; key=value overrides it.

methods:
{chr(10).join(f"  {name:12s} {text}" for name, text in METHODS.items())}

keys (key=default [type]):
{describe_keys()}

examples:
  rdml train                                   DML, two mlp students, alpha=1
  rdml train alpha=1.5                         RDML with alpha = 1.5
  rdml train method=teacher out=runs/teacher   pretrain a teacher
  rdml train method=kd teacher=runs/teacher alpha=2 epochs=20
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rdml", description="Reproducible knowledge distillation: DML, RDML, KD, Rényi KD.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="train one run", description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    train.add_argument("items", nargs="*", metavar="[CONFIG] key=value", help="an optional config file, then overrides")
    train.add_argument("--progress", choices=["auto", "on", "off"], default="auto", help="progress bar (auto: on a terminal)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config_file = None
    overrides = list(args.items)
    if overrides and "=" not in overrides[0]:
        config_file = overrides.pop(0)
    try:
        cfg = load_config(config_file, overrides)
        progress = {"auto": None, "on": True, "off": False}[args.progress]
        record = train(cfg, argv=["rdml", *(sys.argv[1:] if argv is None else argv)], progress=progress)
    except ConfigError as exc:
        print(f"rdml: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"run": record["config"]["out"], "status": record["status"], "label": record["label"],
                      "summary": record["summary"]}, indent=1, ensure_ascii=False))
    return 0 if record["status"] in ("ok", "diverged") else 1


if __name__ == "__main__":
    sys.exit(main())
