"""docs/ pages: an executed notebook becomes Markdown whose videos are GIFs and whose figures are PNG files."""

import nbformat
from PIL import Image

from loraedit_nb.notebook_runner import run_notebook
from loraedit_nb.publish import notebook_to_markdown


def test_executed_notebook_becomes_markdown_with_gifs_and_pngs(tmp_path):
    src = tmp_path / "09_demo.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 09 · A page"),
        nbformat.v4.new_code_cell(
            "import numpy as np\nfrom loraedit_nb.video import show_videos\n"
            "v = np.zeros((5, 16, 24, 3), np.float32); v[np.arange(5), :, np.arange(5) * 4] = 1\n"
            "show_videos({'moving line': v, 'still': v * 0 + 0.5}, height=32)"),
        nbformat.v4.new_code_cell(
            "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]); plt.title('a line'); plt.show()"),
        nbformat.v4.new_code_cell(
            "from loraedit_nb.video import show_images\nshow_images({'a frame': v[2], 'grey': v[0] * 0 + 0.5})"),
        nbformat.v4.new_code_cell(
            "from loraedit_nb.models import DATA_DIR\nprint(DATA_DIR.parent / 'outputs/notebooks/02/lora')"),
    ])
    nbformat.write(nb, src)
    seconds, err = run_notebook(src, tmp_path / "executed", timeout=120, html=False)
    assert err is None, err
    md = notebook_to_markdown(tmp_path / "executed" / src.name, tmp_path / "docs")
    text = md.read_text()
    assert "data:video/mp4" not in text and text.count('<img src="09_demo_files/video_') == 2
    gif = Image.open(tmp_path / "docs" / "09_demo_files" / "video_01.gif")
    assert gif.n_frames == 5 and gif.info.get("loop") == 0
    assert gif.size == (24, 16)
    pngs = sorted(p.name for p in (tmp_path / "docs" / "09_demo_files").glob("*.png"))
    assert len(pngs) == 3 and all(name in text for name in pngs)  # the plot, and show_images' two pictures
    assert "data:image/png" not in text and 'src="09_demo_files/image_02.png"' in text
    assert Image.open(tmp_path / "docs" / "09_demo_files" / "image_01.png").size == (24, 16)
    assert "moving line" in text
    from loraedit_nb.notebook_runner import ROOT

    assert "outputs/notebooks/02/lora" in text and str(ROOT) not in text  # no machine path on a published page
