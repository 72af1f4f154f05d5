"""The notebooks as pages a learner can read without running anything (``make site`` / ``python -m loraedit_nb
site``): each executed notebook becomes ``docs/NN_name.md`` with its pictures as PNG files and every inline video as
an animated GIF beside it (GitHub's viewer plays GIFs but drops inline ``<video>`` data), plus ``docs/README.md`` as
an index. The shipped ``.ipynb`` files stay without outputs, so git diffs of the notebooks stay readable; ``docs/``
holds the Markdown (diffable) and the media.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .notebook_runner import ROOT, notebooks, run_all

_VIDEO = re.compile(r"<video[^>]*>\s*<source src=\"data:video/mp4;base64,([^\"]+)\"[^>]*/?>.*?</video>", re.S)
_WIDGET = "application/vnd.jupyter.widget-view+json"
_PNG = re.compile(r'src="data:image/png;base64,([^"]+)"')  # show_images' inline pictures


def mp4_to_gif(data: bytes, path: Path, *, max_width: int = 960) -> tuple[int, int]:
    """Write an H.264 clip (bytes) as a looping GIF at its own frame rate; frames wider than ``max_width`` are
    halved until they fit. Returns the GIF's ``(width, height)``."""
    import imageio.v2 as imageio
    from PIL import Image

    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        reader = imageio.get_reader(f.name, format="ffmpeg")
        fps = float(reader.get_meta_data().get("fps") or 8.0)
        frames = [Image.fromarray(fr) for fr in reader]
        reader.close()
    while frames[0].width > max_width:
        frames = [fr.resize((fr.width // 2, fr.height // 2), Image.NEAREST) for fr in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0,
                   optimize=True, disposal=2)
    return frames[0].width, frames[0].height


def notebook_to_markdown(executed: Path, docs: Path) -> Path:
    """One executed notebook -> ``docs/<stem>.md`` + ``docs/<stem>_files/`` (PNGs and GIFs). Live widgets keep
    the still picture they carry (the mask painter does) and are otherwise dropped; progress bars vanish."""
    import nbformat
    from nbconvert import MarkdownExporter

    nb = nbformat.read(executed, as_version=4)
    stem = executed.stem
    files = docs / f"{stem}_files"
    shutil.rmtree(files, ignore_errors=True)
    n_video = n_image = 0

    def png_file(m: re.Match) -> str:  # an inline picture (mediapy's show_images) becomes a PNG file beside the page
        nonlocal n_image
        n_image += 1
        name = f"image_{n_image:02d}.png"
        files.mkdir(parents=True, exist_ok=True)
        (files / name).write_bytes(base64.b64decode(m.group(1)))
        return f'src="{files.name}/{name}"'
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _WIDGET in data:  # a live widget: keep its still picture if it has one, else what else it carries
                data.pop(_WIDGET)
                if "image/png" not in data:
                    data.pop("text/plain", None)  # "VBox(children=...)" says nothing on a page
                    if not data:
                        continue
            html = data.get("text/html")
            if html and "data:video/mp4;base64," in html:
                def gif(m: re.Match) -> str:
                    nonlocal n_video
                    n_video += 1
                    name = f"video_{n_video:02d}.gif"
                    w, h = mp4_to_gif(base64.b64decode(m.group(1)), files / name)
                    return f'<img src="{files.name}/{name}" width="{w}" height="{h}" alt="video {n_video}">'

                data["text/html"] = _VIDEO.sub(gif, "".join(html) if isinstance(html, list) else html)
                data.pop("text/plain", None)
            html = data.get("text/html")
            if html and "data:image/png;base64," in "".join(html):
                data["text/html"] = _PNG.sub(png_file, "".join(html) if isinstance(html, list) else html)
                data.pop("text/plain", None)
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                out["text"] = "".join(ln for ln in out["text"].splitlines(True) if "\r" not in ln)  # tqdm redraws
                if not out["text"].strip():
                    continue
            outputs.append(out)
        cell.outputs = outputs
    body, resources = MarkdownExporter().from_notebook_node(nb, resources={"output_files_dir": files.name})
    for name, blob in resources.get("outputs", {}).items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_bytes(blob)
    md = docs / f"{stem}.md"
    md.write_text(body.replace(f"{ROOT}{os.sep}", ""))  # printed paths read from the repository root, not this machine
    return md


# The hand-written pages of docs/ (the notebooks' pages are generated beside them), listed first in docs/README.md
GUIDES = (
    ("python.md", "Python", "what LoRA-Edit feeds the model, training and editing, every knob"),
    ("cli.md", "Command line", "train, edit, plan, first-frame, evaluate, bench from a shell"),
    ("memory.md", "Cost and memory on the real model", "GPU tiers 16-80 GB, what each stage keeps where, the planner"),
    ("backbones.md", "Which backbone", "Wan2.1, Wan2.2, HunyuanVideo: how each takes the mask and what it costs"),
    ("results.md", "Results", "the paper's comparison on the toy world, every variant, where LoRA-Edit does not win"),
    ("benchmarks.md", "Benchmarks", "time per step and memory of the toy and tiny models on a CPU"),
)


def build_site(docs: str | Path = ROOT / "docs", executed_dir: str | Path | None = None, *,
               run: bool | None = None) -> Path:
    """Execute the five notebooks (or reuse executed copies in ``executed_dir`` newer than their sources when
    ``run`` is None/False) and write ``docs/``. Returns ``docs/README.md``."""
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    executed_dir = Path(executed_dir) if executed_dir else ROOT / "outputs" / "notebooks"
    sources = notebooks()
    fresh = all((executed_dir / p.name).exists() and (executed_dir / p.name).stat().st_mtime > p.stat().st_mtime
                for p in sources)
    times = {}
    if run or (run is None and not fresh):
        runs = run_all(executed_dir, sources)
        failed = [r for r in runs if r.error]
        if failed:
            raise RuntimeError("not publishing: " + "; ".join(f"{r.name} failed: {r.error[:300]}" for r in failed))
        times = {r.name: r.seconds for r in runs}
    elif (executed_dir / "timings.json").exists():
        times = json.loads((executed_dir / "timings.json").read_text())
    rows = []
    for p in sources:
        md = notebook_to_markdown(executed_dir / p.name, docs)
        title = next((ln.lstrip("# ").strip() for ln in md.read_text().splitlines() if ln.startswith("# ")), p.stem)
        t = times.get(p.stem)
        rows.append(f"| [{title}]({md.name}) | {f'{t:.0f} s' if t else '-'} |")
    index = docs / "README.md"
    index.write_text("\n".join([
        "# Documentation", "", "Pages that go deeper than the top-level README:", "",
        *(f"- [{title}]({name}): {what}" for name, title, what in GUIDES), "",
        "## The notebooks, executed", "",
        "Each page is a notebook of `notebooks/` run top to bottom on the embedded toy backbone (CPU), with every",
        "figure and video (as GIF) in place. Made by `make site` on " + time.strftime("%Y-%m-%d") + "; the times are",
        "that run's wall times on a 2-core CPU.", "",
        "| notebook | run time |", "|---|---|", *rows, ""]))
    return index


def add_parser(sub) -> None:
    p = sub.add_parser("site", help="execute the notebooks and write docs/ (Markdown + PNG + GIF) for readers")
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--executed", default=None, help="folder of executed notebooks (default outputs/notebooks)")
    p.add_argument("--run", action="store_true", help="always execute the notebooks (default: reuse fresh copies)")

    def main(a) -> None:
        print(build_site(a.out, a.executed, run=True if a.run else None))

    p.set_defaults(func=main)
