"""Datasets as image tensors in [-1, 1], [N x C x H x W]."""

from __future__ import annotations

import gzip
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .presets import MNIST_NPZ

MNIST_TRAIN = 9000  # the shipped digits are shuffled: the first 9,000 train, the rest are held out


def to_model_range(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N x H x W] or [N x C x H x W] -> float [N x C x H x W] in [-1, 1]."""
    x = torch.as_tensor(np.array(images_uint8)).float() / 127.5 - 1.0  # a copy: decoded images may be read-only
    return x[:, None] if x.ndim == 3 else x


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad 28x28 digits to 32x32 with background, or resize to any other size."""
    h = x.shape[-1]
    if h == size:
        return x
    if size > h and (size - h) % 2 == 0 and h == 28:
        p = (size - h) // 2
        return F.pad(x, (p, p, p, p), value=-1.0)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < h)


def load_mnist(
    split: str = "train", image_size: int = 32, path: str | Path = MNIST_NPZ
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped MNIST subset: images [N x 1 x S x S] in [-1, 1] and labels [N]."""
    with np.load(path) as f:
        images, labels = f["images"], f["labels"]
    part = {"train": slice(0, MNIST_TRAIN), "heldout": slice(MNIST_TRAIN, None), "all": slice(None)}
    if split not in part:
        raise ValueError(f"unknown split {split!r}: choose train, heldout or all")
    x = pad_to(to_model_range(images[part[split]]), image_size)
    return x, torch.as_tensor(labels[part[split]]).long()


# ---------------------------------------------------------------- IDX files (the MNIST download's format)

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (gzipped or not, detected by its magic bytes) as a numpy array of its own shape."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"IDX file {path}: no such file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"IDX file {path}: corrupt or truncated gzip data ({e})") from None
    if not raw:
        raise ValueError(f"IDX file {path}: the file is empty")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise ValueError(
            f"IDX file {path}: bad magic number 0x{raw[:4].hex()} (expected 00 00, a type code "
            f"such as 08 for unsigned bytes, and the number of dimensions); is this an IDX file?"
        )
    ndim, dtype = raw[3], np.dtype(_IDX_TYPES[raw[2]])
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ValueError(f"IDX file {path}: truncated header ({len(raw)} bytes, {ndim} dimensions need {start})")
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    need = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - start != need:
        what = "truncated data" if len(raw) - start < need else "unexpected trailing bytes"
        raise ValueError(
            f"IDX file {path}: {what}: shape {list(dims)} needs {need} bytes of data, found {len(raw) - start}"
        )
    return np.frombuffer(raw, dtype, count=int(np.prod(dims)), offset=start).reshape(dims).copy()


def load_idx(
    images_path: str | Path, labels_path: str | Path | None = None, image_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """MNIST-style IDX images (and labels): images [N x 1 x S x S] in [-1, 1], labels [N] or None."""
    images = read_idx(images_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"IDX file {images_path}: expected unsigned-byte images [N x H x W], "
            f"got {images.dtype} of shape {list(images.shape)}"
        )
    labels = None
    if labels_path is not None:
        y = read_idx(labels_path)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(
                f"IDX file {labels_path}: expected integer labels [N], got {y.dtype} of shape {list(y.shape)}"
            )
        if len(y) != len(images):
            raise ValueError(
                f"IDX label count mismatch: {labels_path} has {len(y)} labels "
                f"but {images_path} has {len(images)} images"
            )
        labels = torch.as_tensor(y.astype(np.int64))
    return pad_to(_square(to_model_range(images)), image_size), labels


# ---------------------------------------------------------------- folders of image files

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def _read_image(
    path: Path, image_size: int, mode: str, fix: str = "give a PNG, JPEG, BMP, WebP, GIF or TIFF file"
) -> np.ndarray:
    """One image file: first frame, converted to `mode`, short side resized to image_size and centre-cropped."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.seek(0)
            if im.mode in ("I", "F") or im.mode.startswith("I;"):  # 16/32-bit grey: scale to 8 bits
                a = np.asarray(im, dtype=np.float64)
                im = Image.fromarray((a / 257 if a.max() > 255 else a).clip(0, 255).astype(np.uint8))
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:  # flatten alpha onto white
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            im = ImageOps.fit(im.convert(mode), (image_size, image_size), Image.Resampling.LANCZOS)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path} ({e}): {fix}") from None


def image_files(folder: str | Path) -> list[Path]:
    """Image files under folder (recursively, hidden ones skipped), sorted by relative path."""
    folder = Path(folder)
    found = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def load_image_folder(folder: str | Path, image_size: int, channels: int) -> torch.Tensor:
    """Every image under folder as [N x C x S x S] in [-1, 1] (short side resized, centre-cropped)."""
    folder = Path(folder)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not folder.is_dir():
        raise ValueError(f"image folder {folder}: no such directory")
    files = image_files(folder)
    if not files:
        raise ValueError(
            f"image folder {folder}: no images found (accepted extensions: "
            f"{', '.join(e[1:] for e in IMAGE_EXTENSIONS)}, any case, searched recursively)"
        )
    fix = "move it out of the folder or replace it"  # the folder is the user's; the file is one of many
    arr = np.stack([_read_image(p, image_size, "L" if channels == 1 else "RGB", fix) for p in files])
    return to_model_range(arr if channels == 1 else arr.transpose(0, 3, 1, 2))


# ---------------------------------------------------------------- one entry point


def _square(x: torch.Tensor) -> torch.Tensor:
    """Centre-crop [N x C x H x W] to a square."""
    h, w = x.shape[-2:]
    s = min(h, w)
    return x[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> RGB by repetition, RGB -> grey by averaging; other mismatches are errors."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.repeat(1, 3, 1, 1)
    if c == 3 and channels == 1:
        return x.mean(1, keepdim=True)
    raise ValueError(f"cannot convert {c}-channel data to {channels} channels")


def _load_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An .npz with `images` (uint8 [N,H,W], [N,H,W,C] or [N,C,H,W]) and optional `labels`."""
    try:
        with np.load(path) as f:
            keys = list(f.keys())
            images, labels = f.get("images"), f.get("labels")
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read the .npz file ({e})") from None
    if images is None:
        raise ValueError(f"{path}: no 'images' array in the .npz (found {keys})")
    if images.dtype.kind not in "iu" or images.size and (images.min() < 0 or images.max() > 255):
        raise ValueError(f"{path}: 'images' must be uint8 values in 0..255, got {images.dtype}")
    if images.ndim == 4 and images.shape[1] in (1, 3, 4) and images.shape[-1] not in (1, 3, 4):
        pass  # [N, C, H, W]
    elif images.ndim == 4 and images.shape[-1] in (1, 3, 4):
        images = images.transpose(0, 3, 1, 2)
    elif images.ndim != 3:
        raise ValueError(
            f"{path}: 'images' must be [N,H,W], [N,H,W,C] or [N,C,H,W] with C in 1, 3, 4; "
            f"got shape {list(images.shape)}"
        )
    x = to_model_range(images.astype(np.uint8))[:, :3]  # drop alpha
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"{path}: {len(labels)} labels for {len(x)} images")
    return x, None if labels is None else torch.as_tensor(np.asarray(labels).astype(np.int64))


def _idx_pair(folder: Path, split: str) -> list[tuple[Path, Path | None]]:
    """(images, labels) IDX files in folder for a split: train -> train-*, heldout -> t10k-*, all -> both."""
    images = sorted((p for p in folder.iterdir() if re.search(r"images[-.]idx3", p.name)), key=lambda p: len(p.name))
    prefixes = {"train": ["train"], "heldout": ["t10k"], "all": ["train", "t10k"]}[split]
    pairs = []
    for prefix in prefixes:
        hits = [p for p in images if p.name.startswith(prefix)]
        if not hits and split == "train" and len(images) == 1:
            hits = images
        if not hits:
            raise ValueError(
                f"IDX folder {folder}: no {prefix}-*images-idx3* file for split {split!r} "
                f"(found {[p.name for p in images]})"
            )
        name = re.sub(r"images([-.])idx3", r"labels\1idx1", hits[0].name)
        base = name[:-3] if name.endswith(".gz") else name
        labels = next((folder / n for n in (name, base, base + ".gz") if (folder / n).is_file()), None)
        pairs.append((hits[0], labels))
    return pairs


def load_dataset(
    source: str | Path, image_size: int, channels: int, split: str = "train"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """'mnist', a folder of IDX files, an .npz or a folder of images -> ([N x C x S x S] in [-1, 1], labels or None).

    split (train / heldout / all) picks part of MNIST and of IDX folders; .npz files and image folders are used whole.
    """
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"unknown split {split!r}: choose train, heldout or all")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    path = Path(source)
    if str(source) == "mnist":
        x, y = load_mnist(split, image_size)
    elif path.is_dir() and any(re.search(r"images[-.]idx3", p.name) for p in path.iterdir()):
        parts = [load_idx(i, l, image_size) for i, l in _idx_pair(path, split)]
        x = torch.cat([p[0] for p in parts])
        y = torch.cat([p[1] for p in parts]) if all(p[1] is not None for p in parts) else None
    elif path.is_file() and path.suffix.lower() == ".npz":
        x, y = _load_npz(path)
    elif path.is_dir():
        return load_image_folder(path, image_size, channels), None
    else:
        raise ValueError(
            f"unknown data source {str(source)!r}: expected 'mnist', a folder of IDX files "
            f"(train-images-idx3-ubyte[.gz], ...), an .npz file with an 'images' array, or a folder of images"
        )
    return pad_to(_square(match_channels(x, channels)), image_size), y


def load_images(source: str | Path, image_size: int, channels: int) -> torch.Tensor:
    """Images to edit: one file, a folder of images, or ``mnist:I[,J...]`` for held-out shipped digits."""
    text = str(source)
    if text.startswith("mnist:"):
        x, _ = load_mnist("heldout", image_size)
        try:
            idx = [int(i) for i in text[len("mnist:") :].split(",")]
        except ValueError:
            raise ValueError(
                f"{text!r}: write mnist:3 or mnist:3,17 (indices of held-out digits, 0..{len(x) - 1})"
            ) from None
        if any(not 0 <= i < len(x) for i in idx):
            raise ValueError(f"{text!r}: held-out digit indices run 0..{len(x) - 1}")
        return match_channels(x[idx], channels)
    path = Path(source)
    if path.is_dir():
        return load_image_folder(path, image_size, channels)
    if not path.exists():
        raise ValueError(f"no image at {path}: give an image file, a folder of images or mnist:INDEX")
    arr = _read_image(path, image_size, "L" if channels == 1 else "RGB")[None]
    return to_model_range(arr if channels == 1 else arr.transpose(0, 3, 1, 2))
