"""What a table's caption says of the protocol of the runs it reads, beyond its layout: a network that departs
from its paper (an as-released variant), inputs normalised with a published code's fixed constants, a noisy
test pass. One home for these notes, gathered from the runs' keys by `rdml.study.plan` for every table, so a
table shows which reading it is whichever layout draws it."""

from __future__ import annotations

from rdml.data.fixed_normalisation import FIXED_NOTES
from rdml.models.catalog import ARCHITECTURES

__all__ = ["run_notes", "NOISY_TEST_NOTE", "LABEL_SMOOTHING_NOTE"]

# rdml.train.evaluate.EvaluationNoise: the official OKDPH test runs each network over its own pass of the noisy
# loader (tianlizhang/OKDPH src/OKDPH.py L131–133; src/data/cifar_noisy.py L25–28 draws per image, per pass)
NOISY_TEST_NOTE = ("Test rows carry N(0, {std}²) noise after normalisation, drawn afresh for each network, as the "
                   "official OKDPH test loop draws it (each network over its own pass of the noisy loader).")
# rdml.core.losses.supervised_cross_entropy: TF's softmax_cross_entropy(label_smoothing=ε), which the official DML
# code trains with, ε = 0.1 (YingZhangDUT/Deep-Mutual-Learning train_models.py L77–79, scripts/*_on_market.sh L41)
LABEL_SMOOTHING_NOTE = ("Every supervised cross-entropy is taken against labels smoothed by ε = {epsilon}, "
                        "(1 − ε)·onehot + ε/C, as the official DML code trains (TF's label_smoothing).")


def run_notes(config) -> list[str]:
    """The caption notes a run's keys call for (its architectures', its normalisation's, its test noise's, its label
    smoothing's)."""
    notes = [ARCHITECTURES[arch].note for arch in config.arch if ARCHITECTURES[arch].note]
    if config.normalize in FIXED_NOTES:
        notes.append(FIXED_NOTES[config.normalize])
    if config.input_noise:
        notes.append(NOISY_TEST_NOTE.format(std=f"{config.input_noise:g}"))
    if config.label_smoothing:
        notes.append(LABEL_SMOOTHING_NOTE.format(epsilon=f"{config.label_smoothing:g}"))
    return notes
