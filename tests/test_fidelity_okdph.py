"""The OKDPH studies' inputs against the official code (tianlizhang/OKDPH at a562089): its fixed normalisation
constants (`normalize=okdph`) and its noisy test pass, which draws noise for each network on its own."""

import ast
import math
import re

import pytest
import torch
from torch import nn

from conftest import lone_run, one_cell_table, run
from rdml.audit import audit_cell
from rdml.config import load_config, resolve
from rdml.data.base import load_dataset
from rdml.data.catalog import DATASETS
from rdml.data.fixed_normalisation import OKDPH_NORMALISATION, fixed_family, normalizations
from rdml.keys import ConfigError
from rdml.train.cohort import Cohort, Student, rebuild
from rdml.train.evaluate import evaluate, evaluation_noise, input_noise
from rdml.train.verified import verified_run

# tianlizhang/OKDPH src/data/data_loader.py L150–163, as the file has them
OFFICIAL_BUILD_TRANSFORM = """
    elif 'cifar100' in args.dataset:
        mean = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
        std = (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)
        img_size = [32, 32]

    elif 'cifar10_224' in args.dataset:
        mean = (0.4914, 0.4822, 0.4465)
        std = (0.2023, 0.1994, 0.2010)
        img_size = [224, 224]

    elif 'cifar10' in args.dataset:
        mean = (0.4914, 0.4822, 0.4465)
        std = (0.2023, 0.1994, 0.2010)
        img_size = [32, 32]
"""


def official_constants() -> dict:
    """(mean, std) per `'<name>' in args.dataset` branch of the quoted lines."""
    branches = re.findall(r"'(\w+)' in args\.dataset:\s+mean = (\(.*?\))\s+std = (\(.*?\))", OFFICIAL_BUILD_TRANSFORM)
    return {name: (ast.literal_eval(mean), ast.literal_eval(std)) for name, mean, std in branches}


def official_family(dataset: str) -> str | None:
    """src/data/data_loader.py L150 and L160: the first branch whose name the data set's name holds."""
    return "cifar100" if "cifar100" in dataset else "cifar10" if "cifar10" in dataset else None


def test_the_constants_are_the_official_files():
    official = official_constants()
    assert official["cifar10_224"] == official["cifar10"]
    assert OKDPH_NORMALISATION == {name: official[name] for name in ("cifar100", "cifar10")}


def test_every_set_takes_the_constants_the_official_code_picks_by_name():
    """The official rule matches names; rdml's follows the catalog (a set, one drawn from it, its stand-in)."""
    assert {name: fixed_family("okdph", name) for name in DATASETS} == {name: official_family(name) for name in DATASETS}
    assert fixed_family("okdph", "cifar10_1") == "cifar10" and fixed_family("okdph", "cifar100_10") == "cifar100"
    assert [name for name in DATASETS if "okdph" in normalizations(name)] == [
        name for name in DATASETS if official_family(name)]


@pytest.mark.parametrize("name,family", [("tiny_cifar10", "cifar10"), ("tiny_cifar100", "cifar100")])
def test_okdph_normalises_as_the_official_test_transform(name, family):
    """Bit-identical to torchvision's Resize, ToTensor and Normalize with the official constants (L290–294), and
    unlike the training rows' own statistics."""
    from PIL import Image
    from torchvision import transforms

    data = load_dataset(name, split_seed=0, test_fraction=0.25, normalize="okdph")
    mean, std = OKDPH_NORMALISATION[family]
    official = transforms.Compose([transforms.Resize([32, 32]), transforms.ToTensor(), transforms.Normalize(mean, std)])
    expected = torch.stack([official(Image.fromarray(x.permute(1, 2, 0).numpy())) for x in data.x_test])
    assert torch.equal(data.inputs(data.x_test), expected)
    assert data.fingerprint["normalize"] == "okdph"
    own = load_dataset(name, split_seed=0, test_fraction=0.25)
    assert not torch.allclose(own.std, data.std, atol=1e-3)


@pytest.mark.bad_input
def test_okdph_constants_are_refused_for_a_set_they_do_not_belong_to():
    with pytest.raises(ConfigError, match="normalize=okdph is the official OKDPH code's constants for cifar10 and "
                                          "cifar100.*dataset digits is none of these; allowed: dataset, imagenet"):
        resolve(load_config(None, ["dataset=digits", "normalize=okdph"]))


# ---- The official noisy test pass, written out ----

def official_noisy_test_inputs(images: torch.Tensor, networks: int, std: float, generators: list) -> list:
    """What each network sees in the official noisy test (tianlizhang/OKDPH src/OKDPH.py L131–133: each network
    `test`s over the whole test loader in turn, L18–30; the loader, batch size 128 and no shuffling,
    src/data/data_loader.py L82; NoisyCIFAR draws each image's noise as it is read, noise_mean 0 and
    noise_std = std, src/data/cifar_noisy.py L25–28). `generators[nid]` stands where the official code has the
    loader workers' generators, whose seeds no one can draw again."""
    seen = []
    for nid in range(networks):
        batches = []
        for start in range(0, len(images), 128):
            batch = []
            for image in images[start:start + 128]:
                noise = 0.0 + std * torch.randn(image.shape, generator=generators[nid])  # torch.randn_like(image)
                batch.append(image + noise)
            batches.append(torch.stack(batch))
        seen.append(torch.cat(batches))
    return seen


class Recorder(nn.Module):
    """A network that keeps every input it is given and predicts nothing in particular."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes, self.inputs = classes, []

    def forward(self, x):
        self.inputs.append(x.clone())
        return torch.zeros(len(x), self.classes)


def test_each_network_sees_the_noise_the_official_loop_draws_for_it():
    data = load_dataset("tiny_cifar10", split_seed=0, test_fraction=0.25, normalize="okdph")
    seed, epoch, std = 42, 3, 1.0
    students, hwm = [Recorder(10), Recorder(10)], Recorder(10)
    cohort = Cohort([Student(model, None, None) for model in students])
    # a batch of 6 rows here, 128 in the official loader: the stream of draws does not depend on it
    evaluate(cohort, data, extra={"hwm": hwm}, batch_size=6, noise=evaluation_noise(std, seed, epoch))
    seen = [torch.cat(network.inputs) for network in (*students, hwm)]
    seeds = [seed * 1_000_003 + epoch + 700_000_000 + 10_000_000 * k for k in range(3)]
    expected = official_noisy_test_inputs(data.inputs(data.x_test), 3, std, [torch.Generator().manual_seed(s) for s in seeds])
    assert all(torch.equal(got, want) for got, want in zip(seen, expected))
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])  # each its own noise
    # network 0 keeps the stream every network shared before, so one-network runs keep their numbers
    assert torch.equal(seen[0], input_noise(std, torch.Generator().manual_seed(seeds[0]))(data.inputs(data.x_test)))


def test_a_noisy_okdph_run_is_audited_with_each_networks_own_noise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = run("noisy", "dataset=tiny_cifar10", "method=okdph", "arch=cnn", "student_augment=crop_flip,none,crop_flip",
                 "normalize=okdph", "input_noise=1.0", "epochs=2", "batch_size=16")
    table = one_cell_table(tmp_path, "noisy", record)
    lines = []
    assert audit_cell(table, "DML|x", tmp_path, out=lines.append, evaluate=True) == lone_run(tmp_path), lines
    # the record's last test pass is the per-network one: drawn again, it gives the same losses; one shared draw
    # for every network (what rdml did before) gives others
    cfg = record["config"]
    data = load_dataset("tiny_cifar10", split_seed=cfg["split_seed"], test_fraction=cfg["test_fraction"], normalize="okdph")
    cohort, method = rebuild(verified_run(tmp_path / "noisy", "").saved, cfg, data,
                             torch.device("cpu"))
    last = record["epochs"][-1]["test"]
    again = evaluate(cohort, data, method=method, noise=evaluation_noise(1.0, cfg["seed"], len(record["epochs"])))
    shared = evaluate(cohort, data, method=method, noise=evaluation_noise(1.0, cfg["seed"], len(record["epochs"])).__call__)
    assert set(again) == {"student_0", "student_1", "ensemble"}  # what the audit re-evaluates (model.pt holds no HWM)
    for name in ("student_1", "ensemble"):
        assert math.isclose(again[name]["loss"], last[name]["loss"], rel_tol=1e-5), name
        assert not math.isclose(shared[name]["loss"], last[name]["loss"], rel_tol=1e-4), name


def test_the_okdph_captions_say_which_normalisation_and_test_noise_they_show():
    """Every OKDPH table names the official fixed constants; the table holding the Noisy setting also says that each
    network draws its own test noise; no other study's table says either."""
    from rdml.data.fixed_normalisation import FIXED_NOTES
    from rdml.study.notes import NOISY_TEST_NOTE
    from rdml.study.params import load_params
    from rdml.study.plan import plan_tables
    from conftest import REPO

    params = load_params(REPO / "params.yaml")
    noisy = NOISY_TEST_NOTE.format(std="1")
    tables = {(study, t.name): t.caption for study in params["studies"] for t in plan_tables(params, study)}
    okdph = {key: caption for key, caption in tables.items() if key[0].startswith("okdph_")}
    assert okdph and all(FIXED_NOTES["okdph"] in caption for caption in okdph.values())
    assert {key for key, caption in okdph.items() if noisy in caption} == {
        ("okdph_table4", "okdph_data_table"), ("okdph_table4_smoke", "okdph_data_table")}
    assert not any(FIXED_NOTES["okdph"] in c or "drawn afresh for each network" in c for key, c in tables.items()
                   if key not in okdph)
