"""The image modality: readers (IDX, folders, synthetic shapes), writers, backbone, evaluation, end to end."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modalities.image import ImageModality
from modalities.image.data import image_dataset
from modalities.image.idx import read_idx
from modalities.image.inception import FIDInception, load_fid_inception
from modalities.image.synthetic import SHAPES, inside_shape, make_shapes
from multidiff.engine.config import with_defaults

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST / "train-labels-idx1-ubyte.gz").is_file(),
                                 reason=f"MNIST IDX files not found in {MNIST}")



def write_idx(path: Path, array: np.ndarray, code: int, compress: bool) -> None:
    """An IDX file written by hand from the format's description: magic, big-endian sizes, big-endian data."""
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    raw = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape) + big_endian.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int32, 0x0C), (np.float32, 0x0D)])
def test_idx_reader_matches_handmade_files(tmp_path, compress, dtype, code):
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype) if dtype != np.uint8 else \
        np.random.default_rng(0).integers(0, 256, (4, 3, 2), dtype=np.uint8)
    write_idx(tmp_path / "a.idx", array, code, compress)
    read = read_idx(tmp_path / "a.idx")
    assert read.dtype == np.dtype(dtype) and read.shape == array.shape
    np.testing.assert_array_equal(read, array)


def test_idx_reader_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="bad-idx3-ubyte.*not an IDX file"):
        read_idx(bad)
    write_idx(bad, np.zeros((3, 4), np.uint8), 0x08, compress=False)
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(ValueError, match="announces shape"):
        read_idx(bad)
    bad.write_bytes(b"\x1f\x8b" + b"not gzip at all")
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(bad)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_idx(tmp_path / "nowhere")


def test_idx_dataset_plain_and_gzip_give_the_same_split(tmp_path):
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), np.array([0, 1, 2, 1, 0, 2], np.uint8)
    for folder, compress in (("plain", False), ("gz", True)):
        (tmp_path / folder).mkdir()
        suffix = ".gz" if compress else ""
        for prefix in ("train", "t10k"):
            write_idx(tmp_path / folder / f"{prefix}-images-idx3-ubyte{suffix}", images, 0x08, compress)
            write_idx(tmp_path / folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 0x08, compress)
    cfg = {"data": {"source": "idx", "resolution": 8, "channels": 1}}
    plain = image_dataset({"data": {**cfg["data"], "path": str(tmp_path / "plain")}}, "test")
    packed = image_dataset({"data": {**cfg["data"], "path": str(tmp_path / "gz")}}, "test")
    torch.testing.assert_close(plain.images, packed.images)
    assert plain.class_names == ["0", "1", "2"]
    # [-1, 1] scaling: 0 -> -1, 255 -> 1, linear in between.
    torch.testing.assert_close(plain[3]["x"], torch.from_numpy(images[3][None] / 127.5 - 1.0).float())
    assert plain[3]["label"].item() == 1


@needs_mnist
def test_mnist_matches_an_independent_parse():
    with gzip.open(MNIST / "train-labels-idx1-ubyte.gz") as f:
        label_bytes = f.read()
    with gzip.open(MNIST / "train-images-idx3-ubyte.gz") as f:
        image_bytes = f.read(16 + 784)
    cfg = {"data": {"source": "idx", "path": str(MNIST), "resolution": 28, "channels": 1}}
    train, test = image_dataset(cfg, "train"), image_dataset(cfg, "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.class_names == [str(d) for d in range(10)]
    assert train.labels[0].item() == label_bytes[8] == 5  # MNIST's first training digit is a 5
    assert train.labels[:100].tolist() == list(label_bytes[8:108])
    first = np.frombuffer(image_bytes[16:], np.uint8).reshape(1, 28, 28)
    np.testing.assert_array_equal(train.images[0].numpy(), first)
    assert np.bincount(test.labels.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_mnist
def test_mnist_limit_and_resize():
    cfg = {"data": {"source": "idx", "path": str(MNIST), "resolution": 28, "channels": 3, "limit": 500}}
    train, test = image_dataset(cfg, "train"), image_dataset(cfg, "test")
    assert len(train) == 500 and len(test) == 10000  # limit is for training only
    assert train.images[:, 0].equal(train.images[:, 2])  # gray replicated into RGB
    padded = image_dataset({"data": {**cfg["data"], "resolution": 32, "limit": 50}}, "train")
    assert padded[0]["x"].shape == (3, 32, 32)


def _folder(root: Path) -> Path:
    """cats/ (two red PNGs 20x10, one JPEG) and dogs/ (two blue PNGs), plus a non-image file."""
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    for i in range(2):
        Image.new("RGB", (20, 10), (255, 0, 0)).save(root / "cats" / f"c{i}.png")
        Image.new("RGB", (8, 8), (0, 0, 255)).save(root / "dogs" / f"d{i}.png")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "cats" / "c2.jpg", quality=100)
    (root / "cats" / "notes.txt").write_text("not an image")
    return root


def test_folder_dataset_classes_resizing_and_channels(tmp_path):
    root = _folder(tmp_path / "pets")
    cfg = {"data": {"source": "folder", "path": str(root), "resolution": 4, "channels": 3, "test_fraction": 0.0}}
    data = image_dataset(cfg, "train")
    assert data.class_names == ["cats", "dogs"] and len(data) == 5
    assert data.labels.tolist() == [0, 0, 0, 1, 1]
    assert data[0]["x"].shape == (3, 4, 4)
    red = torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 4, 4)
    torch.testing.assert_close(data[0]["x"], red)  # 20x10 scaled to 8x4, centre 4x4 crop
    assert (data[2]["x"] - red).abs().max() < 0.05  # JPEG: near-exact at quality 100
    gray = image_dataset({"data": {**cfg["data"], "channels": 1}}, "train")
    # ITU-R 601 luma of pure blue: 0.114 * 255 = 29
    assert gray.images[3].unique().tolist() == [29]


def test_folder_split_is_seeded_disjoint_and_complete(tmp_path):
    root = tmp_path / "many"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (4, 4), 10 * i + (0 if name == "a" else 5)).save(root / name / f"{i}.png")
    cfg = {"data": {"source": "folder", "path": str(root), "resolution": 4, "channels": 1, "test_fraction": 0.3}}
    train, test = image_dataset(cfg, "train"), image_dataset(cfg, "test")
    assert (len(train), len(test)) == (14, 6)
    values = lambda d: {int(v) for v in d.images[:, 0, 0, 0]}  # noqa: E731
    assert values(train).isdisjoint(values(test)) and len(values(train) | values(test)) == 20
    again = image_dataset(cfg, "test")
    assert values(again) == values(test)


def test_folder_with_train_and_test_subfolders(tmp_path):
    _folder(tmp_path / "ds" / "train")
    _folder(tmp_path / "ds" / "test")
    cfg = {"data": {"source": "folder", "path": str(tmp_path / "ds"), "resolution": 8, "channels": 3}}
    assert len(image_dataset(cfg, "train")) == len(image_dataset(cfg, "test")) == 5


def test_unreadable_file_is_named_or_skipped_and_counted(tmp_path, caplog):
    root = _folder(tmp_path / "pets")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cfg = {"data": {"source": "folder", "path": str(root), "resolution": 8, "channels": 3, "test_fraction": 0.0}}
    with pytest.raises(ValueError, match=r"broken\.png.*skip_bad_files"):
        image_dataset(cfg, "train")
    data = image_dataset({"data": {**cfg["data"], "skip_bad_files": True}}, "train")
    assert len(data) == 5
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "broken.png" in lines[0] and lines[1].startswith("skipped 1 of 6 image files")


def test_missing_and_misconfigured_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        image_dataset({"data": {"source": "folder", "path": str(tmp_path / "nope")}}, "train")
    with pytest.raises(ValueError, match="no class sub-folders"):
        image_dataset({"data": {"source": "folder", "path": str(tmp_path)}}, "train")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        image_dataset({"data": {"source": "idx", "path": str(tmp_path)}}, "train")
    with pytest.raises(ValueError, match="data.source"):
        image_dataset({"data": {"source": "webdataset"}}, "train")
    with pytest.raises(ValueError, match="data.channels"):
        image_dataset({"data": {"source": "shapes", "channels": 4}}, "train")


def test_hflip_mirrors_the_second_half_and_unconditional_drops_classes():
    cfg = {"data": {"source": "shapes", "resolution": 16, "channels": 3, "n_train": 10, "hflip": True,
                    "conditional": False}}
    data = image_dataset(cfg, "train")
    assert len(data) == 20 and data.class_names == []
    torch.testing.assert_close(data[13]["x"], data[3]["x"].flip(-1))
    batch = data.__getitems__([3, 13])
    torch.testing.assert_close(batch["x"][1], data[3]["x"].flip(-1))
    assert batch["label"].tolist() == [-1, -1]
    assert len(image_dataset(cfg, "test")) == 1000  # no mirroring outside training


def test_shape_areas_match_closed_forms():
    grid = (np.arange(1000) + 0.5) / 1000 * 4 - 2  # [-2, 2]^2, radius 1
    dx, dy = np.meshgrid(grid, grid)
    areas = [inside_shape(np.array(k), dx, dy, np.array(1.0)).mean() * 16 for k in range(len(SHAPES))]
    expected = [np.pi, 1.6**2, 3 * np.sqrt(3) / 4, 2 * 2 * 0.6 - 0.6**2]  # circle, square, triangle, cross
    np.testing.assert_allclose(areas, expected, rtol=5e-3)


def test_synthetic_shapes_are_seeded_and_anti_aliased():
    a, la = make_shapes(64, 16, seed=3)
    b, lb = make_shapes(64, 16, seed=3)
    c, _ = make_shapes(64, 16, seed=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert set(la.tolist()) == set(range(len(SHAPES)))
    assert (a[:, 0, 0] == 0).mean() > 0.5  # black background
    partial = (a.max(-1) > 0) & (a.max(-1) < a.max(axis=(1, 2, 3))[:, None, None])
    assert partial.any()  # edge pixels between background and full colour


def test_write_preview_and_numbering(tmp_path):
    modality = ImageModality()
    cfg = {"dataset": {"class_names": ["circle", "square"]}}
    x = torch.linspace(-1.2, 1.2, 3 * 2 * 4 * 4).reshape(3, 2, 4, 4)[:, :1].repeat(1, 3, 1, 1)
    paths = modality.write(x, torch.tensor([1, 0, 1]), tmp_path, cfg)
    assert [p.name for p in paths] == ["0000_square.png", "0001_circle.png", "0002_square.png"]
    with Image.open(paths[1]) as im:
        written = np.asarray(im)
    expected = ((x[1].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(np.uint8)
    np.testing.assert_array_equal(written, expected)
    again = modality.write(x[:1], None, tmp_path, cfg)
    assert [p.name for p in again] == ["0003_sample.png"]  # nothing overwritten
    preview = modality.preview(x, None, tmp_path / "p" / "preview.png", cfg)
    with Image.open(preview) as im:
        assert im.width >= 256 and im.mode == "RGB"
    with pytest.raises(ValueError, match="shape"):
        modality.write(torch.zeros(2, 4, 4), None, tmp_path, cfg)


def test_backbone_sizes_from_the_recipe():
    cfg = with_defaults({"modality": "image", "model": {"channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
                                                        "attn_levels": [1]}})
    net = ImageModality().backbone(cfg, (1, 28, 28), num_classes=10)
    y = net(torch.randn(2, 1, 28, 28), torch.rand(2), torch.tensor([3, -1]))
    assert y.shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="data.resolution divisible by 4"):
        ImageModality().backbone(cfg, (1, 30, 30), num_classes=10)


@pytest.fixture
def shapes_cfg():
    return with_defaults({"modality": "image",
                          "data": {"source": "shapes", "resolution": 16, "channels": 1, "n_train": 400, "n_test": 200,
                                   "seed": 2},
                          "eval": {"classifier_steps": 60, "inception_weights": ""}})


def test_real_test_images_score_the_ceiling_and_noise_far_below(tmp_path, shapes_cfg, monkeypatch):
    monkeypatch.delenv("MULTIDIFF_INCEPTION_WEIGHTS", raising=False)
    modality = ImageModality()
    test = image_dataset(shapes_cfg, "test")
    x = test.images.float() / 127.5 - 1
    with pytest.warns(UserWarning, match="FID unavailable"):
        real = modality.evaluate(x, test.labels, shapes_cfg, tmp_path)
    assert real["frechet_cnn"] == pytest.approx(0.0, abs=1e-5)  # the test set against itself, to round-off
    assert real["accuracy_cnn"] == real["ceiling_accuracy_cnn"] > 0.4  # chance is 0.25
    assert "fid_inception" not in real
    cached = list(tmp_path.glob("image_classifier-*.safetensors"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    noise = torch.rand(200, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with pytest.warns(UserWarning, match="FID unavailable"):
        judged = modality.evaluate(noise, test.labels, shapes_cfg, tmp_path)
    assert cached[0].stat().st_mtime_ns == stamp  # reused, not retrained
    assert judged["frechet_cnn"] > 10 * judged["ceiling_frechet_cnn"]
    with pytest.raises(ValueError, match="shape"):
        modality.evaluate(torch.zeros(4, 3, 16, 16), None, shapes_cfg, tmp_path)


def test_fid_inception_has_the_published_size_and_rejects_foreign_weights(tmp_path):
    # torchvision lists Inception-v3 at 27,161,264 parameters (1000 classes, with the auxiliary head of
    # 98,560 + 2,459,136 + 769,000); the FID network drops that head and has 1008 classes.
    net = FIDInception()
    assert sum(p.numel() for p in net.parameters()) == 27_161_264 - 3_326_696 + 8 * 2049
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth.*pt_inception"):
        load_fid_inception(tmp_path / "other.pth")
    torch.save(net.state_dict(), tmp_path / "same_layout.pth")
    assert load_fid_inception(tmp_path / "same_layout.pth").Mixed_7c.max_pool
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ImageModality().evaluate(torch.zeros(2, 1, 16, 16), None,
                                 with_defaults({"modality": "image",
                                                "data": {"source": "shapes", "resolution": 16, "channels": 1,
                                                         "n_train": 8, "n_test": 8},
                                                "eval": {"classifier_steps": 1,
                                                         "inception_weights": str(tmp_path / "missing.pth")}}),
                                 tmp_path)


TINY = ["train.steps=6", "train.batch_size=8", "train.log_every=3", "train.ckpt_every=6", "model.channels=16",
        "data.n_train=32", "data.n_test=8", "sample.steps=3", "sample.n=4"]


def test_train_then_sample_class_conditional_shapes(tmp_path):
    from multidiff.engine import generate, trainer
    from multidiff.engine.config import load_recipe

    cfg = load_recipe("shapes", "quick", TINY)
    run = trainer.train(cfg, tmp_path / "run")
    out = generate.generate(run, 3, cond="triangle", seed=0, out_dir=tmp_path / "samples")
    assert out["x"].shape == (3, 3, 16, 16) and torch.isfinite(out["x"]).all()
    assert out["labels"].tolist() == [SHAPES.index("triangle")] * 3
    pngs = [p.name for p in out["paths"]]
    assert pngs == [f"{i:04d}_triangle.png" for i in range(3)] + ["preview.png"]  # the preview is the one grid
    with Image.open(tmp_path / "samples" / "0001_triangle.png") as im:
        assert im.size == (16, 16) and im.mode == "RGB"
    again = generate.generate(run, 3, cond="triangle", seed=0)
    torch.testing.assert_close(again["x"], out["x"])  # a seed fixes the samples
    assert list((tmp_path / "run" / "previews").glob("step_*.png"))
