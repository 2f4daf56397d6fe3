"""Synonyms in text templates, on the synthetic primitives: which captions training sees (every trained
synonym of a category, never a held-out one, the same table on every build), the held-out synonyms
prompted and scored apart by eval, a 3-step train -> sample -> eval through the point transformer, and
the clear one-line errors of a bad synonym table."""
import pytest
import torch

from modalities.points.synthetic import PRIMITIVES
from multidiff.conditioning import data as condition_data
from multidiff.conditioning.evaluation import score
from multidiff.engine.config import RECIPES_DIR, load_recipe
from multidiff.engine.errors import UserError
from multidiff.engine.generate import draw, generate, load_run
from multidiff.engine.trainer import train

TEMPLATES = ["a 3D model of a {category}", "a {category} shape"]
HELD_OUT = {"box": ["crate"], "sphere": ["ball"]}
TRAINED = {"box": {"box", "cube"}, "sphere": {"sphere", "globe"}}

RECIPE = """
name = "primitives_text"
modality = "points"
[data]
path = ""
n_points = 64
normalize = "unit_sphere"
conditional = true
categories = []
train_per_class = 12
test_per_class = 5
seed = 0
cond_key = "category"
[conditions.caption]
type = "text"
templates = ["a 3D model of a {{category}}", "a {{category}} shape"]
{synonyms}
max_length = 32
layers = 1
heads = 2
[model]
width = 32
depth = 1
heads = 2
[train]
batch_size = 8
steps = 3
ckpt_every = 3
log_every = 1
sample_every = 0
[sample]
steps = 2
n = 4
[eval]
n = 10
emd = false
"""
TABLES = ('synonyms = { category = { box = ["box", "cube", "crate"], sphere = ["sphere", "ball", "globe"] } }\n'
          'held_out_synonyms = { category = { box = ["crate"], sphere = ["ball"] } }')


def _recipe(tmp_path, synonyms: str = TABLES):
    path = tmp_path / "primitives_text.toml"
    path.write_text(RECIPE.format(synonyms=synonyms))
    return path


def _texts(ids: torch.Tensor) -> list[str]:
    return [bytes(b for b in row.tolist() if b >= 0).decode() for row in ids]


def _word(caption: str, template: str) -> str:
    head, tail = template.split("{category}")
    assert caption.startswith(head) and caption.endswith(tail)
    return caption[len(head):len(caption) - len(tail)]


def _described(tmp_path, synonyms: str = TABLES):
    cfg = load_recipe(_recipe(tmp_path, synonyms))
    from modalities.points import PointsModality
    clouds = PointsModality().dataset(cfg, "train")
    cfg["dataset"] = {"class_names": list(clouds.class_names), "conditions": condition_data.describe(clouds, cfg)}
    return cfg, clouds


def test_training_captions_use_every_trained_synonym_and_no_held_out_one(tmp_path):
    cfg, clouds = _described(tmp_path)
    captions = _texts(condition_data.tensors(clouds, cfg)["caption"])
    words = {}
    for i, (caption, label) in enumerate(zip(captions, clouds.labels.tolist())):
        category = PRIMITIVES[label]
        words.setdefault(category, set()).add(_word(caption, TEMPLATES[i % 2]))   # item i takes template i mod 2
    assert words == {**TRAINED, "torus": {"torus"}, "cylinder": {"cylinder"}, "cone": {"cone"}}
    # one fixed draw per item: the same table on every build (an epoch, a resume)
    assert captions == _texts(condition_data.tensors(clouds, cfg)["caption"])


def test_eval_prompts_held_out_synonyms_apart_and_the_run_samples_any_prompt(tmp_path):
    cfg = load_recipe(_recipe(tmp_path))
    run_dir = tmp_path / "run"
    train(cfg, run_dir, device="cpu")
    out = generate(run_dir, 2, prompt="a 3D model of a crate", steps=2, device="cpu")
    assert out["x"].shape == (2, 64, 3) and torch.isfinite(out["x"]).all()

    run = load_run(run_dir, "cpu")
    evaluated, prompted = run.modality.evaluate, []

    def judged(x, labels, cfg, cache_dir):
        prompted[-1].append([] if labels is None else [PRIMITIVES[v] for v in labels.tolist()])
        return evaluated(x, labels, cfg, cache_dir)

    def drawn(cond):
        prompted.append([_texts(cond["caption"])])
        return draw(run, cond, len(cond["dropped"]), sampler="dpmpp_2m", steps=2, guidance=1.0, seed=0)

    run.modality.evaluate = judged
    metrics = score(run, 10, drawn, tmp_path / "cache")
    # the balanced draw, the trained templates, then the held-out synonyms (no template is held out)
    assert len(prompted) == 3 and 0.0 <= metrics["caption_held_out_synonyms_1nna_cd"] <= 1.0
    assert 0.0 <= metrics["caption_trained_templates_1nna_cd"] <= 1.0
    assert set(prompted[1][1]) == set(PRIMITIVES) and set(prompted[2][1]) == set(HELD_OUT)
    captions, categories = prompted[1]
    assert all(_word(c, TEMPLATES[i % 2]) in TRAINED.get(category, {category})
               for i, (c, category) in enumerate(zip(captions, categories)))
    captions, categories = prompted[2]
    assert [_word(c, TEMPLATES[i % 2]) for i, c in enumerate(captions)] == [HELD_OUT[c][0] for c in categories]


@pytest.mark.parametrize("synonyms, message", [
    ('synonyms = { shape = { box = ["cube"] } }', "synonyms names field 'shape', which no item has"),
    ('synonyms = { category = { crate = ["box"] } }', "synonyms.category names value 'crate', which no item has"),
    ('synonyms = { category = { box = [] } }', "synonyms.category.box is an empty list"),
    ('synonyms = { category = { box = ["box", "cube"] } }\nheld_out_synonyms = { category = { box = ["crate"] } }',
     "held_out_synonyms.category.box: 'crate' is not in conditions.caption.synonyms.category.box"),
    ('synonyms = { category = { box = ["box", "cube"] } }\nheld_out_synonyms = { category = { box = ["cube", "box"] } }',
     "held_out_synonyms.category.box holds out every synonym"),
    ('synonyms = { category = "box" }', "synonyms.category must be a table of value ="),
])
def test_a_bad_synonym_table_is_one_clear_line(tmp_path, synonyms, message):
    with pytest.raises(UserError, match=message):
        cfg, clouds = _described(tmp_path, synonyms)
        condition_data.tensors(clouds, cfg)


def test_the_modelnet10_text_recipe_holds_one_synonym_per_category_out():
    cfg = load_recipe(RECIPES_DIR / "modelnet10_text.toml", "quick")
    caption = cfg["conditions"]["caption"]
    synonyms, held = caption["synonyms"]["category"], caption["held_out_synonyms"]["category"]
    assert len(synonyms) == 10 and all(len(held[c]) == 1 and len(synonyms[c]) > 1 for c in synonyms)
    fields = [{"category": c} for c in synonyms for _ in range(6)]
    longest = max(len(condition_data.fill(t, {"category": w}, "caption", "").split()) for t in caption["templates"]
                  for words in synonyms.values() for w in words)
    assert caption["tokens"] == "words" and caption["made_up_words"] > 0
    assert longest + 1 == condition_data.longest_caption(caption, fields, "caption", str) == 9  # + a made-up word
    assert cfg["data"]["n_points"] == 256
    plain = condition_data.captions({**caption, "made_up_words": 0.0}, fields, "caption", str)
    assert not any(_word(c, caption["templates"][i % 3]) in sum(held.values(), []) for i, c in enumerate(plain))
    captions = condition_data.captions(caption, fields, "caption", str)   # with made-up words: none held out
    assert not any(f" {w} " in f" {c} " for c in captions for w in sum(held.values(), []))


def test_max_length_0_becomes_the_longest_caption_rounded_up_to_8(tmp_path):
    cfg, clouds = _described(tmp_path)
    caption = cfg["conditions"]["caption"]
    held_out = "the primitive called {category}"           # held-out templates and synonyms count too
    caption.update(max_length=0, templates=TEMPLATES + [held_out], held_out=[held_out])
    written = [t.format(category=w) for t in caption["templates"] for words in
               [*PRIMITIVES, "box cube crate", "sphere ball globe"] for w in words.split()]
    assert condition_data.longest_caption(caption, condition_data.item_fields(clouds, cfg), "caption", str) == \
        max(map(len, written)) == len("the primitive called cylinder")
    condition_data.describe(clouds, cfg)
    assert caption["max_length"] == 32                  # 29 bytes rounded up to 8
    assert condition_data.tensors(clouds, cfg)["caption"].shape == (len(clouds), 32)


def test_a_text_run_saved_before_synonyms_reads_with_empty_tables():
    from multidiff.engine.config import with_defaults

    saved = {"modality": "points", "conditions": {"caption": {"type": "text", "field": "caption", "drop": 0.1,
                                                               "templates": ["a {category}"], "held_out": [],
                                                               "max_length": 64, "layers": 2, "heads": 4,
                                                               "pretrained": ""}}}
    filled = with_defaults(saved)
    caption = filled["conditions"]["caption"]
    assert caption["synonyms"] == caption["held_out_synonyms"] == {} and caption["max_length"] == 64
    assert caption["pool"] == "mean" and filled["model"]["cross_every"] == 1   # as such runs were built


def test_made_up_words_go_into_the_share_of_captions_asked_and_nothing_else_changes(tmp_path):
    cfg, clouds = _described(tmp_path)
    fields = condition_data.item_fields(clouds, cfg)
    caption = cfg["conditions"]["caption"]
    plain = condition_data.captions(caption, fields, "caption", str)
    for share in (1.0, 0.5):
        caption["made_up_words"] = share
        mixed = condition_data.captions(caption, fields, "caption", str)
        assert mixed == condition_data.captions(caption, fields, "caption", str)   # fixed per item
        changed = 0
        for before, after in zip(plain, mixed):
            words, new = before.split(" "), after.split(" ")
            if new == words:
                continue
            changed += 1
            assert len(new) == len(words) + 1
            extra = next((i for i, (a, b) in enumerate(zip(new, words)) if a != b), len(words))
            assert new[:extra] + new[extra + 1:] == words     # one word put in, the rest in their order
            made_up = new[extra]
            assert 3 <= len(made_up) <= 8 and made_up.isalpha() and made_up.islower()
        assert changed == len(plain) if share == 1.0 else abs(changed / len(plain) - share) < 0.2
    caption["made_up_words"] = 1.0
    longest = max(len(c) for c in condition_data.captions(caption, fields, "caption", str))
    assert condition_data.longest_caption(caption, fields, "caption", str) >= longest   # max_length 0 holds them


@pytest.mark.parametrize("setting, message", [
    ("made_up_words = 1.5", "made_up_words is a share of the captions, in [0, 1]; got 1.5"),
    ("made_up_words = -0.1", "made_up_words is a share of the captions, in [0, 1]; got -0.1"),
])
def test_a_bad_made_up_share_is_one_clear_line(tmp_path, setting, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_recipe(_recipe(tmp_path, TABLES + "\n" + setting))
