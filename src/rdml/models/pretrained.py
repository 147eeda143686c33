"""Published weights as data. `rdml pipeline weights ARCH` fetches an architecture's weights once,
through timm's own mechanism (the Hugging Face hub and its cache, or a local file the user names), or for
torchvision's weights (TORCHVISION) from their published URL through torch.hub's cache, checked against the
sha256 prefix the URL names, and writes the network's state as `<data_dir>/weights/<weights>.safetensors`,
a DVC output. Training jobs only read that file, through timm's pretrained path
(rdml.models.timm_zoo.create) or the architecture's own loader (rdml.models.reid.start_from), and record its
sha256, which `rdml audit` checks; nothing is downloaded inside a training job.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from rdml.io import atomic_write_bytes, sha256_file
from rdml.keys import ConfigError
from rdml.models.catalog import ARCHITECTURES

__all__ = ["GENERATED", "TORCHVISION", "published", "weights_file", "published_outputs", "fetch_weights"]

GENERATED = "rdml_seed0"  # the tag of weights generated from seed 0, not downloaded: a stand-in for smoke runs and tests
GENERATED_OUTPUTS = 1000  # the head of generated weights of an rdml network (not timm's), ImageNet's size

# torchvision's published weights: "<arch>.<tag>" → (torchvision.models builder, its arguments for the published
# state, URL). torchvision names each file `<name>-<first hex digits of its sha256>.pth` and torch.hub checks
# them on download (`check_hash`); a local copy is checked the same way. GoogLeNet's: GoogLeNet_Weights.IMAGENET1K_V1
# (69.778 % top-1), saved with its auxiliary heads (torchvision's `googlenet` builds them to load it).
TORCHVISION = {
    "tv_googlenet.imagenet1k_v1": ("googlenet", {"aux_logits": True, "init_weights": False, "num_classes": 1000},
                                   "https://download.pytorch.org/models/googlenet-1378be20.pth"),
}
HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")  # torch.hub.HASH_REGEX: the sha256 prefix in a published file's name


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

    name = _weights(arch)
    model_name, tag = name.split(".", 1)
    if name in TORCHVISION:
        return TORCHVISION[name][1]["num_classes"]
    if tag == GENERATED and not timm.is_model(model_name):
        return GENERATED_OUTPUTS
    return timm.models.get_pretrained_cfg(model_name).num_classes or 1000


def fetch_weights(arch: str, data_dir: str | Path = "data", source: str | Path | None = None) -> dict:
    """Fetch `arch`'s published weights (from `source` where given: a local file in any format timm reads, or
    a copy of torchvision's published file) and write them where training reads them; returns what was written,
    with its sha256."""
    import timm
    import torch
    from safetensors.torch import save

    name = _weights(arch)
    model_name, tag = name.split(".", 1)
    if name in TORCHVISION:
        model, origin = _torchvision(name, arch, source)
    elif tag == GENERATED:
        torch.manual_seed(0)
        model = timm.create_model(model_name, pretrained=False) if timm.is_model(model_name) else _rdml_network(model_name)
        origin = "generated from seed 0 (a stand-in, not published)"
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


def _rdml_network(arch: str):
    """An rdml architecture that is not timm's, randomly initialised, with a head of GENERATED_OUTPUTS classes."""
    module, function = ARCHITECTURES[arch].builder.split(":")
    return getattr(importlib.import_module(f"rdml.models.{module}"), function)((3, 224, 224), GENERATED_OUTPUTS)


def _torchvision(name: str, arch: str, source: str | Path | None):
    """torchvision's published network `name` (TORCHVISION), from the local file `source` or downloaded through
    torch.hub's cache; either checked against the sha256 prefix its URL names, then loaded strictly."""
    import torch
    import torchvision

    builder, kwargs, url = TORCHVISION[name]
    prefix = HASH_PREFIX.search(url.rsplit("/", 1)[-1]).group(1)
    if source is not None:
        if not Path(source).is_file():
            raise ConfigError(f"--file {source}: no such file")
        digest = sha256_file(source)
        if not digest.startswith(prefix):
            raise ConfigError(f"--file {source} is not {name}: its sha256 starts {digest[:len(prefix)]}, the published "
                              f"file's {prefix} ({url})")
        state, origin = torch.load(source, map_location="cpu", weights_only=True), f"file {source}"
    else:
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True)
        except Exception as exc:  # urllib and torch.hub raise many kinds for a network failure or a bad hash
            raise ConfigError(f"the weights {name} could not be downloaded from {url} ({type(exc).__name__}: {exc}); "
                              f"download them elsewhere and pass the file: rdml pipeline weights {arch} --file PATH") from None
        origin = url
    model = getattr(torchvision.models, builder)(weights=None, **kwargs)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{origin} does not hold weights of {name} ({type(exc).__name__}: {exc})") from None
    return model, origin
