"""Data layer: synthetic CelebA-format generator, CelebA layout readers, the prepare cache.

Small image counts throughout (<= 256): every property checked here is per image or per row.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facegen.config import CELEBA_ATTRIBUTES, DataConfig, SyntheticConfig
from facegen.data.celeba import find_layout, read_table
from facegen.data.prepare import _limit, load_image, prepare
from facegen.data.synthetic import FACTORS, attribute_table, generate_celeba_folder, sample_params
from facegen.errors import DataError
from tests.celeba_layouts import make_kaggle, make_torchvision

SEED = 7
N = 256
DRAWN = ("Smiling", "Male", "Eyeglasses", "Blond_Hair", "Black_Hair", "Wearing_Hat", "Mouth_Slightly_Open", "Bangs")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic folder shared by the read-only tests (generated in a single process)."""
    return generate_celeba_folder(tmp_path_factory.mktemp("synthetic"), SyntheticConfig(num_images=N), SEED, 1)


@pytest.fixture(scope="module")
def table(faces: Path) -> pd.DataFrame:
    return read_table(find_layout(faces))


@pytest.fixture(scope="module")
def small(faces: Path) -> np.ndarray:
    """The fixture's images through the prepare transform at 64 px, as float in [0, 1]."""
    names = sorted(p.name for p in (faces / "img_align_celeba").iterdir())
    return np.stack([load_image(faces / "img_align_celeba" / n, 64) for n in names]).astype(np.float32) / 255


# ----------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes_whatever_the_worker_count(faces: Path, tmp_path: Path) -> None:
    again = generate_celeba_folder(tmp_path / "two_workers", SyntheticConfig(num_images=N), SEED, workers=2)
    assert _files(again) == _files(faces)


def test_other_seed_gives_other_images(faces: Path, tmp_path: Path) -> None:
    other = generate_celeba_folder(tmp_path, SyntheticConfig(num_images=40), SEED + 1, workers=1)
    first = "img_align_celeba/000001.jpg"
    assert (other / first).read_bytes() != (faces / first).read_bytes()
    assert (other / "factors.csv").read_text() != (faces / "factors.csv").read_text()


def test_prefix_of_a_larger_set_is_the_smaller_set(faces: Path, tmp_path: Path) -> None:
    """Seeds are per fixed-size chunk of image indices, so num_images does not reshuffle images."""
    smaller = generate_celeba_folder(tmp_path, SyntheticConfig(num_images=100), SEED, workers=1)
    for name in ("000001.jpg", "000064.jpg", "000065.jpg", "000100.jpg"):
        assert (smaller / "img_align_celeba" / name).read_bytes() == (faces / "img_align_celeba" / name).read_bytes()


def test_rerun_is_skipped_and_changed_config_regenerates(tmp_path: Path) -> None:
    cfg = SyntheticConfig(num_images=70)
    generate_celeba_folder(tmp_path, cfg, SEED, 1)
    image = tmp_path / "img_align_celeba" / "000001.jpg"
    stamp = image.stat().st_mtime_ns
    generate_celeba_folder(tmp_path, cfg, SEED, 1)
    assert image.stat().st_mtime_ns == stamp

    generate_celeba_folder(tmp_path, SyntheticConfig(num_images=40, jpeg_quality=70), SEED, 1)
    assert image.stat().st_mtime_ns != stamp
    assert not (tmp_path / "img_align_celeba" / "000041.jpg").exists()  # stale images removed
    assert json.loads((tmp_path / "MANIFEST.json").read_text())["config"]["jpeg_quality"] == 70
    assert read_table(find_layout(tmp_path)).shape[0] == 40


def test_folder_is_in_exact_celeba_format(faces: Path) -> None:
    lines = (faces / "list_attr_celeba.txt").read_text().splitlines()
    assert lines[0] == str(N)
    assert lines[1].split() == list(CELEBA_ATTRIBUTES) and len(lines[1].split()) == 40
    assert len(lines) == N + 2
    first = lines[2].split()
    assert first[0] == "000001.jpg" and len(first) == 41 and set(first[1:]) <= {"1", "-1"}
    assert lines[2][10:] == "".join(f" {v:>2}" for v in first[1:])  # values right-aligned in 2 columns

    partition = (faces / "list_eval_partition.txt").read_text().splitlines()
    assert partition[0] in ("000001.jpg 0", "000001.jpg 1", "000001.jpg 2")
    assert [row.split()[0] for row in partition] == [f"{i:06d}.jpg" for i in range(1, N + 1)]

    images = sorted(p.name for p in (faces / "img_align_celeba").iterdir())
    assert images == [f"{i:06d}.jpg" for i in range(1, N + 1)]
    with Image.open(faces / "img_align_celeba" / "000001.jpg") as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (178, 218), "RGB")

    factors = pd.read_csv(faces / "factors.csv", dtype={"image_id": str})
    assert list(factors.columns) == ["image_id", *FACTORS] and len(FACTORS) >= 6
    assert factors["image_id"].tolist() == images
    assert factors[list(FACTORS)].to_numpy().min() >= 0 and factors[list(FACTORS)].to_numpy().max() <= 1


def test_only_drawn_attributes_are_set_and_splits_follow_fractions(table: pd.DataFrame) -> None:
    undrawn = [a for a in CELEBA_ATTRIBUTES if a not in DRAWN]
    assert len(undrawn) == 32 and table[undrawn].to_numpy().sum() == 0
    assert (table["Blond_Hair"] & table["Black_Hair"]).sum() == 0  # one hair colour each
    counts = table["split"].value_counts()
    assert abs(counts["train"] - 0.8 * N) <= 2 and abs(counts["val"] - 0.1 * N) <= 2
    first_50 = table["split"][:50].value_counts()  # interleaved: any prefix keeps the proportions
    assert abs(first_50["train"] - 40) <= 2 and abs(first_50["test"] - 5) <= 2


def test_attributes_are_balanced_and_factors_independent() -> None:
    p = sample_params(SEED, 5000)
    attributes = attribute_table(p)
    rates = {a: attributes[a].mean() for a in DRAWN}
    assert all(0.3 <= r <= 0.5 for r in rates.values()), rates

    names = [*FACTORS, *DRAWN]
    corr = np.abs(np.corrcoef(np.stack([p[f] for f in FACTORS] + [attributes[a] for a in DRAWN])))
    hair = [names.index("Blond_Hair"), names.index("Black_Hair")]
    corr[np.ix_(hair, hair)] = 0  # one hair colour per face, by design
    np.fill_diagonal(corr, 0)
    i, j = np.unravel_index(corr.argmax(), corr.shape)
    assert corr[i, j] < 0.1, (names[i], names[j], corr[i, j])
    for f in FACTORS:
        assert np.histogram(p[f], bins=4, range=(0, 1))[0].min() > 1000  # uniform on [0, 1]


def test_factors_csv_matches_the_sampled_parameters(faces: Path) -> None:
    factors = pd.read_csv(faces / "factors.csv")
    p = sample_params(SEED, N)
    for f in FACTORS:
        np.testing.assert_allclose(factors[f], p[f], atol=1e-6)


# Regions of the 64x64 prepared image (rows, cols) where each attribute should show.
REGIONS = {
    "mouth": (slice(46, 54), slice(26, 38)),
    "forehead": (slice(20, 28), slice(24, 40)),
    "eyes": (slice(29, 38), slice(20, 44)),
    "top_of_head": (slice(2, 20), slice(16, 48)),
    "lower_face": (slice(44, 60), slice(20, 44)),
}


@pytest.mark.parametrize(("attribute", "region", "threshold"), [
    ("Smiling", "mouth", 0.05), ("Mouth_Slightly_Open", "mouth", 0.05), ("Bangs", "forehead", 0.08),
    ("Eyeglasses", "eyes", 0.07), ("Wearing_Hat", "top_of_head", 0.06), ("Male", "lower_face", 0.04),
])
def test_attribute_has_a_visible_effect_at_64px(table: pd.DataFrame, small: np.ndarray, attribute: str,
                                                region: str, threshold: float) -> None:
    """Mean |difference| of the group-mean images in the region; shuffled labels give ~0.01-0.02."""
    on = table[attribute].to_numpy() == 1
    diff = np.abs(small[on].mean(0) - small[~on].mean(0))[REGIONS[region]].mean()
    assert diff > threshold


def test_blond_and_black_hair_differ_and_factors_show(faces: Path, table: pd.DataFrame, small: np.ndarray) -> None:
    bare = table["Wearing_Hat"].to_numpy() == 0
    blond, black = bare & (table["Blond_Hair"].to_numpy() == 1), bare & (table["Black_Hair"].to_numpy() == 1)
    rows, cols = slice(8, 18), slice(24, 40)  # inside the hair above the forehead
    assert small[blond][:, rows, cols].mean() - small[black][:, rows, cols].mean() > 0.3
    factors = pd.read_csv(faces / "factors.csv")
    cheek = small[:, 36:44, 18:24].mean(axis=(1, 2, 3))
    assert np.corrcoef(factors["skin_tone"], cheek)[0, 1] < -0.8
    right_minus_left = small[:, 20:50, 40:56].mean(axis=(1, 2, 3)) - small[:, 20:50, 8:24].mean(axis=(1, 2, 3))
    assert np.corrcoef(factors["light_direction"], right_minus_left)[0, 1] > 0.8


# ----------------------------------------------------------------------------------------------
# CelebA layouts
# ----------------------------------------------------------------------------------------------
SUBSET = 24


@pytest.mark.parametrize(("make", "fmt", "image_dir"), [
    (make_torchvision, "txt", "celeba/img_align_celeba"),
    (make_kaggle, "csv", "img_align_celeba/img_align_celeba"),
])
def test_real_celeba_layouts_are_detected_and_read(faces: Path, table: pd.DataFrame, tmp_path: Path,
                                                   make, fmt: str, image_dir: str) -> None:
    expected = make(faces, table, tmp_path, SUBSET)
    layout = find_layout(tmp_path)
    assert layout.format == fmt and layout.image_dir == tmp_path / image_dir and layout.factors_file is None
    got = read_table(layout, ("Smiling", "Male"))
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))
    assert list(got.columns[2:]) == list(CELEBA_ATTRIBUTES) and (got.dtypes.iloc[2:] == np.int8).all()


def test_generated_folder_is_detected_with_its_factors(faces: Path, table: pd.DataFrame) -> None:
    layout = find_layout(faces)
    assert (layout.format, layout.image_dir, layout.factors_file) == (
        "txt", faces / "img_align_celeba", faces / "factors.csv")
    assert table["split"].isin(["train", "val", "test"]).all() and len(table) == N


def test_missing_folder_explains_layouts_and_where_to_get_celeba(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        find_layout(tmp_path / "nowhere")
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message and "does not exist" in message
    for expected in ("list_attr_celeba.txt", "celeba/img_align_celeba", "img_align_celeba/img_align_celeba",
                     "list_eval_partition.csv", "jessicali9530/celeba-dataset", "nothing is downloaded automatically"):
        assert expected in message


def test_lists_without_images_are_partial(faces: Path, table: pd.DataFrame, tmp_path: Path) -> None:
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        shutil.copy(faces / name, tmp_path / name)
    with pytest.raises(DataError, match=r"partial CelebA txt layout: missing .*img_align_celeba"):
        find_layout(tmp_path)
    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(DataError, match=r"missing .*img_align_celeba/\*\.jpg.*jessicali9530"):
        find_layout(tmp_path)
    shutil.copy(faces / "img_align_celeba" / "000001.jpg", tmp_path / "img_align_celeba")
    with pytest.raises(DataError, match=rf"is partial: {N - 1} of {N} listed images are missing \(e\.g\. 000002\.jpg"):
        read_table(find_layout(tmp_path))


def test_kaggle_images_without_csv_lists_name_what_is_missing(faces: Path, table: pd.DataFrame, tmp_path: Path) -> None:
    make_kaggle(faces, table, tmp_path, SUBSET)
    (tmp_path / "list_eval_partition.csv").unlink()
    with pytest.raises(DataError, match=r"partial Kaggle layout: missing .*list_eval_partition\.csv"):
        find_layout(tmp_path)


def test_unknown_attribute_lists_the_available_ones(faces: Path) -> None:
    with pytest.raises(DataError, match=r"\['Has_Cape'\] are not in .*list_attr_celeba\.txt; available: "
                                        r"5_o_Clock_Shadow, Arched_Eyebrows, .*Young$"):
        read_table(find_layout(faces), ("Smiling", "Has_Cape"))


def test_malformed_list_is_a_data_error(faces: Path, tmp_path: Path) -> None:
    shutil.copytree(faces, tmp_path / "copy")
    (tmp_path / "copy" / "list_eval_partition.txt").write_text("000001.jpg 7\n")
    with pytest.raises(DataError, match="partition 0/1/2"):
        read_table(find_layout(tmp_path / "copy"))


# ----------------------------------------------------------------------------------------------
# prepare
# ----------------------------------------------------------------------------------------------
def test_prepare_writes_the_cache_in_partition_order(tmp_path: Path) -> None:
    cfg = DataConfig(root=str(tmp_path / "synthetic"), image_size=32, workers=2,
                     synthetic=SyntheticConfig(num_images=120))
    summary = prepare(cfg, SEED, tmp_path / "prepared")
    out = tmp_path / "prepared"
    assert sorted(p.name for p in out.iterdir()) == [
        "attrs.csv", "factors.csv", "summary.json", "test.npy", "train.npy", "val.npy"]
    listed = read_table(find_layout(tmp_path / "synthetic"))
    attrs = pd.read_csv(out / "attrs.csv", dtype={"image_id": str})
    assert list(attrs.columns) == ["image_id", "split", *cfg.attributes]
    expected_order = pd.concat([listed[listed["split"] == s] for s in ("train", "val", "test")])
    assert attrs["image_id"].tolist() == expected_order["image_id"].tolist()
    assert (attrs[list(cfg.attributes)].to_numpy() == expected_order[list(cfg.attributes)].to_numpy()).all()
    factors = pd.read_csv(out / "factors.csv", dtype={"image_id": str})
    assert factors[["image_id", "split"]].equals(attrs[["image_id", "split"]])

    for split in ("train", "val", "test"):
        images = np.load(out / f"{split}.npy")
        rows = attrs[attrs["split"] == split]
        assert images.dtype == np.uint8 and images.shape == (len(rows), 32, 32, 3)
        assert summary.counts[split] == len(rows)
        first = load_image(tmp_path / "synthetic" / "img_align_celeba" / rows["image_id"].iloc[0], 32)
        np.testing.assert_array_equal(images[0], first)
    assert summary.corrupt == 0 and sum(summary.counts.values()) == 120
    assert json.loads((out / "summary.json").read_text())["counts"] == summary.counts


def test_transform_is_resize_short_side_then_center_crop(faces: Path) -> None:
    """Same pixels as torchvision's Resize(64) + CenterCrop(64), up to libjpeg's DCT-domain downscale.

    The reference is written out from torchvision's functional code on PIL images: Resize(int) is
    ``img.resize((short -> 64, long -> int(64 * long / short)), BILINEAR)``, CenterCrop takes
    ``top = int(round((h - 64) / 2))`` and the same for left.
    """
    path = faces / "img_align_celeba" / "000003.jpg"
    with Image.open(path) as im:
        w, h = im.size
        size = (64, int(64 * h / w)) if w <= h else (int(64 * w / h), 64)
        resized = im.convert("RGB").resize(size, Image.Resampling.BILINEAR)
        top, left = int(round((size[1] - 64) / 2.0)), int(round((size[0] - 64) / 2.0))
        reference = np.asarray(resized.crop((left, top, left + 64, top + 64)))
    ours = load_image(path, 64)
    assert ours.shape == reference.shape == (64, 64, 3)
    assert np.abs(ours.astype(int) - reference).mean() < 3


def test_max_images_keeps_split_proportions_even_for_contiguous_lists() -> None:
    """Real CelebA lists train, val, test in blocks: the first N rows would be train only."""
    table = pd.DataFrame({"image_id": [f"{i:06d}.jpg" for i in range(100)],
                          "split": ["train"] * 80 + ["val"] * 10 + ["test"] * 10})
    limited = _limit(table, 20)
    assert limited["split"].value_counts().to_dict() == {"train": 16, "val": 2, "test": 2}
    assert limited["image_id"].tolist()[:3] == ["000000.jpg", "000001.jpg", "000002.jpg"]
    assert limited["image_id"].tolist()[16] == "000080.jpg"
    assert _limit(table, 0) is table


def _corrupt_copy(faces: Path, root: Path) -> list[str]:
    """A copy of the fixture with one truncated and one non-JPEG image; returns their names."""
    shutil.copytree(faces, root, ignore=shutil.ignore_patterns("factors.csv", "MANIFEST.json"))
    truncated, garbage = root / "img_align_celeba" / "000005.jpg", root / "img_align_celeba" / "000200.jpg"
    truncated.write_bytes(truncated.read_bytes()[:600])
    garbage.write_bytes(b"not a jpeg at all")
    return [truncated.name, garbage.name]


def test_corrupt_images_are_skipped_and_counted(faces: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = _corrupt_copy(faces, tmp_path / "celeba")
    cfg = DataConfig(source="celeba", root=str(tmp_path / "celeba"), image_size=16, workers=1,
                     max_corrupt_fraction=0.01)
    with caplog.at_level(logging.WARNING):
        summary = prepare(cfg, SEED, tmp_path / "prepared")
    assert summary.corrupt == 2 and sum(summary.counts.values()) == N - 2
    assert "skipped 2 unreadable image(s)" in caplog.text and all(name in caplog.text for name in bad)
    attrs = pd.read_csv(tmp_path / "prepared" / "attrs.csv", dtype={"image_id": str})
    assert not attrs["image_id"].isin(bad).any() and len(attrs) == N - 2
    assert sum(np.load(tmp_path / "prepared" / f"{s}.npy").shape[0] for s in ("train", "val", "test")) == N - 2
    assert not (tmp_path / "prepared" / "factors.csv").exists()  # real-format folder: no factors


def test_too_many_corrupt_images_fail_and_leave_no_output(faces: Path, tmp_path: Path) -> None:
    _corrupt_copy(faces, tmp_path / "celeba")
    cfg = DataConfig(source="celeba", root=str(tmp_path / "celeba"), image_size=16, workers=2,
                     max_corrupt_fraction=0.005)
    with pytest.raises(DataError, match=r"more than 0\.5% of the 256 images .* are unreadable \(e\.g\. 000005\.jpg.*"
                                        r"data\.max_corrupt_fraction"):
        prepare(cfg, SEED, tmp_path / "prepared")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["celeba"]  # no output, no temp folder


def test_failed_prepare_keeps_the_previous_output(faces: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "train.npy").write_bytes(b"previous")
    _corrupt_copy(faces, tmp_path / "celeba")
    with pytest.raises(DataError):
        prepare(DataConfig(source="celeba", root=str(tmp_path / "celeba"), image_size=16, workers=1,
                           max_corrupt_fraction=0.0), SEED, out)
    assert (out / "train.npy").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["celeba", "prepared"]
