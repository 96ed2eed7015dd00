"""Metrics as pure functions over tensors (features, logits, images); drivers live in ``evaluate.py``."""

from __future__ import annotations

import torch


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """FID between two feature sets [N x D]: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of S_a S_b (real and
    non-negative for covariance matrices, up to rounding), computed in float64.
    """
    a, b = feats_a.double(), feats_b.double()
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("FID needs at least two samples per set")
    return frechet_from_stats(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def frechet_from_stats(mu_a: torch.Tensor, cov_a: torch.Tensor, mu_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """The Frechet distance between two Gaussians, means [D] and covariances [D x D] (float64 advised)."""
    eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum())


def accuracy_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class accuracy [K] (NaN for classes never drawn) and the confusion matrix [K x K] (rows: truth)."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_(
        (target.long().cpu(), pred.long().cpu()), torch.ones_like(target, dtype=torch.long).cpu(), accumulate=True
    )
    totals = confusion.sum(1).double()
    per_class = confusion.diag().double() / totals
    return per_class, confusion


def edit_agreement(reference: torch.Tensor, other: torch.Tensor, plain: torch.Tensor) -> float:
    """|other - reference| / |reference - plain|: how far another edit lands from the reference, relative
    to the size of the reference edit (0: identical edits; 1: as far off as not editing at all)."""
    size = (reference - plain).flatten(1).norm(dim=1)
    return float(((other - reference).flatten(1).norm(dim=1) / size.clamp(min=1e-8)).mean())


def interpretability_proxy(sweeps: torch.Tensor, mags: torch.Tensor) -> dict[str, float]:
    """A ranking aid, not a replacement for MOS. ``sweeps`` [R x n x C x H x W]: R seeds, n magnitudes.

    - consistency: mean pairwise cosine similarity, across seeds, of the image change x(s) - x(0)
      at each non-zero s (1: every sample changes the same way);
    - smoothness: R^2 of |x(s) - x(0)| against |s| through the origin, per seed and sign (1: the
      change grows linearly with s, as h-space's linearity suggests);
    - score: consistency x smoothness, both clamped to [0, 1].
    """
    mags = mags.to(sweeps)
    zero = int(mags.abs().argmin())
    delta = (sweeps - sweeps[:, zero : zero + 1]).flatten(2)  # [R x n x P]
    cons = []
    for j in range(len(mags)):
        if j == zero or delta.shape[0] < 2:
            continue
        d = torch.nn.functional.normalize(delta[:, j], dim=1)
        sim = d @ d.T
        r = sim.shape[0]
        cons.append(((sim.sum() - sim.diag().sum()) / (r * (r - 1))).item())
    consistency = sum(cons) / len(cons) if cons else 0.0
    norms = delta.norm(dim=2)  # [R x n]
    r2 = []
    for side in (mags > 0, mags < 0):
        if side.sum() < 1:
            continue
        x, y = mags[side].abs(), norms[:, side]
        slope = (y * x).sum(1) / (x * x).sum()  # least squares through the origin, per seed
        resid = (y - slope[:, None] * x).pow(2).sum(1)
        total = (y - y.mean(1, keepdim=True)).pow(2).sum(1) + y.pow(2).mean(1) * 1e-6
        r2.append((1 - resid / total.clamp(min=1e-12)).clamp(0, 1).mean().item())
    smoothness = sum(r2) / len(r2) if r2 else 0.0
    return {"consistency": consistency, "smoothness": smoothness, "score": max(consistency, 0.0) * smoothness}


def edit_overlap(changes: torch.Tensor) -> torch.Tensor:
    """How alike different directions' edits are [K x K]: ``changes`` [K x R x ...] is each direction's
    image change x(s) - x(0) on the same R seeds; entry (i, j) is their cosine similarity averaged
    over seeds. Off the diagonal, near 1 means two directions make the same edit, which no
    reconstructor can tell apart (RCA stays low however long it trains)."""
    d = torch.nn.functional.normalize(changes.flatten(2).double(), dim=2)  # [K x R x P]
    return torch.einsum("irp,jrp->ijr", d, d).mean(2).float()


def even_share(plus: torch.Tensor, minus: torch.Tensor) -> torch.Tensor:
    """Share of an edit that both signs of s make [...]: from the edits at +s and -s [... x C x H x W],
    |e|^2 / (|e|^2 + |o|^2) with the even part e = (plus + minus) / 2 and the odd part o = (plus - minus) / 2.
    0: s and -s undo each other; 1: both make the same change; 0.5 for an edit that only one sign makes."""
    even2 = ((plus + minus) / 2).flatten(-3).pow(2).sum(-1)
    odd2 = ((plus - minus) / 2).flatten(-3).pow(2).sum(-1)
    return even2 / (even2 + odd2).clamp_min(1e-12)


def separation_auc(higher: torch.Tensor, lower: torch.Tensor, chunk: int = 1024) -> float:
    """AUC of telling two sets of scores apart [n], [m]: P(a > b) + P(a = b) / 2 over every pair, a
    from ``higher`` and b from ``lower``. 0.5: no better than chance; 1: every a above every b. Unlike
    a mean BCE it does not move with the scores' offset or scale (a critic's bias or confidence)."""
    lower = lower.flatten().double()
    wins = 0.0
    for part in higher.flatten().double().split(chunk):  # [chunk x m] comparisons at a time
        wins += (part[:, None] > lower).sum().item() + 0.5 * (part[:, None] == lower).sum().item()
    return wins / (higher.numel() * lower.numel())


def reconstruction_error(reconstruction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean absolute and mean squared error in [-1, 1] units, and PSNR (dB, peak-to-peak 2)."""
    mse = (reconstruction - target).pow(2).mean().item()
    psnr = 10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-12))).item()
    return {"mae": (reconstruction - target).abs().mean().item(), "mse": mse, "psnr_db": psnr}
