"""The ceiling without learned directions: fixed h directions, and only a fresh reconstructor to tell them apart.

    python experiments/fixed_directions.py MODEL --kind random|pca --sizes 0.5,1,2 [--K 8] [--out runs/fixed.csv]

K fixed directions d_k [C x h x w] (random Gaussian, or the top-K principal directions of h over
samples at each shifted timestep) are applied for t >= t_stop as h_hat = h + (s / S) * size * |h| * d_k / |d_k|,
s drawn as in training (|s| in [0.5, S], random sign). A LeNet reconstructor (lr 1e-3) trains on
``--train`` pairs and is scored on ``--test`` held-out pairs. Also reported: mean |delta x0|.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hspace.backends import load_model
from hspace.config import DiscoveryConfig
from hspace.nets import LeNetReconstructor
from hspace.sampling import ddim_step, sample, timestep_batch
from hspace.schedule import chain_alpha_bars, uniform_timesteps
from hspace.train import draw_edits


class FixedDirections:
    """Directions protocol: per-sample k and s pick d_k (per timestep), scaled to (s / S) * size * |h_n|."""

    def __init__(self, directions: dict[int, torch.Tensor], size: float, S: float):
        self.directions, self.size, self.S = directions, size, S

    def shift(self, h, state, edits):
        ((k, s),) = edits
        d = self.directions[int(state.t[0])][k]  # [N x C x h x w]
        d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return (s / self.S * self.size * h.flatten(1).norm(dim=1)).view(-1, 1, 1, 1) * d


@torch.no_grad()
def principal_directions(model, timesteps, t_stop, K, n=256, seed=0):
    """Top-K principal directions of h at each shifted timestep, over n plain chains."""
    x = torch.randn(
        n, model.in_channels, model.image_size, model.image_size, generator=torch.Generator().manual_seed(seed)
    )
    out = {}
    for t, abar_t, abar_prev in chain_alpha_bars(model.alphas_cumprod, timesteps):
        h, state = model.encode(x, timestep_batch(t, x))
        if t >= t_stop:
            flat = h.flatten(1) - h.flatten(1).mean(0)
            _, _, vh = torch.linalg.svd(flat, full_matrices=False)
            out[t] = vh[:K].reshape(K, *h.shape[1:])
        x = ddim_step(x, model.decode(h, state), abar_t, abar_prev)
    return out


_PLAIN: dict = {}  # x0 of the plain chains, the same for every size and kind


def pairs(model, dirs, cfg, timesteps, n, seed, batch=256):
    g = torch.Generator().manual_seed(seed)
    k, s = draw_edits(n, cfg, g)
    x_T = torch.randn(n, model.in_channels, model.image_size, model.image_size, generator=g)
    if (n, seed) not in _PLAIN:
        _PLAIN[n, seed] = torch.cat([sample(model, x_T[i : i + batch], timesteps) for i in range(0, n, batch)])
    xs = [
        sample(model, x_T[i : i + batch], timesteps, dirs, [(k[i : i + batch], s[i : i + batch])], cfg.t_stop)
        for i in range(0, n, batch)
    ]
    return _PLAIN[n, seed], torch.cat(xs), k, s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--kind", default="random", choices=["random", "pca"])
    ap.add_argument("--sizes", default="0.5,1,2")
    ap.add_argument("--K", type=int, default=8)
    ap.add_argument("--M", type=int, default=10)
    ap.add_argument("--train", type=int, default=2048)
    ap.add_argument("--test", type=int, default=512)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/fixed-directions.csv")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    cfg = DiscoveryConfig(K=args.K, S=5.0, M=args.M, t_stop=400)
    timesteps = uniform_timesteps(cfg.M, model.num_train_steps)
    shifted = [t for t in timesteps if t >= cfg.t_stop]
    if args.kind == "pca":
        table = principal_directions(model, timesteps, cfg.t_stop, cfg.K)
    else:  # one random direction per k, the same at every shifted timestep
        h, _ = model.encode(torch.zeros(1, model.in_channels, model.image_size, model.image_size), torch.tensor([500]))
        d = torch.randn(cfg.K, *h.shape[1:], generator=torch.Generator().manual_seed(7))
        table = {t: d for t in shifted}
    out = Path(args.out)
    new = not out.exists()
    with out.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["model", "kind", "K", "size", "mean_abs_dx0", "train_acc", "heldout_acc", "seconds"])
        for size in [float(x) for x in args.sizes.split(",")]:
            start = time.monotonic()
            dirs = FixedDirections(table, size, cfg.S)
            x0, xs, k, s = pairs(model, dirs, cfg, timesteps, args.train + args.test, seed=1)
            dx0 = (xs - x0).abs().mean().item()
            torch.manual_seed(0)
            recon = LeNetReconstructor(model.in_channels, cfg.K)
            opt = torch.optim.Adam(recon.parameters(), lr=1e-3)
            g = torch.Generator().manual_seed(2)
            for _ in range(args.steps):
                idx = torch.randint(0, args.train, (64,), generator=g)
                logits, shift = recon(x0[idx], xs[idx])
                loss = F.cross_entropy(logits, k[idx]) + 0.25 * F.l1_loss(shift, s[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            recon.eval()
            with torch.no_grad():
                train_acc = (
                    (recon(x0[: args.train], xs[: args.train])[0].argmax(1) == k[: args.train]).float().mean().item()
                )
                test_acc = (
                    (recon(x0[args.train :], xs[args.train :])[0].argmax(1) == k[args.train :]).float().mean().item()
                )
            row = [
                args.model,
                args.kind,
                cfg.K,
                size,
                round(dx0, 4),
                round(train_acc, 3),
                round(test_acc, 3),
                round(time.monotonic() - start),
            ]
            w.writerow(row)
            f.flush()
            print(*row, flush=True)


if __name__ == "__main__":
    main()
