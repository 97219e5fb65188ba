"""The per-patient viewer: display-grid math, NIfTI bytes, the worst/best choice, the report's viewer page in
headless Chromium (WebGL through SwiftShader) and notebook 04 under papermill."""

import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from studylib.ingest.imageio import ImageGeometry
from studylib.reporting.viewer import (
    block_factor,
    block_reduce,
    display_box,
    display_geometry,
    extreme_patients,
    focus_fraction,
    focus_voxel,
    nifti_gz_bytes,
    ras_mm,
)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def test_display_box_and_block_factor():
    mask = np.zeros((10, 20, 30), bool)
    mask[2:4, 5:9, 10:25] = True
    assert display_box(mask, margin=2) == (slice(0, 6), slice(3, 11), slice(8, 27))
    assert display_box(np.zeros((4, 5, 6), bool)) == (slice(0, 4), slice(0, 5), slice(0, 6))
    assert block_factor((100, 100, 100), 1_000_000) == 1
    assert block_factor((100, 100, 101), 1_000_000) == 2  # 1,010,000 voxels
    assert block_factor((512, 512, 400), 4_000_000) == 3  # 171 x 171 x 134 = 3.92 M voxels


def test_block_reduce_keeps_a_one_voxel_mask_and_averages_images():
    mask = np.zeros((5, 6, 7), np.uint8)
    mask[4, 5, 6] = 1  # the last voxel: its block is padded
    reduced = block_reduce(mask, 2, "max")
    assert reduced.shape == (3, 3, 4) and reduced.sum() == 1 and reduced[2, 2, 3] == 1
    image = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    assert block_reduce(image, 2, "mean").item() == pytest.approx(3.5)
    assert block_reduce(image, 1, "mean") is image


def test_display_geometry_puts_each_voxel_at_its_block_centre():
    rotation = sitk.Euler3DTransform((0, 0, 0), 0.1, -0.2, 0.3).GetMatrix()
    geometry = ImageGeometry((40, 30, 20), (0.8, 0.9, 2.5), (-10.0, 5.0, 30.0), rotation)
    box = (slice(2, 20), slice(3, 30), slice(4, 40))
    shown = display_geometry(geometry, box, 3, (6, 9, 12))
    full = sitk.Image(*geometry.size, sitk.sitkUInt8)
    full.SetSpacing(geometry.spacing), full.SetOrigin(geometry.origin), full.SetDirection(geometry.direction)
    small = sitk.Image(*shown.size, sitk.sitkUInt8)
    small.SetSpacing(shown.spacing), small.SetOrigin(shown.origin), small.SetDirection(shown.direction)
    block = [full.TransformIndexToPhysicalPoint((4 + 3 + i, 3 + 3 + j, 2 + 3 + k))
             for i in range(3) for j in range(3) for k in range(3)]  # display voxel (1, 1, 1)
    assert small.TransformIndexToPhysicalPoint((1, 1, 1)) == pytest.approx(np.mean(block, axis=0))
    assert shown.size == (12, 9, 6)


def test_nifti_bytes_read_back_with_slope_and_geometry(tmp_path):
    geometry = ImageGeometry((4, 3, 2), (1.5, 2.0, 3.0), (10.0, -20.0, 5.0))
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4) * 100
    path = tmp_path / "pet.nii.gz"
    path.write_bytes(nifti_gz_bytes(array, geometry, slope=0.01))
    image = sitk.ReadImage(str(path))
    assert np.allclose(sitk.GetArrayFromImage(image), array * 0.01, atol=1e-6)
    assert image.GetOrigin() == pytest.approx(geometry.origin) and image.GetSpacing() == pytest.approx(geometry.spacing)
    assert gzip.decompress(path.read_bytes())[344:347] == b"n+1"
    # the RAS position of a voxel is the LPS one with x and y negated
    assert ras_mm(geometry, (1, 2, 3)) == pytest.approx([-(10.0 + 4.5), -(-20.0 + 4.0), 5.0 + 3.0])


def test_focus_fraction_follows_the_orientation():
    lps = ImageGeometry((10, 20, 5), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))  # x runs to the patient's left: R is -x
    assert focus_fraction(lps, (2, 4, 0)) == pytest.approx([1 - 0.5 / 10, 1 - 4.5 / 20, 2.5 / 5])
    flipped = ImageGeometry((10, 20, 5), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert focus_fraction(flipped, (2, 4, 0)) == pytest.approx([0.5 / 10, 4.5 / 20, 2.5 / 5])


def test_focus_is_the_labels_centre():
    a = np.zeros((9, 9, 9), bool)
    a[2, 4, 6] = True
    b = np.zeros_like(a)
    b[4, 4, 6] = True
    assert focus_voxel([a, b], a.shape) == (3, 4, 6)
    assert focus_voxel([np.zeros_like(a)], a.shape) == (4, 4, 4)


def test_extreme_patients_per_family_at_the_first_seed():
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.5)):
        for pid, dsc in (("P1", 0.2), ("P2", 0.8), ("P3", 0.5)):
            for gt in ("label_a", "label_b"):
                rows.append({"modality": "dual", "train_label": "label_a", "ground_truth": gt, "seed": seed,
                             "patient_id": pid, "dsc": dsc + shift if gt == "label_a" else 1 - dsc,
                             "empty_prediction": False})
    table = extreme_patients(pd.DataFrame(rows))
    assert list(table.which) == ["worst", "best"] and list(table.patient_id) == ["P1", "P2"]
    assert list(table.dsc) == [0.2, 0.8] and set(table.ground_truth) == {"label_a"}


def find_chromium() -> str | None:
    """Chromium from PETCT_CHROMIUM or PATH (Debian's package: apt-get install chromium)."""
    named = os.environ.get("PETCT_CHROMIUM")
    if named:
        return named
    return next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)


class HeadlessPage:
    """One tab of headless Chromium driven over the DevTools protocol (websocket-client, which jupyter_server
    brings): WebGL through SwiftShader, no network, a 1200 x 800 viewport."""

    def __init__(self, chromium: str, profile: Path):
        import websocket

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", f"--user-data-dir={profile}",
                 "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"]
        self.process = subprocess.Popen([chromium, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
        page = next(t for t in targets if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=300)
        self.calls = 0
        self.call("Emulation.setDeviceMetricsOverride", width=1200, height=800, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params) -> dict:
        """Send one DevTools command and return its result."""
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.calls:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                         awaitPromise=True)["result"].get("value")

    def open(self, url: str, timeout: float = 300) -> str:
        """Load ``url`` and wait until the viewer says it is ready (or has failed); its status line."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if self.evaluate("document.readyState === 'complete' && (document.body.dataset.ready === 'true' || "
                             "document.getElementById('status').className === 'error')"):
                break
        time.sleep(1.0)  # a frame or two after the last draw
        return self.evaluate("document.getElementById('status').textContent")

    def canvas(self) -> np.ndarray:
        """The viewer's canvas as pixels (RGB, 0-255), from a screenshot of its rectangle."""
        import io

        import matplotlib.image

        box = self.evaluate("(() => { const r = document.getElementById('gl').getBoundingClientRect(); "
                            "return [r.x, r.y, r.width, r.height]; })()")
        clip = dict(zip(("x", "y", "width", "height"), box), scale=1)
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png", clip=clip)["data"])
        self.last_png = png
        return (matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255).round().astype(int)

    def close(self) -> None:
        """Close the connection and end the browser."""
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=30)


def coloured(pixels: np.ndarray) -> np.ndarray:
    """Saturated pixels that are not the green crosshair: overlays (labels, PET)."""
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    saturated = pixels.max(-1) - pixels.min(-1) > 60
    crosshair = (g > 150) & (r < 120) & (b < 120)
    return saturated & ~crosshair


@pytest.mark.slow
def test_viewer_page_in_headless_chromium(tiny_study, tmp_path):
    """A rendered viewer page, opened from disk: the canvas shows the CT, the PET and the labels in colour, switching
    layers off (their checkboxes, or the URL) changes the pixels, and a click shows the values under the crosshair."""
    from studylib.reporting.viewer import write_viewer_pages

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium; or set PETCT_CHROMIUM): "
                    "the viewer's browser test needs a browser")
    out, _ = tiny_study
    pid = json.loads((out / "splits.json").read_text())[0]["test"][0]
    pages = write_viewer_pages(out, tmp_path / "viewer", patients=[pid])
    assert [p.name for p in pages] == [f"{pid}.html"] and (tmp_path / "viewer" / "niivue.umd.js").exists()
    keep = Path(os.environ["PETCT_VIEWER_SCREENSHOTS"]) if os.environ.get("PETCT_VIEWER_SCREENSHOTS") else None
    browser = HeadlessPage(chromium, tmp_path / "profile")
    try:
        status = browser.open(pages[0].as_uri())
        assert status.startswith("ready:"), status
        shots = {"default": browser.canvas()}  # CT, PET and the labels label_a and label_b
        readout = browser.evaluate("document.getElementById('readout').textContent")
        assert "HU" in readout and "SUV" in readout and "label_a: inside" in readout, readout
        shots_png = {"default": browser.last_png}
        browser.evaluate("document.getElementById('pet_visible').click()")
        shots["labels"], shots_png["labels"] = browser.canvas(), browser.last_png
        checked = browser.evaluate("Array.from(document.querySelectorAll('#groups input:checked'))"
                                   ".map(box => { box.click(); return box.id; })")
        assert checked == ["layer_label.label_a", "layer_label.label_b"], checked
        shots["ct"], shots_png["ct"] = browser.canvas(), browser.last_png
        assert browser.open(pages[0].as_uri() + "?overlays=none&hide=pet&view=axial").startswith("ready:")
        shots["url_axial"], shots_png["url_axial"] = browser.canvas(), browser.last_png
        width, height = browser.evaluate("[document.getElementById('gl').width, document.getElementById('gl').height]")
        browser.call("Input.dispatchMouseEvent", type="mousePressed", x=width // 3, y=height // 2, button="left",
                     clickCount=1)
        browser.call("Input.dispatchMouseEvent", type="mouseReleased", x=width // 3, y=height // 2, button="left",
                     clickCount=1)
        time.sleep(1.0)
        moved = browser.evaluate("document.getElementById('readout').textContent")
    finally:
        browser.close()
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        for name, png in shots_png.items():
            (keep / f"{name}.png").write_bytes(png)
    ct = shots["ct"]
    grey = (ct.max(-1) - ct.min(-1) < 12) & (ct.mean(-1) > 40)
    assert grey.mean() > 0.05, "the CT is not drawn (canvas blank or black)"
    assert coloured(ct).sum() < 50, "coloured pixels with every overlay switched off"
    assert coloured(shots["labels"]).sum() > 200, "the labels are not drawn in colour"
    assert (np.abs(shots["labels"] - ct).max(-1) > 30).sum() > 200, "switching the labels off changed nothing"
    assert (np.abs(shots["default"] - shots["labels"]).max(-1) > 30).sum() > 200, "switching PET off changed nothing"
    assert coloured(shots["url_axial"]).sum() < 50 and not np.array_equal(shots["url_axial"], ct)  # axial only
    assert moved != readout and "HU" in moved, "a click did not move the crosshair's readout"


@pytest.mark.slow
def test_viewer_notebook_opens_worst_and_best_patients(tiny_study, tmp_path):
    """Notebook 04 under papermill: the worst and best test patient of each family, a Niivue widget for each."""
    from studylib.reporting import aggregate
    from studylib.reporting.notebook_viewer import patients_to_open

    out, _ = tiny_study
    executed = tmp_path / "04_viewer.ipynb"
    subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "04_viewer.ipynb"), str(executed),
                    "-p", "results", str(out), "--kernel", "python3"], cwd=tmp_path, check=True, capture_output=True)
    nb = nbformat.read(executed, as_version=4)
    per_run = aggregate.primary(aggregate.read_per_patient(out / "aggregate" / "per_patient_all.csv"), out)
    chosen = patients_to_open(per_run)
    assert 1 <= len(chosen) <= 12 and chosen.patient_id.is_unique
    assert all(reason.startswith(("worst of", "best of")) for reason in "; ".join(chosen.reason).split("; "))
    headings = [o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.get("output_type") == "display_data" and "text/markdown" in o.get("data", {})]
    assert [h.split(":")[0].removeprefix("### ") for h in headings] == list(chosen.patient_id)
    widgets = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == len(chosen)
