"""Bad data never reaches the cache or training: non-finite rows and vertices, truncated or miscounted
OFF files, corrupt labels, empty classes, 16-bit and oversized PNGs, outlier and degenerate clouds,
impossible mixture settings. Each is refused in one line naming the file (or skipped and counted)."""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import trimesh
import soundfile as sf
from click.testing import CliRunner
from PIL import Image

from modalities.audio.files import AudioFileError, read_audio
from modalities.image.data import image_dataset
from modalities.points.data import load_cloud, load_folder
from modalities.points.normalize import global_standardisation
from modalities.toy2d.data import load_split, read_points
from multidiff.cli import main


# --- point clouds -----------------------------------------------------------------------------------

def box_off(path: Path) -> list[str]:
    """A unit box written as OFF by trimesh; its lines (header, counts, 8 vertices, 12 faces)."""
    trimesh.creation.box().export(path)
    lines = path.read_text().splitlines()
    assert lines[:2] == ["OFF", "8 12 0"] and len(lines) == 22
    return lines


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_nan_vertex_is_named_never_cached_and_skipped_when_asked(tmp_path, caplog, recwarn):
    folder = tmp_path / "data" / "box" / "train"
    folder.mkdir(parents=True)
    lines = box_off(folder / "good.off")
    lines[4] = "nan 0.5 -0.5"                                   # vertex 2
    bad = write_lines(folder / "bad.off", lines)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"bad\.off: vertex 2 is \(nan, 0\.5, -0\.5\)"):
        load_cloud(bad, 64, cache=cache)
    assert not cache.exists() or not list(cache.iterdir())      # nothing cached for the bad file
    with pytest.raises(ValueError, match=r"bad\.off"):
        load_folder(tmp_path / "data", "train", n_points=64, cache=cache)
    ds = load_folder(tmp_path / "data", "train", n_points=64, cache=cache, skip_bad_files=True)
    assert [p.name for p in ds.files] == ["good.off"] and [p.name for p, _ in ds.skipped] == ["bad.off"]
    assert np.isfinite(ds.clouds.numpy()).all() and len(list(cache.iterdir())) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith(f"skipped: {bad}: vertex 2")
    assert lines[1] == f"skipped 1 of 2 train files under {tmp_path / 'data'} (data.skip_bad_files = true)"
    assert not recwarn.list                                     # plain lines, no warnings.warn reprs


def test_a_poisoned_cache_entry_is_drawn_again(tmp_path):
    mesh = tmp_path / "box.off"
    box_off(mesh)
    cache = tmp_path / "cache"
    good = load_cloud(mesh, 32, cache=cache)
    entry = next(cache.iterdir())
    np.save(entry, np.full((32, 3), np.nan, np.float32))       # what an older version could have cached
    np.testing.assert_array_equal(load_cloud(mesh, 32, cache=cache), good)


def test_a_non_finite_point_is_refused_even_when_subsampling_would_miss_it(tmp_path):
    points = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    points[17] = [np.inf, 0, 0]
    np.save(tmp_path / "cloud.npy", points)
    for n in (10, 50):
        with pytest.raises(ValueError, match=r"cloud\.npy: point 17 is \(inf, 0, 0\) \(1 of 50 not finite\)"):
            load_cloud(tmp_path / "cloud.npy", n)


@pytest.mark.parametrize("case,edit,message", [
    ("faces cut off", lambda l: l[:16], "announces 8 vertices and 12 faces .20 lines., the file holds 14"),
    ("cut mid-line", lambda l: l[:-1] + [l[-1].rsplit(" ", 1)[0]], "face 11 is incomplete"),
    ("cut in half", lambda l: l[:7] + [l[7][:5]], "the file holds 6"),
    ("vertex count too large", lambda l: [l[0], "11 12 0"] + l[2:], "announces 11 vertices"),
    ("face count too large", lambda l: [l[0], "8 17 0"] + l[2:], "announces 8 vertices and 17 faces"),
    ("counts too small", lambda l: [l[0], "8 10 0"] + l[2:], "header's counts are too small"),
])
def test_truncated_or_miscounted_off_files_are_refused_naming_the_file(tmp_path, case, edit, message):
    lines = box_off(tmp_path / "box.off")
    bad = write_lines(tmp_path / "bad.off", edit(lines))
    with pytest.raises(ValueError, match=rf"bad\.off: .*{message}"):
        load_cloud(bad, 16)


def test_a_complete_off_file_with_comments_and_modelnet_header_loads(tmp_path):
    lines = box_off(tmp_path / "box.off")
    variant = write_lines(tmp_path / "variant.off", ["OFF8 12 0", "# a comment", ""] + lines[2:])
    np.testing.assert_array_equal(load_cloud(variant, 40, seed=1), load_cloud(tmp_path / "box.off", 40, seed=1))


def write_clouds(root: Path, clouds: dict[str, np.ndarray]) -> Path:
    folder = root / "thing" / "train"
    folder.mkdir(parents=True)
    for name, cloud in clouds.items():
        np.save(folder / name, cloud.astype(np.float32))
    return root


def normal_clouds(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"{i:02d}.npy": rng.normal(size=(64, 3)) for i in range(n)}


def test_an_outlier_point_is_named_instead_of_collapsing_every_cloud(tmp_path):
    clouds = normal_clouds(6)
    clouds["03.npy"][5] = [1e30, 0, 0]
    root = write_clouds(tmp_path, clouds)
    for normalize in ("global", "unit_sphere", "none"):
        with pytest.raises(ValueError, match=r"03\.npy: point 5 at \(1e\+30, 0, 0\) lies .* times farther out than "
                                             r"the cloud's median point \(an outlier\)"):
            load_folder(root, "train", n_points=64, normalize=normalize)
    kept = load_folder(root, "train", n_points=64, normalize="global", skip_bad_files=True)
    assert [p.name for p, _ in kept.skipped] == ["03.npy"]
    # the pooled std of the five good clouds of unit normals is about 1, not 1e30 / sqrt(5 * 64 * 3)
    assert global_standardisation(kept.clouds.numpy()).scale == pytest.approx(1.0, abs=0.1)


def test_a_cloud_far_larger_than_the_others_is_an_outlier_unless_clouds_are_scaled_one_by_one(tmp_path):
    clouds = normal_clouds(6)
    clouds["04.npy"] *= 1e6                                     # a file in micrometres among metres
    root = write_clouds(tmp_path, clouds)
    with pytest.raises(ValueError, match=r"04\.npy: reaches .* times the typical cloud's size .*\(an outlier cloud\)"):
        load_folder(root, "train", n_points=64, normalize="global")
    assert len(load_folder(root, "train", n_points=64, normalize="unit_sphere")) == 6   # scaled one by one


def test_a_cloud_whose_points_coincide_is_named(tmp_path):
    clouds = normal_clouds(3)
    clouds["01.npy"] = np.tile([[1.0, 2.0, 3.0]], (64, 1))
    root = write_clouds(tmp_path, clouds)
    with pytest.raises(ValueError, match=r"01\.npy: all 64 points coincide at \(1, 2, 3\)"):
        load_folder(root, "train", n_points=64)


def test_a_category_without_training_clouds_is_refused_naming_its_folder(tmp_path):
    root = write_clouds(tmp_path, normal_clouds(2))
    (root / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"empty: category 'empty' has no training cloud \(it holds no mesh"):
        load_folder(root, "train", n_points=64)
    np.save(root / "empty" / "train" / "flat.npy", np.zeros((64, 3), np.float32))
    with pytest.raises(ValueError, match=r"category 'empty' has no training cloud \(all its 1 files were skipped"):
        load_folder(root, "train", n_points=64, skip_bad_files=True)


# --- toy2d ------------------------------------------------------------------------------------------

def test_a_non_finite_toy2d_row_is_named_by_its_line(tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,label\n0,0,0\n1,1,1\nnan,2,0\n3,3,1\n")
    with pytest.raises(ValueError, match=r"points\.csv: line 4 is \[nan, 2\.0, 0\.0\]"):
        read_points(csv)
    np.save(tmp_path / "points.npy", np.array([[0.0, 0.0], [1.0, -np.inf]]))
    with pytest.raises(ValueError, match=r"points\.npy: row 1 is \[1\.0, -inf\]"):
        read_points(tmp_path / "points.npy")


def test_a_toy2d_label_that_leaves_classes_empty_is_named(tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("0,0,0\n1,1,1\n2,2,255\n3,3,0\n")
    with pytest.raises(ValueError, match=r"label 255 \(line 3\) makes classes 0\.\.255, but no row has label 2"):
        read_points(csv)


@pytest.mark.parametrize("key,value,message", [("components", 0, "data.components must be a positive integer"),
                                               ("n_train", -5, "data.n_train must be a positive integer"),
                                               ("std", 0.0, "data.std must be a finite number > 0"),
                                               ("radius", float("nan"), "data.radius must be a finite")])
def test_impossible_mixture_settings_name_their_key(key, value, message):
    cfg = {"components": 8, "radius": 2.0, "std": 0.1, "n_train": 64, "n_test": 16, "seed": 0, key: value}
    with pytest.raises(ValueError, match=message):
        load_split(cfg, "train")


def test_data_path_on_a_recipe_that_generates_its_data_says_so(tmp_path):
    result = CliRunner().invoke(main, ["train", "shapes", "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: recipe 'shapes' generates its data and takes no data path; drop --data"
    assert not (tmp_path / "run").exists()


# --- images -----------------------------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzip-compressed uint8 IDX file, from the format's description."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def idx_cfg(root: Path, train_labels: np.ndarray, test_labels: np.ndarray) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, labels in (("train", train_labels), ("t10k", test_labels)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", np.zeros((len(labels), 4, 4), np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.asarray(labels))
    return {"data": {"source": "idx", "path": str(root), "resolution": 4, "channels": 1}}


def test_a_corrupt_idx_label_byte_is_named_not_made_a_class(tmp_path):
    digits = np.arange(3000) % 10
    corrupt = digits.copy()
    corrupt[7] = 255
    cfg = idx_cfg(tmp_path / "a", corrupt, digits[:50])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: label 255 at position 7 makes 256 classes, "
                                         r"245 of them without an example"):
        image_dataset(cfg, "train")
    with pytest.raises(ValueError, match="label 255 at position 7"):
        image_dataset(cfg, "test")                               # the classes come from the training labels
    rare = np.concatenate([digits, [10]])                        # one byte 10 among 3,000 digits
    with pytest.raises(ValueError, match=r"label 10 occurs 1 time\(s\) \(first at position 3000\), the median class "
                                         r"300 times"):
        image_dataset(idx_cfg(tmp_path / "b", rare, digits[:50]), "train")
    test_corrupt = digits[:50].copy()
    test_corrupt[3] = 12
    cfg = idx_cfg(tmp_path / "c", digits, test_corrupt)
    assert image_dataset(cfg, "train").class_names == [str(d) for d in range(10)]
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: label 12 at position 3 is not among the "
                                         r"training classes 0\.\.9"):
        image_dataset(cfg, "test")


@pytest.mark.parametrize("split_dirs", [False, True])
def test_an_empty_class_folder_is_refused_naming_it(tmp_path, split_dirs):
    root = tmp_path / "pets"
    base = root / "train" if split_dirs else root
    for name in ("cats", "dogs"):
        (base / name).mkdir(parents=True)
        if split_dirs:
            (root / "test" / name).mkdir(parents=True)
    for i in range(3):
        Image.new("L", (4, 4), 9).save(base / "cats" / f"{i}.png")
    (base / "dogs" / "notes.txt").write_text("no pictures yet")
    cfg = {"data": {"source": "folder", "path": str(root), "resolution": 4, "channels": 1, "test_fraction": 0.0}}
    for split in ("train", "test"):
        with pytest.raises(ValueError, match=rf"{base / 'dogs'}: class folder holds no images"):
            image_dataset(cfg, split)


def write_png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit PNG (gray (H, W) or RGB (H, W, 3)) encoded by hand from the PNG specification."""
    height, width = pixels.shape[:2]
    colour_type = 0 if pixels.ndim == 2 else 2
    rows = pixels.reshape(height, -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def test_16_bit_pngs_are_scaled_not_clipped(tmp_path):
    gray = np.array([[0, 257, 1000, 12345], [30000, 40000, 65535, 128]], np.uint16)
    rgb = np.stack([gray, gray[::-1], 65535 - gray], axis=-1).astype(np.uint16)
    (tmp_path / "g" / "a").mkdir(parents=True)
    (tmp_path / "c" / "a").mkdir(parents=True)
    write_png16(tmp_path / "g" / "a" / "gray.png", np.tile(gray, (2, 1)))     # 4x4, no resizing
    write_png16(tmp_path / "c" / "a" / "rgb.png", np.tile(rgb, (2, 1, 1)))
    expected = np.round(np.tile(gray, (2, 1)) / 257)                          # 65535 -> 255
    for channels in (1, 3):
        cfg = {"data": {"source": "folder", "path": str(tmp_path / "g"), "resolution": 4, "channels": channels,
                        "test_fraction": 0.0}}
        images = image_dataset(cfg, "train").images[0].numpy()
        for c in range(channels):
            np.testing.assert_array_equal(images[c], expected)
    cfg = {"data": {"source": "folder", "path": str(tmp_path / "c"), "resolution": 4, "channels": 3,
                    "test_fraction": 0.0}}
    images = image_dataset(cfg, "train").images[0].numpy().transpose(1, 2, 0).astype(float)
    assert np.abs(images - np.tile(rgb, (2, 1, 1)) / 257).max() <= 1.0        # 8 bits: within one level


def test_a_decompression_bomb_is_one_line_naming_the_file_and_skippable(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)     # Pillow warns above 40 pixels, refuses above 80
    (tmp_path / "a").mkdir()
    Image.new("L", (4, 4), 1).save(tmp_path / "a" / "small.png")
    Image.new("L", (10, 10), 2).save(tmp_path / "a" / "bomb.png")           # 100 pixels: DecompressionBombError
    Image.new("L", (7, 7), 3).save(tmp_path / "a" / "large.png")            # 49 pixels: the warning
    cfg = {"data": {"source": "folder", "path": str(tmp_path), "resolution": 4, "channels": 1, "test_fraction": 0.0}}
    with pytest.raises(ValueError, match=r"cannot read image .*bomb\.png: .*exceeds limit"):
        image_dataset(cfg, "train")
    (tmp_path / "a" / "bomb.png").rename(tmp_path / "a" / "zbomb.png")     # let large.png come first
    with pytest.raises(ValueError, match=r"cannot read image .*large\.png: .*exceeds limit"):
        image_dataset(cfg, "train")
    data = image_dataset({"data": {**cfg["data"], "skip_bad_files": True}}, "train")
    assert len(data) == 1 and data.images.unique().tolist() == [1]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and "large.png" in lines[0] and "zbomb.png" in lines[1]
    assert lines[2].startswith("skipped 2 of 3 image files")


# --- audio ------------------------------------------------------------------------------------------

def test_a_wav_cut_short_is_refused_not_read_as_a_shorter_clip(tmp_path):
    wave = (0.5 * np.sin(0.1 * np.arange(8000))).astype(np.float32)
    sf.write(tmp_path / "full.wav", wave, 8000, subtype="PCM_16")
    raw = (tmp_path / "full.wav").read_bytes()
    assert len(raw) == 44 + 2 * 8000                          # a 44-byte header, 16-bit samples
    (tmp_path / "cut.wav").write_bytes(raw[:44 + 2 * 3000])
    assert read_audio(tmp_path / "full.wav")[0].shape == (1, 8000)
    with pytest.raises(AudioFileError, match=r"cut\.wav is truncated: its header announces 16000 bytes of samples, "
                                             r"the file holds 6000"):
        read_audio(tmp_path / "cut.wav")
    streamed = bytearray(raw)
    streamed[40:44] = b"\xff\xff\xff\xff"                      # a stream's placeholder for "unknown length"
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    assert read_audio(tmp_path / "streamed.wav")[0].shape == (1, 8000)
