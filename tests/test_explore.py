"""`facegen explore` on tiny trained models: the engine, the HTTP API of the real process, a real browser.

One workspace (all four families trained one epoch on 16x16 blobs, the VQ-VAE's prior, the attribute
classifier, prepared train/test faces, last-run metrics and their noise) serves every test. The
server is the real command in a subprocess, started with its cwd in the workspace (the "checkout"):
its caches go to a folder outside it, so the test can check that nothing else is written there.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from facegen.config import ClassifierConfig, DCGANConfig, PriorConfig, RuntimeConfig, TrainConfig, VAEConfig, \
    VQVAEConfig
from facegen.explore.engine import Explorer, check_upload_size, headline_metrics, psnr
from facegen.explore.jobs import Jobs
from facegen.comparison.noise import load_noise
from facegen.comparison.specs import load_specs
from facegen.models.checkpoint import save_classifier, save_prior
from facegen.models.classifier import AttributeClassifier
from facegen.models.inversion import invert, inversion_progress
from facegen.models.pixelcnn import PixelCNNPrior
from facegen.runtime import setup_runtime
from tests.conftest import ATTRS, make_split, write_recorded_runs
from tests.test_cli import SIZE, train_and_save

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("vae", "beta_vae", "dcgan", "vqvae")  # the registry's order
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def make_workspace(root: Path) -> Path:
    """A checkout-like folder: models/, data/prepared/, metrics/, metrics_noise.json, metrics_tolerances.yaml."""
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    train, test = make_split(n=64, size=SIZE, seed=0), make_split(n=12, size=SIZE, seed=1)
    np.save(prepared / "train.npy", train.images.numpy())
    np.save(prepared / "test.npy", test.images.numpy())
    rows = [{"image_id": f"{i:06d}.jpg", "split": name, **{a: int(split.attrs[j, k]) for k, a in enumerate(ATTRS)}}
            for name, split in (("train", train), ("test", test)) for j, i in
            enumerate(range(len(split)) if name == "train" else range(len(train), len(train) + len(split)))]
    pd.DataFrame(rows).to_csv(prepared / "attrs.csv", index=False)
    models = root / "models"
    vae = VAEConfig(latent_dim=4, widths=(8, 16), train=TrainConfig(batch_size=16, lr=3e-3))
    train_and_save("vae", vae, models)
    train_and_save("beta_vae", VAEConfig(latent_dim=4, widths=(8, 16), beta=4.0, train=vae.train), models)
    train_and_save("vqvae", VQVAEConfig(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1,
                                        num_embeddings=8, embedding_dim=4), models)
    train_and_save("dcgan", DCGANConfig(nz=4, ngf=4, ndf=4, inversion_steps=5, inversion_restarts=1), models)
    save_classifier(AttributeClassifier(ATTRS, ClassifierConfig(width=4), SIZE), models / "classifier" / "model.pt")
    torch.manual_seed(0)
    prior = PixelCNNPrior(PriorConfig(hidden=8, layers=2, kernel_size=3), 8, (SIZE // 4, SIZE // 4), ATTRS,
                          attr_rows=torch.tensor([[0.0, 0.0], [1.0, 1.0]]), attr_probs=torch.tensor([0.5, 0.5]))
    save_prior(prior.eval(), models / "pixelcnn" / "model.pt")
    (root / "metrics").mkdir()
    for k, family in enumerate(FAMILIES):
        (root / "metrics" / f"{family}.json").write_text(json.dumps(
            {"recon_psnr": 20.0 + k, "kid_inception": 0.1, "edit_success_at_pres90_mean": 0.5, "iwae_k": 64.0}))
    write_recorded_runs(root / "metrics_noise.json", [{"vae.json": {"recon_psnr": v}} for v in (20.0, 19.7, 20.3, 19.8, 20.2)])
    shutil.copy(ROOT / "metrics_tolerances.yaml", root / "metrics_tolerances.yaml")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("explore"))


def explore_args(ws: Path, **over):
    from facegen.cli import build_parser

    args = build_parser().parse_args(["explore", "--models-dir", str(ws / "models"), "--prepared-dir",
                                      str(ws / "data" / "prepared"), "--metrics-dir", str(ws / "metrics"),
                                      "--params", str(ws / "params.yaml"), "--device", "cpu", "--boundary-samples", "64"])
    for key, value in over.items():
        setattr(args, key, value)
    return args


@pytest.fixture(scope="module")
def explorer(ws, tmp_path_factory) -> Explorer:
    cache = tmp_path_factory.mktemp("explore_cache")
    old = os.environ.get("FACEGEN_CACHE_DIR")
    os.environ["FACEGEN_CACHE_DIR"] = str(cache)
    try:
        yield Explorer(explore_args(ws), setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=2)))
    finally:
        if old is None:
            os.environ.pop("FACEGEN_CACHE_DIR", None)
        else:
            os.environ["FACEGEN_CACHE_DIR"] = old


# ------------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------------
def decoded(png_bytes: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB"))


def test_every_family_is_a_column_with_directions_scale_and_metrics(explorer):
    cols = explorer.columns
    assert list(cols) == list(FAMILIES) and all(c.model is not None for c in cols.values())
    for family, col in cols.items():
        assert set(col.directions) == set(ATTRS), family
        assert all(abs(float(d.norm()) - 1) < 1e-5 for d in col.directions.values())  # unit directions
        assert col.scale > 0
    assert [d for d, _ in cols["vae"].dims] and not cols["vqvae"].dims and not cols["dcgan"].dims  # TRAVERSE only
    activity = [a for _, a in cols["vae"].dims]
    assert activity == sorted(activity, reverse=True)
    # the report's cell: the recorded runs' mean ± its t-interval, then this run's value
    assert cols["vae"].metrics[0] == ("Reconstruction PSNR (dB, mean per image)", "20 ± 0.32 (run 20)")
    assert ("KID (Inception, standard; unbiased)", "0.1") in cols["dcgan"].metrics  # no runs recorded: the value
    assert not any("iwae" in label for label, _ in cols["vae"].metrics)  # not a headline metric


def test_encode_reports_inversion_progress_then_render_moves_every_family(explorer):
    seen: list[tuple[float, str]] = []
    summary = explorer.encode("test-0", lambda f, what: seen.append((f, what)))
    assert set(summary) == set(FAMILIES)
    assert any("dcgan: inverting" in what and "step 5/5" in what for _, what in seen)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    crop = explorer.face("test-0").crop
    for family, entry in summary.items():
        recon = decoded(entry["reconstruction"])
        assert recon.shape == (SIZE, SIZE, 3)
        assert entry["psnr"] == pytest.approx(psnr(crop, recon), abs=0.01)
        assert entry["identity"] is None  # synthetic test faces: no descriptor distance
    base = explorer.render("test-0", {})
    for family in FAMILIES:  # the unedited render is the reconstruction
        assert np.array_equal(decoded(base[family]), decoded(summary[family]["reconstruction"]))
    moved = explorer.render("test-0", {"Smiling": 1.0})
    assert all(moved[f] != base[f] for f in ("vae", "beta_vae", "dcgan"))  # vqvae: codes may not move on blobs
    again = explorer.render("test-0", {"Smiling": 1.0})
    assert again == moved  # deterministic: the same request, the same bytes
    dim = explorer.columns["vae"].dims[0][0]
    traversed = explorer.render("test-0", {}, {"vae": {dim: 3.0}})
    assert traversed["vae"] != base["vae"] and traversed["dcgan"] == base["dcgan"]


def test_interpolation_and_samples(explorer):
    for face in ("test-0", "test-1"):
        explorer.encode(face)
    lin = explorer.interpolate("test-0", "test-1", 5, spherical=False)
    sph = explorer.interpolate("test-0", "test-1", 5, spherical=True)
    for family in FAMILIES:
        strip = decoded(lin[family])
        assert strip.shape == (SIZE + 2, 5 * (SIZE + 1) + 1, 3)
    assert lin["vae"] != sph["vae"]
    grid = decoded(explorer.sample("vqvae", 8, 3, {"Smiling": 1.0}))
    assert grid.shape == (2 * (SIZE + 1) + 1, 4 * (SIZE + 1) + 1, 3)  # 2 rows of 4
    assert explorer.sample("vae", 4, 3, {}) == explorer.sample("vae", 4, 3, {})
    from facegen.errors import FacegenError

    with pytest.raises(FacegenError, match="vae samples cannot be conditioned"):
        explorer.sample("vae", 4, 0, {"Smiling": 1.0})
    with pytest.raises(FacegenError, match="unknown attribute"):
        explorer.render("test-0", {"Bald": 1.0})


def test_uploads_are_refused_in_one_line(explorer, ws):
    from facegen.errors import FacegenError

    with pytest.raises(FacegenError) as err:
        explorer.add_upload(b"not an image", "notes.txt", aligned=False)
    assert str(err.value).startswith("notes.txt is not an image") and "\n" not in str(err.value)
    photo = Image.fromarray(np.full((60, 80, 3), 200, np.uint8))
    import io

    buf = io.BytesIO()
    photo.save(buf, format="PNG")
    with pytest.raises(FacegenError, match=r"^no face found in wall\.png \(80x60\)"):
        explorer.add_upload(buf.getvalue(), "wall.png", aligned=False)
    with pytest.raises(FacegenError, match=r"huge\.jpg is 50\.0 MB, over the explorer's 50 MB upload limit"):
        check_upload_size(50 * 2**20 + 1, "../../huge.jpg")
    face = explorer.add_upload(buf.getvalue(), "wall.png", aligned=True)  # an aligned crop: no detection
    assert face.crop.shape == (SIZE, SIZE, 3) and face.id.startswith("upload-")
    assert set(explorer.encode(face.id)) == set(FAMILIES)


def test_a_photo_upload_is_detected_aligned_and_gets_identity_distances(explorer):
    """A real photo (scikit-image's astronaut): its face found and aligned as `facegen edit` does, and every
    family's reconstruction scored by the face-descriptor distance, as `edit` reports it."""
    from skimage import data
    import io

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG", quality=90)
    face = explorer.add_upload(buf.getvalue(), "astronaut.jpg", aligned=False)
    assert face.photo is not None and face.photo.faces[0].of == 1 and face.crop.shape == (SIZE, SIZE, 3)
    assert explorer.add_upload(buf.getvalue(), "again.jpg", aligned=False) is face  # same bytes: same face
    summary = explorer.encode(face.id)
    assert all(0 < summary[f]["identity"] < 2 for f in FAMILIES)  # descriptor distances (same person < 0.6)
    assert explorer.faces()[-1]["id"] == face.id


@pytest.mark.slow  # an MLflow store: ~10 s of imports and schema set-up
def test_untrained_families_and_models_from_mlflow_runs(ws, tmp_path):
    """A family without a model is a column that says how to train it; --run-id's model replaces its family's."""
    from facegen import tracking

    models = tmp_path / "models"
    shutil.copytree(ws / "models", models, ignore=shutil.ignore_patterns("dcgan", "beta_vae"))
    with tracking.start_run("train", "vae", {"seed": 0}, "abc123") as tracker:
        tracker.log_artifact(ws / "models" / "vae" / "model.pt", "model")
    run_id = tracking.latest_run("train", "vae")["run_id"]
    from facegen.explore.server import run_ids

    assert run_ids(explore_args(ws, latest_runs=True)) == [run_id]  # --latest-runs: the newest per family
    rt = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=2))
    explorer = Explorer(explore_args(ws, models_dir=models), rt, [run_id])
    cols = explorer.columns
    assert cols["vae"].source == f"MLflow run {run_id}" and cols["vqvae"].source == str(models / "vqvae" / "model.pt")
    assert cols["dcgan"].model is None
    assert cols["dcgan"].problem == (f"dcgan is not trained yet ({models / 'dcgan' / 'model.pt'} is missing): "
                                     "run `dvc repro train@dcgan`")
    assert cols["dcgan"].describe() == {"family": "dcgan", "trained": False, "problem": cols["dcgan"].problem,
                                        "source": "", "metrics": cols["dcgan"].metrics, "notes": []}
    explorer.encode("test-0")
    assert set(explorer.render("test-0", {"Male": 0.5})) == {"vae", "vqvae"}
    from facegen.errors import FacegenError

    with pytest.raises(FacegenError, match=f"MLflow runs {run_id} and {run_id} both hold a vae model"):
        Explorer(explore_args(ws, models_dir=models), rt, [run_id, run_id])


def test_inversion_progress_is_per_context():
    """Progress goes to the caller that asked for it, not to inversions in other threads."""
    g = torch.nn.Linear(2, 3)
    calls: list[tuple[int, int]] = []
    other: list[tuple[int, int]] = []
    target = torch.zeros(1, 3)

    def elsewhere() -> None:
        invert(g, target, 2, steps=3, restarts=1, lr=0.1, rng=torch.Generator().manual_seed(0))

    with inversion_progress(lambda d, t: calls.append((d, t))):
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        invert(g, target, 2, steps=4, restarts=1, lr=0.1, rng=torch.Generator().manual_seed(0))
    with inversion_progress(lambda d, t: other.append((d, t))):
        pass
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)] and other == []


def test_jobs_share_work_by_key_and_report_errors():
    jobs = Jobs()
    gate = threading.Event()

    def work(report):
        report(0.5, "half")
        gate.wait(10)
        return 42

    first = jobs.start("k", work)
    assert jobs.start("k", work) is first  # the same face from a second tab joins the running job
    gate.set()
    first.done.wait(10)
    assert (first.state, first.result, first.fraction) == ("done", 42, 1.0)
    from facegen.errors import FacegenError

    def fail(report):
        raise FacegenError("no face found in x.jpg")

    bad = jobs.start("bad", fail)
    bad.done.wait(10)
    assert (bad.state, bad.error) == ("error", "error: no face found in x.jpg")
    assert jobs.start("bad", work) is not bad  # a failed job is retried


def test_headline_metrics_follow_the_report(ws):
    specs, noise = load_specs(ws / "metrics_tolerances.yaml"), load_noise(ws / "metrics_noise.json")
    rows = headline_metrics("vae", {"recon_psnr": 25.123, "recon_mse": 0.003, "mig": 0.05}, specs, noise)
    assert rows == [("Reconstruction PSNR (dB, mean per image)", "20 ± 0.32 (run 25.12)"), ("MIG", "0.05")]


def test_host_and_port_errors(ws, tmp_path, capsys):
    from facegen import cli
    from facegen.explore.server import is_loopback

    # Anything but loopback gets the exposure warning.
    assert all(map(is_loopback, ("127.0.0.1", "::1", "localhost", "127.0.0.2")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.168.1.20", "example.org")))

    with socket_taken() as port:
        assert cli.main(["explore", "--port", str(port), "--models-dir", str(ws / "models")]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["explore", "--port", "70000"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: argument --port: a port is at most 65535, got 70000 "
                                               "(see `facegen explore --help`)")


class socket_taken:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


# ------------------------------------------------------------------------------------------------
# The real process: HTTP, concurrency, the checkout left alone, a browser, Ctrl-C (slow: a server
# process with its imports and start-up, ~15 s on 2 busy cores; the last test stops it)
# ------------------------------------------------------------------------------------------------
class Server:
    def __init__(self, ws: Path, cache: Path, *extra: str) -> None:
        env = {**os.environ, "FACEGEN_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT / "src"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{cache / 'mlruns.db'}"}
        self.proc = subprocess.Popen([sys.executable, "-m", "facegen.cli", "explore", "--device", "cpu",
                                      "--boundary-samples", "64", *extra],
                                     cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # the URL line, once the models are loaded
        match = re.search(r"http://\S+/", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"no URL printed: {line!r} {self.proc.stderr.read()}")
        self.url = match.group(0)
        self.banner, self.ws = line, ws

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=60) as res:
            return json.loads(res.read())

    def post(self, path: str, body: bytes | dict, content_type: str = "application/json") -> tuple[int, dict]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, headers={"content-type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                return res.status, json.loads(res.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def encode(self, face: str) -> dict:
        status, job = self.post(f"/api/faces/{face}/encode", {})
        assert status == 200, job
        while job["state"] == "running":
            job = self.get(f"/api/jobs/{job['job']}")
        assert job["state"] == "done", job
        return job["result"]

    def interrupt(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def server(ws, tmp_path_factory):
    before = files_under(ws)
    srv = Server(ws, tmp_path_factory.mktemp("server_cache"), "--faces", "6")
    srv.checkout_before = before
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


@pytest.mark.slow
def test_server_listens_on_loopback_and_serves_the_page(server):
    assert server.url.startswith("http://127.0.0.1:") and "vae, beta_vae, dcgan, vqvae" in server.banner
    with urllib.request.urlopen(server.url, timeout=60) as res:
        page = res.read().decode()
    assert "<title>facegen explore</title>" in page
    # Self-contained: no script, style or image from anywhere but this server.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "@import" not in page
    state = server.get("/api/state")
    assert [c["family"] for c in state["columns"]] == list(FAMILIES) and state["attributes"] == list(ATTRS)
    test = pd.read_csv(server.ws / "data" / "prepared" / "attrs.csv").query("split == 'test'")
    assert [f["attributes"] for f in state["faces"]] == test[list(ATTRS)].head(6).to_dict("records")
    assert [f["id"] for f in state["faces"]] == [f"test-{i}" for i in range(6)]


@pytest.mark.slow
def test_two_tabs_at_once_get_their_own_images(server):
    """Concurrent renders of different faces and sliders answer exactly what each asks for alone."""
    for face in ("test-0", "test-1"):
        server.encode(face)
    requests = [{"face": face, "edits": {"Smiling": alpha, "Male": -alpha}}
                for face in ("test-0", "test-1") for alpha in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    alone = [server.post("/api/render", r)[1]["images"] for r in requests]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda r: server.post("/api/render", r)[1]["images"], requests * 3))
    assert together == alone * 3
    assert alone[0] != alone[5] and alone[0] != alone[4]  # different faces / strengths differ


@pytest.mark.slow
def test_refusals_keep_the_server_answering_and_the_checkout_untouched(server, ws):
    status, res = server.post("/api/upload?name=notes.txt", (ws / "notes.txt").read_bytes(), "application/octet-stream")
    assert status == 400 and res["error"].startswith("error: notes.txt is not an image"), res
    status, res = server.post("/api/render", {"face": "test-99"})
    assert status == 400 and res == {"error": "error: unknown face 'test-99': pick a test face or upload a photo again"}
    status, res = server.post("/api/sample", {"family": "vqvae", "n": 4, "seed": 1, "conditions": {"Smiling": 1}})
    assert status == 200 and res["image"].startswith("data:image/png;base64,")
    status, res = server.post("/api/interpolate", {"a": "test-0", "b": "test-1", "spherical": True})
    assert status == 200 and set(res["images"]) == set(FAMILIES)
    assert server.get("/api/state")["columns"][0]["trained"]
    assert files_under(ws) == server.checkout_before  # caches live outside the checkout


@pytest.mark.slow
def test_browser(server, ws, tmp_path):
    """Headless Chromium: load, pick a face, move Smiling (every column changes), upload a non-image."""
    if not CHROMIUM.is_file():
        pytest.skip("no Chromium: install it with `apt-get install -y chromium` (Debian) to run the browser test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url)
            page.locator(".thumb").first.click()
            page.wait_for_function("document.querySelectorAll('.col img.live[src^=\"data:\"]').length === 4")
            live = ".col[data-family='{}'] img.live"
            before = {f: page.get_attribute(live.format(f), "src") for f in FAMILIES}
            page.locator("input[data-attr='Smiling']").fill("1")
            for family in ("vae", "beta_vae", "dcgan", "vqvae"):
                page.wait_for_function("([sel, old]) => document.querySelector(sel).src !== old",
                                       arg=[live.format(family), before[family]])
            # A second tab renders its own face while the first keeps its edit.
            tab = browser.new_page()
            tab.goto(server.url)
            tab.locator(".thumb").nth(2).click()
            tab.wait_for_function("document.querySelectorAll('.col img.live[src^=\"data:\"]').length === 4")
            assert tab.get_attribute(live.format("vae"), "src") != page.get_attribute(live.format("vae"), "src")
            page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                  "buffer": b"not an image"}])
            page.wait_for_function("document.querySelector('#error').textContent.includes('is not an image')")
            assert page.locator("#error").text_content().startswith("error: notes.txt is not an image")
            page.locator(".thumb").nth(1).click()  # the server still answers
            page.wait_for_function("document.querySelector('#msg').textContent.includes('test-1 ready')")
            page.screenshot(path=str(tmp_path / "explore.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()


@pytest.mark.slow
def test_ctrl_c_stops_the_real_process_cleanly(server):
    """SIGINT (what Ctrl-C sends) to the real process: a graceful stop, exit code 0, no traceback. Last: it
    stops the module's server."""
    assert server.get("/api/state")["faces"]
    code, out, err = server.interrupt()
    assert code == 0 and out.strip().endswith("facegen explore: stopped"), (code, out, err)
    assert "Traceback" not in err, err
