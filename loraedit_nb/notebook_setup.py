"""What the first cell of every notebook does once the package is importable: pick the device, cap CPU threads,
and turn on Colab's custom widget manager (the mask painter and progress bars are widgets).

The cell itself keeps only what must run *before* the package exists on Colab: clone ``$LORAEDIT_REPO`` and
install it."""

from __future__ import annotations

import os
import sys


def setup() -> str:
    """Prepare this kernel for the notebooks; returns the device, ``"cuda"`` or ``"cpu"``, and prints it.

    On a CPU torch uses ``$LORAEDIT_THREADS`` threads (default 1: the toy model is too small to gain from threads,
    and on a busy CPU they cost a lot)."""
    import torch

    if "google.colab" in sys.modules:
        from google.colab import output

        output.enable_custom_widget_manager()  # ipywidgets/ipycanvas (the mask painter, progress bars) need it
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(int(os.environ.get("LORAEDIT_THREADS", "1")))
    print("device:", torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads")
    return device
