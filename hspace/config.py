"""Typed configuration of a discovery run (the paper's Table 4 columns)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields

ALGORITHMS = ("optimised", "checkpointed", "vanilla")
AUTOCAST = ("auto", "bf16", "off")
RECONSTRUCTORS = ("lenet", "resnet18")  # nets.RECONSTRUCTORS builds them
DISCRIMINATOR_INITS = ("random", "pretrained")
# Optimised without a memory budget keeps as many final steps' graphs as fit in the graph memory of
# this many shifted steps: a fixed budget, so that peak memory stays flat in M, as Algorithm 1's does.
# (The final steps are plain DDIM steps below t_stop, whose graphs are smaller: more of them fit.)
OPTIMISED_KEPT_STEPS = 5


# The paper's recipe (section 4, Table 4): one Adam lr for all parts, lambda1 = lambda2 = 0.1, k and s
# uniform per sample, zero-initialised directions. Apply it over any preset with ``--recipe paper``.
PAPER_RECIPE = {
    "lambda1": 0.1,
    "lambda2": 0.1,
    "edit_overlap_weight": 0.0,
    "even_edit_weight": 0.0,
    "feature_matching_weight": 0.0,
    "lr": 1e-3,
    "shift_lr": None,
    "reconstructor_lr": None,
    "discriminator_lr": None,
    "discriminator_r1": 0.0,
    "lr_warmdown": 0.0,
    "min_shift": 0.0,
    "balanced_k": False,
    "direction_init_std": 0.0,
    "shift_norm": None,
    "discriminator_init": "random",  # the paper gives D the encoder's architecture, not its weights
}


def doc(default, text: str, choices: Sequence[str] | None = None):
    """A config field with its meaning (``hspace discover --help`` shows it) and, for names, its choices."""
    return dataclasses.field(default=default, metadata={"doc": text, "choices": choices})


@dataclass(frozen=True)
class DiscoveryConfig:
    """One discovery run, named in the paper as ``<DM>-<t_stop>-<M>-<K>-<S>``."""

    K: int = doc(32, "number of directions")
    S: float = doc(5.0, "shifts are drawn from U[-S, S] (with |s| >= min_shift)")
    M: int = doc(20, "DDIM steps of the generative chain")
    t_stop: int = doc(400, "asymmetric steps for t >= t_stop (the shifting interval [T, t_stop])")
    # The recipe. The defaults are hspace's (docs/discovery.md); PAPER_RECIPE holds the paper's.
    # 0.3 / 0.1 keeps L_G nearer ln 2 than 1 / 0.25 at the same RCA; 0.1 / 0.1 stalls (docs/discovery.md, "L_G").
    lambda1: float = doc(0.3, "weight of the direction-index cross-entropy (paper: 0.1)")
    lambda2: float = doc(0.1, "weight of the shift-magnitude L1 (paper: 0.1)")
    # Off: it moves along the same RCA-realism trade-off as a smaller shift (docs/discovery.md, "Edit overlap").
    edit_overlap_weight: float = doc(
        0.0,
        "weight of the squared cosine between two directions' edits of the same x_T and s; > 0 draws the batch "
        "in such pairs (0: off, paper)",
    )
    # The part of an edit that both signs of s make is what different directions share (docs/discovery.md, "Even edits").
    even_edit_weight: float = doc(
        0.0,
        "weight of the share of each edit that is even in s (the same change at s and -s); > 0 draws the batch in "
        "pairs that share x_T and k, with s and -s (0: off, paper)",
    )
    # L_G's gradient is the smallest of the terms at x~0 and a fresh D separates the edits within 100 steps
    # (docs/discovery.md, "A fresh critic").
    feature_matching_weight: float = doc(
        0.0,
        "weight of |mean phi(x~0) - mean phi(x0)|^2 / tr Var phi(x0) over the batch, phi the discriminator's pooled "
        "features (feature matching, Salimans et al. 2016); 0: off (paper)",
    )
    lr: float = doc(1e-3, "Adam learning rate (default betas) of every part without one of its own")
    shift_lr: float | None = doc(1e-2, "the shift block's learning rate (none: lr; paper: one lr for all)")
    reconstructor_lr: float | None = doc(None, "the reconstructor's learning rate (none: lr)")
    discriminator_lr: float | None = doc(None, "the discriminator's learning rate (none: lr)")
    discriminator_r1: float = doc(
        0.0,
        "weight gamma of the R1 penalty gamma/2 E|dD(x0)/dx0|^2 on the discriminator's real samples (0: off, paper)",
    )
    # Held-out RCA swings by up to 0.25 between evaluations at constant rates (docs/discovery.md, section 4).
    lr_warmdown: float = doc(
        0.0, "every learning rate falls linearly to zero over this last share of train_steps (0: constant, paper)"
    )
    # Off in the shipped default's last stage; L_G over the warm-down was the same with it and without
    # (docs/discovery.md, "A critic at a constant rate").
    discriminator_warmdown: bool = doc(
        True, "the discriminator's rate falls with the others over the warm-down; false: it stays constant"
    )
    min_shift: float = doc(0.5, "|s| is drawn from [min_shift, S] with a random sign (paper: 0)")
    balanced_k: bool = doc(True, "each direction index equally often in every batch (paper: k ~ U{0..K-1} per sample)")
    batch_size: int = doc(128, "samples per training step, over all processes")
    train_steps: int = doc(3000, "training steps of the whole run")
    reconstructor: str = doc("lenet", "lenet (MNIST, Anime) or resnet18 (CelebA-HQ, AFHQ)", RECONSTRUCTORS)
    # From the DM's encoder weights: edits at the same RCA stay markedly more real (docs/discovery.md, "A discriminator").
    discriminator_init: str = doc(
        "pretrained", "the discriminator starts from the DM's encoder weights, or random (paper)", DISCRIMINATOR_INITS
    )
    direction_init_std: float = doc(0.0, "0: zero-initialised output convs (paper); > 0: N(0, std^2) weights")
    # A free norm grows to 0.6-1.1 x |h| per unit of s at K = 16 (3-6 x |h| at s = S): edits that redraw the digit.
    shift_norm: float | None = doc(
        None,
        "none: Delta h = s f(h, k) (paper); r > 0: f(h, k) rescaled per sample so that |Delta h| = |s| r |h| (RMS), "
        "so that s alone sets the edit's size (needs direction_init_std > 0 or init_from)",
    )
    # Directions found with large, free shifts, then refined at a bounded size (docs/discovery.md, "Refining").
    init_from: str | None = doc(
        None, "start from the three parts of this run (a folder or shipped name) with fresh optimisers; none: new parts"
    )
    # A discriminator that trained through earlier stages logs a higher L_G than a fresh one
    # (docs/discovery.md, "A fresh critic").
    init_discriminator: bool = doc(
        True, "with init_from: the discriminator starts from that run's too; false: a fresh one (discriminator_init)"
    )
    # How gradients are computed; all give the same gradients for the same draws (see train.py).
    algorithm: str = doc(
        "optimised",
        "checkpointed: Algorithm 1; vanilla: the whole chain's graph; optimised: Algorithm 1 keeping what memory "
        "allows, with cached real chains (and bf16 on CUDA); all give the same gradients",
        ALGORITHMS,
    )
    keep_graph_steps: int | None = doc(
        None, "keep the graph of the last N steps (none: 0 for checkpointed, M for vanilla, the budget for optimised)"
    )
    memory_budget_mb: float | None = doc(
        None, "optimised: keep as many steps' graphs as fit in this many MB (none: those of 5 shifted steps)"
    )
    real_cache: int | None = doc(
        None, "reuse real chains (x_T, x0) from a cache this big (none: 4 x batch when optimised)"
    )
    real_refresh: float = doc(0.25, "share of each batch drawn fresh when the cache is on")
    autocast: str = doc("auto", "bf16: the frozen UNet in bfloat16 (auto: on CUDA when optimised); off", AUTOCAST)
    channels_last: bool = doc(False, "the frozen UNet in channels_last memory format")
    compile: bool = doc(False, "torch.compile the frozen UNet's encoder and decoder")
    overlap: bool = doc(False, "optimised: recompute the next step on a second thread during a backward")
    seed: int = doc(0, "seed of the initialisation and of every draw of x_T, k and s")

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
        for name in ("lr", "shift_lr", "reconstructor_lr", "discriminator_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                problems.append(f"{name}={value}: give a learning rate > 0")
        if not self.feature_matching_weight >= 0:
            problems.append(f"feature_matching_weight={self.feature_matching_weight}: give a weight >= 0 (0: off)")
        if not self.discriminator_r1 >= 0:
            problems.append(f"discriminator_r1={self.discriminator_r1}: give a weight >= 0 (0: off)")
        if not 0 <= self.lr_warmdown <= 1:
            problems.append(
                f"lr_warmdown={self.lr_warmdown}: choose a share of train_steps in [0, 1] (0: constant rates)"
            )
        if not self.edit_overlap_weight >= 0:
            problems.append(f"edit_overlap_weight={self.edit_overlap_weight}: give a weight >= 0 (0: off)")
        elif self.edit_overlap_weight > 0 and (self.K < 2 or self.batch_size % 2):
            problems.append(
                f"edit_overlap_weight={self.edit_overlap_weight} pairs two directions on each x_T: it needs K >= 2 and an even "
                f"batch_size (K={self.K}, batch_size={self.batch_size}), or edit_overlap_weight 0"
            )
        if not self.even_edit_weight >= 0:
            problems.append(f"even_edit_weight={self.even_edit_weight}: give a weight >= 0 (0: off)")
        elif self.even_edit_weight > 0 and self.batch_size % 2:
            problems.append(
                f"even_edit_weight={self.even_edit_weight} pairs s and -s on each x_T: it needs an even batch_size "
                f"(batch_size={self.batch_size}), or even_edit_weight 0"
            )
        if self.edit_overlap_weight > 0 and self.even_edit_weight > 0:
            problems.append(
                "edit_overlap_weight and even_edit_weight pair the batch in different ways: set one of them to 0"
            )
        if not 0 <= self.min_shift < self.S:
            problems.append(f"min_shift={self.min_shift}: choose 0 <= min_shift < S ({self.S})")
        if not self.direction_init_std >= 0:
            problems.append(
                f"direction_init_std={self.direction_init_std}: give a standard deviation >= 0 (0 is the paper's zero init)"
            )
        if self.shift_norm is not None and not self.shift_norm > 0:
            problems.append(
                f"shift_norm={self.shift_norm}: give a size per unit of s > 0 (or none for the paper's free norm)"
            )
        elif self.shift_norm is not None and self.direction_init_std == 0 and self.init_from is None:
            problems.append(
                "shift_norm needs directions that start non-zero (a zero direction has no norm to rescale): "
                "also pass --direction-init-std, e.g. 0.01, or --init-from a trained run"
            )
        if not self.init_discriminator and self.init_from is None:
            problems.append(
                "init_discriminator=False chooses which parts come from init_from: give --init-from RUN "
                "or drop --no-init-discriminator"
            )
        if self.discriminator_init not in DISCRIMINATOR_INITS:
            problems.append(f"discriminator_init={self.discriminator_init!r}: choose 'random' or 'pretrained'")
        if self.reconstructor not in RECONSTRUCTORS:
            problems.append(f"reconstructor={self.reconstructor!r}: choose one of {', '.join(RECONSTRUCTORS)}")
        if self.keep_graph_steps is not None and not 0 <= self.keep_graph_steps <= self.M:
            problems.append(f"keep_graph_steps={self.keep_graph_steps}: choose 0..M ({self.M})")
        if self.memory_budget_mb is not None and not self.memory_budget_mb >= 0:
            problems.append(f"memory_budget_mb={self.memory_budget_mb}: give a size in MB >= 0")
        if self.real_cache is not None and self.real_cache < 0:
            problems.append(f"real_cache={self.real_cache}: give a size >= 0 (0 turns the cache off)")
        if not 0 < self.real_refresh <= 1:
            problems.append(f"real_refresh={self.real_refresh}: choose a share in (0, 1]")
        if self.autocast not in AUTOCAST:
            problems.append(f"autocast={self.autocast!r}: choose one of {', '.join(AUTOCAST)}")
        if self.overlap and self.compile:  # pytorch/pytorch#105943
            problems.append("overlap with compile: torch.compile is not thread-safe; drop --overlap or --compile")
        if problems:
            raise ValueError("; ".join(problems))

    def part_lr(self, part: str) -> float:
        """The Adam learning rate of ``part``: "shift_block", "reconstructor" or "discriminator"."""
        own = {
            "shift_block": self.shift_lr,
            "reconstructor": self.reconstructor_lr,
            "discriminator": self.discriminator_lr,
        }[part]
        return self.lr if own is None else own

    def lr_factor(self, step: int) -> float:
        """What every learning rate is multiplied by for training step ``step`` (0-based): 1, then
        linearly down over the last ``lr_warmdown`` share of ``train_steps``, so that the last step
        still moves (a function of the step alone: a resumed run follows the same rates)."""
        warm = self.lr_warmdown * self.train_steps
        left = self.train_steps - step
        return 1.0 if warm <= 0 or left >= warm else max(left, 0) / warm

    def plan(self) -> GradientPlan:
        """``algorithm`` and the settings around it, resolved once into what a training step does."""
        optimised = self.algorithm == "optimised"
        if self.algorithm == "vanilla":
            kept = self.M  # the whole chain's graph, whatever keep_graph_steps says
        elif self.keep_graph_steps is not None:
            kept = self.keep_graph_steps
        else:
            kept = None if optimised else 0  # optimised: as many as fit the memory budget, measured
        autocast = {"bf16": "always", "off": "never", "auto": "cuda" if optimised else "never"}[self.autocast]
        return GradientPlan(
            kept_steps=kept,
            memory_budget_mb=self.memory_budget_mb,
            real_cache=self.real_cache if self.real_cache is not None else 4 * self.batch_size if optimised else 0,
            fuse_real=optimised,
            bf16=autocast,
            overlap=self.overlap and optimised,
            channels_last=self.channels_last,
            compile=self.compile,
        )

    @classmethod
    def from_saved(cls, saved: dict) -> DiscoveryConfig:
        """The config a run folder or checkpoint recorded. Runs saved before a recipe setting existed
        trained as the paper does in that respect (one lr, s ~ U[-S, S], k uniform), so a missing
        recipe setting takes the paper's value, not today's default."""
        return cls(**{**{k: v for k, v in PAPER_RECIPE.items() if k not in saved}, **saved})

    def replace(self, **overrides) -> DiscoveryConfig:
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}: known are {[f.name for f in fields(self)]}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GradientPlan:
    """How a training step computes its gradients, resolved once from a ``DiscoveryConfig``.

    Every plan gives the same gradients for the same draws; they differ in memory and speed.
    """

    kept_steps: int | None  # final steps whose autograd graph the first pass keeps (None: as many as fit the budget)
    # MB the kept graphs may take (None: the graphs of OPTIMISED_KEPT_STEPS shifted steps)
    memory_budget_mb: float | None
    real_cache: int  # real chains (x_T, x0) kept for reuse in later batches; 0: none
    fuse_real: bool  # fresh real chains ride in the kept steps' UNet calls
    bf16: str  # the frozen UNet in bfloat16: "always", "cuda" (when on CUDA) or "never"
    overlap: bool  # recompute step i on a second thread during step i + 1's backward
    channels_last: bool  # the frozen UNet in channels_last memory format
    compile: bool  # torch.compile the frozen UNet's encoder and decoder

    @property
    def measures_graphs(self) -> bool:
        """Whether the kept steps depend on each step's measured graph size."""
        return self.kept_steps is None

    def kept(self, M: int, step_graph_mb: Sequence[float] | None = None) -> int:
        """How many final steps of an M-step chain keep their graph; ``step_graph_mb[i]`` is the MB step i's
        graph takes (``train.step_graphs_mb`` measures them), needed when ``measures_graphs``. With overlap,
        the recomputation of the step before the kept ones needs room too."""
        if self.kept_steps is not None:
            return self.kept_steps
        if step_graph_mb is None:
            raise ValueError("a memory budget needs the size of each step's graph (train.step_graphs_mb measures them)")
        budget = OPTIMISED_KEPT_STEPS * max(step_graph_mb) if self.memory_budget_mb is None else self.memory_budget_mb

        def peak_mb(kept: int) -> float:  # with overlap, the next step's recomputation starts while they live
            first_kept = M - kept
            in_flight = step_graph_mb[first_kept - 1] if self.overlap and first_kept > 0 else 0.0
            return sum(step_graph_mb[first_kept:]) + in_flight

        return max((kept for kept in range(M + 1) if peak_mb(kept) <= budget), default=0)


# Named recipes: the same settings, the paper's values and hspace's defaults.
RECIPES: dict[str, dict] = {
    "hspace": {f.name: f.default for f in fields(DiscoveryConfig) if f.name in PAPER_RECIPE},
    "paper": PAPER_RECIPE,
}
