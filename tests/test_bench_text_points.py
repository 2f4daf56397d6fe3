"""benchmarks/bench_text_points.py: the prompts it writes per category and how it counts the issue's target
(1-NNA within 0.05 of the label model's), without a trained model."""
import importlib.util
from pathlib import Path

import numpy as np

from multidiff.engine.config import load_recipe

spec = importlib.util.spec_from_file_location(
    "bench_text_points", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_text_points.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_prompts_cover_every_trained_template_and_word_and_only_held_out_words_apart():
    caption = load_recipe("modelnet10_text", "quick")["conditions"]["caption"]
    trained = bench.prompts(caption, "night_stand", 6, held_out=False)
    assert sorted(trained) == sorted(f"{t.format(category=w)}" for w in ("nightstand", "bedside table")
                                     for t in caption["templates"])
    held = bench.prompts(caption, "night_stand", 3, held_out=True)
    assert held == [t.format(category="night stand") for t in caption["templates"]]


def test_a_difference_of_exactly_0_05_is_within_the_target():
    # 0.91 - 0.86 is 0.05000000000000004 in floating point; 1-NNA over 2 x 50 clouds moves in steps of 0.01
    label, text = np.array([0.86, 0.86, 0.90, 0.80]), np.array([0.91, 0.81, 0.96, 0.70])
    assert bench._within(text - label) == 2
    assert bench._within(text - label, one_sided=True) == 3


def test_summary_counts_and_measures_the_noise_between_two_draws():
    # columns: label, text, held, label2, train
    rows = np.array([[0.90, 0.95, 0.85, 0.92, 0.5], [0.80, 0.80, 0.86, 0.78, 0.5]])
    lines = bench.summary(rows, 50, 1)
    assert lines[0].split()[:5] == ["mean", "50", "0.850", "0.875", "0.855"]
    assert "sd of a difference between two draws (label - label2 over the 2 categories) = 0.028" in lines[4]
    assert "<= 0.05 in 2/2 categories with trained words, 1/2 with held-out synonyms" in lines[5]


def test_summary_counts_a_second_training_of_the_label_model_against_the_first():
    rows = np.array([[0.90, 0.95, 0.85, 0.92, 0.5], [0.80, 0.80, 0.86, 0.78, 0.5], [0.70, 0.70, 0.70, 0.70, 0.5]])
    lines = bench.summary(rows, 50, 1, retrained=np.array([0.96, 0.84, 0.70]))
    assert "label': the class-label recipe trained again (another train.seed), mean 0.833" in lines[-1]
    assert "|label' - label| <= 0.05 in 2/3 categories, sd of the difference 0.031" in lines[-1]
    assert len(bench.summary(rows, 50, 1)) == len(lines) - 1
