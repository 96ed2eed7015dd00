"""Data loading: the shipped MNIST, IDX files, image folders, .npz files and the load_dataset entry point."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from hspace.data import load_dataset, load_idx, load_image_folder, load_mnist


def write_idx(path, arr: np.ndarray, gz: bool = False, type_code: int = 0x08):
    """Write arr as an IDX file (optionally gzipped)."""
    raw = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def digits(n=5, size=28, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_images(folder):
    """A few images of different sizes and modes, some in a sub-folder, with upper-case extensions."""
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 256, (40, 17), dtype=np.uint8)).save(folder / "a.JPG")
    Image.fromarray(rng.integers(0, 256, (9, 9, 4), dtype=np.uint8), "RGBA").save(folder / "sub" / "c.png")
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).convert("P").save(folder / "d.gif")
    (folder / "notes.txt").write_text("not an image")


def in_range(x):
    return x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


# ---------------------------------------------------------------- shipped MNIST


def test_shipped_mnist_splits():
    xt, yt = load_mnist("train")
    xh, yh = load_mnist("heldout")
    xa, ya = load_mnist("all")
    assert xt.shape == (9000, 1, 32, 32) and xh.shape == (1000, 1, 32, 32) and xa.shape == (10000, 1, 32, 32)
    assert in_range(xa) and xa.min() == -1 and xa.max() == 1
    assert set(yt.tolist()) == set(range(10)) == set(yh.tolist())
    assert torch.equal(torch.cat([xt, xh]), xa) and torch.equal(torch.cat([yt, yh]), ya)
    assert (xt[:, :, :2] == -1).all()  # 28 -> 32 pads with background
    with pytest.raises(ValueError, match="unknown split"):
        load_mnist("test")


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    images, labels = digits()
    suffix = ".gz" if gz else ""
    x, y = load_idx(
        write_idx(tmp_path / f"i{suffix}", images, gz), write_idx(tmp_path / f"l{suffix}", labels, gz), image_size=28
    )
    assert x.shape == (5, 1, 28, 28) and in_range(x)
    assert torch.equal(((x + 1) * 127.5).round().to(torch.uint8)[:, 0], torch.as_tensor(images))
    assert y.dtype == torch.long and y.tolist() == labels.tolist()
    x32, none = load_idx(tmp_path / f"i{suffix}")
    assert none is None and x32.shape == (5, 1, 32, 32) and torch.equal(x32[:, :, 2:30, 2:30], x)


def test_idx_gzip_detected_by_magic_not_suffix(tmp_path):
    images, _ = digits(3)
    x, _ = load_idx(write_idx(tmp_path / "images-ubyte", images, gz=True), image_size=28)
    assert torch.equal(((x + 1) * 127.5).round().to(torch.uint8)[:, 0], torch.as_tensor(images))


def test_idx_errors(tmp_path):
    images, labels = digits()
    img = write_idx(tmp_path / "images", images)
    with pytest.raises(ValueError, match="label count mismatch.*4 labels.*5 images"):
        load_idx(img, write_idx(tmp_path / "labels", labels[:4]))
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x03" + img.read_bytes()[4:])
    with pytest.raises(ValueError, match="bad.*bad magic"):
        load_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(img.read_bytes()[:-10])
    with pytest.raises(ValueError, match="short.*truncated data"):
        load_idx(short)
    short_gz = tmp_path / "short.gz"
    short_gz.write_bytes(gzip.compress(img.read_bytes())[:-20])
    with pytest.raises(ValueError, match="short.gz.*truncated"):
        load_idx(short_gz)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.*empty"):
        load_idx(tmp_path / "empty")
    with pytest.raises(ValueError, match="missing.*no such file"):
        load_idx(tmp_path / "missing")


# ---------------------------------------------------------------- image folders


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_mixed(tmp_path, channels):
    write_images(tmp_path)
    x = load_image_folder(tmp_path, 8, channels)
    assert x.shape == (4, channels, 8, 8) and in_range(x)
    assert torch.equal(x, load_image_folder(tmp_path, 8, channels))
    # sorted by relative path: a.JPG, b.png, d.gif, sub/c.png; a.JPG is grey so its RGB channels agree
    a = load_image_folder(tmp_path, 8, 3)[0]
    assert torch.allclose(a[0], a[1]) and torch.allclose(a[1], a[2])
    # a fully transparent RGBA image is flattened onto white
    alone = tmp_path / "alone"
    alone.mkdir()
    Image.new("RGBA", (6, 9), (0, 0, 0, 0)).save(alone / "clear.png")
    assert torch.equal(load_image_folder(alone, 8, channels), torch.ones(1, channels, 8, 8))


def test_image_folder_order_is_by_path(tmp_path):
    for i, v in enumerate([200, 10, 120]):
        Image.new("L", (5, 7), v).save(tmp_path / f"{'zay'[i]}.png")
    x = load_image_folder(tmp_path, 4, 1)  # a.png, y.png, z.png
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([10, 120, 200]) / 127.5 - 1)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no such directory"):
        load_image_folder(tmp_path / "nope", 8, 3)
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="no images found.*png.*jpeg"):
        load_image_folder(tmp_path, 8, 3)
    Image.new("RGB", (10, 10)).save(tmp_path / "ok.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg" * 10)
    with pytest.raises(ValueError, match="broken.jpg.*move it out of the folder"):
        load_image_folder(tmp_path, 8, 3)


# ---------------------------------------------------------------- load_dataset


def test_load_dataset_mnist_to_rgb():
    x, y = load_dataset("mnist", 32, 3, split="heldout")
    assert x.shape == (1000, 3, 32, 32) and len(y) == 1000
    assert torch.equal(x[:, 0], x[:, 2])


def test_load_dataset_idx_folder(tmp_path):
    tr, ytr = digits(6, seed=1)
    te, yte = digits(4, seed=2)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", tr, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", ytr, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", te)
    x, y = load_dataset(tmp_path, 32, 1)
    assert x.shape == (6, 1, 32, 32) and y.tolist() == ytr.tolist()
    x, y = load_dataset(tmp_path, 16, 3, split="heldout")
    assert x.shape == (4, 3, 16, 16) and y is None and in_range(x)
    x, y = load_dataset(tmp_path, 32, 1, split="all")
    assert x.shape == (10, 1, 32, 32) and y is None


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_load_dataset_npz(tmp_path, layout):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 10, 12, 3), dtype=np.uint8)
    arr = {"nhw": rgb[..., 0], "nhwc": rgb, "nchw": rgb.transpose(0, 3, 1, 2)}[layout]
    np.savez(tmp_path / "d.npz", images=arr, labels=np.array([0, 1, 2]))
    x, y = load_dataset(tmp_path / "d.npz", 10, 1)
    assert x.shape == (3, 1, 10, 10) and y.tolist() == [0, 1, 2] and in_range(x)
    expect = torch.as_tensor(rgb[:, :, 1:11].astype(np.float32) / 127.5 - 1)  # centre crop 12 -> 10
    expect = expect[..., 0] if layout == "nhw" else expect.mean(-1)
    assert torch.allclose(x[:, 0], expect, atol=1e-5)
    assert load_dataset(tmp_path / "d.npz", 10, 3)[0].shape == (3, 3, 10, 10)


def test_load_dataset_npz_errors(tmp_path):
    np.savez(tmp_path / "x.npz", pixels=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="no 'images'"):
        load_dataset(tmp_path / "x.npz", 4, 1)
    np.savez(tmp_path / "y.npz", images=np.zeros((2, 4, 4), np.uint8), labels=np.zeros(3))
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        load_dataset(tmp_path / "y.npz", 4, 1)


def test_load_dataset_image_folder_and_unknown(tmp_path):
    write_images(tmp_path / "imgs")
    x, y = load_dataset(tmp_path / "imgs", 8, 3)
    assert x.shape == (4, 3, 8, 8) and y is None
    for bad in ["cifar", tmp_path / "missing", tmp_path / "imgs" / "notes.txt"]:
        with pytest.raises(ValueError, match="unknown data source"):
            load_dataset(bad, 8, 3)
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("mnist", 32, 1, split="test")
