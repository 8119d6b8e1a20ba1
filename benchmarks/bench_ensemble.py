"""Benchmark the ensemble search and the live metrics; prints one JSON object.

Measured in one process, on synthetic predictions of 4 models x 2,132 validation images (the
paper's validation size; 68% ALL, models of different skill):

1. ``ga``: :class:`cnmc_core.ensemble.GeneticWeights` at the paper's settings (population 100,
   100 generations, tournament 5, average crossover 0.4 of 2 genes, mutation 0.005 of crossover
   children, 10 restarts: the paper notebook's operators), whole population scored per
   generation. Goal: under 2 s in all. ``ga_mean``: the earlier variant
   (:class:`cnmc_core.ensemble.MeanCrossoverGA`), same settings, for reference.
2. ``ga_sklearn_one_at_a_time``: the very same GA (same code, same operators, same seeds) with a
   fitness that scores one individual at a time with ``np.average`` + ``sklearn.metrics.f1_score``
   (``np.rint`` semantics: ALL above 0.5, as the paper's fitness).
   By default it runs 1 restart x ``--baseline-generations`` generations and the full-run time is
   extrapolated per evaluation (the output says so); ``--full-baseline`` runs it all (minutes).
   Goal: ours at least 30x faster.
3. ``pygad`` (if installed): PyGAD with the same settings and whole-vector average crossover and
   mutation of any child (``ga_mean``'s operators) as custom crossover/mutation callables,
   fitness scored per batch with our vectorised metric, no elitism, 10 restarts: it times
   PyGAD's engine, not the operators.
4. ``metrics_recompute``: one weight vector -> soft vote -> ``binary_report(curves=True)``
   (accuracy, weighted F1, per-class P/R/F1, confusion, ROC and PR points, AUC) at 2,133 and
   100,000 images, against the same set computed with scikit-learn. Goals: under 5 ms and
   150 ms.

Usage: ``python benchmarks/bench_ensemble.py [--repeats 3] [--baseline-generations 10]
[--full-baseline] [--no-pygad]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnmc_core import ensemble as E  # noqa: E402
from cnmc_core.ensemble import genetic  # noqa: E402
from cnmc_core.metrics.classification import weighted_f1_many  # noqa: E402
from cnmc_core.metrics.report import binary_report  # noqa: E402

PAPER = dict(population_size=100, generations=100, tournament_size=5, crossover_rate=0.4,
             mutation_rate=0.005, restarts=10)


def synthetic(n: int, m: int = 4, seed: int = 0):
    """Labels (68% ALL) and m models' P(ALL) of different skill, as a (n, m) matrix."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.68).astype(np.int8)
    shared = rng.normal(0, 1, n)  # images that are hard for every model
    cols = []
    for skill in np.linspace(1.0, 1.6, m):
        z = skill * (2 * y - 1) + 0.6 * shared + 0.8 * rng.normal(0, 1, n)
        cols.append(1 / (1 + np.exp(-z)))
    return y, np.column_stack(cols)


class SklearnOneAtATime:
    """Drop-in for the GA's fitness: one individual at a time, sklearn's f1_score."""

    def __init__(self, X, y, threshold=0.5, strict=False):
        from sklearn.metrics import f1_score

        self.f1_score = f1_score
        self.X, self.y, self.threshold, self.strict = X, y, threshold, strict
        self.XT = np.ascontiguousarray(X.T)
        self.evaluations = 0

    def __call__(self, W):
        out = np.empty(W.shape[0])
        for i, w in enumerate(W):
            prob = np.average(self.X, axis=1, weights=w)
            pred = prob > self.threshold if self.strict else prob >= self.threshold
            out[i] = self.f1_score(self.y, pred.astype(int), average="weighted")
        self.evaluations += W.shape[0]
        return out


def time_ga(X, y, repeats: int, cls=E.GeneticWeights) -> dict:
    times, fitted = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        fitted = cls(seed=0, **PAPER).fit(X, y)
        times.append(time.perf_counter() - t)
    return {"seconds_median": statistics.median(times), "seconds_min": min(times),
            "repeats": repeats, "evaluations": fitted.n_evaluations_,
            "best_val_weighted_f1": fitted.best_fitness_, "weights": fitted.weights_.tolist()}


def time_baseline(X, y, generations: int | None) -> dict:
    """The same GA with the sklearn one-at-a-time fitness swapped in."""
    params = dict(PAPER)
    if generations is not None:
        params.update(restarts=1, generations=generations)
    original = genetic.Fitness  # the name the GA's loop looks up
    genetic.Fitness = SklearnOneAtATime
    try:
        t = time.perf_counter()
        fitted = E.GeneticWeights(seed=0, **params).fit(X, y)
        seconds = time.perf_counter() - t
    finally:
        genetic.Fitness = original
    full_evals = PAPER["restarts"] * (PAPER["generations"] + 1) * PAPER["population_size"]
    per_eval = seconds / fitted.n_evaluations_
    out = {"measured_seconds": seconds, "measured_evaluations": fitted.n_evaluations_,
           "seconds_per_evaluation": per_eval, "full_run_evaluations": full_evals}
    if generations is None:
        out.update(seconds_full_run=seconds, extrapolated=False, weights=fitted.weights_.tolist())
    else:
        out.update(seconds_full_run=per_eval * full_evals, extrapolated=True,
                   note=f"ran 1 restart x {generations} generations "
                        f"({fitted.n_evaluations_} evaluations) and scaled per evaluation to "
                        f"{full_evals} evaluations (10 restarts x 101 populations x 100)")
        # the same seed and operators: the first restart's best must match ours
        ours = E.GeneticWeights(seed=0, **params).fit(X, y)
        out["same_result_as_vectorised"] = bool(np.allclose(ours.weights_, fitted.weights_))
    return out


def time_pygad(X, y, repeats: int) -> dict:
    try:
        import pygad
    except ImportError:
        return {"skipped": "pygad is not installed (pip install pygad)"}
    XT = np.ascontiguousarray(X.T)
    m = X.shape[1]

    def fitness(ga, solutions, idx):
        W = np.atleast_2d(solutions)
        W = W / W.sum(axis=1, keepdims=True)
        return weighted_f1_many(y, W @ XT, 0.5).tolist()

    def crossover(parents, offspring_size, ga):  # average crossover with p = 0.4
        out = np.empty(offspring_size)
        rng = ga.random_generator if hasattr(ga, "random_generator") else np.random
        for k in range(0, offspring_size[0], 2):
            a, b = parents[k % len(parents)], parents[(k + 1) % len(parents)]
            if rng.random() < PAPER["crossover_rate"]:
                a = b = (a + b) / 2
            out[k] = a
            if k + 1 < offspring_size[0]:
                out[k + 1] = b
        return out / out.sum(axis=1, keepdims=True)

    def mutation(offspring, ga):  # one gene <- U(0, 1) with p = 0.005, renormalised
        rng = np.random
        for k in range(offspring.shape[0]):
            if rng.random() < PAPER["mutation_rate"]:
                offspring[k, rng.randint(m)] = rng.random()
                offspring[k] /= offspring[k].sum()
        return offspring

    times, best = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        best = (-1.0, None)
        for restart in range(PAPER["restarts"]):
            rng = np.random.default_rng(restart)
            init = rng.random((PAPER["population_size"], m))
            init /= init.sum(axis=1, keepdims=True)
            ga = pygad.GA(num_generations=PAPER["generations"],
                          num_parents_mating=PAPER["population_size"], fitness_func=fitness,
                          fitness_batch_size=PAPER["population_size"], initial_population=init,
                          parent_selection_type="tournament", K_tournament=PAPER["tournament_size"],
                          keep_parents=0, keep_elitism=0, crossover_type=crossover,
                          mutation_type=mutation, random_seed=restart, suppress_warnings=True)
            ga.run()
            w, f, _ = ga.best_solution()
            if f > best[0]:
                best = (float(f), (np.asarray(w) / np.sum(w)).tolist())
        times.append(time.perf_counter() - t)
    return {"seconds_median": statistics.median(times), "seconds_min": min(times),
            "repeats": repeats, "version": pygad.__version__, "best_val_weighted_f1": best[0],
            "note": "paper operators as PyGAD custom callables; fitness scored per batch of 100 "
                    "with cnmc_core.metrics (so this times PyGAD's engine, not the metric)"}


def sklearn_report(y, prob, t=0.5):
    from sklearn import metrics as skm

    pred = (prob >= t).astype(int)
    return (skm.accuracy_score(y, pred), skm.f1_score(y, pred, average="weighted"),
            skm.precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0),
            skm.confusion_matrix(y, pred, labels=[0, 1]), skm.roc_curve(y, prob),
            skm.precision_recall_curve(y, prob), skm.roc_auc_score(y, prob))


def time_metrics(n: int, number: int) -> dict:
    y, X = synthetic(n, seed=1)
    w = np.array([0.1, 0.2, 0.3, 0.4])

    def ours():
        return binary_report(y, np.average(X, axis=1, weights=w), 0.5, curves=True)

    def theirs():
        return sklearn_report(y, np.average(X, axis=1, weights=w), 0.5)

    out = {"n_images": n}
    for name, fn in (("cnmc_seconds", ours), ("sklearn_seconds", theirs)):
        fn()
        samples = []
        for _ in range(number):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        out[name] = statistics.median(samples)
    out["speedup_vs_sklearn"] = out["sklearn_seconds"] / out["cnmc_seconds"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-generations", type=int, default=10)
    parser.add_argument("--full-baseline", action="store_true")
    parser.add_argument("--no-pygad", action="store_true")
    args = parser.parse_args(argv)

    y, X = synthetic(2132)
    result = {"data": {"n_val_images": int(y.size), "n_models": X.shape[1],
                       "share_all": float(y.mean())},
              "settings": PAPER, "machine": {"python": platform.python_version(),
                                             "numpy": np.__version__,
                                             "processor": platform.machine()}}
    result["ga"] = time_ga(X, y, args.repeats)
    result["ga_mean"] = time_ga(X, y, args.repeats, E.MeanCrossoverGA)
    result["ga_sklearn_one_at_a_time"] = time_baseline(
        X, y, None if args.full_baseline else args.baseline_generations)
    result["ga_speedup"] = (result["ga_sklearn_one_at_a_time"]["seconds_full_run"]
                            / result["ga"]["seconds_median"])
    if not args.no_pygad:
        result["pygad"] = time_pygad(X, y, 1)
        if "seconds_median" in result["pygad"]:
            result["ga_speedup_vs_pygad"] = (result["pygad"]["seconds_median"]
                                             / result["ga"]["seconds_median"])
    result["metrics_recompute"] = [time_metrics(2133, 200), time_metrics(100_000, 20)]
    small, large = result["metrics_recompute"]
    result["goals"] = {
        "ga_under_2s": result["ga"]["seconds_median"] < 2.0,
        "ga_30x_faster_than_sklearn_one_at_a_time": result["ga_speedup"] >= 30,
        "metrics_2133_under_5ms": small["cnmc_seconds"] < 0.005,
        "metrics_100k_under_150ms": large["cnmc_seconds"] < 0.150,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
