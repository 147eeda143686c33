"""The loss-landscape math (rdml.analysis.landscape) against independent computations: the PCA against
numpy's SVD in float64, the grid against the official linspace counts, the nearest-point rule against a
brute-force loop, and the grid's losses against a hand-made quadratic loss whose values are known."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import randomise_batch_norm
from rdml.analysis.landscape import (evaluate_grid, evaluate_points, fit_projection, grid_axis, grid_points,
                                     load_vector, moved_vectors, nearest_rows, parameter_names, path_offsets,
                                     trajectory_matrix, training_loss)
from rdml.data.base import load_dataset
from rdml.data.catalog import DataSpec
from rdml.keys import ConfigError
from rdml.models import build_model


def numpy_pca(rows: np.ndarray):
    """Two principal directions of `rows` by numpy's SVD of the centred rows, float64."""
    mean = rows.mean(0)
    _, s, vt = np.linalg.svd(rows - mean, full_matrices=False)
    return mean, vt[:2], (s ** 2 / (s ** 2).sum())[:2]


def aligned(components: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`reference`'s rows with the signs of `components`' (a principal direction's sign is a convention)."""
    return reference * np.sign((components * reference).sum(1))[:, None]


def test_projection_is_numpy_s_svd_of_the_fitted_rows():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(14, 30)) @ np.diag(np.linspace(3, 0.1, 30))
    fit = list(range(10))  # the official fit leaves rows out (pca_start:pca_end)
    projection = fit_projection(matrix, fit)
    mean, components, ratio = numpy_pca(matrix[fit])
    assert np.allclose(projection.mean, mean, atol=1e-12)
    assert np.allclose(projection.components, aligned(projection.components, components), atol=1e-10)
    assert np.allclose(projection.explained_variance_ratio, ratio, atol=1e-10)
    expected = (matrix - mean) @ aligned(projection.components, components).T  # every row, fitted or not
    assert np.allclose(projection.coordinates(matrix), expected, atol=1e-10)
    with pytest.raises(ConfigError, match="at least 3"):
        fit_projection(matrix, [0, 1])


def test_grid_has_the_official_points():
    assert len(grid_axis(-25, 30, 1)) == 56  # README: --x_tuple -25 30 → linspace(-25, 30, 30 - (-25) + 1)
    assert np.array_equal(grid_axis(-10, 10, 0.5), np.linspace(-10, 10, 41))  # --x_tuple -10 10 41 (ResNet-110)
    points = grid_points((0, 2), (5, 6), 1)
    assert points.tolist() == [[0, 5], [0, 6], [1, 5], [1, 6], [2, 5], [2, 6]]  # x outer, y inner (L151–153)
    for bad in [(0, 1, 0.3), (1, 0, 1), (0, 1, 0), (0, math.inf, 1)]:
        with pytest.raises(ConfigError, match="grid"):
            grid_axis(*bad)


def brute_nearest(point, coordinates, candidates):
    best, best_distance = None, math.inf
    for row in candidates:
        distance = math.hypot(point[0] - coordinates[row][0], point[1] - coordinates[row][1])
        if distance < best_distance:  # strictly: the first of equals stays
            best, best_distance = row, distance
    return best


def test_nearest_row_is_the_brute_force_one_and_the_first_of_a_tie():
    rng = np.random.default_rng(1)
    coordinates = rng.normal(size=(20, 2)) * 5
    points = grid_points((-6, 6), (-6, 6), 1)
    candidates = list(range(3, 17))  # some rows are not candidates (the official second OKDPH student)
    found = nearest_rows(points, coordinates, candidates)
    assert found.tolist() == [brute_nearest(p, coordinates, candidates) for p in points]
    tie = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 5.0]])
    assert nearest_rows(np.array([[0.0, 0.0]]), tie, [1, 0, 2]).tolist() == [1]
    assert nearest_rows(np.array([[0.0, 0.0]]), tie, [0, 1, 2]).tolist() == [0]


def test_a_moved_vector_lands_on_its_point_and_keeps_its_row_s_distance_from_the_plane():
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(9, 12))
    projection = fit_projection(matrix, range(9))
    points = rng.normal(size=(5, 2)) * 3
    rows = [0, 3, 3, 8, 5]
    for vector, point, row in zip(moved_vectors(matrix, projection, points, rows), points, rows):
        assert np.allclose(projection.coordinates(vector)[0], point, atol=1e-10)  # the official xy (L134) is the point
        inplane = lambda v: projection.mean + projection.coordinates(v)[0] @ projection.components
        assert np.allclose(vector - inplane(vector), matrix[row] - inplane(matrix[row]), atol=1e-10)


class Quadratic(nn.Module):
    """A parameter vector and a buffer: the loss (w − c)ᵀA(w − c) + shift is known in closed form."""

    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d, dtype=torch.float64))
        self.register_buffer("shift", torch.zeros((), dtype=torch.float64))


def test_grid_losses_of_a_quadratic_on_a_planar_trajectory_are_the_closed_form():
    rng = np.random.default_rng(3)
    d = 8
    basis, _ = np.linalg.qr(rng.normal(size=(d, 2)))  # an orthonormal plane
    origin = rng.normal(size=d)
    a = rng.normal(size=(d, d))
    hessian, centre = a @ a.T / d, rng.normal(size=d)

    def states(k, start):  # a trajectory on the plane, each checkpoint with its own buffer
        t = np.linspace(0, 1, 6)[:, None]
        plane = start + t * rng.normal(size=2) * 4
        return [{"w": torch.tensor(origin + p @ basis.T), "shift": torch.tensor(0.01 * (10 * k + i), dtype=torch.float64)}
                for i, p in enumerate(plane)]

    trajectories = {f"s{k}": states(k, rng.normal(size=2)) for k in range(4)}
    model = Quadratic(d)
    names = parameter_names(model)
    assert names == ["w"]
    trajectory = trajectory_matrix(trajectories, names)
    assert trajectory.matrix.shape == (24, d) and trajectory.splits == [0, 6, 12, 18, 24]
    assert list(trajectory.rows_of("s2")) == list(range(12, 18))
    fit, candidates = range(18), range(18)  # as the official: the last trajectory neither fits nor is a candidate
    projection = fit_projection(trajectory.matrix, fit)
    points = grid_points((-4, 4), (-3, 3), 1)

    def measure(net):
        w = net.w.detach().numpy()
        return {"loss": float((w - centre) @ hessian @ (w - centre) + net.shift)}

    results = evaluate_grid(model, trajectory, projection, points, candidates, names, measure)
    mean, components, _ = numpy_pca(trajectory.matrix[list(fit)])
    components = aligned(projection.components, components)
    coordinates = (trajectory.matrix - mean) @ components.T
    for result, point in zip(results, points):
        row = brute_nearest(point, coordinates, candidates)
        w = mean + point @ components  # on the plane: the point itself, whichever row it came from
        expected = (w - centre) @ hessian @ (w - centre) + 0.01 * (10 * (row // 6) + row % 6)
        assert (result["x"], result["y"], result["row"]) == (point[0], point[1], row)
        assert result["loss"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # the along-path points: every row's own coordinates moved by (−1, 0, 1)², measured from that row
    extra, sources = path_offsets(projection, trajectory.matrix, [0, 7])
    assert len(extra) == 18 and sources == [0] * 9 + [7] * 9
    assert np.allclose(extra[4], coordinates[0], atol=1e-10) and np.allclose(extra[9], coordinates[7] - 1, atol=1e-10)
    along = evaluate_points(model, trajectory, projection, extra, sources, names, measure)
    w = mean + extra[9] @ components
    assert along[9]["loss"] == pytest.approx((w - centre) @ hessian @ (w - centre) + 0.01 * 11, rel=1e-9)


def test_a_checkpoint_goes_back_into_a_network_whole_and_its_training_loss_is_the_cross_entropy():
    data = load_dataset("digits", split_seed=0, test_fraction=0.25)
    torch.manual_seed(0)
    model = build_model("cnn", DataSpec("images", 10, tuple(data.spec.input_shape)))
    states = []
    for seed in range(3):
        copy_ = copy.deepcopy(model)
        randomise_batch_norm(copy_, seed)
        states.append(copy.deepcopy(copy_.state_dict()))
    names = parameter_names(model)
    assert not any("running" in n or "num_batches" in n for n in names)
    trajectory = trajectory_matrix({"a": states}, names, dtype=np.float32)
    assert trajectory.matrix.dtype == np.float32
    assert trajectory.matrix.shape[1] == sum(p.numel() for p in model.parameters())
    load_vector(model, trajectory.matrix[1], trajectory.buffers[1], names)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in states[1].items())
    with pytest.raises(ConfigError, match="values for"):
        load_vector(model, trajectory.matrix[1][:-1], trajectory.buffers[1], names)
    result = training_loss(model, data)
    with torch.no_grad():
        logits = model.eval()(data.inputs(data.x_train)).double()
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, data.y_train).item(), rel=1e-9)
    assert result["accuracy"] == pytest.approx((logits.argmax(-1) == data.y_train).double().mean().item())


def test_landscape_keys_default_to_the_official_script_s_and_refuse_bad_values():
    from rdml.analysis.landscape import landscape_spec

    spec = landscape_spec({"x_bounds": [-25, 30], "y_bounds": [-25, 35]}, 4)
    assert spec == {"x_bounds": [-25.0, 30.0], "y_bounds": [-25.0, 35.0], "step": 1.0, "every": 5,
                    "offsets": [-1.0, 0.0, 1.0], "fit": [0, 1, 2], "candidates": [0, 1, 2]}
    assert landscape_spec({"x_bounds": [-10, 10], "y_bounds": [-25, 25], "step": 0.5, "fit": [1, 2]}, 4)["fit"] == [1, 2]
    for bad, match in [({"x_bounds": [-1, 1]}, "missing y_bounds"), ({"x_bounds": [1, -1], "y_bounds": [0, 1]}, "low < high"),
                       ({"x_bounds": [0, 1], "y_bounds": [0, 1], "step": 0.3}, "whole number"),
                       ({"x_bounds": [0, 1], "y_bounds": [0, 1], "every": 0}, "every=0"),
                       ({"x_bounds": [0, 1], "y_bounds": [0, 1], "fit": [0, 4]}, "fit=\\[0, 4\\]"),
                       ({"x_bounds": [0, 1], "y_bounds": [0, 1], "grid": 1}, "not known"),
                       ({"x_bounds": "0,1", "y_bounds": [0, 1]}, "x_bounds='0,1'")]:
        with pytest.raises(ConfigError, match=match):
            landscape_spec(bad, 4)


def test_surface_interpolates_a_plane_exactly_inside_and_clips_outside():
    from rdml.analysis.landscape import surface

    rng = np.random.default_rng(4)
    x, y = rng.uniform(-5, 5, 200), rng.uniform(-5, 5, 200)
    x, y = np.concatenate([x, [-5, -5, 5, 5]]), np.concatenate([y, [-5, 5, -5, 5]])  # the square's corners: hull = square
    plane = lambda a, b: 0.2 * a - 0.1 * b + 2.0
    xi, yi, zi = surface(x, y, plane(x, y), (-5, 5), (-5, 5), resolution=21, max_loss=2.5)
    assert zi.shape == (21, 21) and np.array_equal(xi, np.linspace(-5, 5, 21))
    X, Y = np.meshgrid(xi, yi)
    assert np.allclose(zi, np.minimum(plane(X, Y), 2.5), atol=1e-9)  # linear interpolation of a plane is the plane
    _, _, outside = surface(x, y, plane(x, y), (-10, 10), (-10, 10), resolution=5, max_loss=9.0)
    assert outside[0, 0] == 9.0 and outside[2, 2] == pytest.approx(2.0)  # beyond the points: max_loss


def test_measure_landscape_is_the_official_main_on_saved_states():
    from rdml.analysis.landscape import measure_landscape, path_checkpoints

    assert path_checkpoints(60) == [0, 1, 2, *range(9, 60, 5)]  # tmp_lst of grid_loss.py L173
    assert path_checkpoints(12) == [0, 1, 2, 9] and path_checkpoints(2) == [0, 1]
    rng = np.random.default_rng(5)
    d = 6
    trajectories = {f"s{k}": [{"w": torch.tensor(rng.normal(size=d)), "shift": torch.tensor(float(k), dtype=torch.float64)}
                              for _ in range(12)] for k in range(4)}
    model = Quadratic(d)

    def measure(net):
        return {"loss": float((net.w.detach().numpy() ** 2).sum() + net.shift)}

    spec = {"x_bounds": [-2, 2], "y_bounds": [-1, 1], "step": 1, "offsets": [0.0, 0.5]}
    result = measure_landscape(model, trajectories, spec, measure)
    names = parameter_names(model)
    trajectory = trajectory_matrix(trajectories, names)
    projection = fit_projection(trajectory.matrix, range(36))  # all but the last trajectory, by default
    coordinates = projection.coordinates(trajectory.matrix)
    assert np.allclose(result["coordinates"]["s3"], coordinates[36:], atol=1e-10)
    points = grid_points((-2, 2), (-1, 1), 1)
    assert result["grid"] == evaluate_grid(model, trajectory, projection, points, range(36), names, measure)
    assert {g["row"] for g in result["grid"]} <= set(range(36))
    around = [k * 12 + i for k in range(3) for i in (0, 1, 2, 9)]
    assert [p["row"] for p in result["path"]] == [row for row in around for _ in range(4)]
    assert np.allclose([[p["x"], p["y"]] for p in result["path"][:4]],
                       coordinates[0] + np.array([[0, 0], [0, 0.5], [0.5, 0], [0.5, 0.5]]), atol=1e-10)
