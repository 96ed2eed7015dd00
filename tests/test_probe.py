"""Liveness of h: answers known by construction (a decoder that ignores h, one that reads it)."""

import pytest
import torch
from torch import nn

from hspace.backends.base import EncoderState, HSpaceModel
from hspace.cli import main
from hspace.probe import probe_liveness, top_singular
from hspace.schedule import linear_alphas_cumprod


class ToyUNet(HSpaceModel):
    """h = conv(x) at half resolution, one full-resolution skip; eps = skip path + h_weight * upsampled h path."""

    backend = "toy"
    h_channels, emb_channels, in_channels, image_size = 4, 2, 1, 8

    def __init__(self, h_weight: float, squash: bool = True):
        super().__init__(linear_alphas_cumprod())
        self.squash = squash  # False: h = conv(x), and the whole chain is affine in a first step's shift
        g = torch.Generator().manual_seed(0)
        self.down = nn.Conv2d(1, 4, 2, stride=2)
        self.up = nn.Conv2d(4, 1, 1)
        self.skip = nn.Conv2d(1, 1, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
        self.h_weight = h_weight
        self.freeze()

    def encode(self, x, t):
        emb = torch.zeros(x.shape[0], 2)
        h = self.down(x)
        return torch.tanh(h) if self.squash else h, EncoderState(emb=emb, skips=(x,), t=t)

    def decode(self, h, state):
        up = nn.functional.interpolate(self.up(h), scale_factor=2)
        return 0.5 * self.skip(state.skips[0]) + self.h_weight * up


def test_top_singular_matches_svd_of_the_jacobian():
    w = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(1))  # a different linear map per sample

    def fn(x):  # x [2 x 5] -> [2 x 6]
        return torch.einsum("noi,ni->no", w, x)

    sigma, vectors = top_singular(fn, torch.randn(2, 5), k=2, iters=60)
    for n in range(2):
        _, s, vh = torch.linalg.svd(w[n])
        torch.testing.assert_close(sigma[n], s[:2], rtol=1e-4, atol=1e-5)
        assert abs(torch.dot(vectors[n, 0], vh[0]).abs().item() - 1) < 1e-4


def test_a_decoder_that_ignores_h_is_dormant():
    r = probe_liveness(ToyUNet(h_weight=0.0), M=4, t_stop=250, batch=3, iters=4, progress=False)
    assert all(g == 0 for g in r.gain["h"])
    assert all(d == 0 for d in [*r.delta_x0_random.values(), *r.delta_x0_top.values()])
    assert r.live is False and r.verdict.startswith("DORMANT")
    assert all(g > 0 for g in r.gain["skip0 (1, 8, 8)"])  # the skip path is what it reads


def test_a_decoder_that_reads_h_is_live_and_larger_shifts_move_x0_more():
    r = probe_liveness(ToyUNet(h_weight=1.0), M=4, t_stop=250, batch=3, iters=4, progress=False)
    assert all(g > 0 for g in r.gain["h"])
    assert r.delta_x0_random["0.25"] < r.delta_x0_random["0.5"] < r.delta_x0_random["1"]
    # the top singular direction moves eps the most, so it moves x0 at least as much as random ones
    assert r.delta_x0_top["1"] >= r.delta_x0_random["1"]
    assert r.live is True and r.verdict.startswith("LIVE")


def test_even_share_is_zero_where_the_chain_is_linear_in_the_shift():
    # Shifted on the first step only (t_stop = its t), an affine chain carries +d and -d to
    # opposite changes of x0: nothing even. With tanh in the encoder the later steps bend them.
    linear = probe_liveness(ToyUNet(1.0, squash=False), M=4, t_stop=750, batch=3, iters=2, skips=False, progress=False)
    assert all(share < 1e-6 for share in [*linear.even_share_random.values(), *linear.even_share_top.values()])
    assert min(linear.delta_x0_random.values()) > 0  # the shifts do move x0
    bent = probe_liveness(ToyUNet(1.0), M=4, t_stop=250, batch=3, iters=2, skips=False, progress=False)
    assert all(share > 1e-3 for share in bent.even_share_random.values())


def test_probe_rejects_bad_settings():
    with pytest.raises(ValueError, match="t_stop"):
        probe_liveness(ToyUNet(1.0), M=4, t_stop=900, progress=False)
    with pytest.raises(ValueError, match="sizes"):
        probe_liveness(ToyUNet(1.0), M=4, sizes=(0.0,), progress=False)


def test_probe_command_on_a_preset(capsys, tmp_path):
    assert (
        main(
            [
                "probe",
                "tiny",
                "--M",
                "3",
                "--batch-size",
                "2",
                "--quick",
                "--sizes",
                "1",
                "--json",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "h-space" in out.splitlines()[-2] and (tmp_path / "p.json").exists()
    with pytest.raises(SystemExit):
        main(["probe", "tiny", "--sizes", "x"])
