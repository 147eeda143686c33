"""Keys per method (rdml.config): a method's keys live in its own namespace, α is a key of the methods
that have one, and a run's label comes from its method; identities and default directories of runs of
the earlier flat namespace are kept."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from rdml.code import PACKAGE
from rdml.config import IDENTITY_V1, ConfigError, config_from_mapping, config_sha256, config_values, load_config, resolve
from rdml.methods import METHODS

TWO_BETAS = '''
from rdml.keys import Key
from rdml.methods.base import METHODS, Method


@METHODS.register("beta_method")
class BetaMethod(Method):
    name = "beta_method"
    description = "a method with a beta of its own"
    keys = (Key("beta", 0.25, "float", "beta_method: its own beta"), Key("gain", 2, "int", "beta_method: a gain"))

    @classmethod
    def label(cls, keys):
        return f"B β={keys.get('beta', 0.25):g}"

    def train_step(self, x, y, cohort):
        return []
'''
PROBE = '''
import json
from rdml.config import ConfigError, config_values, load_config, resolve
from rdml.methods import METHODS
mine = resolve(load_config(None, ["method=beta_method"]))
kd = resolve(load_config(None, ["method=kd", "teacher=t"]))
try:
    load_config(None, ["method=kd", "gain=3"])
    refused = None
except ConfigError as exc:
    refused = str(exc)
print(json.dumps({"mine": mine.beta, "kd": kd.beta, "label": METHODS["beta_method"].label(config_values(mine)),
                  "keys": sorted(config_values(mine)), "refused": refused}))
'''


def test_two_methods_may_each_have_a_beta(tmp_path):
    package = tmp_path / "rdml"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "methods/beta_method.py").write_text(textwrap.dedent(TWO_BETAS))
    init = package / "methods/__init__.py"
    init.write_text(init.read_text() + "from rdml.methods import beta_method  # noqa: F401\n")
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    found = json.loads(done.stdout)
    assert (found["mine"], found["kd"], found["label"]) == (0.25, 0.9, "B β=0.25")
    assert {"beta", "gain"} <= set(found["keys"]) and "mimic_weight" not in found["keys"]
    assert found["refused"] == "gain is not a key of method kd; it is a key of beta_method (see `rdml train --help`)"


@pytest.mark.parametrize("overrides,message", [
    (["method=dml", "kd_weight=0.5"], "kd_weight is not a key of method dml; it is a key of okdph"),
    (["method=independent", "ensemble_weight=0.5"], "it is a key of kdcl"),
    (["method=dml", "betta=0.5"], "unknown key 'betta'; did you mean beta"),
])
@pytest.mark.bad_input
def test_a_key_of_another_method_is_refused_naming_its_method(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(load_config(None, overrides))


@pytest.mark.parametrize("method,key,value,owners", [
    ("dml", "beta", "0.5", "kd"), ("dml", "teacher_index", "1", "kd"), ("okdph", "mimic_weight", "2.0", "dml, dml_e"),
    ("kdcl", "update_order", "sequential", "dml, dml_e"), ("independent", "beta", "0.3", "kd"),
    ("teacher", "teacher_index", "2", "kd"),
])
@pytest.mark.bad_input
def test_a_user_key_of_rdml_run_1_for_another_method_is_refused_unless_it_leaves_the_identity(method, key, value, owners):
    """`rdml train method=dml beta=0.5` trained a DML run that kd's beta never reached, under a new identity.
    Refused, naming the key and its methods; the value every such run held is still taken (the same identity)."""
    base = ["dataset=synthetic", f"method={method}"]
    with pytest.raises(ConfigError, match=f"^{key}={value}: {key} is not a key of method {method}; it is a key of {owners};"):
        load_config(None, [*base, f"{key}={value}"])
    same = {"beta": "0.9", "teacher_index": "0", "mimic_weight": "1", "update_order": "simultaneous"}[key]
    assert config_sha256(resolve(load_config(None, [*base, f"{key}={same}"]))) == config_sha256(resolve(load_config(None, base)))
    planned = resolve(config_from_mapping({"dataset": "synthetic", "method": method, key: value}))  # a study's shared key
    assert getattr(planned, key) is not None


@pytest.mark.bad_input
def test_a_config_file_of_another_methods_key_is_refused_too(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: dml\nmimic_weight: 2\nbeta: 0.5\n")
    with pytest.raises(ConfigError, match="beta=0.5: beta is not a key of method dml; it is a key of kd"):
        load_config(path)


def test_alpha_belongs_to_the_methods_that_have_one():
    assert {name for name, method in METHODS.items() if any(k.name == "alpha" for k in method.keys)} == {"kd", "dml", "dml_e"}
    independent = resolve(load_config(None, ["method=independent"]))
    assert independent.alpha is None and "alpha" not in config_values(independent)
    assert independent.out.startswith("runs/independent-digits-mlp-a1-s0-")  # named as rdml.run/1 named it
    assert resolve(load_config(None, ["alpha=1.5"])).out.startswith("runs/dml-digits-mlp-a1.5-s0-")
    for method in ("independent", "okdph"):
        with pytest.raises(ConfigError, match=f"method {method} takes no Rényi order"):
            resolve(load_config(None, [f"method={method}", "alpha=2"]))


def test_labels_come_from_the_method_and_its_keys():
    assert METHODS["dml"].label({}) == "DML" and METHODS["dml"].label({"alpha": 1.5}) == "RDML α=1.5"
    assert METHODS["dml_e"].label({"alpha": 2.0}) == "RDML_e α=2"
    assert METHODS["kd"].label({"alpha": 1.0}) == "KD" and METHODS["kd"].label({"alpha": 0.5}) == "Rényi KD α=0.5"
    assert METHODS["independent"].label({}) == "Ind." and METHODS["okdph"].label({}) == "OKDPH"


def flat(values: dict) -> dict:
    """The mapping the flat namespace stored: every method's keys, at their defaults where not the run's."""
    return {"alpha": 1.0, "beta": 0.9, "mimic_weight": 1.0, "update_order": "simultaneous", "teacher": None,
            "teacher_index": 0, "kd_scale": "t2", "probability_floor": 0.0, "ce_weight": 1.0, "kd_weight": 0.5,
            "hybrid_weight": 1.0, "fusion_every": "1e", "ensemble_weight": 0.5, **values}


@pytest.mark.parametrize("overrides", [["method=independent"], ["method=dml", "alpha=2"], ["method=okdph"],
                                       ["method=independent", "update_order=sequential"]])
def test_a_run_of_the_flat_namespace_keeps_its_identity(overrides):
    """A record of the flat namespace stored every method's keys; hashed again, it is the run planned now
    (planned: a study's shared `update_order: sequential` reaches its Ind. runs, as it did then)."""
    cfg = resolve(config_from_mapping(dict(item.split("=") for item in ["dataset=synthetic", *overrides])))
    assert config_sha256(flat(config_values(cfg))) == config_sha256(cfg)


def test_a_flat_record_holding_another_methods_key_still_hashes_to_its_identity():
    """rdml.run/1 gave every run a study's shared keys: an Ind. run with DML's probability_floor = 1e-8 was
    hashed with it, and its record still audits (its stored mapping hashes to its stored identity)."""
    cfg = resolve(load_config(None, ["dataset=synthetic", "method=independent"]))
    flat_record = flat({**config_values(cfg), "probability_floor": 1e-8})
    counted = {k: v for k, v in flat_record.items() if k in IDENTITY_V1 and k not in ("out", "data_dir")}
    old_rule = hashlib.sha256(json.dumps({**counted, "probability_floor": 1e-8}, sort_keys=True).encode()).hexdigest()
    assert config_sha256(flat_record) == old_rule  # the hash rdml.run/1 wrote into that record
    assert config_sha256(flat(config_values(cfg))) == config_sha256(cfg)
