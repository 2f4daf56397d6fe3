import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from multidiff.metrics import accuracy, fit_classifier, frechet_distance, predict, trace_sqrt_product


def test_frechet_distance_closed_form_for_gaussians():
    # For N(mu1, s1^2 I) and N(mu2, s2^2 I) in D dims: |mu1-mu2|^2 + D (s1 - s2)^2.
    rng = np.random.default_rng(0)
    d, n = 4, 200_000
    a = rng.normal(0.0, 1.0, (n, d))
    b = rng.normal(0.5, 2.0, (n, d))
    expected = d * 0.5**2 + d * (1.0 - 2.0) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def reference_frechet(a, b):
    """pytorch-fid's way: the general matrix square root of the covariance product (scipy.linalg.sqrtm)."""
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    return diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(np.real(linalg.sqrtm(cov_a @ cov_b)))


@pytest.mark.parametrize("n, d", [(400, 16), (300, 64), (40, 64)])  # the last: singular covariances
def test_frechet_distance_by_eigenvalues_matches_scipy_sqrtm(n, d):
    rng = np.random.default_rng(d + n)
    mixing = rng.normal(size=(d, d))
    a = rng.normal(size=(n, d)) @ mixing
    b = rng.normal(0.3, 1.5, size=(n + 7, d)) @ (mixing + 0.3 * rng.normal(size=(d, d)))
    assert frechet_distance(a, b) == pytest.approx(reference_frechet(a, b), rel=1e-7)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert trace_sqrt_product(cov_a, cov_b) == pytest.approx(trace_sqrt_product(cov_b, cov_a), rel=1e-7)


def test_trace_sqrt_product_of_commuting_matrices():
    # Diagonal S_a, S_b commute: tr((S_a S_b)^(1/2)) = sum sqrt(a_i b_i), zero where either is zero.
    a, b = np.array([4.0, 9.0, 0.0, 2.0]), np.array([1.0, 4.0, 5.0, 8.0])
    assert trace_sqrt_product(np.diag(a), np.diag(b)) == pytest.approx(2 + 6 + 0 + 4)


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_classifier_learns_separable_classes():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=gen) + torch.tensor([3.0, 0.0]) * (torch.arange(400) % 2)[:, None]
    y = torch.arange(400) % 2
    net = fit_classifier(nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2)), x, y, steps=200)
    # Two unit Gaussians 3 apart: the Bayes accuracy is Phi(1.5) = 0.933.
    assert accuracy(predict(net, x), y) > 0.9


def test_time_embedding_follows_the_network_dtype():
    from multidiff.nn.embeddings import TimeEmbedding
    emb = TimeEmbedding(16).double()
    assert emb(torch.rand(3)).dtype == torch.float64
