"""Per-channel normalisation constants that published code fixes, and which data sets take them; torch-free,
so that configs are checked without importing torch.

`normalize=okdph`: the official OKDPH code normalises CIFAR with fixed constants, not with the training
rows' statistics (tianlizhang/OKDPH src/data/data_loader.py L150–163, `build_transform`; the same
`transforms.Normalize(mean, std)` ends its training and test transforms, L170–294). It picks them by the
data set's name, `'cifar100' in args.dataset` first (L150), then `'cifar10'` (L160), so its 10 % and 1 %
subsets (cifar10_10, cifar100_1, ...) and its noisy sets take their parent's constants. The Noisy setting
adds N(0, 1) after this normalisation (src/data/cifar_noisy.py L27), so the constants set its
signal-to-noise ratio.
"""

from __future__ import annotations

from rdml.data.catalog import DATASETS, KINDS
from rdml.keys import ConfigError, one_of

__all__ = ["OKDPH_NORMALISATION", "FIXED", "FIXED_NOTES", "fixed_family", "normalizations", "check_normalize"]

# (mean, std) per channel, as tianlizhang/OKDPH src/data/data_loader.py writes them
OKDPH_NORMALISATION = {
    # L150–152: CIFAR-100's own training statistics
    "cifar100": ((0.5070751592371323, 0.48654887331495095, 0.4409178433670343),
                 (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)),
    # L160–162: the widely copied CIFAR-10 constants (their std is not the pixels' std, ~0.247/0.243/0.261)
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
}

FIXED = {"okdph": OKDPH_NORMALISATION}  # a `normalize` value → its constants, by the CIFAR set they belong to
FIXED_NOTES = {"okdph": "Inputs are normalised with the official OKDPH code's fixed CIFAR constants "
                        "(tianlizhang/OKDPH src/data/data_loader.py L150–163; CIFAR-10 std 0.2023/0.1994/0.2010), "
                        "not the training rows' statistics."}  # what a table caption says of them (rdml.study.notes)


def fixed_family(normalize: str, dataset: str) -> str | None:
    """The set of FIXED[normalize] whose constants `dataset` takes: the set itself, a set drawn from its rows
    (cifar10_10 reads cifar10), or its generated stand-in in smoke runs (tiny_cifar10); None for any other."""
    source = DATASETS[dataset]
    for family in FIXED[normalize]:
        if dataset in (family, DATASETS[family].smoke) or family in source.needs:
            return family
    return None


def normalizations(dataset: str) -> tuple[str, ...]:
    """The `normalize` values `dataset` takes: its kind's, then each set of fixed constants that has its family."""
    return (*KINDS[DATASETS[dataset].spec.kind].normalizations, *(name for name in FIXED if fixed_family(name, dataset)))


def check_normalize(normalize: str, dataset: str) -> None:
    """A clear error for a `normalize` value that `dataset` does not take."""
    allowed = normalizations(dataset)
    if normalize in FIXED and normalize not in allowed:
        raise ConfigError(f"normalize={normalize} is the official {normalize.upper()} code's constants for "
                          f"{' and '.join(sorted(FIXED[normalize]))}, the sets drawn from them and their stand-ins; dataset "
                          f"{dataset} is none of these; allowed: {', '.join(sorted(allowed))}")
    one_of("normalize", normalize, allowed)
