"""Named conditions end to end on synthetic toy2d data: a categorical, a text caption and a vector, each
naming one of four clusters, trained together with independent dropout; each alone must steer the
samples to its cluster (the reference: the cluster centres the data were drawn around)."""
import numpy as np
import pytest
import torch

from modalities.toy2d import Toy2DModality
from multidiff.engine.config import load_recipe
from multidiff.engine.errors import UserError
from multidiff.engine.generate import generate, load_run
from multidiff.engine.trainer import train
from tests.conditions_helpers import CENTRES, COLOURS, write_recipe


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("named")
    train(load_recipe(write_recipe(folder)), folder / "run", device="cpu")
    return folder / "run"


def _mean(run_dir, **kwargs):
    return generate(run_dir, 48, steps=10, device="cpu", **kwargs)["x"].mean(0).numpy()


@pytest.mark.parametrize("cluster, request_", [
    (0, {"cond": ["colour=red"]}),
    (2, {"cond": ["colour=blue", "caption=", "place="]}),
    (3, {"cond": ["colour="], "prompt": "a gold dot", "guidance": 2.0}),
    (1, {"cond": ["colour=", "place=0,1"], "guidance": 2.0}),
])
def test_each_condition_alone_steers_samples_to_its_cluster(run_dir, cluster, request_):
    mean = _mean(run_dir, **request_)
    distances = np.linalg.norm(CENTRES - mean, axis=1)
    assert distances.argmin() == cluster and distances[cluster] < 1.0, (mean, request_)


def test_the_run_records_the_values_and_samples_balance_unset_categoricals(run_dir):
    run = load_run(run_dir)
    assert run.cfg["dataset"]["conditions"]["colour"]["values"] == ["blue", "gold", "green", "red"]
    x = generate(run_dir, 8, steps=10, device="cpu", cond=["caption=", "place="])["x"].numpy()
    # balanced over the sorted colours: blue, gold, green, red, blue, ...
    nearest = np.linalg.norm(x[:, None] - CENTRES[None], axis=2).argmin(1)
    assert (nearest[:4] == [2, 3, 1, 0]).mean() >= 0.75


def test_per_condition_guidance_runs_one_network_call_per_step(run_dir):
    run = load_run(run_dir)
    calls = []
    run.model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    from multidiff.engine.conditions import class_labels, guidance_scales
    from multidiff.engine.generate import draw
    cond = class_labels(4, run.cfg, ["colour=red"], "a red dot")
    draw(run, cond, 4, sampler="euler", steps=5, guidance=guidance_scales(["2", "place=0"], run.cfg), seed=0)
    # three conditions, scales 2, 2, 0: branches colour alone, caption alone, unconditional, in one batch
    assert calls == [12] * 5


def test_bad_requests_are_one_clear_line(run_dir):
    with pytest.raises(UserError, match="unknown value 'purple' for condition 'colour'"):
        generate(run_dir, 2, cond=["colour=purple"], device="cpu")
    with pytest.raises(UserError, match="has 3 numbers, the condition takes 2"):
        generate(run_dir, 2, cond=["place=1,2,3"], device="cpu")
    with pytest.raises(UserError, match="longer than the 16 its encoder takes"):
        generate(run_dir, 2, prompt="a prompt far longer than sixteen bytes", device="cpu")
    with pytest.raises(UserError, match="no condition 'shape'"):
        generate(run_dir, 2, cond=["shape=x"], device="cpu")
    with pytest.raises(UserError, match="no condition 'size'"):
        generate(run_dir, 2, guidance=["size=2"], device="cpu")
    with pytest.raises(UserError, match="must be in"):
        generate(run_dir, 2, guidance=["colour=-1"], device="cpu")


def test_class_label_runs_keep_their_network_and_checkpoint_keys():
    """A recipe without [conditions] builds the same network as before: no encoder, no cross-attention."""
    cfg = load_recipe("toy2d", "quick")
    cfg["dataset"] = {"encoded_shape": [2], "class_names": [str(i) for i in range(8)]}
    from multidiff import modality
    from multidiff.engine.generate import build_model
    keys = set(build_model(modality.get("toy2d"), cfg).state_dict())
    assert cfg["conditions"] == {} and "label.table.weight" in keys and not any("conditioner" in k for k in keys)


class NearestCluster(Toy2DModality):
    """A toy2d judge with a closed-form answer: the colour of the nearest cluster centre."""

    def classify(self, x, field, values, cfg, cache_dir):
        assert field == "colour"
        nearest = torch.cdist(x.double(), torch.as_tensor(CENTRES)).argmin(1)
        return torch.tensor([values.index(COLOURS[int(c)]) for c in nearest])


def test_eval_scores_each_categorical_by_the_modalitys_judge(run_dir, tmp_path):
    from multidiff.conditioning.evaluation import score
    from multidiff.engine.generate import draw

    run = load_run(run_dir)
    run.modality = NearestCluster()
    metrics = score(run, 32, lambda cond: draw(run, cond, 32, sampler="dpmpp_2m", steps=10, guidance=1.0, seed=0),
                    tmp_path)
    assert metrics["colour_ceiling_accuracy"] == 1.0      # the clusters are 10 standard deviations apart
    assert metrics["colour_accuracy"] >= 0.8 and "colour_accuracy_held_out" not in metrics
