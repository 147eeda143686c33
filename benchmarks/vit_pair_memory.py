"""Memory a ViT-B/16 pair needs to train at batch 32 (RDML Table 2), counted on any device.

The bytes that stay on the device through a DML step: each network's parameters, gradients and SGD
momentum, plus the activations autograd saves for the backward pass. In rdml's simultaneous update
both networks' forward graphs are alive together (the released loop forwards both, then steps each),
so both networks' saved activations count. Saved tensors are counted by their storages (each once)
through `torch.autograd.graph.saved_tensors_hooks`, on the CPU in float32; a CUDA run adds its context
(~0.5 GiB) and the allocator's slack. Usage: python benchmarks/vit_pair_memory.py [--batch 32] (writes results/vit_pair_memory_b32.json)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rdml.data.catalog import DATASETS
from rdml.models import build_model
from rdml.train.record import cpu_name


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--arch", default="vit_base_patch16_224")
    args = parser.parse_args()
    spec = DATASETS["dtd"].spec
    model = build_model(args.arch, spec).train()
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    activations = saved_activation_bytes(model, torch.rand(args.batch, *spec.input_shape))
    per_network = 3 * parameters + activations  # weights, gradients, SGD momentum; saved activations
    gib = 2**30
    result = {"arch": args.arch, "batch": args.batch, "parameters_gib": parameters / gib,
              "saved_activations_gib": activations / gib, "per_network_gib": per_network / gib,
              "pair_gib": 2 * per_network / gib, "counted_on": cpu_name()}
    text = json.dumps(result, indent=1)
    print(text)
    out = Path(__file__).resolve().parent / "results" / f"vit_pair_memory_b{args.batch}.json"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
