"""``hspace evaluate``: the paper's section 5 on a run — RCA, FID, L_G, h-space properties, a ranking proxy."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .artifacts import atomic_write
from .config import DiscoveryConfig
from .directions import GlobalDirections, mean_shifts
from .metrics import (
    accuracy_per_class,
    edit_agreement,
    edit_overlap,
    even_share,
    frechet_distance,
    interpretability_proxy,
    separation_auc,
)
from .monitor import recalibrate_batch_norm
from .nets import build_reconstructor
from .run import Run
from .sampling import magnitudes, sample, seed_noise
from .train import draw_edits, run_chains

LOG_2 = 0.6931471805599453


def load_feature_extractor(spec: str | None):
    """``None``: the shipped MNIST classifier's features; ``MODULE:ATTR``: a user's nn.Module (or a factory)."""
    if spec is None:
        from .classifier import load_classifier

        clf = load_classifier()
        return clf.features
    import importlib

    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"--features {spec!r}: write MODULE:ATTR, e.g. mypkg.nets:feature_net")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ValueError(f"--features {spec!r}: cannot import {module!r} ({e}); install it or fix the name") from None
    except AttributeError:
        raise ValueError(f"--features {spec!r}: {module!r} has no {attr!r}; give MODULE:ATTR of an nn.Module") from None
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, torch.nn.Module)):
        obj = obj()
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f"--features {spec!r} is not a torch.nn.Module (or a function returning one)")
    return obj.eval().requires_grad_(False)


@torch.no_grad()
def reconstructor_accuracy(
    run: Run,
    num_pairs: int,
    batch_size: int = 100,
    seed: int = 0,
    features=None,
    progress=True,
    recalibrate_pairs: int = 0,
    critic=None,
) -> dict:
    """RCA over ``num_pairs`` (x_T, k, s) draws (k and s as the run drew them in training); with
    ``features``, also the features of raw and shifted samples. ``recalibrate_pairs`` > 0: also the
    RCA with the reconstructor's BatchNorm statistics recalibrated on that many fresh pairs. With
    ``critic`` (the run's discriminator), also its L_G = BCE(D(x), 1) on the shifted and the raw samples
    and the AUC with which its logits tell the raw from the shifted ones."""
    cfg = run.config
    recon = run.load_part("reconstructor", build_reconstructor(cfg.reconstructor, run.model.in_channels, cfg.K))
    device = run.device
    recon = recon.to(device).eval()
    m = run.model

    def pairs(first_seed: int, n_pairs: int, g: torch.Generator, show: str | None = None):
        """(k, s, x0, x~0) in batches; every pair has its own x_T seed: results do not depend on batch_size."""
        all_k, all_s = draw_edits(n_pairs, cfg, g)
        for start in tqdm(range(0, n_pairs, batch_size), desc=show, disable=not (progress and show)):
            n = min(batch_size, n_pairs - start)
            x_T = seed_noise(range(first_seed + start, first_seed + start + n), m.in_channels, m.image_size).to(device)
            k, s = all_k[start : start + n].to(device), all_s[start : start + n].to(device)
            chains = run_chains(m, run.shift_block, x_T, [(k, s)], run.timesteps, cfg.t_stop, kept_steps=0)
            yield k, s, chains.x0_real, chains.x0_shift

    recalibrated = None
    if recalibrate_pairs > 0:  # fresh pairs: other x_T seeds and another draw of (k, s)
        fresh = pairs(
            seed * 10**7 + 5 * 10**6,
            recalibrate_pairs,
            torch.Generator().manual_seed(seed + 1),
            "BatchNorm recalibration",
        )
        recalibrated = recalibrate_batch_norm(recon, ((x0, x0s) for _, _, x0, x0s in fresh))
    ks, preds, preds_cal, shift_err, f_raw, f_shift, d_raw, d_shift = [], [], [], [], [], [], [], []
    for k, s, x0_real, x0_shift in pairs(seed * 10**7, num_pairs, torch.Generator().manual_seed(seed), "RCA"):
        logits, shift = recon(x0_real, x0_shift)
        if recalibrated is not None:
            preds_cal.append(recalibrated(x0_real, x0_shift)[0].argmax(1).cpu())
        ks.append(k.cpu())
        preds.append(logits.argmax(1).cpu())
        shift_err.append((shift - s).abs().cpu())
        if features is not None:
            f_raw.append(features(x0_real.clamp(-1, 1)).cpu())
            f_shift.append(features(x0_shift.clamp(-1, 1)).cpu())
        if critic is not None:  # logits [n] of the unclamped samples, as D sees them in training
            d_raw.append(critic(x0_real).cpu())
            d_shift.append(critic(x0_shift).cpu())
    k, pred = torch.cat(ks), torch.cat(preds)
    per, confusion = accuracy_per_class(pred, k, cfg.K)
    out = {
        "rca": float((pred == k).double().mean()),
        "rca_per_direction": [None if v != v else float(v) for v in per.tolist()],
        "shift_mae": float(torch.cat(shift_err).mean()),
        "confusion": confusion.tolist(),
        "num_pairs": num_pairs,
    }
    if recalibrate_pairs > 0:
        out["rca_recalibrated"] = (
            float((torch.cat(preds_cal) == k).double().mean()) if recalibrated is not None else None
        )
        out["rca_recalibrated_note"] = (
            f"BatchNorm statistics recalibrated on {recalibrate_pairs} fresh pairs"
            if recalibrated is not None
            else "not recalibrated: the reconstructor has no BatchNorm"
        )
    if features is not None:
        out["features_raw"], out["features_shifted"] = torch.cat(f_raw), torch.cat(f_shift)
    if critic is not None:
        d_raw, d_shift = torch.cat(d_raw), torch.cat(d_shift)
        out["critic_lg_shifted"] = float(F.softplus(-d_shift).mean())  # BCE(D(x~0), 1)
        out["critic_lg_raw"] = float(F.softplus(-d_raw).mean())
        out["critic_auc"] = separation_auc(d_raw, d_shift)
    return out


LG_SETTLING_STEPS = 100  # L_G is judged after the discriminator's first steps (issue 10's target)


def lg_from_log(folder: Path) -> dict:
    """L_G over training from ``log.csv``: mean and spread, and the mean after the first
    LG_SETTLING_STEPS steps (None for a shorter run; the paper: it stays near -log 0.5 = 0.693)."""
    path = folder / "log.csv"
    if not path.exists():
        return {"lg_mean": None, "lg_std": None, "lg_mean_settled": None, "lg_curve": []}
    with path.open(newline="") as f:
        rows = [(int(r["step"]), float(r["loss_g"])) for r in csv.DictReader(f)]
    values = torch.tensor([v for _, v in rows], dtype=torch.float64)
    settled = torch.tensor([v for step, v in rows if step > LG_SETTLING_STEPS], dtype=torch.float64)
    return {
        "lg_mean": float(values.mean()),
        "lg_std": float(values.std()) if len(values) > 1 else 0.0,
        "lg_mean_settled": float(settled.mean()) if len(settled) else None,
        "lg_curve": rows,
    }


@torch.no_grad()
def hspace_properties(run: Run, directions: list[int], num_seeds: int = 8, num_mean_samples: int = 20) -> dict:
    """Paper 5.4: edits with the per-sample shift f_t(h_t, k), the mean over 20 samples per timestep, and the
    time-invariant global direction; agreement = |edit - per-sample edit| / |per-sample edit - plain| (0 is perfect)."""
    m, cfg = run.model, run.config
    per_step = mean_shifts(run, num_mean_samples, seed=1, directions=directions)
    shifted_ts = run.shifted_timesteps
    x_T = seed_noise(range(1000, 1000 + num_seeds), m.in_channels, m.image_size).to(run.device)
    plain = sample(m, x_T, run.timesteps)
    rows = {}
    for i, k in enumerate(directions):
        table = GlobalDirections(per_step[i : i + 1], shifted_ts)
        edits_block, edits_table = [(k, cfg.S)], [(0, cfg.S)]
        ref = sample(m, x_T, run.timesteps, directions=run.shift_block, edits=edits_block, t_stop=cfg.t_stop)
        mean_t = sample(
            m, x_T, run.timesteps, directions=table.using(per_timestep=True), edits=edits_table, t_stop=cfg.t_stop
        )
        glob = sample(m, x_T, run.timesteps, directions=table, edits=edits_table, t_stop=cfg.t_stop)
        rows[k] = {
            "mean_vs_per_sample": edit_agreement(ref, mean_t, plain),
            "global_vs_per_sample": edit_agreement(ref, glob, plain),
        }
    return rows


@torch.no_grad()
def rank_directions(
    run: Run, directions: list[int], num_seeds: int = 8, num_magnitudes: int = 7
) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The interpretability proxy per direction (see ``metrics.interpretability_proxy``), and the
    directions' edits at s = +S and -S [K x seeds x C x H x W] each (``edit_measures``)."""
    m, cfg = run.model, run.config
    x_T = seed_noise(range(num_seeds), m.in_channels, m.image_size).to(run.device)
    mags = magnitudes(cfg.S, num_magnitudes)  # from -S to +S
    zero = min(range(len(mags)), key=lambda j: abs(mags[j]))
    out, plus, minus = {}, [], []
    for k in tqdm(directions, desc="proxy", leave=False):
        x = run.sweep(k, x_T, mags)  # [seeds x magnitudes x C x H x W]
        out[k] = interpretability_proxy(x, torch.tensor(mags))
        plus.append((x[:, -1] - x[:, zero]).cpu())
        minus.append((x[:, 0] - x[:, zero]).cpu())
    return out, torch.stack(plus), torch.stack(minus)


def edit_measures(plus: torch.Tensor, minus: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """How alike the directions' edits at s = +S are (``metrics.edit_overlap`` [K x K]); and the share
    of the edits that s = -S makes too (``metrics.even_share``), with the overlap of what is left, the
    odd parts (plus - minus) / 2: what makes directions differ when the even part is shared."""
    measures = {"edit_even_share": float(even_share(plus, minus).mean())}
    if plus.shape[0] > 1:
        odd = edit_overlap((plus - minus) / 2)
        measures["edit_overlap_odd_mean"] = float(odd[~torch.eye(len(odd), dtype=torch.bool)].mean())
    return edit_overlap(plus), measures


def check_counts(num_pairs: int, recalibrate_pairs: int) -> None:
    """The sample counts of ``evaluate``, checked before anything is loaded or sampled."""
    if num_pairs < 1:
        raise ValueError(f"--num-pairs {num_pairs}: give at least one pair (paper: 5000)")
    if recalibrate_pairs < 0:
        raise ValueError(f"--recalibrate-pairs {recalibrate_pairs}: give a count >= 0 (0: no recalibration)")


def evaluate(
    run: Run,
    out: Path,
    num_pairs: int = 5000,
    features: str | None = None,
    real_source: str = "mnist",
    seed: int = 0,
    progress: bool = True,
    recalibrate_pairs: int = 1000,
) -> dict:
    """Every measure, ``report.md`` and its plots in ``out``; returns the JSON-able results."""
    from .data import load_dataset

    check_counts(num_pairs, recalibrate_pairs)
    start = time.monotonic()
    m = run.model
    device = run.device
    extractor = load_feature_extractor(features)
    real, _ = load_dataset(real_source, m.image_size, m.in_channels, split="heldout")
    out.mkdir(parents=True, exist_ok=True)
    rca = reconstructor_accuracy(
        run,
        num_pairs,
        seed=seed,
        features=extractor,
        progress=progress,
        recalibrate_pairs=recalibrate_pairs,
        critic=run.load_discriminator(),
    )
    with torch.no_grad():
        f_real = torch.cat([extractor(real[i : i + 500].to(device)).cpu() for i in range(0, len(real), 500)])
    result = {k: v for k, v in rca.items() if not k.startswith("features")}
    result["fid_raw"] = frechet_distance(f_real, rca["features_raw"])
    result["fid_shifted"] = frechet_distance(f_real, rca["features_shifted"])
    result["fid_real_count"] = len(real)
    result.update({k: v for k, v in lg_from_log(run.folder).items()})
    ks = list(range(run.config.K))
    result["hspace_properties"] = hspace_properties(run, ks)
    proxy, plus, minus = rank_directions(run, ks)
    result["proxy"] = proxy
    result["ranking"] = sorted(ks, key=lambda k: -proxy[k]["score"])
    overlap, parts = edit_measures(plus, minus)
    result.update(summarise_overlap(overlap, ks))
    result.update(parts)
    result["seconds"] = round(time.monotonic() - start, 1)
    write_report(run, result, out)
    return result


def summarise_overlap(overlap: torch.Tensor, ks: list[int]) -> dict:
    """The edit-overlap matrix, its mean off the diagonal, and each direction's most similar other one."""
    if len(ks) < 2:
        return {"edit_overlap": overlap.tolist(), "edit_overlap_mean": None, "nearest_direction": {}}
    diagonal = torch.eye(len(ks), dtype=torch.bool)
    cosine, index = overlap.masked_fill(diagonal, float("-inf")).max(dim=1)
    nearest = {k: {"k": ks[int(j)], "cosine": float(c)} for k, j, c in zip(ks, index, cosine)}
    return {
        "edit_overlap": overlap.tolist(),
        "edit_overlap_mean": float(overlap[~diagonal].mean()),
        "nearest_direction": nearest,
    }


def write_report(run: Run, r: dict, out: Path) -> Path:
    """``report.md`` with plots (confusion matrix, per-direction RCA, L_G against 0.693)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def savefig(fig, name):
        atomic_write(out / name, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4.5))
    conf = torch.tensor(r["confusion"], dtype=torch.float64)
    ax.imshow((conf / conf.sum(1, keepdim=True).clamp(min=1)).numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set(
        xlabel="predicted direction", ylabel="true direction", title=f"RCA {r['rca']:.3f} over {r['num_pairs']} pairs"
    )
    savefig(fig, "confusion.png")
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(r["rca_per_direction"])), [v or 0 for v in r["rca_per_direction"]])
    ax.set(xlabel="direction k", ylabel="accuracy", ylim=(0, 1), title="RCA per direction")
    savefig(fig, "rca_per_direction.png")
    if r["lg_curve"]:
        fig, ax = plt.subplots(figsize=(7, 3))
        steps, values = zip(*r["lg_curve"])
        ax.plot(steps, values, lw=0.8, label="L_G")
        ax.axhline(LOG_2, color="k", ls="--", lw=1, label="-log 0.5 = 0.693")
        ax.set(xlabel="training step", ylabel="L_G", title="generator loss over training")
        ax.legend()
        savefig(fig, "lg.png")
    if r["edit_overlap_mean"] is not None:
        fig, ax = plt.subplots(figsize=(5, 4.5))
        im = ax.imshow(torch.tensor(r["edit_overlap"]).numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        fig.colorbar(im, ax=ax)
        ax.set(xlabel="direction", ylabel="direction", title="cosine between directions' edits at s = +S")
        savefig(fig, "edit_overlap.png")
    cfg: DiscoveryConfig = run.config
    hp = r["hspace_properties"]
    mean_agree = sum(v["mean_vs_per_sample"] for v in hp.values()) / len(hp)
    glob_agree = sum(v["global_vs_per_sample"] for v in hp.values()) / len(hp)
    lines = [
        f"# Evaluation of `{run.name}`",
        "",
        f"K={cfg.K}, S={cfg.S}, M={cfg.M}, t_stop={cfg.t_stop}, trained {run.step} steps at batch {cfg.batch_size}. "
        f"Evaluated in {r['seconds']} s.",
        "",
        "| measure | value | paper (MNIST) |",
        "|---|---|---|",
        f"| RCA ({r['num_pairs']} pairs) | {r['rca']:.3f} | 0.77 |",
        f"| RCA, BatchNorm recalibrated | {r['rca_recalibrated']:.3f} | - |"
        if r.get("rca_recalibrated") is not None
        else f"| RCA, BatchNorm recalibrated | {r.get('rca_recalibrated_note', 'not measured')} | - |",
        f"| shift MAE | {r['shift_mae']:.3f} | - |",
        f"| FID raw / shifted (vs {r['fid_real_count']} held-out digits, classifier features) | {r['fid_raw']:.2f} / {r['fid_shifted']:.2f} | - |",
        f"| L_G mean ± std over training | {r['lg_mean']:.3f} ± {r['lg_std']:.3f} | ~0.693 |"
        if r["lg_mean"] is not None
        else "| L_G | no log | ~0.693 |",
        f"| L_G mean after step {LG_SETTLING_STEPS} | {r['lg_mean_settled']:.3f} | ~0.693 |"
        if r.get("lg_mean_settled") is not None
        else None,
        f"| L_G of the run's discriminator on these pairs: shifted / raw samples | "
        f"{r['critic_lg_shifted']:.3f} / {r['critic_lg_raw']:.3f} | ~0.693 / ~0.693 |"
        if r.get("critic_lg_shifted") is not None
        else None,
        f"| AUC of that discriminator telling raw from shifted samples | {r['critic_auc']:.3f} | 0.5 (chance) |"
        if r.get("critic_auc") is not None
        else None,
        f"| h-space: mean-over-20 vs per-sample edit | {mean_agree:.3f} | small |",
        f"| h-space: global vs per-sample edit | {glob_agree:.3f} | small |",
        f"| edit overlap: mean cosine between different directions' edits | {r['edit_overlap_mean']:.3f} | - |"
        if r["edit_overlap_mean"] is not None
        else None,
        f"| share of the edits that s = -S makes too (even in s) | {r['edit_even_share']:.3f} | - |",
        f"| edit overlap of the odd parts, (x(+S) - x(-S)) / 2 | {r['edit_overlap_odd_mean']:.3f} | - |"
        if r.get("edit_overlap_odd_mean") is not None
        else None,
        "",
        "The discriminator's L_G on raw samples moves with its bias and the spread of its verdicts (by BCE's "
        "convexity a spread alone lifts it above ln 2 = 0.693); its AUC does not, and says how well it tells "
        "the edits from the raw samples: 0.5 is chance. "
        "Edit overlap near 1 means directions make the same image change, which caps RCA whatever the training. "
        "A high even share with a low odd-part overlap means the shared change is one both signs of s make; "
        "hand-made style edits of MNIST digits with their opposites give even share 0.48, odd parts -0.03 "
        '(docs/discovery.md, "Style edits split by sign").',
        "",
        "![confusion](confusion.png) ![per direction](rca_per_direction.png)",
        "",
        "![edit overlap](edit_overlap.png)" if r["edit_overlap_mean"] is not None else "",
        "",
        "![L_G](lg.png)" if r["lg_curve"] else "",
        "",
        "## Directions ranked by the interpretability proxy",
        "",
        "consistency: how alike the image change is across 8 seeds; smoothness: how linearly it grows with |s|; "
        "score = consistency x smoothness. A ranking aid for a person to look at first, not a replacement for MOS.",
        "",
        "| rank | k | score | consistency | smoothness | RCA | mean vs per-sample | global vs per-sample | most alike (cosine) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, k in enumerate(r["ranking"]):
        p, acc = r["proxy"][k], r["rca_per_direction"][k]
        lines.append(
            f"| {i + 1} | {k} | {p['score']:.3f} | {p['consistency']:.3f} | {p['smoothness']:.3f} | "
            f"{'-' if acc is None else f'{acc:.2f}'} | {hp[k]['mean_vs_per_sample']:.3f} | {hp[k]['global_vs_per_sample']:.3f} | "
            f"{_nearest(r, k)} |"
        )
    text = "\n".join(line for line in lines if line is not None) + "\n"  # None: a table row with nothing to show
    return atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(text))


def _nearest(r: dict, k: int) -> str:
    near = r["nearest_direction"].get(k)
    return f"{near['k']} ({near['cosine']:.2f})" if near else "-"


def summary_line(r: dict) -> str:
    """The figures of ``evaluate`` in one line, for the terminal."""
    recalibrated = r.get("rca_recalibrated")
    if recalibrated is not None:
        recalibration = f"BatchNorm recalibrated: {recalibrated:.3f}"
    else:
        recalibration = r.get("rca_recalibrated_note", "no recalibration")
    lg = "-" if r["lg_mean"] is None else f"{r['lg_mean']:.3f}"
    if r.get("lg_mean_settled") is not None:
        lg += f" (after step {LG_SETTLING_STEPS}: {r['lg_mean_settled']:.3f})"
    if r.get("critic_lg_shifted") is not None:
        lg += f"; its D on these pairs: shifted {r['critic_lg_shifted']:.3f} / raw {r['critic_lg_raw']:.3f}"
        lg += f", AUC {r['critic_auc']:.3f}"
    overlap = "-" if r["edit_overlap_mean"] is None else f"{r['edit_overlap_mean']:.3f}"
    if r.get("edit_overlap_odd_mean") is not None:
        overlap += f" (odd parts {r['edit_overlap_odd_mean']:.3f}; even share {r['edit_even_share']:.3f})"
    rca = f"RCA {r['rca']:.3f} ({r['num_pairs']} pairs; {recalibration}), shift MAE {r['shift_mae']:.3f}"
    fid = f"FID raw {r['fid_raw']:.2f} / shifted {r['fid_shifted']:.2f}"
    return f"{rca}, {fid}, L_G {lg}, edit overlap {overlap}; {r['seconds']} s"


def to_json(result: dict) -> str:
    """The JSON record (without the bulky curves and matrices)."""
    drop = {"lg_curve", "confusion", "edit_overlap"}
    return json.dumps({k: v for k, v in result.items() if k not in drop}, indent=2)
