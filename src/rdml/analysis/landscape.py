"""The loss-landscape trajectories of the OKDPH supplement (§3.1, Figs. 2–5), as the official
experiment/landscape/grid_loss.py (tianlizhang/OKDPH, commit a562089) computes them.

Each student's parameters are saved along training; every saved parameter vector (the state dict's
parameters in its order; the buffers — batch-norm statistics — kept aside, `get_1d_weight` L53–63,
`save_diff` L66–79) is a row of the trajectory matrix. A PCA with two components (scikit-learn,
`pca_traj` L116–128) is fitted on some of the rows (`pca_start:pca_end`, L118: by default all but the
OKDPH run's second student, "similar with ours-S1") and gives every row its plane coordinates. Each
point of a grid over that plane (`calc_grid` L144–168; `np.linspace` bounds, L146–147, one point per
unit by default, L246–249) takes its loss from the trajectory point nearest in the plane (among the
first three trajectories, `mids` L145; Euclidean, first of ties, `np.argmin` L155–157) moved along the
two components by the grid point's offset from it, `matrix[mid] + dx·pc1 + dy·pc2`, with that
checkpoint's buffers (`point_along_traj` L131–141, `vec2net` L83–94); the loss is the mean
cross-entropy over the training set without augmentation in eval mode (`test` L35–50 on the 'base'
loader, src/data/data_loader.py L283–288). `along_path` (L171–191) adds points at offsets (−1, 0, 1)² of
chosen checkpoints, which draw.ipynb interpolates with the grid.

The official checkpoints are written after each epoch and named by its 0-based index (src/01_DML.py L91–112,
src/OKDPH.py L150–152), and the script reads indices 0, 5, …, 295 (L23, L222–224): after rdml's epochs
1, 6, …, 296 (epoch % every == 1), the first being the figures' "initial point" (draw.ipynb plots rows
0, 60 and 120 in crimson), not the weights before training.

Departures: the PCA is exact (`svd_solver="full"`) where `PCA(n_components=2)` lets scikit-learn pick a
randomized solver with no seed for matrices this wide, so the components would differ between runs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rdml.data.base import Dataset
from rdml.keys import ConfigError

__all__ = ["LANDSCAPE_DEFAULTS", "landscape_spec", "Trajectory", "Projection", "parameter_names", "flatten_state", "trajectory_matrix", "fit_projection",
           "grid_axis", "grid_points", "nearest_rows", "moved_vectors", "load_vector", "training_loss",
           "evaluate_grid", "evaluate_points", "path_offsets", "path_checkpoints", "measure_landscape", "measure_trajectory",
           "trajectory_ends", "landscape_of_runs", "surface"]


LANDSCAPE_DEFAULTS = {
    "step": 1.0,  # one grid point per unit when only the bounds are given (grid_loss.py L246-249)
    "every": 5,  # a checkpoint every 5 epochs (--save_epoch 5, L224; epochs 0, 5, ..., 295 of 300, L23)
    "offsets": [-1.0, 0.0, 1.0],  # along_path's dx, dy (--dx/--dy, L232-233)
    "fit": None,  # the trajectories the PCA fits, by index; None: all but the last (pca_end=180 of 240, L118, L235)
    "candidates": None,  # the trajectories grid points start from; None: all but the last (mids 0..179, L145)
}
REQUIRED = ("x_bounds", "y_bounds")  # per backbone and data set in the official README (no default there)


def landscape_spec(spec: dict, trajectories: int) -> dict:
    """A study's landscape keys over LANDSCAPE_DEFAULTS, checked against `trajectories` trajectories (each
    refusal a ConfigError naming the key, its value and what is allowed)."""
    unknown = sorted(set(spec) - set(LANDSCAPE_DEFAULTS) - set(REQUIRED))
    if unknown:
        raise ConfigError(f"landscape: keys {unknown} are not known; allowed: {', '.join((*REQUIRED, *LANDSCAPE_DEFAULTS))}")
    missing = [key for key in REQUIRED if key not in spec]
    if missing:
        raise ConfigError(f"landscape: missing {', '.join(missing)} (each [low, high] of the plane's coordinates)")
    out = {**LANDSCAPE_DEFAULTS, **spec}
    steps = _steps(out["step"])
    for key, step in zip(REQUIRED, steps):
        bounds = out[key]
        if not (isinstance(bounds, (list, tuple)) and len(bounds) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
            raise ConfigError(f"landscape.{key}={bounds!r}: allowed: [low, high], two numbers")
        grid_axis(float(bounds[0]), float(bounds[1]), step)
    every = out["every"]
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"landscape.every={every!r}: allowed: an integer >= 1 (epochs between checkpoints)")
    offsets = out["offsets"]
    if not (isinstance(offsets, (list, tuple)) and offsets and all(isinstance(o, (int, float)) and not isinstance(o, bool)
                                                                   and math.isfinite(o) for o in offsets)):
        raise ConfigError(f"landscape.offsets={offsets!r}: allowed: a non-empty list of finite numbers")
    if trajectories < 2:
        raise ConfigError(f"landscape: {trajectories} trajectories; allowed: at least 2")
    chosen = {}
    for key in ("fit", "candidates"):
        value = out[key] if out[key] is not None else list(range(trajectories - 1))
        if not (isinstance(value, (list, tuple)) and value and len(set(value)) == len(value)
                and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < trajectories for i in value)):
            raise ConfigError(f"landscape.{key}={out[key]!r}: allowed: distinct trajectory indices in 0..{trajectories - 1}")
        chosen[key] = sorted(value)
    return {"x_bounds": [float(b) for b in out["x_bounds"]], "y_bounds": [float(b) for b in out["y_bounds"]],
            "step": steps[0] if steps[0] == steps[1] else list(steps), "every": every, "offsets": [float(o) for o in offsets], **chosen}


def _steps(step) -> tuple[float, float]:
    """The grid's step along x and along y: one number for both, or [x, y] (grid_loss.py takes a point
    count per axis, `--x_tuple -10 10 41 --y_tuple -25 25 51`: steps 0.5 and 1, experiment/landscape/README.md)."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if number(step):
        return float(step), float(step)
    if isinstance(step, (list, tuple)) and len(step) == 2 and all(number(v) for v in step):
        return float(step[0]), float(step[1])
    raise ConfigError(f"landscape.step={step!r}: allowed: a number > 0, or [x, y], two numbers > 0")


def parameter_names(model: nn.Module) -> list[str]:
    """The state-dict keys that are parameters, in the state dict's order (grid_loss.py L67–69, L58)."""
    names = {name for name, _ in model.named_parameters()}
    return [key for key in model.state_dict() if key in names]


def flatten_state(state: dict, names: Sequence[str], dtype=np.float64) -> tuple[np.ndarray, dict]:
    """One checkpoint's parameters as one vector of `dtype` (the `names`, in order) and its other entries
    (buffers: batch-norm statistics), kept as they are (get_1d_weight L53–63)."""
    missing = [name for name in names if name not in state]
    if missing:
        raise ConfigError(f"landscape: a checkpoint lacks parameters {missing[:5]}; it is not of this architecture")
    vector = np.concatenate([state[name].detach().cpu().double().reshape(-1).numpy().astype(dtype) for name in names])
    named = set(names)
    return vector, {key: value.detach().cpu().clone() for key, value in state.items() if key not in named}


@dataclass
class Trajectory:
    """The saved states of every trajectory: `matrix` (one row per checkpoint), the buffers of
    each row, the label of each trajectory and the rows where each starts (`splits`, grid_loss.py L20–28)."""

    matrix: np.ndarray
    buffers: list[dict]
    labels: list[str]
    splits: list[int]

    def rows_of(self, label: str) -> range:
        k = self.labels.index(label)
        return range(self.splits[k], self.splits[k + 1])


def trajectory_matrix(trajectories: dict[str, Sequence[dict]], names: Sequence[str], dtype=np.float64) -> Trajectory:
    """Every checkpoint of every trajectory (label → states in training order) stacked, in the labels'
    order, as `dtype` (float32, as the official matrix, L74–77, halves the memory of a wide network);
    every trajectory must have at least one state."""
    rows, buffers, splits = [], [], [0]
    for label, states in trajectories.items():
        if not states:
            raise ConfigError(f"landscape: trajectory {label!r} has no saved states")
        for state in states:
            vector, rest = flatten_state(state, names, dtype)
            rows.append(vector)
            buffers.append(rest)
        splits.append(len(rows))
    return Trajectory(np.stack(rows), buffers, list(trajectories), splits)


@dataclass
class Projection:
    """The plane of the two principal components: `mean` (d,), `components` (2, d, orthonormal rows) and
    the fraction of variance each explains; `coordinates(v) = (v − mean)·componentsᵀ` (PCA.transform)."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    def coordinates(self, vectors: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(vectors) - self.mean) @ self.components.T


def fit_projection(matrix: np.ndarray, rows: Iterable[int]) -> Projection:
    """scikit-learn's PCA with two components fitted on `rows` of the trajectory matrix (grid_loss.py
    L116–118), exact (svd_solver="full") so that a rerun finds the same plane."""
    from sklearn.decomposition import PCA

    rows = list(rows)
    if len(rows) < 3:
        raise ConfigError(f"landscape: the PCA needs at least 3 checkpoints to fit two components, got {len(rows)}")
    pca = PCA(n_components=2, svd_solver="full").fit(matrix[rows])
    return Projection(pca.mean_.astype(np.float64), pca.components_.astype(np.float64),
                      pca.explained_variance_ratio_.astype(np.float64))


def grid_axis(low: float, high: float, step: float) -> np.ndarray:
    """np.linspace(low, high, n) with n = (high − low)/step + 1 points (grid_loss.py L146–147; L246–249:
    step 1 when the bounds come alone); the bounds must be a whole number of steps apart."""
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"landscape: grid bounds ({low}, {high}): allowed: finite numbers, low < high")
    if not (math.isfinite(step) and step > 0):
        raise ConfigError(f"landscape: grid step {step}: allowed: a finite number > 0")
    steps = (high - low) / step
    if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
        raise ConfigError(f"landscape: grid bounds ({low}, {high}) are not a whole number of steps {step} apart")
    return np.linspace(low, high, int(round(steps)) + 1)


def grid_points(x_bounds: Sequence[float], y_bounds: Sequence[float], step) -> np.ndarray:
    """Every grid point (x, y), x in the outer loop and y in the inner (grid_loss.py L151–153), (n, 2);
    `step`: one for both axes or (x, y)."""
    x_step, y_step = _steps(step)
    xs, ys = grid_axis(*x_bounds, x_step), grid_axis(*y_bounds, y_step)
    return np.array([(x, y) for x in xs for y in ys], dtype=np.float64)


def nearest_rows(points: np.ndarray, coordinates: np.ndarray, candidates: Sequence[int]) -> np.ndarray:
    """For each point, the candidate row whose plane coordinates are nearest (Euclidean; the first
    candidate of a tie, as np.argmin, grid_loss.py L155–157)."""
    candidates = np.asarray(list(candidates))
    if candidates.size == 0:
        raise ConfigError("landscape: no trajectory points to measure the grid from")
    distances = np.linalg.norm(points[:, None, :] - coordinates[candidates][None, :, :], axis=-1)
    return candidates[np.argmin(distances, axis=1)]


def moved_vectors(matrix: np.ndarray, projection: Projection, points: np.ndarray, rows: Sequence[int]):
    """Per point, the parameter vector of its row moved along the components by the point's offset from
    the row in the plane: matrix[row] + dx·pc1 + dy·pc2 (grid_loss.py L132, L158–159), yielded lazily."""
    coordinates = projection.coordinates(matrix[np.asarray(rows)])
    for point, row, coordinate in zip(points, rows, coordinates):
        offset = point - coordinate
        yield matrix[row] + offset[0] * projection.components[0] + offset[1] * projection.components[1]


@torch.no_grad()
def load_vector(model: nn.Module, vector: np.ndarray, buffers: dict, names: Sequence[str]) -> nn.Module:
    """`model` with its parameters `names` cut from `vector` in order and its other state from `buffers`
    (vec2net, grid_loss.py L83–94), each in the model's dtype and device."""
    state, offset = {}, 0
    current = model.state_dict()
    expected = sum(current[name].numel() for name in names)
    if expected != len(vector):
        raise ConfigError(f"landscape: a vector of {len(vector)} values for {expected} parameters")
    for name in names:
        size = current[name].numel()
        state[name] = torch.from_numpy(np.asarray(vector[offset : offset + size])).reshape(current[name].shape)
        offset += size
    state.update(buffers)
    model.load_state_dict({k: v.to(current[k].device, current[k].dtype) for k, v in state.items()})
    return model


@torch.no_grad()
def training_loss(model: nn.Module, data: Dataset, batch_size: int = 1024) -> dict:
    """Mean cross-entropy (nats) and accuracy over the labelled training rows, without augmentation, eval
    mode (grid_loss.py `test`, L35–50, on the unaugmented training loader); summed in float64."""
    model.eval()
    loss, correct, total = 0.0, 0, 0
    for x, y in data.eval_batches("train", batch_size):
        keep = y >= 0
        logits = model(x)[keep].double()
        loss += float(F.cross_entropy(logits, y[keep], reduction="sum"))
        correct += int((logits.argmax(-1) == y[keep]).sum())
        total += int(keep.sum())
    if total == 0:
        raise ConfigError(f"landscape: dataset {data.name} has no labelled training rows")
    return {"loss": loss / total, "accuracy": correct / total}


def evaluate_grid(model: nn.Module, trajectory: Trajectory, projection: Projection, points: np.ndarray,
                  candidates: Sequence[int], names: Sequence[str], measure: Callable[[nn.Module], dict]) -> list[dict]:
    """Each point's (x, y), nearest row among `candidates` and `measure(model)` (e.g. training_loss) with the
    model holding that row's parameters moved to the point and that row's buffers (calc_grid, L144–168)."""
    rows = nearest_rows(points, projection.coordinates(trajectory.matrix), candidates)
    return evaluate_points(model, trajectory, projection, points, rows, names, measure)


def evaluate_points(model: nn.Module, trajectory: Trajectory, projection: Projection, points: np.ndarray,
                    rows: Sequence[int], names: Sequence[str], measure: Callable[[nn.Module], dict]) -> list[dict]:
    """Each point measured from the given row (point_along_traj, L131–141; along_path gives the rows itself)."""
    results = []
    for point, row, vector in zip(points, rows, moved_vectors(trajectory.matrix, projection, points, rows)):
        load_vector(model, vector, trajectory.buffers[row], names)
        results.append({"x": float(point[0]), "y": float(point[1]), "row": int(row), **measure(model)})
    return results


def path_offsets(projection: Projection, matrix: np.ndarray, rows: Sequence[int],
                 offsets: Sequence[float] = (-1.0, 0.0, 1.0)) -> tuple[np.ndarray, list[int]]:
    """The extra points of `along_path` (grid_loss.py L171–191): each chosen row's plane coordinates moved by
    every (dx, dy) of `offsets`², with the row each comes from (for evaluate_grid's measure of a given row)."""
    coordinates = projection.coordinates(matrix[np.asarray(list(rows))])
    points, sources = [], []
    for row, coordinate in zip(rows, coordinates):
        for dx in offsets:
            for dy in offsets:
                points.append(coordinate + np.array([dx, dy]))
                sources.append(int(row))
    return np.array(points), sources


def surface(x: Sequence[float], y: Sequence[float], loss: Sequence[float], x_bounds: Sequence[float],
            y_bounds: Sequence[float], resolution: int = 101, max_loss: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The measured losses (grid and along-path points) linearly interpolated on a Delaunay triangulation
    onto a `resolution`² mesh, losses above `max_loss` and points outside the triangulation set to
    `max_loss` (draw.ipynb: `interpolator`, tri.LinearTriInterpolator on 101 × 101 points; `draw_one`, zi
    clipped at max_val = 4 on CIFAR-10 and 6 on CIFAR-100, NaN to max_val, contour levels arange(0, max_val,
    interval)). Returns the mesh's x, y and the (len(y), len(x)) losses."""
    import matplotlib.tri as tri

    if resolution < 2 or not (math.isfinite(max_loss) and max_loss > 0):
        raise ConfigError(f"landscape: surface resolution={resolution}, max_loss={max_loss}: allowed: resolution >= 2, "
                          "max_loss a finite number > 0")
    interpolate = tri.LinearTriInterpolator(tri.Triangulation(np.asarray(x, float), np.asarray(y, float)),
                                            np.asarray(loss, float))
    xi = np.linspace(x_bounds[0], x_bounds[1], resolution)
    yi = np.linspace(y_bounds[0], y_bounds[1], resolution)
    zi = np.ma.filled(interpolate(*np.meshgrid(xi, yi)).astype(float), np.nan)
    zi[np.isnan(zi)] = max_loss
    return xi, yi, np.minimum(zi, max_loss)


def path_checkpoints(count: int) -> list[int]:
    """The checkpoints of a trajectory `along_path` measures around: the first three, then every fifth from
    the tenth (tmp_lst = [0, 1, 2, 9, 14, ..., 59] of 60, grid_loss.py L173), within `count`."""
    return [i for i in (0, 1, 2) if i < count] + list(range(9, count, 5))


def measure_landscape(model: nn.Module, trajectories: dict[str, Sequence[dict]], spec: dict,
                      measure: Callable[[nn.Module], dict], dtype=np.float64) -> dict:
    """grid_loss.py's `main` (L194–203) on saved states (label → states in training order, the OKDPH students
    last): their trajectory matrix measured by measure_trajectory."""
    names = parameter_names(model)
    return measure_trajectory(model, trajectory_matrix(trajectories, names, dtype), spec, measure)


def measure_trajectory(model: nn.Module, trajectory: Trajectory, spec: dict, measure: Callable[[nn.Module], dict]) -> dict:
    """grid_loss.py's `main` (L194–203) on a trajectory matrix: the PCA fitted on spec's `fit` trajectories,
    every trajectory's plane coordinates, the grid measured from the nearest checkpoint of the `candidates`
    trajectories and the along-path points around their path_checkpoints (L174–176); then rdml's summary of
    each trajectory's end (`ends`, trajectory_ends). `model` is the architecture the rows load into (its
    weights are overwritten), `measure` e.g. training_loss."""
    spec = landscape_spec(spec, len(trajectory.labels))
    names = parameter_names(model)
    labels = trajectory.labels
    fit = [row for k in spec["fit"] for row in trajectory.rows_of(labels[k])]
    candidates = [row for k in spec["candidates"] for row in trajectory.rows_of(labels[k])]
    projection = fit_projection(trajectory.matrix, fit)
    coordinates = projection.coordinates(trajectory.matrix)
    points = grid_points(spec["x_bounds"], spec["y_bounds"], spec["step"])
    grid = evaluate_grid(model, trajectory, projection, points, candidates, names, measure)
    around = [trajectory.rows_of(labels[k])[i] for k in spec["candidates"]
              for i in path_checkpoints(len(trajectory.rows_of(labels[k])))]
    extra, sources = path_offsets(projection, trajectory.matrix, around, spec["offsets"])
    path = evaluate_points(model, trajectory, projection, extra, sources, names, measure)
    return {"spec": spec, "labels": labels,
            "coordinates": {label: coordinates[list(trajectory.rows_of(label))].tolist() for label in labels},
            "explained_variance_ratio": projection.explained_variance_ratio.tolist(), "grid": grid, "path": path,
            "ends": trajectory_ends(model, trajectory, projection, spec["offsets"], names, measure)}


def trajectory_ends(model: nn.Module, trajectory: Trajectory, projection: Projection, offsets: Sequence[float],
                    names: Sequence[str], measure: Callable[[nn.Module], dict]) -> dict[str, dict]:
    """rdml's number for "a broader and flatter basin" (OKDPH supplement §3.1, which judges the figures by eye;
    not in grid_loss.py): per trajectory, the loss at its last checkpoint (`loss`) and the mean rise of the loss
    at its neighbours in the plane, the points offsets² away but itself, with that checkpoint's buffers
    (`rise`, as along_path moves a checkpoint, L171–191). A lower rise: a flatter end in the plane's two
    directions."""
    if not any(o != 0 for o in offsets):
        raise ConfigError(f"landscape.offsets={list(offsets)}: the rise at a trajectory's end needs a non-zero offset")
    ends = {}
    for label in trajectory.labels:
        last = trajectory.rows_of(label)[-1]
        centre = projection.coordinates(trajectory.matrix[last])
        around, sources = path_offsets(projection, trajectory.matrix, [last], offsets)
        keep = [i for i, point in enumerate(around) if (point != centre[0]).any()]  # the checkpoint itself: once
        measured = evaluate_points(model, trajectory, projection, np.concatenate([centre, around[keep]]),
                                   [last] * (len(keep) + 1), names, measure)
        loss = measured[0]["loss"]
        ends[label] = {"row": int(last), "loss": loss, "rise": float(np.mean([m["loss"] for m in measured[1:]]) - loss)}
    return ends


def landscape_of_runs(run, partner, data: Dataset, spec: dict, device: torch.device) -> dict:
    """Figs. 2–5 of the OKDPH supplement for one method's run (`run`, rdml.train.verified) and OKDPH's
    (`partner`): each student's networks at every epoch the run kept (its record's `kept_epochs`, `every` apart,
    each file checked by load_kept_epoch) as four trajectories, the run's students first (grid_loss.py L239–240:
    the method's folder, then ours; L226: net0, net1), measured by measure_trajectory with the mean training
    cross-entropy (training_loss). The matrix is float32, as grid_loss.py's (L74–77)."""
    from rdml.train.checkpoint import load_kept_epoch

    runs = {"": run, "partner.": partner}  # label prefix → run
    kept = {prefix: _kept_every(each, spec.get("every", LANDSCAPE_DEFAULTS["every"])) for prefix, each in runs.items()}
    model, names, matrix, rows, labels, splits = None, None, None, {}, [], [0]
    for prefix, each in runs.items():
        for position, epoch in enumerate(kept[prefix]):
            cohort, method = load_kept_epoch(each.directory, epoch, data, device, prefix="landscape: ")
            if method is not None:
                raise ConfigError(f"landscape: {each.directory} holds the networks method {method.cfg.method} declares; "
                                  "the landscape compares runs of one network per student")
            if model is None:  # the architecture every row loads into; the matrix allocated once (float32: L74–77)
                model, students = copy.deepcopy(cohort[0].model), len(cohort)
                names = parameter_names(model)
                width = sum(model.state_dict()[name].numel() for name in names)
                matrix = np.empty((students * sum(len(e) for e in kept.values()), width), dtype=np.float32)
            if len(cohort) != students:
                raise ConfigError(f"landscape: {each.directory} has {len(cohort)} students, {run.directory} {students}")
            for k, network in enumerate(cohort):
                row = splits[-1] + k * len(kept[prefix]) + position  # student k's rows follow student k−1's
                matrix[row], rows[row] = flatten_state(network.model.state_dict(), names, np.float32)
        for k in range(students):
            labels.append(f"{prefix}student_{k}")
            splits.append(splits[-1] + len(kept[prefix]))
    trajectory = Trajectory(matrix, [rows[row] for row in range(len(matrix))], labels, splits)
    return measure_trajectory(model, trajectory, spec, lambda net: training_loss(net, data))


def _kept_every(run, every: int) -> list[int]:
    """The epochs `run` kept (its record's `kept_epochs`), refused unless they are every `every`th from the first
    (keep_every: rdml epochs 1, 1+every, …; the official checkpoints 0, 5, … counted from 0)."""
    epochs = sorted(int(e) for e in run.record.get("kept_epochs") or {})
    if not epochs or epochs != list(range(1, epochs[-1] + 1, every)):
        raise ConfigError(f"landscape: run {run.directory} kept epochs {epochs[:4]}{'…' if len(epochs) > 4 else ''}, not "
                          f"every {every} from the first: train it with keep_every={every}")
    return epochs
