import os

import numpy as np
import pytest
import torch

from loraedit_nb import memory

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


class TwoDeviceTransport(memory._Transport):
    """A GPU emulated for block swapping: host and "device" are both CPU, but every onload is a fresh copy and a
    released weight is an empty tensor (any use of a released weight fails loudly); a fake stream's copy/wait order
    is recorded. Host copies are made by the real transport's ``host_block`` (one buffer per block)."""

    def __init__(self, device):
        super().__init__(torch.device("cpu"))
        self.log = []

    def start_copy(self, host):
        ev = object()
        self.log.append(("copy", id(ev)))
        return host.clone(), ev

    def wait(self, tensors, event):
        assert ("copy", id(event)) in self.log, "waited on a copy that was never started"
        self.log.append(("wait", id(event)))

    def placeholder(self, host):
        return torch.empty(0, dtype=host.dtype)


@pytest.fixture
def two_devices(monkeypatch):
    """Every swapper made while the test runs uses a :class:`TwoDeviceTransport`; the list holds them."""
    made = []

    def factory(device):
        made.append(TwoDeviceTransport(device))
        return made[-1]
    monkeypatch.setattr(memory, "make_transport", factory)
    return made


# ----------------------------------------------------------------------------------------------- full-size simulation
# The full-size simulation of tests/test_simulation.py (Wan2.1-I2V-14B, 24GB preset) is single-threaded Python for
# ~5 minutes: it starts in a subprocess as soon as the tests are collected, so it runs beside the rest of the suite
# on CI's second core, and its tests read the JSON it wrote.
SIMULATION_ARGS = ["--backbone", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "--memory-preset", "24GB", "--steps", "1",
                   "--edit-steps", "1", "--leak-gb", "2", "--json"]


def pytest_collection_finish(session):
    import subprocess
    import sys
    import tempfile

    if not any("full_size_run" in item.fixturenames for item in session.items):
        return
    out = tempfile.NamedTemporaryFile("w+", suffix=".json", delete=False)
    err = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LORAEDIT_TRACEBACK": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "loraedit_nb", "simulate", *SIMULATION_ARGS], stdout=out,
                            stderr=err, env=env)
    session.config._loraedit_simulation = (proc, out.name, err.name)


def pytest_sessionfinish(session):
    sim = getattr(session.config, "_loraedit_simulation", None)
    if sim is not None and sim[0].poll() is None:
        sim[0].kill()


@pytest.fixture(scope="session")
def full_size_run(request):
    """The JSON of ``python -m loraedit_nb simulate`` with :data:`SIMULATION_ARGS` (started at collection)."""
    import json

    started = getattr(request.config, "_loraedit_simulation", None)
    assert started is not None, "pytest_collection_finish starts the simulation for every test that uses this"
    proc, out, err = started
    rc = proc.wait(timeout=1800)
    with open(err) as f:
        log = f.read()
    assert rc == 0, f"the full-size simulation failed (exit {rc}):\n{log[-3000:]}"
    with open(out) as f:
        return json.loads(f.read())
