"""Bad input in config files, params.yaml, reported/*.yaml and the command line: refused with a message
that names it (exit 2 from the CLI), before any work, never a traceback and never read silently.
rdml.yamlfile is the one YAML reader; rdml.study.params checks params.yaml at every depth."""

import copy
import json
import time
from pathlib import Path

import pytest
import yaml

from rdml.cli import build_parser, main
from rdml.config import load_config
from rdml.keys import ConfigError
from rdml.study.params import check_study, jobs_per_gpu, load_params, study_spec, thread_count
from rdml.study.plan import plan_study
from rdml.study.reported import load_reported
from rdml.yamlfile import MAX_NODES, parse_yaml

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())  # the repository's, as a base to spoil

# a "billion laughs": nine lines whose aliases expand to 10**9 nodes
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))


def write(tmp_path: Path, text: str, name: str = "file.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def spoiled(tmp_path: Path, edit) -> Path:
    """params.yaml with `edit(params)` applied, written to tmp_path."""
    params = copy.deepcopy(PARAMS)
    edit(params)
    return write(tmp_path, yaml.safe_dump(params, sort_keys=False), "params.yaml")


def refused(capsys, *argv) -> str:
    """Run the CLI; it must exit 2 with one `rdml: error:` line and no traceback; returns that line."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("rdml: error: ") and "Traceback" not in err, err
    return err


# ---- 1. duplicate keys, anchors without bound, invalid YAML: every file rdml reads

@pytest.mark.bad_input
def test_a_key_given_twice_in_a_config_file_is_refused_naming_it_and_both_lines(tmp_path, capsys):
    """`epochs: 2` then `epochs: 5` trained 5 epochs (the last one silently won)."""
    path = write(tmp_path, "epochs: 2\nlr: 0.1\nepochs: 5\n")
    err = refused(capsys, "train", str(path), "dataset=synthetic", f"out={tmp_path / 'run'}")
    assert f"{path}, line 3: key 'epochs' is given twice in one mapping (lines 1 and 3)" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.bad_input
def test_a_key_given_twice_in_a_json_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="key 'seed' is given twice in one mapping"):
        load_config(write(tmp_path, '{"seed": 1, "epochs": 2, "seed": 3}', "c.json"))


@pytest.mark.bad_input
def test_a_study_defined_twice_in_params_yaml_is_refused_naming_both_lines(tmp_path, capsys):
    """The second definition of a study replaced the first silently."""
    text = (REPO / "params.yaml").read_text()
    study = text[text.index("  digits:\n"):text.index("\n\n", text.index("  digits:\n"))] + "\n"
    path = write(tmp_path, text + study, "params.yaml")
    first = text[:text.index("  digits:\n")].count("\n") + 1
    with pytest.raises(ConfigError, match=fr"key 'digits' is given twice in one mapping \(lines {first} and \d+\)"):
        load_params(path)
    assert "key 'digits' is given twice" in refused(capsys, "pipeline", "runs", "digits", "--params", str(path))


@pytest.mark.bad_input
def test_a_key_given_twice_deep_in_params_yaml_is_refused(tmp_path):
    path = write(tmp_path, "studies:\n  s:\n    datasets: [synthetic]\n    train:\n      epochs: 2\n      lr: 0.1\n"
                           "      epochs: 3\n")
    with pytest.raises(ConfigError, match=r"line 7: key 'epochs' is given twice in one mapping \(lines 5 and 7\)"):
        load_params(path)


def test_a_merge_key_may_be_overridden_it_is_not_a_duplicate():
    """params.yaml's studies share keys by `<<: *anchor` and override some of them: that stays allowed."""
    assert parse_yaml("base: &b {epochs: 2, lr: 0.1}\nrun:\n  <<: *b\n  epochs: 5\n", "f.yaml")["run"] == {
        "epochs": 5, "lr": 0.1}
    assert load_params(REPO / "params.yaml")["studies"]["rdml_table1_as_released"]["train"]["schedule"] == "multistep"


@pytest.mark.bad_input
def test_a_reported_numbers_file_with_a_cell_key_given_twice_is_refused(tmp_path):
    (tmp_path / "reported").mkdir()
    write(tmp_path / "reported", "paper: p\ncells:\n  - {study: s, table: t, row: r, column: c, kind: value, value: 1, value: 2}\n", "p.yaml")
    with pytest.raises(ConfigError, match=r"p.yaml, line 3: key 'value' is given twice"):
        load_reported(tmp_path)


@pytest.mark.parametrize("where", ["config", "params"])
@pytest.mark.bad_input
def test_aliases_that_expand_without_bound_are_refused_at_once(tmp_path, capsys, where):
    """A billion laughs read as is would expand at the first json.dumps or deepcopy of it."""
    path = write(tmp_path, LAUGHS if where == "config" else "studies: {}\n" + LAUGHS)
    started = time.perf_counter()
    if where == "config":
        err = refused(capsys, "train", str(path), f"out={tmp_path / 'run'}")
    else:
        err = refused(capsys, "pipeline", "dvc-yaml", "--params", str(path), "--out", str(tmp_path / "dvc.yaml"))
    assert time.perf_counter() - started < 2
    assert f"its aliases expand to more than {MAX_NODES:,} nodes" in err and str(path) in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "dvc.yaml").exists()


@pytest.mark.bad_input
def test_an_alias_inside_its_own_anchor_is_refused():
    with pytest.raises(ConfigError, match="f.yaml, line 1: an alias refers to a node that contains it"):
        parse_yaml("a: &a [1, *a]\n", "f.yaml")


BROKEN = "studies:\n  s: {datasets: [synthetic]\n  t: 2\n"


@pytest.mark.parametrize("argv", [
    ["tables", "s", "--params", "PARAMS"],
    ["pipeline", "dvc-yaml", "--params", "PARAMS", "--out", "OUT"],
    ["pipeline", "runs", "s", "--params", "PARAMS"],
    ["train", "PARAMS", "out=OUT"],
])
@pytest.mark.bad_input
def test_invalid_yaml_is_a_message_naming_the_file_and_line_not_a_traceback(tmp_path, capsys, monkeypatch, argv):
    """`rdml tables x --params bad.yaml` and `rdml pipeline dvc-yaml --params bad.yaml` printed tracebacks."""
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, BROKEN)
    err = refused(capsys, *[{"PARAMS": str(path), "OUT": str(tmp_path / "out")}.get(a, a) for a in argv])
    assert f"{path}, line 3: not valid YAML" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.yaml"]  # nothing written: no results/, no out


def test_no_module_but_rdml_yamlfile_parses_yaml():
    """A second reader (yaml.safe_load) would take what rdml.yamlfile refuses: a key given twice, the last one
    silently winning; endless aliases."""
    import ast

    import rdml

    readers = {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all", "full_load_all",
               "unsafe_load_all", "compose", "parse"}
    found = []
    for path in Path(rdml.__file__).parent.rglob("*.py"):
        if path.name == "yamlfile.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in readers and isinstance(node.value, ast.Name)
                    and node.value.id == "yaml"):
                found.append(f"{path.name}:{node.lineno} yaml.{node.attr}")
    assert found == []


# ---- 2. unknown keys at every depth of params.yaml, named with what is allowed

def okdph(params, **change):
    """Apply `change` to okdph_table3's okdph_table section."""
    params["studies"]["okdph_table3"]["okdph_table"].update(change)


def hybrid(params, i, **change):
    params["studies"]["okdph_table3"]["okdph_table"]["hybrid"][i] = {
        **params["studies"]["okdph_table3"]["okdph_table"]["hybrid"][i], **change}


def rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


UNKNOWN = [
    (lambda p: p.update(thread=1), "params.yaml: unknown key(s) thread; allowed: build, gpus, jobs_per_gpu, threads, studies (did you mean threads?)"),
    (lambda p: p.update(build="digits"), "build='digits' is not allowed; it must be a list of study names"),
    (lambda p: p["studies"]["digits"].update(seed=[0]), ("studies.digits: unknown key(s) seed; allowed: ", "(did you mean seeds?)")),
    (lambda p: p["studies"]["digits"]["train"].update(epoch=3), "studies.digits.train.epoch is not a training key; did you mean epochs?"),
    (lambda p: p["studies"]["digits"].update(train=[1]), "studies.digits.train=[1] is not allowed; it must be a mapping"),
    (lambda p: p["studies"]["digits"]["kd_table"].update(alpha=[1]), ("studies.digits.kd_table: unknown key(s) alpha; allowed: ", "(did you mean alphas?)")),
    (lambda p: p["studies"]["digits"].update(pair_table=None), "studies.digits.pair_table=None is not allowed; it must be a mapping"),
    (lambda p: p["studies"]["digits"]["teacher"].update(seeds=1), ("studies.digits.teacher: unknown key(s) seeds; allowed: ", "(did you mean seed?)")),
    (lambda p: p["studies"]["digits"]["teacher"].update(train={"lr_": 1}), "studies.digits.teacher.train.lr_ is not a training key"),
    (lambda p: p["studies"]["digits"].update(train_where=[{"datasets": ["digits"], "train": {"epochz": 2}}]),
     "studies.digits.train_where[0].train.epochz is not a training key; did you mean epochs?"),
    (lambda p: p["studies"]["digits"].update(train_where=[{"dataset": ["digits"], "train": {}}]),
     "studies.digits.train_where[0] must hold `train` keys and the `datasets` and/or `archs` they apply to"),
    (lambda p: p["studies"]["digits"].update(seeds=[0, "1"]), "studies.digits.seeds=[0, '1'] is not allowed"),
    (lambda p: p["studies"]["digits"].update(seeds=[0, 0, 1]),
     "studies.digits.seeds lists seed 0 more than once ([0, 0, 1]); each seed must appear once"),
    (lambda p: p["studies"]["digits"].pop("seeds"), "studies.digits: missing key(s) seeds"),
    (lambda p: [p["studies"]["digits"].pop(k) for k in list(p["studies"]["digits"]) if k.endswith("_table")],
     "studies.digits: no table; give at least one of"),
    (lambda p: hybrid(p, 3, fusion_evry="1e"), ("studies.okdph_table3.okdph_table.hybrid[3]: unknown key(s) fusion_evry; allowed: ",
                                         "(did you mean fusion_every?)")),
    (lambda p: rename(p["studies"]["okdph_table3"]["okdph_table"]["hybrid"][0], "fusion_every", "fusion_evry"),
     ("studies.okdph_table3.okdph_table.hybrid[0]: unknown key(s) fusion_evry; allowed: ", "(did you mean fusion_every?)")),
    (lambda p: p["studies"]["okdph_table3"]["okdph_table"]["hybrid"][0].pop("kd_weight"),
     "studies.okdph_table3.okdph_table.hybrid[0]: missing key(s) kd_weight"),
    (lambda p: hybrid(p, 0, fusion_every="2x"), "fusion_every='2x' is not allowed"),
    (lambda p: hybrid(p, 0, hybrid_weight=2), "hybrid_weight=2.0 is not allowed; it must be a number in [0, 1]"),
    (lambda p: hybrid(p, 0, ce_weight="high"), "ce_weight='high' is not a valid float"),
    (lambda p: okdph(p, baseline={"cifar10": "crop_flip", "cifar100": "crop_flip", "cifar1000": "none"}),
     "studies.okdph_table3.okdph_table.baseline: unknown data set(s) cifar1000; allowed: cifar10, cifar100 (did you mean cifar100?)"),
    (lambda p: okdph(p, baseline={"cifar10": "crop_flip"}), "studies.okdph_table3.okdph_table.baseline: missing data set(s) cifar100"),
    (lambda p: okdph(p, baseline="crop_flip"), "studies.okdph_table3.okdph_table.baseline='crop_flip' is not allowed; it must be a mapping"),
    (lambda p: okdph(p, students=3), "studies.okdph_table3.okdph_table.students=3 is not allowed; it must be a list of cohort sizes"),
    (lambda p: okdph(p, students=[2, 1]), "studies.okdph_table3.okdph_table.students=[2, 1] is not allowed; it must be a list of integers >= 2"),
    (lambda p: okdph(p, students=[2, 5]), "studies.okdph_table3.okdph_table.views.cifar10: missing cohort size(s) 5"),
    (lambda p: p["studies"]["okdph_table3"]["okdph_table"]["views"]["cifar10"].update(two=["none"]),
     "studies.okdph_table3.okdph_table.views.cifar10: unknown cohort size(s) two; allowed: 2, 3, 4"),
    (lambda p: okdph(p, methods=["dml", "okdhp"]), "studies.okdph_table3.okdph_table.methods='okdhp' is not allowed; allowed: dml, ffl, kdcl, okddip, okdph, one, pcl"),
    (lambda p: p["studies"]["okdph_table4"]["okdph_data_table"]["settings"][0].update(train={"input_nois": 1.0}),
     "studies.okdph_table4.okdph_data_table.settings[0].train.input_nois is not a training key; did you mean input_noise?"),
    (lambda p: p["studies"]["okdph_table4"]["okdph_data_table"]["settings"][1].update(dataset={"cifar10": "cifar10_10"}),
     ("studies.okdph_table4.okdph_data_table.settings[1]: unknown key(s) dataset; allowed: ", "(did you mean datasets?)")),
    (lambda p: p["studies"]["okdph_table4"]["okdph_data_table"]["settings"][1]["datasets"].update(cifar1000="cifar10_1"),
     "studies.okdph_table4.okdph_data_table.settings[1].datasets: unknown data set(s) cifar1000"),
    (lambda p: hybrid_data(p, settings="Noisy"), ("studies.okdph_table4.okdph_data_table.hybrid[0]: unknown key(s) settings; allowed: ",
                                              "(did you mean setting?)")),
]


def hybrid_data(params, **change):
    params["studies"]["okdph_table4"]["okdph_data_table"]["hybrid"][0].update(change)


@pytest.mark.parametrize("edit,message", UNKNOWN)
@pytest.mark.bad_input
def test_a_mistake_at_any_depth_of_params_yaml_is_named_before_any_work(tmp_path, capsys, monkeypatch, edit, message):
    """Every study is checked when params.yaml is read, built or not: the OKDPH studies are not in `build`,
    and a misspelt `fusion_evry` there gave a KeyError traceback when they were planned."""
    monkeypatch.chdir(tmp_path)
    path = spoiled(tmp_path, edit)
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    err = refused(capsys, "pipeline", "dvc-yaml", "--params", str(path), "--out", str(tmp_path / "dvc.yaml"))
    for part in (message,) if isinstance(message, str) else message:
        assert part in str(caught.value) and part in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_the_repository_params_and_a_top_level_threads_key_are_accepted(tmp_path):
    params = load_params(spoiled(tmp_path, lambda p: p.update(threads=2)))
    for name in params["studies"]:
        study_spec(params, name)


# ---- 3. the command line

@pytest.mark.parametrize("spec,message", [
    ("{}", "studies.s: missing key(s) datasets, seeds"),
    ('{"datasets": ["synthetic"], "seeds": [0], "pair_tabel": {}}', ("studies.s: unknown key(s) pair_tabel; allowed: ", "(did you mean pair_table?)")),
    ('{"datasets": ["synthetic"], "seeds": [0], "pair_table": {"pairs": [["mlp", "mlp"]]}, "train": {"epoks": 1}}',
     "studies.s.train.epoks is not a training key"),
    ("[]", "--spec must be a JSON dict"),
])
@pytest.mark.bad_input
def test_tables_spec_that_is_not_a_study_is_a_message(tmp_path, capsys, monkeypatch, spec, message):
    """`rdml tables s --spec '{}'` ended in KeyError: 'datasets', after making the tables folder."""
    monkeypatch.chdir(tmp_path)
    err = refused(capsys, "tables", "s", "--spec", spec)
    assert all(part in err for part in ((message,) if isinstance(message, str) else message))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text,message", [
    (None, "--spec-file {}: not a readable spec (FileNotFoundError"),
    ("[1]", "--spec-file {}: holds list, not a JSON object"),
    ("{}", "studies.s: missing key(s) datasets, seeds"),
])
@pytest.mark.bad_input
def test_tables_spec_file_that_is_not_a_study_is_a_message(tmp_path, capsys, monkeypatch, text, message):
    """What Snakemake hands `rdml tables` as a file is checked as the --spec text is, before any work."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "in" / "tables.json"
    spec.parent.mkdir()
    if text is not None:
        spec.write_text(text)
    assert message.format(spec) in refused(capsys, "tables", "s", "--spec-file", str(spec))
    assert list(tmp_path.iterdir()) == [spec.parent]


@pytest.mark.bad_input
def test_tables_of_a_study_not_in_params_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, (REPO / "params.yaml").read_text(), "params.yaml")
    assert "study 'nosuch' is not in params.yaml" in refused(capsys, "tables", "nosuch", "--params", str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_an_okdph_study_as_snakemake_passes_it_plans_the_same_runs():
    """Snakemake passes a study as JSON, whose keys are strings: OKDPH's `views` by cohort size ("2") must
    plan as params.yaml's (2) does, not end in KeyError: 2."""
    params = load_params(REPO / "params.yaml")
    for name in ("okdph_table3_smoke", "okdph_table4_smoke"):
        as_json = json.loads(json.dumps(params["studies"][name], sort_keys=True))
        assert [r.id for r in plan_study({"studies": {name: check_study(name, as_json)}}, name)] == [
            r.id for r in plan_study(params, name)]


@pytest.mark.bad_input
def test_a_setting_key_no_run_of_the_table_reads_is_refused_when_planned(tmp_path):
    """okdph_data_table's settings reach its runs of all seven methods: KD's beta would only change their identities."""
    params = load_params(spoiled(tmp_path, lambda p: p["studies"]["okdph_table4"]["okdph_data_table"]["settings"][0]
                                 .update(train={"beta": 0.5})))
    with pytest.raises(ConfigError, match=r"studies.okdph_table4.okdph_data_table.settings\[0\].train.beta: no run it "
                                          r"reaches reads beta \(their methods: dml, ffl, kdcl, okddip, okdph, one, pcl\); beta is a key of kd"):
        plan_study(params, "okdph_table4")


@pytest.mark.parametrize("argv,value", [
    (["pipeline", "run", "s", "j", "--threads", "-4"], "-4"),
    (["pipeline", "measure", "s", "r", "--threads", "0"], "0"),
    (["pipeline", "run", "s", "j", "--threads", "two"], "two"),
])
@pytest.mark.bad_input
def test_threads_must_be_a_count(capsys, argv, value):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --threads: threads='{value}' is not allowed; allowed: an integer >= 1" in err and "Traceback" not in err


COUNTS = {  # each way a count >= 1 reaches rdml → the count it gives from a value
    "params.yaml threads": lambda v: thread_count({"threads": v}),
    "params.yaml or --jobs-per-gpu": jobs_per_gpu,
    "--threads": lambda v: build_parser().parse_args(["pipeline", "run", "s", "j", "--threads", v]).threads,
}


NOT_COUNTS = [0, -1, 1.5, 2.0, True, None, "0", "-4", "+3", " 3", "3.0", "two", ""]


@pytest.mark.parametrize("where,value", [(where, value) for where in COUNTS for value in NOT_COUNTS
                                         if where != "--threads" or isinstance(value, str)])  # a command line: strings
@pytest.mark.bad_input
def test_every_count_is_refused_by_one_rule(where, value, capsys):
    """--threads took "+3" and " 3", jobs_per_gpu took " 3" but refused "+3", threads refused "3": one rule now."""
    if where == "--threads":
        with pytest.raises(SystemExit):
            COUNTS[where](value)
        assert f"threads={value!r} is not allowed; allowed: an integer >= 1" in capsys.readouterr().err
        return
    key, auto = ("threads", "") if "threads" in where else ("jobs_per_gpu", "auto or ")  # jobs_per_gpu: auto too
    with pytest.raises(ConfigError) as caught:
        COUNTS[where](value)
    assert str(caught.value) == f"{key}={value!r} is not allowed; allowed: {auto}an integer >= 1"


@pytest.mark.parametrize("where", COUNTS)
def test_every_count_takes_an_integer_or_its_digits(where):
    for value, expected in (("1", 1), ("4", 4), ("12", 12)) if where == "--threads" else ((1, 1), (12, 12), ("4", 4)):
        assert COUNTS[where](value) == expected
