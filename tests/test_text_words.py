"""``tokens = "words"``: a caption as words, each a bag of hashed byte n-grams (fastText's subword units),
read by a transformer over words."""
import zlib

import numpy as np
import pytest
import torch

from multidiff.conditioning import text
from multidiff.conditioning.encoders import Text
from multidiff.conditioning.spec import resolve
from multidiff.engine.config import load_recipe
from multidiff.engine.errors import UserError
from multidiff.conditioning.describe import describe_conditions
from multidiff.engine.generate import generate, load_run
from multidiff.engine.trainer import train
from tests.conditions_helpers import CENTRES, write_recipe


def _grams(word: str) -> list[str]:
    marked = f"<{word}>"
    return [marked] + [marked[k:k + n] for n in (3, 4, 5) for k in range(len(marked) - n + 1)]


def test_a_word_is_the_crc32_buckets_of_itself_and_its_3_to_5_grams_between_boundary_marks():
    # "<bed>": the word, <be bed ed>, <bed bed>, and its one 5-gram, the word again (counted once)
    assert _grams("bed") == ["<bed>", "<be", "bed", "ed>", "<bed", "bed>", "<bed>"]
    expected = list(dict.fromkeys(zlib.crc32(g.encode()) % text.BUCKETS for g in _grams("bed")))
    assert text.word_buckets("bed") == expected and len(expected) == 6
    # a held-out synonym shares the n-grams of the trained word it contains: chair's end in armchair
    shared = set(_grams("chair")) & set(_grams("armchair"))
    assert shared == {"cha", "hai", "air", "ir>", "chai", "hair", "air>", "chair", "hair>"}
    assert len(set(text.word_buckets("chair")) & set(text.word_buckets("armchair"))) == len(shared)
    assert len(text.word_buckets("pneumonoultramicroscopic")) == text.GRAMS   # a long word keeps GRAMS of them


def test_the_tokenizer_lowercases_pads_and_refuses_a_caption_of_too_many_words():
    ids = text.WordTokenizer(4)(["A Chair", "", "one two three four"], "test")
    assert ids.shape == (3, 4, text.GRAMS)
    assert text.present(ids).tolist() == [[True, True, False, False], [False] * 4, [True] * 4]
    torch.testing.assert_close(ids[0, 1, :len(text.word_buckets("chair"))], torch.tensor(text.word_buckets("chair")))
    assert (ids[0, 1, len(text.word_buckets("chair")):] == text.PAD).all()
    with pytest.raises(UserError, match=r"the text 'one two three four five' is 5 words, longer than the 4 its "
                                        r"encoder takes \(max_length\)"):
        text.WordTokenizer(4)(["one two three four five"], "--prompt")
    assert text.WordTokenizer(4).count(" a  made up  caption ") == 4


def _words_text(width=32, layers=1, seed=0):
    spec = resolve({"caption": {"type": "text", "tokens": "words", "max_length": 4, "layers": layers,
                                "heads": 2, "pool": "attention"}})["caption"]
    torch.manual_seed(seed)
    return Text(spec, width)


def test_a_held_out_word_is_read_through_the_n_grams_it_shares_with_trained_words():
    # trained: two words per class; asked: a word never seen that contains or respells one of them
    trained = {"chair": ["a chair", "a seat"], "table": ["a table", "a desk"], "bed": ["a bed", "a cot"]}
    held_out = {"chair": "a armchair", "table": "a tables", "bed": "a bedstead"}
    names = list(trained)
    captions = [c for name in names for c in trained[name]]
    labels = torch.tensor([k for k in range(3) for _ in range(2)])
    tokenize = text.WordTokenizer(4)
    encoder, head = _words_text(), torch.nn.Linear(32, 3)
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-2)
    ids, kept = tokenize(captions, "test"), torch.zeros(len(captions), dtype=torch.bool)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(head(encoder(ids, kept)[0]), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss < 0.05
    used = torch.unique(ids[ids >= 0])
    unused = torch.ones(text.BUCKETS, dtype=torch.bool)
    unused[used] = False
    assert not encoder.encoder.grams.weight[unused].any()      # an n-gram no caption held stays zero
    asked = tokenize([held_out[name] for name in names], "test")
    with torch.no_grad():
        guessed = head(encoder(asked, torch.zeros(3, dtype=torch.bool))[0]).argmax(1)
    assert guessed.tolist() == [0, 1, 2]


def test_dropped_captions_and_padding_past_the_longest_in_words():
    encoder = _words_text()
    torch.nn.init.normal_(encoder.null)
    torch.nn.init.normal_(encoder.encoder.grams.weight)
    ids = text.WordTokenizer(4)(["a red dot", "blue"], "test")
    pooled, tokens, mask = encoder(ids, torch.tensor([False, True]))
    assert tokens.shape[1] == 3 and mask.tolist() == [[True, True, True], [True, False, False]]
    torch.testing.assert_close(pooled[1], encoder.null)
    alone, _, _ = encoder(ids[:1, :3], torch.tensor([False]))
    torch.testing.assert_close(alone, pooled[:1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("table, message", [
    ({"tokens": "chars"}, "conditions.caption.tokens must be one of bytes, words, got 'chars'"),
    ({"tokens": "words", "pretrained": "some/folder"}, "a pretrained encoder reads its own tokenizer's tokens"),
])
def test_a_bad_tokens_setting_is_one_clear_line(table, message):
    with pytest.raises(UserError, match=message):
        resolve({"caption": {"type": "text", **table}})


def test_a_words_caption_trains_and_steers_samples_from_a_prompt(tmp_path):
    cfg = load_recipe(write_recipe(tmp_path), None, ["conditions.caption.tokens=words"])
    train(cfg, tmp_path / "run", device="cpu")
    x = generate(tmp_path / "run", 48, steps=10, device="cpu", cond=["colour=", "place="], prompt="a gold dot",
                 guidance=2.0)["x"]
    mean = x.mean(0).numpy()
    assert np.linalg.norm(CENTRES - mean, axis=1).argmin() == 3, mean
    line = next(line for line in describe_conditions(load_run(tmp_path / "run").cfg) if "caption" in line)
    assert "a caption of at most 16 words (transformer over words as hashed byte n-grams)" in line
