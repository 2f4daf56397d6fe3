"""How a caption's tokens become the pooled vector of the adaptive norms (``pool = "mean" | "attention"``),
and where the point transformer cross-attends to them (``model.cross_every``)."""
import pytest
import torch

from modalities.points.transformer import PointTransformer
from multidiff.conditioning.encoders import ConditionEncoder, Text
from multidiff.conditioning.spec import resolve
from multidiff.conditioning.text import ByteTokenizer
from multidiff.engine.errors import UserError


def _text(pool: str, width: int = 16) -> Text:
    spec = resolve({"caption": {"type": "text", "max_length": 12, "layers": 1, "heads": 2, "pool": pool}})["caption"]
    torch.manual_seed(0)
    return Text(spec, width)


CAPTIONS = ["a red dot", "blue", "a gold chair"]


def _ids():
    return ByteTokenizer(12)(CAPTIONS, "test")


def test_attention_pooling_starts_as_the_mean_of_the_real_tokens():
    ids, kept = _ids(), torch.zeros(3, dtype=torch.bool)
    for pool in ("mean", "attention"):
        pooled, tokens, mask = _text(pool)(ids, kept)
        for i, caption in enumerate(CAPTIONS):   # the mean over the caption's own bytes, none of the padding
            n = len(caption)
            assert mask[i].sum() == n
            torch.testing.assert_close(pooled[i], tokens[i, :n].mean(0))


def test_attention_pooling_is_a_softmax_over_the_real_tokens_of_their_scores():
    text = _text("attention")
    torch.nn.init.normal_(text.score.weight, std=1.0)
    ids = _ids()
    pooled, tokens, _ = text(ids, torch.zeros(3, dtype=torch.bool))
    for i, caption in enumerate(CAPTIONS):
        real = tokens[i, :len(caption)]
        weights = torch.exp(real @ text.score.weight[0] + text.score.bias)
        torch.testing.assert_close(pooled[i], (weights[:, None] * real).sum(0) / weights.sum())
        assert not torch.allclose(pooled[i], real.mean(0))          # no longer the mean once scored
    # a score that singles out one token makes the pooled vector that token
    with torch.no_grad():
        text.score.weight.copy_(100 * tokens[2, 2] / tokens[2, 2].norm())
        text.score.bias.zero_()
    pooled, tokens, _ = text(ids, torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(pooled[2], tokens[2, 2], atol=1e-3, rtol=1e-3)


def test_a_dropped_caption_pools_to_the_null_vector_either_way():
    for pool in ("mean", "attention"):
        text = _text(pool)
        torch.nn.init.normal_(text.null)
        if text.score is not None:
            torch.nn.init.normal_(text.score.weight)
        pooled, _, mask = text(_ids(), torch.tensor([False, True, False]))
        torch.testing.assert_close(pooled[1], text.null)
        assert mask[1].tolist() == [True] + [False] * 11


def test_an_unknown_pooling_is_one_clear_line():
    with pytest.raises(UserError, match="conditions.caption.pool must be one of mean, attention, got 'max'"):
        resolve({"caption": {"type": "text", "pool": "max"}})


@pytest.mark.parametrize("depth, every, crossed", [(3, 1, [0, 1, 2]), (3, 2, [1]), (3, 3, [1]),
                                                   (8, 2, [1, 3, 5, 7]), (8, 3, [1, 4, 7]), (1, 1, [0])])
def test_cross_every_k_puts_cross_attention_in_every_kth_block_from_the_middle_of_the_first(depth, every, crossed):
    spec = resolve({"caption": {"type": "text", "max_length": 8, "layers": 1, "heads": 2}})
    net = PointTransformer(width=16, depth=depth, heads=2, cross_every=every,
                           conditions=lambda width: ConditionEncoder(spec, {"caption": {}}, width))
    assert [i for i, block in enumerate(net.blocks) if block.cross is not None] == crossed
    without = PointTransformer(width=16, depth=depth, heads=2, cross_every=every)
    assert all(block.cross is None for block in without.blocks)     # a class-label network has none


def test_cross_every_beyond_the_depth_is_refused():
    with pytest.raises(ValueError, match=r"model.cross_every \(4\) must be between 1 and model.depth \(3\)"):
        PointTransformer(width=16, depth=3, heads=2, cross_every=4)


@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_padding_past_the_longest_caption_changes_nothing_and_is_not_encoded(pool):
    text = _text(pool)
    if text.score is not None:
        torch.nn.init.normal_(text.score.weight)
    short = ByteTokenizer(12)(["a red dot", "blue", "a gold"], "test")   # 12 wide, the longest caption 9 bytes
    kept = torch.zeros(3, dtype=torch.bool)
    pooled, tokens, mask = text(short, kept)
    assert tokens.shape[1] == mask.shape[1] == 9             # trimmed to the longest caption
    full, full_mask = text.encoder(short)                    # the reference: all 12 positions encoded
    torch.testing.assert_close(tokens, full[:, :9], atol=1e-5, rtol=1e-5)
    assert not full_mask[:, 9:].any()
    weights = (torch.ones(3, 12) if text.score is None else torch.exp(text.score(full)[..., 0])) * full_mask
    torch.testing.assert_close(pooled, (weights[..., None] * full).sum(1) / weights.sum(1, keepdim=True),
                               atol=1e-5, rtol=1e-5)
    alone, _, _ = text(short[1:2], kept[:1])                 # nor on the captions it is batched with
    torch.testing.assert_close(alone[0], pooled[1], atol=1e-5, rtol=1e-5)
    assert text(_ids(), kept)[1].shape[1] == 12              # the longest caption of this batch has 12 bytes
