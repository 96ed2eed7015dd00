"""Metrics: FID against torchmetrics, per-class accuracy, edit agreement, the interpretability proxy."""

import pytest
import torch

from hspace.metrics import (
    accuracy_per_class,
    edit_agreement,
    edit_overlap,
    even_share,
    frechet_distance,
    interpretability_proxy,
    separation_auc,
)


def test_frechet_distance_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.image.fid")
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 8, generator=g)
    fake = torch.randn(300, 8, generator=g) * 1.3 + 0.2

    class Identity(torch.nn.Module):  # images are already the features
        def forward(self, x):
            return x.flatten(1)

    fid = tm.FrechetInceptionDistance(feature=Identity(), input_img_size=(8,), normalize=True)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert frechet_distance(real, fake) == pytest.approx(float(fid.compute()), rel=1e-4)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-8)


def test_accuracy_per_class_and_confusion():
    per, conf = accuracy_per_class(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 4)
    assert per[:3].tolist() == [1.0, 1.0, 0.5] and torch.isnan(per[3])
    assert conf[2].tolist() == [0, 1, 1, 0] and conf.sum() == 4


def test_edit_agreement():
    plain, ref = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    assert edit_agreement(ref, ref, plain) == 0.0
    assert edit_agreement(ref, plain, plain) == pytest.approx(1.0)


def test_proxy_prefers_consistent_linear_edits():
    mags = torch.linspace(-2, 2, 5)
    base = torch.randn(4, 1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    direction = torch.randn(1, 1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    linear = base + mags[None, :, None, None, None] * direction
    noisy = base + torch.randn(4, 5, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * (
        mags.abs()[None, :, None, None, None] > 0
    )
    good, bad = interpretability_proxy(linear, mags), interpretability_proxy(noisy, mags)
    assert good["consistency"] > 0.99 and good["smoothness"] > 0.99
    assert bad["score"] < 0.5 * good["score"]


def test_even_share_is_known_for_known_edits():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 8, 8, generator=g), torch.randn(1, 8, 8, generator=g)
    plus = torch.stack([a, a, a, a + b])
    minus = torch.stack([-a, a, 0 * a, -a + b])  # flipped, the same, one sign only, a shared b on top
    share = even_share(plus, minus)
    expected = b.pow(2).sum() / (a.pow(2).sum() + b.pow(2).sum())
    torch.testing.assert_close(share, torch.stack([torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0.5), expected]))


def test_edit_overlap_tells_same_edits_from_distinct_ones():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)  # 3 seeds each
    overlap = edit_overlap(torch.stack([a, 2 * a, -a, b]))  # scaled copies, a flipped one, an unrelated one
    assert overlap.shape == (4, 4) and torch.allclose(overlap.diag(), torch.ones(4))
    assert overlap[0, 1].item() == pytest.approx(1.0, abs=1e-6) and overlap[0, 2].item() == pytest.approx(
        -1.0, abs=1e-6
    )
    assert abs(overlap[0, 3].item()) < 0.5 and torch.allclose(overlap, overlap.T)


def test_separation_auc_on_scores_known_by_construction():
    assert separation_auc(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.5])) == 1.0
    assert separation_auc(torch.tensor([0.0, 0.5]), torch.tensor([1.0, 2.0, 3.0])) == 0.0
    assert separation_auc(torch.zeros(4), torch.zeros(7)) == 0.5  # ties count half
    # a: 0 beats none of {1, 3}; 2 beats 1; 4 beats both: 3 wins of 6
    assert separation_auc(torch.tensor([0.0, 2.0, 4.0]), torch.tensor([1.0, 3.0]), chunk=2) == 0.5
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, generator=g) + 1, torch.randn(200, generator=g)
    assert separation_auc(a, b) == separation_auc(2 * a - 5, 2 * b - 5)  # no matter the offset and scale
    assert separation_auc(a, b) == pytest.approx(1 - separation_auc(b, a))


def test_separation_auc_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(250, generator=g) + 0.4, torch.randn(150, generator=g)
    scores, labels = torch.cat([a, b]), torch.cat([torch.ones(250), torch.zeros(150)]).long()
    assert separation_auc(a, b) == pytest.approx(tm.binary_auroc(scores, labels).item(), abs=1e-6)
