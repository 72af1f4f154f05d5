import os

import numpy as np
import pytest
import torch

torch.set_num_threads(int(os.environ.get("LORAEDIT_THREADS", "2")))


@pytest.fixture(scope="session")
def tiny():
    """Tiny random Wan2.1-I2V stack (AutoencoderKLWan, 36-channel transformer, UMT5, CLIP) built from config."""
    from loraedit_nb.models import tiny_random_backbone

    return tiny_random_backbone()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def moving_square(T=9, H=64, W=64, size=12, step=3, seed=0):
    """A textured background with a bright square moving right: (video, mask)."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    bg = np.stack([0.3 + 0.2 * np.sin(xx / 5.0), 0.3 + 0.2 * np.cos(yy / 7.0), 0.4 + 0.1 * np.sin((xx + yy) / 9.0)], -1)
    bg = bg + 0.02 * r.standard_normal((H, W, 3))
    video = np.repeat(bg[None], T, 0).astype(np.float32)
    mask = np.zeros((T, H, W), bool)
    for t in range(T):
        x0, y0 = 8 + step * t, 20
        video[t, y0 : y0 + size, x0 : x0 + size] = [0.95, 0.2, 0.2]
        mask[t, y0 : y0 + size, x0 : x0 + size] = True
    return np.clip(video, 0, 1), mask
