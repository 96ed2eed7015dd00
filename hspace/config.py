"""Typed configuration of a discovery run (the paper's Table 4 columns)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

ALGORITHMS = ("checkpointed", "vanilla")


@dataclass(frozen=True)
class DiscoveryConfig:
    """One discovery run, named in the paper as ``<DM>-<t_stop>-<M>-<K>-<S>``."""

    K: int = 32  # number of directions
    S: float = 5.0  # shifts are drawn from U[-S, S]
    M: int = 20  # DDIM steps of the generative chain
    t_stop: int = 400  # asymmetric steps for t >= t_stop (the shifting interval [T, t_stop])
    lambda1: float = 0.1  # weight of the direction-index cross-entropy
    lambda2: float = 0.1  # weight of the shift-magnitude L1
    lr: float = 1e-3  # Adam, default betas, for all three trained parts
    batch_size: int = 128
    train_steps: int = 3000
    reconstructor: str = "lenet"  # "lenet" (MNIST, Anime) or "resnet18" (CelebA-HQ, AFHQ)
    discriminator_init: str = "random"  # or "pretrained": start from the DM's encoder weights
    algorithm: str = "checkpointed"  # Algorithm 1; "vanilla" keeps the whole chain's graph
    keep_graph_steps: int = 0  # checkpointed only: keep the graph of the last N steps instead of recomputing
    seed: int = 0

    def __post_init__(self):
        problems = []
        if self.K < 1:
            problems.append(f"K={self.K}: need at least one direction (K >= 1)")
        if not self.S > 0:
            problems.append(f"S={self.S}: the shift range [-S, S] needs S > 0")
        if self.M < 1:
            problems.append(f"M={self.M}: the chain needs at least one step (M >= 1)")
        if self.batch_size < 1 or self.train_steps < 0:
            problems.append("batch_size must be >= 1 and train_steps >= 0")
        if self.algorithm not in ALGORITHMS:
            problems.append(f"algorithm={self.algorithm!r}: choose one of {', '.join(ALGORITHMS)}")
        if self.discriminator_init not in ("random", "pretrained"):
            problems.append(f"discriminator_init={self.discriminator_init!r}: choose 'random' or 'pretrained'")
        if not 0 <= self.keep_graph_steps <= self.M:
            problems.append(f"keep_graph_steps={self.keep_graph_steps}: choose 0..M ({self.M})")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def kept_steps(self) -> int:
        """How many final steps keep their autograd graph: all for vanilla, none for Algorithm 1."""
        return self.M if self.algorithm == "vanilla" else self.keep_graph_steps

    def replace(self, **overrides) -> DiscoveryConfig:
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}: known are {[f.name for f in fields(self)]}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
