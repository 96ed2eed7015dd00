import pytest
import torch

from hspace import presets
from hspace.backends import build_adm
from hspace.backends.adm import fill_zero_init_


@pytest.fixture(autouse=True)
def _threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_model():
    return build_adm(presets.DM_PRESETS["tiny"], seed=0)


def randomize_(model, std=0.02, seed=1):
    """Give every zero-initialised layer random weights, so tests see a non-trivial network."""
    return fill_zero_init_(model, std, seed)


class GaussianDataEps:
    """The exact eps-predictor for data ~ N(0, sigma^2 I): a closed-form model to test solvers against.

    eps*(x_t) = sqrt(1 - abar) x_t / (abar sigma^2 + 1 - abar). h is x_t itself.
    """

    @staticmethod
    def build(sigma: float = 0.5):
        from hspace.backends.base import EncoderState, HSpaceModel
        from hspace.schedule import linear_alphas_cumprod

        class _Model(HSpaceModel):
            backend = "gaussian"
            h_channels, emb_channels, in_channels, image_size = 1, 1, 1, 8

            def encode(self, x, t):
                return x, EncoderState(emb=t[:, None].float(), skips=(), t=t)

            def decode(self, h, state):
                abar = self.alphas_cumprod[state.t].to(h.dtype)[:, None, None, None]
                return (1 - abar).sqrt() * h / (abar * sigma**2 + 1 - abar)

        return _Model(linear_alphas_cumprod()).freeze()
