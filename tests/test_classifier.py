import pytest
import torch

from hspace.artifacts import read_metadata
from hspace.classifier import (
    CLASSIFIER_PATH,
    DigitClassifier,
    accuracy,
    load_classifier,
    random_shift,
    save_classifier,
    train_classifier,
)
from hspace.data import load_mnist


@pytest.fixture(scope="module")
def shipped():
    return load_classifier()


@pytest.fixture(scope="module")
def heldout():
    return load_mnist("heldout", 32)


def test_shipped_classifier_is_accurate(shipped, heldout):
    x, y = heldout
    assert not shipped.training
    assert all(not p.requires_grad for p in shipped.parameters())
    assert all(p.dtype == torch.float32 for p in shipped.state_dict().values() if p.is_floating_point())
    acc = accuracy(shipped, x, y)
    assert acc >= 0.97
    meta = read_metadata(CLASSIFIER_PATH)
    assert meta["kind"] == "hspace-classifier"
    assert abs(meta["heldout_accuracy"] - acc) < 1e-3
    assert {"steps", "seed"} <= set(meta)


def test_features_shape_and_determinism(shipped, heldout):
    x = heldout[0][:64]
    f1, f2 = shipped.features(x), shipped.features(x)
    assert f1.shape == (64, shipped.feature_dim) and f1.dtype == torch.float32
    assert torch.equal(f1, f2)
    assert torch.equal(shipped.head(f1), shipped(x))
    assert (f1 >= 0).all() and f1.std(0).gt(0).sum() > shipped.feature_dim // 2  # post-ReLU, not collapsed


def test_28px_and_rgb_inputs_match_grey_32px(shipped):
    x28, _ = load_mnist("heldout", 28)
    x28 = x28[:100]
    x32, _ = load_mnist("heldout", 32)
    x32 = x32[:100]
    ref = shipped(x32)
    assert torch.allclose(shipped(x28), ref, atol=1e-5)
    assert torch.allclose(shipped(x32.repeat(1, 3, 1, 1)), ref, atol=1e-5)
    assert torch.allclose(shipped(x28.repeat(1, 3, 1, 1)), ref, atol=1e-5)
    assert torch.equal(shipped(x28).argmax(1), ref.argmax(1))
    assert torch.allclose(shipped(x32[:, 0]), ref, atol=1e-5)  # [N x H x W] too
    assert shipped.features(x28.repeat(1, 3, 1, 1)).shape == (100, shipped.feature_dim)


def test_save_load_round_trip(tmp_path, shipped, heldout):
    x = heldout[0][:32]
    # the shipped weights are fp16-exact: saving them again in fp16 loses nothing
    path = save_classifier(shipped, tmp_path / "c16.safetensors", note="x")
    again = load_classifier(path)
    assert torch.equal(again(x), shipped(x))
    assert read_metadata(path)["note"] == "x"
    # a fresh fp32 model saved in fp32 comes back identical
    torch.manual_seed(3)
    fresh = DigitClassifier().eval()
    path = save_classifier(fresh, tmp_path / "c32.safetensors", dtype=torch.float32)
    assert torch.equal(load_classifier(path)(x), fresh(x))


def test_load_rejects_other_files(tmp_path):
    from hspace.artifacts import save_tensors

    path = save_tensors(tmp_path / "other.safetensors", {"a": torch.zeros(1)}, kind="something-else")
    with pytest.raises(ValueError, match="not hspace-classifier"):
        load_classifier(path)


def test_random_shift_moves_digits_by_at_most_two_pixels():
    x = torch.full((50, 1, 32, 32), -1.0)
    x[:, :, 16, 16] = 1.0
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    pos = torch.stack([torch.nonzero(o[0] > 0)[0] for o in out])
    assert (pos - 16).abs().max() <= 2 and len({tuple(p.tolist()) for p in pos}) > 5


def test_tiny_training_lowers_loss_and_is_deterministic():
    x, y = load_mnist("train", 32)
    x, y = x[:256], y[:256]
    kw = {
        "steps": 12,
        "batch_size": 32,
        "lr": 3e-3,
        "seed": 5,
        "progress": False,
        "widths": (8, 16, 16),
        "feature_dim": 16,
    }
    h1, h2 = [], []
    m1 = train_classifier(x, y, history=h1, **kw)
    m2 = train_classifier(x, y, history=h2, **kw)
    assert h1 == h2
    assert sum(h1[-3:]) / 3 < sum(h1[:3]) / 3
    assert torch.equal(m1(x[:16]), m2(x[:16]))
    assert not m1.training and m1.features(x[:4]).shape == (4, 16)
