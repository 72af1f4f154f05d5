"""loraedit_nb — LoRA-Edit (Gao et al., arXiv 2506.10082) as notebooks and a small library.

Mask convention (everywhere in this package): a boolean ``(T, H, W)`` array, **True = region to edit**
(generated), False = preserved. Videos are float32 ``(T, H, W, 3)`` in [0, 1]. See :mod:`loraedit_nb.masks`.
"""

__version__ = "0.1.0"

import logging as _logging  # noqa: E402

from . import masks, video  # noqa: E402,F401  (light modules; the torch-heavy ones import on use)

# bitsandbytes (the optional 8-bit AdamW) warns on import on CPUs with AVX512-BF16 that an optional 4-bit CPU kernel
# package is missing; this package never runs 4-bit CPU matmuls, so that one logger is quieted (nothing else is)
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)


class _DropTorchvisionFallbackNotice(_logging.Filter):
    """diffusers' Wan/Hunyuan pipeline modules import ``transformers.CLIPImageProcessor``; without torchvision,
    transformers (>= 5) then says once per process that it falls back to ``CLIPImageProcessorPil``. That fallback is
    exactly the processor this package uses on purpose (``models.clip_image_processor_class``), so this one notice
    is dropped. diffusers' FLUX Kontext pipeline (the first-frame editor) likewise imports ``SiglipImageProcessor``
    for its optional IP-Adapter image encoder, which this package never builds; its notice goes too. Every other
    transformers message passes."""

    def filter(self, record: _logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("requires torchvision" in msg and ("falling back to `CLIPImageProcessorPil`" in msg
                                                       or "falling back to `SiglipImageProcessorPil`" in msg))


_logging.getLogger("transformers.utils.import_utils").addFilter(_DropTorchvisionFallbackNotice())
