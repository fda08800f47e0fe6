"""The weight net W: one score per target token, turned into token weights by ``losses.token_weights``."""

from __future__ import annotations

import torch
from torch import nn

from dawgen.generator.config import GeneratorConfig, Variant


class WeightNet(nn.Module):
    """MLP ``in_features -> hidden -> ReLU -> 1``. DawGen reads the token's final hidden state
    (``in_features = d``), FewGen its scalar discriminative loss (``in_features = 1``)."""

    def __init__(self, in_features: int, hidden: int = 100) -> None:
        super().__init__()
        self.in_features = in_features
        self.hidden = hidden
        self.layers = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[N, in_features] -> [N] scores."""
        return self.layers(features.to(self.layers[0].weight.dtype)).squeeze(-1)


def make_weight_net(config: GeneratorConfig, hidden_size: int) -> WeightNet | None:
    """The variant's weight net, initialised from ``config.seed`` (the global RNG is left as it was);
    None for ``plain``."""
    if config.variant is Variant.PLAIN:
        return None
    in_features = 1 if config.variant is Variant.FEWGEN else hidden_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return WeightNet(in_features, config.weight_net_hidden)
