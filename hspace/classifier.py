"""A small MNIST digit classifier: hspace's feature extractor for FID on MNIST.

No pre-trained feature network can be downloaded here, so hspace ships its own: a ~356K-parameter CNN trained
on the train split of the shipped digits (`hspace/assets/mnist-classifier.safetensors`). `features(x)` gives the
penultimate activations (post-ReLU, D = 128) that FID compares; `forward(x)` gives the logits.

Reproduce the shipped file (about 4 minutes on one CPU thread):

    OMP_NUM_THREADS=1 hspace train-classifier
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .artifacts import load_tensors, save_tensors
from .data import load_mnist, pad_to
from .presets import CLASSIFIER_PATH

KIND = "hspace-classifier"
IMAGE_SIZE = 32

# the settings that made the shipped file (`hspace train-classifier` with its defaults)
DEFAULT_STEPS = 1000
DEFAULT_BATCH_SIZE = 128
DEFAULT_LR = 3e-3
DEFAULT_SEED = 0


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class DigitClassifier(nn.Module):
    """CNN for [N x 1 x 32 x 32] digits in [-1, 1] -> logits [N x 10]; `features` -> [N x feature_dim].

    32x32: conv w0 -> pool -> 16x16: conv w1 -> pool -> 8x8: conv w2 -> pool -> 4x4: flatten
    -> linear feature_dim -> ReLU (the features) -> linear 10. Convolutions are 3x3 with BatchNorm and ReLU.
    28x28 inputs are padded to 32x32, other sizes resized, and 3-channel inputs averaged to grey.
    """

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), feature_dim: int = 128, num_classes: int = 10):
        super().__init__()
        w0, w1, w2 = widths
        self.widths, self.feature_dim, self.num_classes = tuple(widths), feature_dim, num_classes
        self.body = nn.Sequential(
            _conv(1, w0),
            nn.MaxPool2d(2),
            _conv(w0, w1),
            nn.MaxPool2d(2),
            _conv(w1, w2),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.fc = nn.Linear(w2 * (IMAGE_SIZE // 8) ** 2, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Any image batch in [-1, 1] -> [N x 1 x 32 x 32] float on the model's device."""
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N x 1 x H x W] or [N x 3 x H x W], got shape {list(x.shape)}")
        p = next(self.parameters())
        x = x.to(device=p.device, dtype=p.dtype)
        if x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        if x.shape[-2] != x.shape[-1]:
            raise ValueError(f"expected square images, got {x.shape[-2]}x{x.shape[-1]}")
        return pad_to(x, IMAGE_SIZE)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations [N x feature_dim] (after the ReLU): the FID features."""
        return F.relu(self.fc(self.body(self.prepare(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to max_shift pixels in x and y (pad with background, random crop)."""
    if max_shift <= 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # [N, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # [N, 1, 1, W]
    return xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    max_shift: int = 2,
    widths: tuple[int, int, int] = (32, 64, 128),
    feature_dim: int = 128,
    history: list | None = None,
) -> DigitClassifier:
    """Train a DigitClassifier with Adam, a short warm-up then cosine decay, and random shifts of up to
    max_shift pixels. Deterministic given the seed (on CPU). Returns the model in eval mode, frozen.
    `history`, if given, receives the training loss of every step."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitClassifier(widths, feature_dim)
    gen = torch.Generator().manual_seed(seed)
    x_all = model.prepare(images)
    y_all = torch.as_tensor(labels).long()
    if len(x_all) != len(y_all):
        raise ValueError(f"{len(y_all)} labels for {len(x_all)} images")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warmup = max(1, min(100, steps // 20))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    order, pos = torch.randperm(len(x_all), generator=gen), 0
    bar = tqdm(range(steps), desc="classifier", disable=not progress, mininterval=2)
    for step in bar:
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(x_all), generator=gen), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        x = random_shift(x_all[idx], max_shift, gen)
        loss = F.cross_entropy(model(x), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if history is not None:
            history.append(loss.item())
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return model.eval().requires_grad_(False)


@torch.no_grad()
def predict(model: DigitClassifier, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels [N], in eval mode and batches."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(images[i : i + batch_size]).argmax(1).cpu() for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)


def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of images whose predicted label is right."""
    return (predict(model, images, batch_size) == torch.as_tensor(labels).long().cpu()).float().mean().item()


def save_classifier(model: DigitClassifier, path: str | Path, dtype: torch.dtype = torch.float16, **meta) -> Path:
    """Write the classifier (floating tensors as dtype, fp16 by default) with its architecture and meta."""
    tensors = {
        k: v.to(dtype) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    return save_tensors(
        path,
        tensors,
        KIND,
        widths=list(model.widths),
        feature_dim=model.feature_dim,
        num_classes=model.num_classes,
        **meta,
    )


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> DigitClassifier:
    """A saved classifier (the shipped MNIST one by default) in fp32, eval mode, with requires_grad False."""
    tensors, meta = load_tensors(CLASSIFIER_PATH if path is None else path, KIND)
    model = DigitClassifier(
        tuple(meta.get("widths", (32, 64, 128))), meta.get("feature_dim", 128), meta.get("num_classes", 10)
    )
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: classifier weights do not match the architecture (missing {missing}, unexpected {unexpected})"
        )
    model.meta = meta
    return model.to(device).eval().requires_grad_(False)


def make_shipped_classifier(
    out: str | Path = CLASSIFIER_PATH,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
) -> dict:
    """Train on the train split, save (fp16) with its held-out accuracy as saved; returns the recorded figures."""
    x_train, y_train = load_mnist("train", IMAGE_SIZE)
    x_held, y_held = load_mnist("heldout", IMAGE_SIZE)
    t0 = time.perf_counter()
    model = train_classifier(x_train, y_train, steps, batch_size, lr, seed, progress=progress)
    seconds = time.perf_counter() - t0
    acc32 = accuracy(model, x_held, y_held)
    train_acc = accuracy(model, x_train, y_train)
    meta = {
        "heldout_accuracy": round(acc32, 4),
        "train_accuracy": round(train_acc, 4),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "max_shift": 2,
        "dataset": "mnist-10k train split",
        "command": f"hspace train-classifier --steps {steps} --batch-size {batch_size} --lr {lr} --seed {seed}",
    }
    save_classifier(model, out, **meta)
    acc16 = accuracy(load_classifier(out), x_held, y_held)
    if acc16 != acc32:  # record what the shipped (fp16) weights score
        save_classifier(model, out, **{**meta, "heldout_accuracy": round(acc16, 4)})
    return {
        **meta,
        "parameters": num_parameters(model),
        "seconds": seconds,
        "heldout_accuracy_fp32": acc32,
        "heldout_accuracy_fp16": acc16,
        "out": str(out),
    }
