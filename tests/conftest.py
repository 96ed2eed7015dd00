import shutil
from pathlib import Path

import pytest
import torch

from hspace import presets
from hspace.backends import build_adm
from hspace.backends.adm import fill_zero_init_

# The tiny discovery run most front-end tests look at: K = 4, S = 2, M = 3, t_stop = 400, three steps.
TINY_RUN = presets.run_preset("tiny")[1].replace(train_steps=3, batch_size=4, M=3)


@pytest.fixture(autouse=True)
def _threads():
    torch.manual_seed(0)
    yield


def randomize_(model, std=0.02, seed=1):
    """Give every zero-initialised layer random weights, so tests see a non-trivial network."""
    return fill_zero_init_(model, std, seed)


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny ADM preset, frozen, with its zero-initialised layers random: eps depends on h."""
    return randomize_(build_adm(presets.DM_PRESETS["tiny"], seed=0), std=0.01).freeze()


@pytest.fixture(scope="session")
def tiny_run_template(tmp_path_factory) -> Path:
    """``TINY_RUN`` discovered once per session; tests take copies (``tiny_run_dir``), never this folder."""
    from hspace.discover import discover

    return discover("tiny", TINY_RUN, tmp_path_factory.mktemp("tiny-run") / "run", grid_every=0, progress=False)


@pytest.fixture(scope="module")
def tiny_run_dir(tiny_run_template, tmp_path_factory) -> Path:
    """A copy of the tiny run for one test module, which may write into it (labels, show/)."""
    return Path(shutil.copytree(tiny_run_template, tmp_path_factory.mktemp("run") / "run"))


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


def exit_code(argv: list[str]) -> int:
    """``hspace`` run in-process as a shell would see it: usage errors exit through SystemExit."""
    from hspace.cli import main

    try:
        return main(argv)
    except SystemExit as e:
        return e.code
