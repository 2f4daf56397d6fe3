"""Point-cloud metrics against closed forms, brute force and hand-worked cases."""
import itertools

import numpy as np
import pytest
import torch

from modalities.points import metrics
from modalities.points.metrics import (chamfer, coverage, distance_matrices, emd_auction, emd_exact, mmd, one_nna,
                                       set_metrics)


def clouds(n_clouds, n_points, seed):
    return torch.randn(n_clouds, n_points, 3, generator=torch.Generator().manual_seed(seed))


def test_chamfer_matches_brute_force_sum_of_mean_squared_distances():
    a, b = clouds(1, 13, 0)[0].double().numpy(), clouds(1, 7, 1)[0].double().numpy()
    ab = [min(((p - q) ** 2).sum() for q in b) for p in a]
    ba = [min(((p - q) ** 2).sum() for p in a) for q in b]
    expected = np.mean(ab) + np.mean(ba)
    got = chamfer(torch.tensor(a[None]), torch.tensor(b[None]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_chamfer_of_a_planar_cloud_shifted_off_its_plane_is_twice_the_squared_shift():
    # Every point's nearest neighbour in the shifted copy is its own image (others are farther by
    # Pythagoras), so each direction contributes h^2.
    a = clouds(1, 50, 2)
    a[..., 2] = 0
    h = 0.3
    b = a + torch.tensor([0.0, 0.0, h])
    assert chamfer(a, b).item() == pytest.approx(2 * h * h, rel=1e-5)


def test_emd_of_a_translated_copy_is_the_translation_length():
    # Matching each point to its image costs |d|; no bijection does better, since the 1-Lipschitz
    # f(x) = <x, d/|d|> gives W1 >= E_b f - E_a f = |d|.
    a = clouds(1, 40, 3).double()
    d = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    expected = 1.3
    assert emd_exact(a[0], (a + d)[0]) == pytest.approx(expected, rel=1e-12)
    assert emd_auction(a, a + d).item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_exact_emd_equals_brute_force_over_all_permutations(seed):
    a, b = clouds(2, 6, seed).double().numpy()
    cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
    brute = min(cost[np.arange(6), list(perm)].mean() for perm in itertools.permutations(range(6)))
    assert emd_exact(a, b) == pytest.approx(brute, rel=1e-12)


def test_auction_emd_is_a_true_matching_within_its_epsilon_bound():
    a, b = clouds(6, 96, 5), clouds(6, 96, 6) * 0.5 + 0.2
    approx = emd_auction(a, b).numpy()
    exact = np.array([emd_exact(x, y) for x, y in zip(a, b)])
    slack = metrics.EMD_EPS * torch.cdist(a.double(), b.double()).mean((1, 2)).numpy()
    assert np.all(approx >= exact - 1e-6)
    assert np.all(approx <= exact + slack + 1e-6)


def test_emd_refuses_clouds_of_different_sizes_and_non_finite_clouds():
    with pytest.raises(ValueError, match="same shape"):
        emd_exact(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="equal size"):
        distance_matrices(clouds(2, 4, 0), clouds(2, 5, 1))
    bad = clouds(2, 4, 0)
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        set_metrics(bad, clouds(2, 4, 1))


def test_distance_matrices_equal_the_pairwise_values():
    x, y = clouds(4, 16, 7), clouds(3, 16, 8)
    cross, within = distance_matrices(x, y), distance_matrices(x)
    for i, j in itertools.product(range(4), range(3)):
        assert cross["cd"][i, j] == pytest.approx(chamfer(x[i:i + 1], y[j:j + 1]).item(), rel=1e-5)
        assert cross["emd"][i, j] == pytest.approx(emd_exact(x[i], y[j]), rel=1e-2)
    assert np.allclose(within["cd"], within["cd"].T) and np.all(np.diag(within["emd"]) == 0)
    assert within["emd"][1, 3] == pytest.approx(emd_exact(x[1], x[3]), rel=1e-2)


def test_identical_sets_give_mmd_0_cov_1_and_1nna_0_not_one_half():
    # With G a copy of R, every cloud's leave-one-out nearest neighbour is its twin in the other
    # set at distance 0, so the 1-NN classifier is always wrong: 1-NNA = 0. The ideal 0.5 is for
    # two independent samples of one distribution.
    r = clouds(12, 32, 9)
    result = set_metrics(r.clone(), r)
    for d in ("cd", "emd"):
        assert result[f"mmd_{d}"] == 0.0
        assert result[f"cov_{d}"] == 1.0
        assert result[f"1nna_{d}"] == 0.0


def test_independent_samples_of_one_distribution_give_1nna_near_one_half():
    # Clouds that differ only by a random scale: G and R are i.i.d. draws of one distribution.
    gen = torch.Generator().manual_seed(10)
    base = torch.randn(64, 3, generator=gen)
    scales = torch.rand(160, generator=gen)[:, None, None] + 0.5
    x = base * scales
    result = set_metrics(x[:80], x[80:], emd=False)
    assert abs(result["1nna_cd"] - 0.5) < 0.15


def test_sets_far_apart_give_1nna_1_and_collapse_gives_cov_one_over_r():
    r = clouds(10, 16, 11)
    far = set_metrics(r + 100.0, r)
    assert far["1nna_cd"] == 1.0 and far["1nna_emd"] == 1.0
    collapsed = set_metrics(r[3:4].repeat(10, 1, 1), r)
    assert collapsed["cov_cd"] == pytest.approx(0.1) and collapsed["cov_emd"] == pytest.approx(0.1)


def test_set_metrics_on_a_hand_worked_distance_matrix():
    # Two generated clouds g0, g1 and three references r0, r1, r2.
    d_gr = np.array([[1.0, 4.0, 2.0],
                     [3.0, 0.5, 5.0]])
    d_gg = np.array([[0.0, 9.0], [9.0, 0.0]])
    d_rr = np.array([[0.0, 1.5, 0.8], [1.5, 0.0, 6.0], [0.8, 6.0, 0.0]])
    assert mmd(d_gr) == pytest.approx((1.0 + 0.5 + 2.0) / 3)      # column minima
    assert coverage(d_gr) == pytest.approx(2 / 3)                   # g0 -> r0, g1 -> r1
    # nearest neighbours: g0 -> r0 (1.0, wrong), g1 -> r1 (0.5, wrong), r0 -> r2 (0.8, right),
    # r1 -> g1 (0.5, wrong), r2 -> r0 (0.8, right): 2 of 5 correct.
    assert one_nna(d_gg, d_rr, d_gr) == pytest.approx(2 / 5)
