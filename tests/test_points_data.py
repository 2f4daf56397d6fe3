"""Point-cloud loaders (meshes, point files, the ModelNet PLY, bad files), the cache, normalisation."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from modalities.points import PointsEncoder
from modalities.points.data import PointCloudSet, load_cloud, load_folder
from modalities.points.normalize import global_standardisation, unit_sphere
from modalities.points.synthetic import PRIMITIVES, primitives

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PC1024 = DATA / "modelnet10-pc1024"
MESHES = DATA / "modelnet10-meshes-sample"
needs_pc = pytest.mark.skipif(not PC1024.is_dir(), reason=f"ModelNet10 point clouds not found at {PC1024}")
needs_meshes = pytest.mark.skipif(not MESHES.is_dir(), reason=f"ModelNet10 mesh sample not found at {MESHES}")


def read_ply_vertices_by_hand(path: Path) -> np.ndarray:
    """An independent parse of a binary little-endian PLY: the header's vertex count, then x, y, z float32."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    assert header[1] == "format binary_little_endian 1.0"
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    first_element = next(line for line in header if line.startswith("element"))
    assert first_element.startswith("element vertex")       # vertices come first in the body
    return np.frombuffer(raw, dtype="<f4", count=3 * count, offset=end).reshape(count, 3)


@needs_pc
def test_modelnet_ply_with_a_camera_element_loads_exactly():
    path = PC1024 / "chair" / "train" / "chair_0001.ply"
    assert b"element camera" in path.read_bytes()[:2000]
    np.testing.assert_array_equal(load_cloud(path, 1024), read_ply_vertices_by_hand(path))


@needs_pc
def test_modelnet_folder_split_labels_and_point_subsampling():
    ds = load_folder(PC1024, "test", n_points=256, categories=["chair", "bathtub"], max_per_class=3,
                     normalize="none")
    assert ds.class_names == ["chair", "bathtub"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert all(p.parent.name == "test" for p in ds.files)
    full = read_ply_vertices_by_hand(ds.files[0])
    rows = {tuple(r) for r in full.tolist()}
    sub = ds.clouds[0].numpy()
    assert sub.shape == (256, 3) and len({tuple(r) for r in sub.tolist()}) == 256
    assert all(tuple(r) in rows for r in sub.tolist())      # a subset of the file's points, no repeats


def malformed_copy(src: Path, dst: Path) -> Path:
    """ModelNet's header defect: the counts on the "OFF" line itself."""
    lines = src.read_text().splitlines()
    assert lines[0].strip() == "OFF"
    dst.write_text("\n".join([f"OFF{lines[1]}"] + lines[2:]) + "\n")
    return dst


@needs_meshes
def test_off_meshes_including_a_malformed_header_sample_points_on_the_surface(tmp_path):
    src = MESHES / "chair" / "test" / "chair_0890.off"
    bad = malformed_copy(src, tmp_path / "chair_0890.off")
    points = load_cloud(bad, 200, seed=3)
    np.testing.assert_array_equal(points, load_cloud(src, 200, seed=3))
    mesh = trimesh.load(src, force="mesh")
    assert on_some_triangle(points.astype(np.float64), mesh.triangles, tol=1e-4 * mesh.scale).all()


def on_some_triangle(points: np.ndarray, triangles: np.ndarray, tol: float) -> np.ndarray:
    """Whether each point lies within ``tol`` of the plane of a triangle and inside it (barycentric test)."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    normal = np.cross(b - a, c - a)
    area2 = np.linalg.norm(normal, axis=1)
    keep = area2 > 0
    a, b, c, normal, area2 = a[keep], b[keep], c[keep], normal[keep] / area2[keep, None], area2[keep]
    rel = points[:, None] - a[None]                                   # (P, F, 3)
    height = np.abs((rel * normal[None]).sum(-1))
    # signed sub-areas against the unit normal give the barycentric coordinates
    u = (np.cross(b - a, rel) * normal).sum(-1) / area2
    v = (np.cross(rel, c - a) * normal).sum(-1) / area2
    slack = 1e-6
    return ((height < tol) & (u >= -slack) & (v >= -slack) & (u + v <= 1 + slack)).any(axis=1)


@needs_meshes
def test_mesh_sample_folder_loads_its_test_split(tmp_path):
    ds = load_folder(MESHES, "test", n_points=64, cache=tmp_path)
    assert ds.class_names == ["bathtub", "bed", "chair", "desk"]
    assert len(ds) == 48 and ds.clouds.shape == (48, 64, 3)
    assert torch.allclose(ds.clouds.norm(dim=-1).amax(-1), torch.ones(48))   # unit sphere by default


def test_mesh_samples_are_cached_by_path_mtime_count_and_seed(tmp_path):
    mesh_file = tmp_path / "box.off"
    trimesh.creation.box().export(mesh_file)
    cache = tmp_path / "cache"
    first = load_cloud(mesh_file, 100, seed=1, cache=cache)
    assert len(list(cache.iterdir())) == 1
    np.testing.assert_array_equal(load_cloud(mesh_file, 100, seed=1, cache=cache), first)
    load_cloud(mesh_file, 100, seed=2, cache=cache)
    load_cloud(mesh_file, 50, seed=1, cache=cache)
    os.utime(mesh_file, ns=(1, 1))
    load_cloud(mesh_file, 100, seed=1, cache=cache)
    assert len(list(cache.iterdir())) == 4


def write_category(root: Path, name: str, files: dict[str, bytes | None]) -> None:
    folder = root / name / "train"
    folder.mkdir(parents=True)
    for file, content in files.items():
        if content is None:
            trimesh.creation.icosphere(1).export(folder / file)
        else:
            (folder / file).write_bytes(content)


def test_bad_files_raise_naming_the_file_or_are_skipped_and_counted(tmp_path, caplog):
    no_faces = b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n"
    write_category(tmp_path, "ball", {"a.off": None, "b.off": b"this is not a mesh", "c.off": no_faces,
                                      "d.stl": None})
    with pytest.raises(ValueError, match="b.off"):
        load_folder(tmp_path, "train", n_points=32)
    with pytest.raises(ValueError, match="c.off: mesh has no faces"):
        load_cloud(tmp_path / "ball" / "train" / "c.off", 32)
    ds = load_folder(tmp_path, "train", n_points=32, skip_bad_files=True)
    assert len(ds) == 2 and [p.name for p, _ in ds.skipped] == ["b.off", "c.off"]
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("/")[-1].split(":")[0] for line in lines[:2]] == ["b.off", "c.off"]
    assert lines[2].startswith("skipped 2 of 4 train files under")
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        load_cloud(tmp_path / "missing.ply", 32)


def test_npy_point_files_are_subsampled_or_refused_when_too_small(tmp_path):
    points = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    np.save(tmp_path / "cloud.npy", points)
    sub = load_cloud(tmp_path / "cloud.npy", 25)
    assert {tuple(r) for r in sub.tolist()} <= {tuple(r) for r in points.tolist()}
    assert len({tuple(r) for r in sub.tolist()}) == 25
    with pytest.raises(ValueError, match="fewer than the 41"):
        load_cloud(tmp_path / "cloud.npy", 41)
    np.save(tmp_path / "flat.npy", points[:, :2])
    with pytest.raises(ValueError, match=r"flat.npy: expected an array of shape \(M, 3\)"):
        load_cloud(tmp_path / "flat.npy", 10)


def test_a_category_without_split_folders_sends_every_fifth_file_to_test(tmp_path):
    folder = tmp_path / "thing"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(10):
        np.save(folder / f"{i:02d}.npy", rng.normal(size=(8, 3)))
    test = load_folder(tmp_path, "test", n_points=8)
    train = load_folder(tmp_path, "train", n_points=8)
    assert [p.name for p in test.files] == ["04.npy", "09.npy"] and len(train) == 8


def test_unit_sphere_normalisation_round_trip():
    rng = np.random.default_rng(2)
    cloud = rng.normal(size=(100, 3)) * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]
    t = unit_sphere(cloud)
    normalised = t.apply(cloud)
    assert np.allclose(normalised.mean(0), 0, atol=1e-12)
    assert np.linalg.norm(normalised, axis=1).max() == pytest.approx(1.0)
    np.testing.assert_allclose(t.invert(normalised), cloud, atol=1e-12)
    ds = PointCloudSet(cloud[None].astype(np.float32), np.array([0]), ["x"], "unit_sphere")
    np.testing.assert_allclose(ds.transforms[0].invert(ds.clouds[0].numpy()), cloud, rtol=1e-5, atol=1e-5)


def test_global_standardisation_follows_pvd_and_the_encoder_round_trips():
    rng = np.random.default_rng(3)
    clouds = (rng.normal(size=(5, 20, 3)) * [1.0, 2.0, 3.0] + [1.0, 0.0, -1.0]).astype(np.float32)
    flat = clouds.reshape(-1, 3).astype(np.float64)
    t = global_standardisation(clouds)
    np.testing.assert_allclose(t.centre, flat.mean(0))
    assert t.scale == pytest.approx(np.sqrt(((flat.reshape(-1) - flat.mean()) ** 2).mean()))
    encoder = PointsEncoder("global")
    encoder.fit(PointCloudSet(clouds, np.zeros(5), [], "global"))
    x = torch.from_numpy(clouds)
    z, _ = encoder.encode(x)
    assert torch.allclose(z.reshape(-1, 3).mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(encoder.decode(z), x, atol=1e-5)
    same = PointsEncoder("unit_sphere")
    same.fit(PointCloudSet(clouds, np.zeros(5), [], "unit_sphere"))
    assert torch.equal(same.decode(same.encode(x)[0]), x)


def test_synthetic_primitives_are_seeded_and_on_their_surfaces():
    a = primitives("train", per_class=3, n_points=200, seed=4, normalize="none")
    b = primitives("train", per_class=3, n_points=200, seed=4, normalize="none")
    c = primitives("test", per_class=3, n_points=200, seed=4, normalize="none")
    assert torch.equal(a.clouds, b.clouds) and not torch.equal(a.clouds, c.clouds)
    assert a.class_names == list(PRIMITIVES) and a.labels.tolist() == [i for i in range(5) for _ in range(3)]
    radii = a.clouds[0].norm(dim=-1)                # a sphere centred at the origin
    assert radii.min() > 0.97 * radii.max()         # flat icosphere facets sit just inside the sphere
    torus = a.clouds[a.labels == PRIMITIVES.index("torus")][0].double()
    ring = (torus[:, :2].norm(dim=-1) - 1.0) ** 2 + torus[:, 2] ** 2    # major radius 1: a constant minor r^2
    assert ring.std() < 0.05 * ring.mean()
    with pytest.raises(ValueError, match="unknown primitives"):
        primitives("train", per_class=1, n_points=8, categories=["pyramid"])
