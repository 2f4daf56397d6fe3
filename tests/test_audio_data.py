"""The audio data path: files, labels, splits, resampling, lengths and masks, loudness, bad files."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from modalities.audio import data
from modalities.audio.files import AudioFileError
from modalities.audio.synthetic import CLASS_NAMES, synthetic_clips

FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"
PATTERN = r"(?P<digit>\d+)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav"


def folder_cfg(root: Path, **overrides) -> dict:
    cfg = {"path": str(root), "name_pattern": PATTERN, "label_key": "digit", "split_by": "index",
           "test_range": [0, 4], "sample_rate": 8000, "length": 4096, "loudness": "none"}
    return {"data": {**cfg, **overrides}}


def tone(freq: float, n: int, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def write(path: Path, wave: np.ndarray, rate: int = 8000, **kw) -> Path:
    sf.write(str(path), wave, rate, **kw)
    return path


@pytest.fixture(autouse=True)
def fresh_cache():
    data._CACHE.clear()
    yield
    data._CACHE.clear()


def dominant_frequency(wave: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def test_resampling_keeps_a_tone_at_its_frequency_and_removes_what_is_above_nyquist(tmp_path):
    # 16 kHz stereo file: 1 kHz in both channels (0.5 and 0.3 amplitude) plus 6 kHz in the left,
    # which an 8 kHz rate cannot carry (it would alias to 2 kHz if not filtered out).
    n = 16000
    left = tone(1000, n, 16000, 0.5) + tone(6000, n, 16000, 0.2)
    right = tone(1000, n, 16000, 0.3)
    write(tmp_path / "1_a_7.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    clips = data.load(folder_cfg(tmp_path, length=8192), "train")
    assert clips.lengths.tolist() == [8000]
    wave = clips.x[0, 0, :8000]
    assert dominant_frequency(wave, 8000) == pytest.approx(1000, abs=1.0)
    # mono mix-down is the channel mean: 1 kHz amplitude (0.5 + 0.3) / 2, 6 kHz gone (no 2 kHz alias)
    spectrum = np.abs(np.fft.rfft(wave[1000:7000].numpy())) / 3000
    freqs = np.fft.rfftfreq(6000, 1 / 8000)
    assert spectrum[np.argmin(np.abs(freqs - 1000))] == pytest.approx(0.4, rel=0.02)
    assert spectrum[np.argmin(np.abs(freqs - 2000))] < 1e-3


def test_short_clips_are_padded_with_a_mask_and_long_ones_cropped(tmp_path):
    short = tone(440, 1000, 8000)
    long = tone(440, 6000, 8000)
    write(tmp_path / "1_a_10.wav", short, subtype="FLOAT")
    write(tmp_path / "2_a_11.wav", long, subtype="FLOAT")
    clips = data.load(folder_cfg(tmp_path), "train")
    assert clips.x.shape == (2, 1, 4096)
    assert clips.lengths.tolist() == [1000, 4096]
    short_item, long_item = clips[0], clips[1]
    assert short_item["mask"].shape == (1, 4096)
    assert short_item["mask"].sum() == 1000 and short_item["mask"][0, :1000].all()
    assert torch.equal(short_item["x"][0, 1000:], torch.zeros(3096))
    np.testing.assert_allclose(short_item["x"][0, :1000].numpy(), short, atol=1e-6)
    np.testing.assert_allclose(long_item["x"][0].numpy(), long[:4096], atol=1e-6)
    assert long_item["mask"].all()


def test_mask_padding_false_gives_items_without_a_mask(tmp_path):
    write(tmp_path / "1_a_10.wav", tone(440, 1000, 8000))
    clips = data.load(folder_cfg(tmp_path, mask_padding=False), "train")
    assert "mask" not in clips[0]
    assert clips.masks()[0].sum() == 1000


def test_silence_is_trimmed_to_within_one_frame(tmp_path):
    wave = np.concatenate([np.zeros(2000), tone(500, 1600, 8000), np.zeros(3000)]).astype(np.float32)
    write(tmp_path / "1_a_10.wav", wave, subtype="FLOAT")
    clips = data.load(folder_cfg(tmp_path, trim_db=30.0), "train")
    assert abs(int(clips.lengths[0]) - 1600) <= 80  # frames of 10 ms = 80 samples
    assert dominant_frequency(clips.x[0, 0, :int(clips.lengths[0])], 8000) == pytest.approx(500, abs=10)


@pytest.mark.parametrize("mode, target_db, measure", [
    ("rms", -20.0, lambda w: w.pow(2).mean().sqrt()),
    ("peak", -6.0, lambda w: w.abs().max()),
])
def test_loudness_normalisation_reaches_the_target_over_the_real_samples(tmp_path, mode, target_db, measure):
    write(tmp_path / "1_a_10.wav", tone(300, 2000, 8000, 0.05), subtype="FLOAT")
    clips = data.load(folder_cfg(tmp_path, loudness=mode, target_db=target_db), "train")
    assert float(measure(clips.x[0, 0, :2000])) == pytest.approx(10 ** (target_db / 20), rel=1e-4)


def test_labels_and_split_from_the_file_name_pattern(tmp_path):
    names = ["2_ann_0.wav", "10_ann_4.wav", "2_bob_5.wav", "10_bob_49.wav", "7_cat_12.wav"]
    for name in names:
        write(tmp_path / name, tone(440, 800, 8000))
    train = data.load(folder_cfg(tmp_path), "train")
    test = data.load(folder_cfg(tmp_path), "test")
    assert train.class_names == test.class_names == ["2", "7", "10"]  # numeric order, both splits
    assert train.labels.tolist() == [2, 0, 1]   # 10_bob_49, 2_bob_5, 7_cat_12 in file-name order
    assert test.labels.tolist() == [2, 0]       # 10_ann_4, 2_ann_0
    assert len(train) == 3 and len(test) == 2


def test_labels_and_split_from_a_csv(tmp_path):
    rows = [("a.wav", "dog", "1"), ("b.flac", "cat", "0"), ("c.ogg", "dog", "0"), ("d.wav", "bird", "1")]
    for name, _, _ in rows:
        write(tmp_path / name, tone(440, 800, 8000))
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "animal", "fold"])
        w.writerows(rows)
    cfg = folder_cfg(tmp_path, name_pattern=None, labels_csv="labels.csv", label_key="animal", split_by="fold",
                     test_range=[1, 1])
    train, test = data.load(cfg, "train"), data.load(cfg, "test")
    assert train.class_names == ["bird", "cat", "dog"]
    assert train.labels.tolist() == [1, 2]   # b.flac cat, c.ogg dog
    assert test.labels.tolist() == [2, 0]    # a.wav dog, d.wav bird


def make_bad_folder(root: Path) -> Path:
    write(root / "1_a_10.wav", tone(440, 800, 8000))
    write(root / "2_a_11.wav", tone(440, 800, 8000))
    (root / "3_a_12.wav").write_bytes(b"")                                  # empty
    (root / "4_a_13.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 8)  # corrupt
    write(root / "5_a_14.wav", np.zeros(0, dtype=np.float32))              # valid header, no samples
    (root / "readme.wav").write_bytes(b"RIFF")                              # does not match the pattern
    return root


@pytest.mark.parametrize("bad", ["3_a_12.wav", "4_a_13.wav", "5_a_14.wav", "readme.wav"])
def test_a_bad_file_stops_loading_with_an_error_naming_it(tmp_path, bad):
    make_bad_folder(tmp_path)
    for other in {"3_a_12.wav", "4_a_13.wav", "5_a_14.wav", "readme.wav"} - {bad}:
        (tmp_path / other).unlink()
    with pytest.raises(AudioFileError, match=bad):
        data.load(folder_cfg(tmp_path), "train")


def test_a_missing_file_listed_in_the_csv_is_named(tmp_path, caplog):
    write(tmp_path / "a.wav", tone(440, 800, 8000))
    (tmp_path / "labels.csv").write_text("file,label,fold\na.wav,x,5\nghost.wav,y,5\n")
    cfg = folder_cfg(tmp_path, name_pattern=None, labels_csv="labels.csv", label_key="label", split_by="fold")
    with pytest.raises(FileNotFoundError, match="ghost.wav"):
        data.load(cfg, "train")
    data._CACHE.clear()
    clips = data.load({"data": {**cfg["data"], "skip_bad_files": True}}, "train")
    assert len(clips) == 1 and len(clips.skipped) == 1
    assert "ghost.wav" in caplog.records[0].getMessage()


def test_skip_bad_files_skips_and_counts_each_bad_file(tmp_path, caplog):
    make_bad_folder(tmp_path)
    clips = data.load(folder_cfg(tmp_path, skip_bad_files=True), "train")
    assert len(clips) == 2 and clips.labels.tolist() == [0, 1]
    assert len(clips.skipped) == 4
    lines = [r.getMessage() for r in caplog.records]
    for name in ("3_a_12.wav", "4_a_13.wav", "5_a_14.wav", "readme.wav"):
        assert sum(name in line for line in lines) == 1
        assert sum(name in msg for msg in clips.skipped) == 1
    assert lines[-1].startswith("skipped 4 of 6 audio files")


def test_a_missing_folder_and_missing_keys_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load(folder_cfg(tmp_path / "nowhere"), "train")
    write(tmp_path / "1_a_10.wav", tone(440, 800, 8000))
    cfg = folder_cfg(tmp_path)
    del cfg["data"]["split_by"]
    with pytest.raises(KeyError, match="split_by"):
        data.load(cfg, "train")
    with pytest.raises(ValueError, match="validation"):
        data.load(folder_cfg(tmp_path), "validation")


def synthetic_cfg(**overrides) -> dict:
    return {"data": {"source": "synthetic", "num_train": 16, "num_test": 8, "seed": 3, "sample_rate": 8000,
                     "length": 4096, "loudness": "rms", "target_db": -20.0, **overrides}}


def test_synthetic_set_is_seeded_balanced_and_its_tones_sit_in_their_bands():
    a, b = data.load(synthetic_cfg(), "train"), data.load(synthetic_cfg(), "test")
    data._CACHE.clear()
    again = data.load(synthetic_cfg(), "train")
    other_seed = data.load(synthetic_cfg(seed=4), "train")
    assert torch.equal(a.x, again.x) and not torch.equal(a.x[:8], b.x)
    assert not torch.equal(a.x, other_seed.x)
    assert a.class_names == CLASS_NAMES
    assert a.labels.bincount().tolist() == [4, 4, 4, 4]
    assert ((a.lengths >= 0.15 * 8000 - 1) & (a.lengths <= 0.45 * 8000)).all()
    bands = {"low_tone": (250, 450), "high_tone": (1000, 1600)}
    for i in range(len(a)):
        name = CLASS_NAMES[a.labels[i]]
        if name in bands:
            lo, hi = bands[name]
            assert lo - 10 <= dominant_frequency(a.x[i, 0, :int(a.lengths[i])], 8000) <= hi + 10


def test_synthetic_chirps_move_in_the_direction_their_class_says():
    clips, labels = synthetic_clips(8, 8000, seed=0, split="train")
    for wave, label in zip(clips, labels):
        if CLASS_NAMES[label].endswith("chirp"):
            half = len(wave) // 2
            first, second = dominant_frequency(wave[:half], 8000), dominant_frequency(wave[half:], 8000)
            assert (second > first) == (CLASS_NAMES[label] == "rising_chirp")


@pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD not found at {FSDD} (see ../shared/data/README.md)")
def test_a_few_real_fsdd_files(tmp_path):
    files = ["0_george_0.wav", "3_jackson_7.wav", "7_lucas_49.wav", "9_theo_4.wav"]
    (tmp_path / "few.csv").write_text("file\n" + "\n".join(files) + "\n")
    cfg = {"data": {"path": str(FSDD), "labels_csv": str(tmp_path / "few.csv"), "name_pattern": PATTERN,
                    "label_key": "digit", "split_by": "index", "test_range": [0, 4], "sample_rate": 16000,
                    "length": 40960, "loudness": "none"}}
    train, test = data.load(cfg, "train"), data.load(cfg, "test")
    assert train.class_names == ["0", "3", "7", "9"]
    assert [train.class_names[i] for i in train.labels] == ["3", "7"]
    assert [test.class_names[i] for i in test.labels] == ["0", "9"]
    for clips, names in ((train, files[1:3]), (test, [files[0], files[3]])):
        for i, name in enumerate(names):
            info = sf.info(str(FSDD / name))
            assert info.samplerate == 8000
            assert int(clips.lengths[i]) == 2 * info.frames  # resampled from 8 kHz to 16 kHz
