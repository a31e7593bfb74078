"""The one image loader (facegen.data.images): every input decoded as a viewer shows it.

Small generated files, one per case of issue 18 item 4 / issue 15 item 5; the same files go
through prepare's decode path, which must use this loader too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen.data import images, prepare
from facegen.data.images import BACKGROUND, ImageError, UNREADABLE, load_image, read_array
from facegen.errors import DataError

H, W = 40, 30  # a portrait: orientation mistakes swap these


def upright() -> np.ndarray:
    """Portrait test card: red top half, blue bottom half."""
    a = np.zeros((H, W, 3), np.uint8)
    a[:H // 2, :, 0] = 255
    a[H // 2:, :, 2] = 255
    return a


@pytest.fixture
def exif_jpeg(tmp_path) -> Path:
    """A phone-style JPEG: pixels stored turned 90 degrees, EXIF orientation 6 to show them upright."""
    stored = Image.fromarray(upright()).transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": exif_transpose applies ROTATE_270
    path = tmp_path / "phone.jpg"
    stored.save(path, quality=95, exif=exif)
    return path


@pytest.fixture
def grey16(tmp_path) -> Path:
    """A 16-bit greyscale PNG with a mid-grey left half (32768) and a dark right half (4096)."""
    a = np.full((H, W), 4096, np.uint16)
    a[:, :W // 2] = 32768
    path = tmp_path / "grey16.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    return path


def test_exif_rotated_jpeg_is_upright(exif_jpeg):
    rgb = read_array(exif_jpeg)
    assert rgb.shape == (H, W, 3)  # portrait, not landscape
    top, bottom = rgb[:H // 2 - 3].mean((0, 1)), rgb[H // 2 + 3:].mean((0, 1))
    assert top[0] > 200 and top[2] < 60  # red on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_16bit_grey_png_is_not_white(grey16):
    rgb = read_array(grey16).astype(int)
    assert rgb[:, :W // 2].mean() == pytest.approx(32768 / 257, abs=1)  # 127.5, not 255
    assert rgb[:, W // 2:].mean() == pytest.approx(4096 / 257, abs=1)
    assert (rgb[..., 0] == rgb[..., 2]).all()  # still grey


def test_prepare_decodes_with_the_same_loader(grey16, exif_jpeg):
    """prepare's worker path (the one every training image takes) gives the viewer's picture too."""
    assert prepare.load_image is images.load_image
    good, bad = prepare._decode_chunk(([str(grey16), str(exif_jpeg)], 16))
    assert bad == [] and good.shape == (2, 16, 16, 3)
    assert 110 < good[0, :, :6].mean() < 145  # grey, not white
    assert good[1, 2, :, 0].mean() > 200 and good[1, -2, :, 2].mean() > 200  # upright: red top, blue bottom


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[:2] = (255, 0, 0, 255)  # opaque red
    a[2:] = (0, 0, 0, 0)  # transparent "black"
    a[3, 3] = (0, 0, 255, 128)  # half-transparent blue
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    rgb = read_array(tmp_path / "a.png").astype(int)
    assert BACKGROUND == (255, 255, 255)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[2, 0]) == (255, 255, 255)  # transparent -> background, not black
    assert tuple(rgb[3, 3]) == pytest.approx((127, 127, 255), abs=2)


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0  # palette entry 0 (black) is transparent
    p.save(tmp_path / "p.png")
    rgb = read_array(tmp_path / "p.png")
    assert tuple(rgb[0, 0]) == (0, 200, 0)
    assert tuple(rgb[1, 1]) == (255, 255, 255)


def test_animated_gif_is_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (W, H), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    rgb = read_array(tmp_path / "anim.gif")
    assert rgb.shape == (H, W, 3) and (rgb == (255, 0, 0)).all()  # what a viewer shows first


def test_an_odd_colour_profile_leaves_the_pixels_alone(tmp_path):
    """An embedded ICC profile (here a Lab one, unusual for an RGB file) is not applied (module doc)."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(upright()).save(tmp_path / "lab.png", icc_profile=profile)
    assert Image.open(tmp_path / "lab.png").info["icc_profile"] == profile
    assert (read_array(tmp_path / "lab.png") == upright()).all()


def test_cmyk_jpeg_keeps_its_colours(tmp_path):
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "cyan.jpg", quality=95)  # pure cyan
    r, g, b = read_array(tmp_path / "cyan.jpg").reshape(-1, 3).mean(0)
    assert r < 30 and g > 220 and b > 220


def test_decompression_bomb_refused_in_one_line(tmp_path, monkeypatch):
    Image.new("RGB", (50, 40)).save(tmp_path / "big.png")
    with pytest.raises(ImageError) as err:
        read_array(tmp_path / "big.png", max_pixels=1000)
    msg = str(err.value)
    assert "\n" not in msg and "50x40 (2,000 px)" in msg and "1,000 px" in msg and "decompression-bomb" in msg
    # Pillow's own check (on open, over twice its limit) gets the same kind of message, also in prepare.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="decompression-bomb limit"):
        load_image(tmp_path / "big.png", 16)
    assert isinstance(err.value, DataError) and issubclass(ImageError, UNREADABLE)


def test_unreadable_files_are_one_line_image_errors(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    Image.fromarray(upright()).save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    for name in ("notes.jpg", "cut.jpg"):
        with pytest.raises(ImageError, match=f"{name} is not an image Pillow can read"):
            load_image(tmp_path / name, 16)
    good, bad = prepare._decode_chunk(([str(tmp_path / "ok.jpg"), str(tmp_path / "cut.jpg")], 16))
    assert len(good) == 1 and bad == [1]  # prepare still skips it (max_corrupt_fraction)
