"""Faces in real photos: detection, alignment to the training framing, paste-back, identity, CLI.

The photos are scikit-image's: ``data.astronaut()`` (a real face, 512x512, face ~90 px) and
``data.coffee()`` (no face). The model is a one-epoch 16 px VAE (as in test_cli), so what is tested
is the geometry and the plumbing, not the quality of the edit.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

from facegen import cli
from facegen.config import TrainConfig, VAEConfig
from facegen.data.synthetic import render, sample_params
from facegen.faces import identity
from facegen.faces.align import align, face_mask, paste_back, similarity
from facegen.faces.detect import LEFT_EYE, NOSE, RIGHT_EYE, detect_faces, landmarks
from facegen.faces.photos import NoFaceError, find_faces, small_face_warning
from facegen.faces.template import generator_template, measure_template, training_template
from tests.conftest import ATTRS, make_split
from tests.test_cli import SIZE, train_and_save

ASTRONAUT_BOX = (179, 83, 267, 171)  # dlib HOG's box, (left, top, right, bottom)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def ws(tmp_path_factory, astronaut) -> Path:
    """models/vae (16 px), prepared/ (16 px blobs: the detector finds no face there), photos."""
    root = tmp_path_factory.mktemp("faces")
    split = make_split(n=64, size=SIZE)
    (root / "prepared").mkdir()
    np.save(root / "prepared" / "train.npy", split.images.numpy())
    pd.DataFrame({"image_id": [f"{i:06d}.jpg" for i in range(len(split))], "split": "train",
                  **{a: split.attrs[:, i].int().numpy() for i, a in enumerate(ATTRS)}}
                 ).to_csv(root / "prepared" / "attrs.csv", index=False)
    train_and_save("vae", VAEConfig(latent_dim=4, widths=(8, 16), train=TrainConfig(batch_size=16, lr=3e-3)),
                   root / "models")
    Image.fromarray(astronaut).save(root / "astronaut.png")
    Image.fromarray(data.coffee()).save(root / "coffee.jpg", quality=90)
    Image.fromarray(np.concatenate([astronaut, astronaut[:, ::-1]], 1)).save(root / "two.jpg", quality=95)
    # A phone JPEG: stored sideways with EXIF orientation 6. The detector (frontal, upright faces only)
    # finds the face only if the loader turns it upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(astronaut).transpose(Image.Transpose.ROTATE_90).save(root / "sideways.jpg", quality=95, exif=exif)
    # A 16-bit greyscale scan: decoded as all-white it would have no face either.
    grey = np.asarray(Image.fromarray(astronaut).convert("L"), np.uint16) * 257
    Image.fromarray(grey).save(root / "grey16.png")
    return root


def run(ws: Path, *args: str) -> int:
    return cli.main([*args, "--models-dir", str(ws / "models"), "--prepared-dir", str(ws / "prepared"),
                     "--device", "cpu"])


# ------------------------------------------------------------------------------------------------
# Library
# ------------------------------------------------------------------------------------------------
def test_detects_the_astronaut_and_her_landmarks(astronaut):
    faces, tried = detect_faces(astronaut)
    assert len(faces) == 1 and "HOG" in tried
    face = faces[0]
    assert np.allclose(face.box, ASTRONAUT_BOX, atol=6)
    right_eye, left_eye = face.landmarks[list(RIGHT_EYE)].mean(0), face.landmarks[list(LEFT_EYE)].mean(0)
    nose = face.landmarks[NOSE]
    assert left_eye[0] < nose[0] < right_eye[0]  # image-left eye, nose, image-right eye
    assert nose[1] > max(left_eye[1], right_eye[1]) + 15  # nose base below the eyes
    assert 35 < face.eye_distance < 50


def test_no_face_in_coffee():
    faces, tried = detect_faces(data.coffee())
    assert faces == [] and "upsampled 2x" in tried  # both attempts were made


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 0.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity(src, src @ (scale * rot).T + shift)
    assert np.allclose(m[:2, :2], scale * rot) and np.allclose(m[:2, 2], shift)


def test_aligned_crop_puts_the_landmarks_on_the_template(astronaut):
    """Re-detect landmarks in the aligned crop: they land where the template says (within 2%)."""
    template = generator_template(256)
    faces, _ = detect_faces(astronaut)
    crop = align(Image.fromarray(astronaut), faces[0], template, 256).crop
    assert crop.shape == (256, 256, 3)
    found, _ = detect_faces(crop)
    assert len(found) == 1
    assert np.abs(found[0].landmarks - template.pixels(256)).max() < 0.02 * 256


def test_generator_template_is_what_the_renders_measure():
    """GENERATOR_LANDMARKS (a constant) is re-measured on prepared-style 32 px synthetic crops."""
    faces = render(sample_params(1234, 48))  # (48, 109, 89, 3) half-resolution renders
    crops = []
    for face in faces:  # prepare's transform of a 178x218 image: short side -> 32, centre crop
        big = Image.fromarray(face).resize((178, 218), Image.BICUBIC).resize((32, 39), Image.BILINEAR)
        crops.append(np.asarray(big.crop((0, 4, 32, 36))))
    points, found = measure_template(np.stack(crops))
    assert points is not None and found >= 24
    assert np.abs(points - generator_template(32).points).max() < 0.04  # ~1.3 px at 32 px


def test_training_template_falls_back_and_caches(ws, tmp_path):
    t = training_template(ws / "prepared", 64, tmp_path)
    assert "synthetic-generator geometry" in t.source and "0 of 64" in t.source  # 16 px blobs: no faces
    assert len(list((tmp_path / "templates").glob("*.json"))) == 1
    assert np.allclose(training_template(ws / "prepared", 64, tmp_path).points, t.points)
    assert training_template(tmp_path / "nowhere", 64, None).source.endswith("train.npy is missing")


def test_paste_back_changes_only_the_face(astronaut):
    photo = Image.fromarray(astronaut)
    template = generator_template(64)
    faces, _ = detect_faces(astronaut)
    aligned = align(photo, faces[0], template, 64)
    mask = face_mask(template, 64)
    same = np.asarray(paste_back(photo, [aligned.crop], [aligned.matrix], mask)).astype(int)
    changed = np.asarray(paste_back(photo, [255 - aligned.crop], [aligned.matrix], mask)).astype(int)
    assert same.shape == changed.shape == astronaut.shape
    l, t, r, b = ASTRONAUT_BOX
    outside = np.ones(astronaut.shape[:2], bool)
    outside[t - 40:b + 40, l - 40:r + 40] = False
    assert (changed[outside] == astronaut[outside]).all()  # nothing outside the face moves
    inner = (slice(t + 20, b - 20), slice(l + 20, r - 20))
    assert np.abs(changed[inner] - astronaut[inner]).mean() > 60  # the face was replaced
    assert np.abs(same[inner] - astronaut[inner]).mean() < 12  # its own 64 px crop: nearly unchanged


def test_identity_distance(astronaut):
    """Her face through a 64 px crop is still her (< 0.6); a colour-inverted face is much further."""
    photo = Image.fromarray(astronaut)
    template = generator_template(64)
    faces, _ = detect_faces(astronaut)
    aligned = align(photo, faces[0], template, 64)
    mask = face_mask(template, 64)
    box = faces[0].box
    chips = [identity.face_chip(astronaut, box),
             identity.face_chip(np.asarray(paste_back(photo, [aligned.crop], [aligned.matrix], mask)), box),
             identity.face_chip(np.asarray(paste_back(photo, [255 - aligned.crop], [aligned.matrix], mask)), box)]
    d = identity.distances(identity.descriptors(chips)[0], identity.descriptors(chips)[1:])
    assert d[0] < identity.SAME_PERSON_THRESHOLD < d[1]


def test_several_faces_and_small_face_warning(ws):
    photo = find_faces(ws / "two.jpg", generator_template(64), 64)
    assert [pf.index for pf in photo.faces] == [1, 2] and photo.faces[0].face.box[0] < 512 < photo.faces[1].face.box[0]
    only = find_faces(ws / "two.jpg", generator_template(64), 64, face=2)
    assert len(only.faces) == 1 and only.faces[0].face.box == photo.faces[1].face.box
    with pytest.raises(NoFaceError, match=r"--face 3, but .*two.jpg has 2 face\(s\)"):
        find_faces(ws / "two.jpg", generator_template(64), 64, face=3)
    # The 43 px eye distance is below what a 256 px crop needs (~56 px): upsampled, so warned.
    big = find_faces(ws / "astronaut.png", generator_template(256), 256)
    assert "is small" in small_face_warning(big.faces[0], 256)
    assert small_face_warning(photo.faces[0], 64) is None


# ------------------------------------------------------------------------------------------------
# The facegen command
# ------------------------------------------------------------------------------------------------
def test_edit_pastes_back_into_the_photo(ws, tmp_path, capsys):
    out = tmp_path / "edited.png"
    assert run(ws, "edit", str(ws / "astronaut.png"), "--family", "vae", "--attr", "Smiling", "--steps", "3",
               "--out", str(out), "--timings") == 0
    captured = capsys.readouterr()
    assert "astronaut.png face 1/1 at (" in captured.err and "time: imports" in captured.err
    assert "same person below 0.6" in captured.out
    result = np.asarray(Image.open(out)).astype(int)
    assert result.shape == (512, 512, 3)
    original = data.astronaut().astype(int)
    assert (result[:40] == original[:40]).all()  # far from the face: the photo's own pixels
    l, t, r, b = ASTRONAUT_BOX
    assert np.abs(result[t + 20:b - 20, l + 20:r - 20] - original[t + 20:b - 20, l + 20:r - 20]).mean() > 5
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["identity"]["same_person_below"] == 0.6
    face = record["faces"][0]
    assert np.allclose(face["box_ltrb"], ASTRONAUT_BOX, atol=6)
    assert list(face["identity_distance"]) == ["+0", "+0.75", "+1.5"]
    assert all(0 <= d < 2 for d in face["identity_distance"].values())
    assert {"imports", "decode, detect, align", "attribute direction", "identity"} <= set(record["timings_s"])


def test_edit_strip_and_several_faces(ws, tmp_path, capsys):
    out = tmp_path / "strip.png"
    assert run(ws, "edit", str(ws / "two.jpg"), "--family", "vae", "--attr", "Smiling", "--steps", "3",
               "--strip", "--out", str(out)) == 0
    w, h = Image.open(out).size
    assert w > 3 * h / 2  # 2 rows (faces) of input + 3 strengths
    assert len(json.loads(out.with_suffix(".json").read_text())["faces"]) == 2
    err = capsys.readouterr().err
    assert "two.jpg face 1/2 at (" in err and "two.jpg face 2/2 at (" in err  # each face's box is reported
    assert run(ws, "edit", str(ws / "two.jpg"), "--family", "vae", "--attr", "Smiling", "--face", "2",
               "--steps", "2", "--out", str(tmp_path / "second.png")) == 0
    faces = json.loads((tmp_path / "second.json").read_text())["faces"]
    assert [f["face"] for f in faces] == [2] and faces[0]["box_ltrb"][0] > 512


def test_edit_sees_photos_as_a_viewer_does(ws, tmp_path):
    """EXIF-rotated and 16-bit inputs: the face is found (it would not be, sideways or all white)."""
    assert run(ws, "edit", str(ws / "sideways.jpg"), str(ws / "grey16.png"), "--family", "vae", "--attr",
               "Smiling", "--steps", "2", "--out", str(tmp_path / "out.png")) == 0
    for name in ("out_sideways.png", "out_grey16.png"):  # several photos: one output each
        assert Image.open(tmp_path / name).size == (512, 512)  # upright, the photo's own size


def test_no_face_is_one_line_exit_2(ws, capsys):
    assert run(ws, "edit", str(ws / "coffee.jpg"), "--family", "vae", "--attr", "Smiling") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no face found in ") and "coffee.jpg" in err and "HOG" in err
    assert "--aligned" in err and "\n" not in err


def test_interpolate_between_detected_faces(ws, tmp_path):
    out = tmp_path / "interp.png"
    assert run(ws, "interpolate", str(ws / "astronaut.png"), str(ws / "sideways.jpg"),
               "--family", "vae", "--steps", "3", "--out", str(out), "--frames", str(tmp_path / "frames")) == 0
    w, h = Image.open(out).size
    assert w > 3 * h
    frames = sorted((tmp_path / "frames").glob("frame_*.jpg"))
    assert len(frames) == 3 and all(Image.open(f).size == (512, 512) for f in frames)  # photo A's size
