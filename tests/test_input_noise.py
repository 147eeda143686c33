"""The OKDPH supplement's Noisy setting (Table 4): N(0, std²) added to the normalised training and test
images alike, anew on every access (tianlizhang/OKDPH src/data/cifar_noisy.py L16–28)."""

import torch

from conftest import lone_run, one_cell_table, run
from rdml.audit import audit_cell
from rdml.train.evaluate import evaluation_noise, input_noise


def test_noise_is_drawn_from_its_generator_and_is_off_at_zero():
    x = torch.zeros(4, 3, 2, 2)
    noisy = input_noise(0.5, torch.Generator().manual_seed(7))(x)
    assert torch.equal(noisy, 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7)))
    assert input_noise(0.0, torch.Generator()) is None and evaluation_noise(0.0, 1, 1) is None
    first, again = evaluation_noise(1.0, 3, 2)(x), evaluation_noise(1.0, 3, 2)(x)
    assert torch.equal(first, again) and not torch.equal(first, evaluation_noise(1.0, 3, 3)(x))  # per epoch


def test_a_noisy_run_is_tested_on_noisy_inputs_and_the_audit_draws_them_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clean = run("clean", "method=independent", "epochs=2")
    noisy = run("noisy", "method=independent", "epochs=2", "input_noise=3.0")
    assert noisy["summary"]["student_0"]["final_acc"] < clean["summary"]["student_0"]["final_acc"]
    table = one_cell_table(tmp_path, "noisy", noisy)
    lines = []
    assert audit_cell(table, "DML|x", tmp_path, out=lines.append, evaluate=True) == lone_run(tmp_path), lines
