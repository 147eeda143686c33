"""Published weights as data. `rdml pipeline weights ARCH` fetches an architecture's weights once,
through timm's own mechanism (the Hugging Face hub and its cache, or a local file the user names), and
writes the network's state as `<data_dir>/weights/<weights>.safetensors`, a DVC output. Training jobs
only read that file, through timm's pretrained path (rdml.models.timm_zoo.create), and record its
sha256, which `rdml audit` checks; nothing is downloaded inside a training job.
"""

from __future__ import annotations

from pathlib import Path

from rdml.io import atomic_write_bytes, sha256_file
from rdml.keys import ConfigError
from rdml.models.catalog import ARCHITECTURES

__all__ = ["GENERATED", "published", "weights_file", "published_outputs", "fetch_weights"]

GENERATED = "rdml_seed0"  # the tag of weights generated from seed 0, not downloaded: a stand-in for smoke runs and tests


def published() -> list[str]:
    """The architectures that have published weights."""
    return [name for name, arch in ARCHITECTURES.items() if arch.weights]


def _weights(arch: str) -> str:
    name = ARCHITECTURES[arch].weights
    if name is None:
        raise ConfigError(f"arch={arch} has no published weights; architectures with weights: {', '.join(published())}")
    return name


def weights_file(arch: str, data_dir: str | Path = "data") -> Path:
    """Where the weights step puts `arch`'s published weights (and where training reads them)."""
    return Path(data_dir) / "weights" / f"{_weights(arch)}.safetensors"


def published_outputs(arch: str) -> int:
    """The number of outputs of the published head (timm's pretrained config: 1000 for ImageNet-1k)."""
    import timm

    return timm.models.get_pretrained_cfg(_weights(arch).split(".")[0]).num_classes or 1000


def fetch_weights(arch: str, data_dir: str | Path = "data", source: str | Path | None = None) -> dict:
    """Fetch `arch`'s published weights (from `source`, a local file in any format timm reads, where
    given) and write them where training reads them; returns what was written, with its sha256."""
    import timm
    import torch
    from safetensors.torch import save

    name = _weights(arch)
    model_name, tag = name.split(".", 1)
    if tag == GENERATED:
        torch.manual_seed(0)
        model, origin = timm.create_model(model_name, pretrained=False), "generated from seed 0 (a stand-in, not published)"
    elif source is not None:
        if not Path(source).is_file():
            raise ConfigError(f"--file {source}: no such file")
        try:
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(source)})
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            raise ConfigError(f"--file {source} does not hold weights of {name} ({type(exc).__name__}: {exc})") from None
        origin = f"file {source}"
    else:
        try:
            model = timm.create_model(name, pretrained=True)  # the Hugging Face hub, through its cache
        except Exception as exc:  # the hub client raises many kinds for a network failure
            raise ConfigError(f"the weights {name} could not be downloaded ({type(exc).__name__}: {exc}); download them "
                              f"elsewhere and pass the file: rdml pipeline weights {arch} --file PATH") from None
        origin = f"hf-hub:{model.pretrained_cfg.get('hf_hub_id')}"
    out = weights_file(arch, data_dir)
    atomic_write_bytes(out, save({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}))
    return {"arch": arch, "weights": name, "file": str(out), "sha256": sha256_file(out), "origin": origin}
