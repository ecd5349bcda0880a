# All the benchmarks in one process, implementations interleaved round by
# round after a warm-up, printed as Markdown tables of medians: the step of
# rnnext, NumPy and PyTorch per configuration with ratios and the fraction
# of the FLOP limit, float32 against float64, one thread against two,
# sampling, and the tutorial's whole job. For fair NumPy figures run it as
#
#     env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare.py
#
# Every workload is checked against the oracle when it is built.
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import peak
import workloads as w

PEAK_FALLBACK = 99.0  # GFLOP/s per core, used when nothing can be measured

Times = dict[int, list[float]]  # seconds per call in each round, by id


def per_call(workload: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        workload()
    return (time.perf_counter() - t0) / n


def calls_for(workload: Any, min_time: float) -> int:
    """Warm up, then the number of calls that takes at least min_time."""
    t = per_call(workload, 2)
    return max(1, round(min_time / t + 0.5))


def measure(workloads: list[Any], rounds: int, min_time: float, gap: float) -> Times:
    """Seconds per call of each workload in each round, order rotating.

    A pause of `gap` seconds before each measurement lets the idle threads
    of the library timed last (OpenBLAS spins for about 0.1 s) fall asleep
    instead of competing with the next one.
    """
    n = {id(x): calls_for(x, min_time) for x in workloads}
    times: Times = {id(x): [] for x in workloads}
    for r in range(rounds):
        k = r % len(workloads)
        for x in workloads[k:] + workloads[:k]:
            time.sleep(gap)
            times[id(x)].append(per_call(x, n[id(x)]))
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return times


def spread(ts: list[float]) -> float:
    """Interquartile range over median: how noisy the rounds were."""
    q = statistics.quantiles(ts, n=4)
    return (q[2] - q[0]) / statistics.median(ts)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def rate(x: Any, times: Times) -> float:
    """Median tokens (or characters) per second of a workload."""
    return x.tokens / statistics.median(times[id(x)])


def si(r: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if r >= scale:
            return f"{r / scale:.3g} {unit}"
    return f"{r:.3g}"


def measure_peak(override: float | None) -> tuple[float, str]:
    """GFLOP/s per core and how it was had."""
    if override is not None:
        return override, "given with --peak"
    found = [g for g in (peak.fma_peak(1, 512), peak.fma_peak(1, 256)) if g]
    if not found:
        return PEAK_FALLBACK, "no compiler: assumed"
    return max(found), "measured: a loop of independent FMAs, 1 thread"


def main() -> None:
    p = argparse.ArgumentParser(
        description="rnnext, NumPy and PyTorch, interleaved, as Markdown tables"
    )
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--min-time", type=float, default=0.2, help="s per measurement")
    p.add_argument("--gap", type=float, default=0.2, help="s of rest before each")
    p.add_argument("--configs", nargs="+", default=list(w.CONFIGS))
    p.add_argument("--peak", type=float, help="GFLOP/s per core, not measured")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-job", action="store_true")
    args = p.parse_args()

    cores = len(os.sched_getaffinity(0))
    print("\n".join(w.machine_report()))
    print(f"load average before: {os.getloadavg()}")
    gflops, how = measure_peak(args.peak)
    print(f"peak: {gflops:.1f} GFLOP/s per core ({how}), {cores} cores")
    torch = None if args.no_torch else w.torch_or_none()

    # Build and check every workload before timing any.
    _, V = w.corpus_ids()
    steps: dict[str, dict[str, Any]] = {}
    extras: list[Any] = []
    for config in args.configs:
        impls = ["rnnext", "numpy"] + (["torch"] if torch else [])
        steps[config] = {i: w.step_run(i, config) for i in impls}
        steps[config]["f64"] = w.step_run("rnnext", config, dtype="float64")
    one_thread = w.step_run("rnnext", "tutorial", threads=1)
    two_threads = steps.get("tutorial", {}).get("rnnext") or w.step_run(
        "rnnext", "tutorial"
    )
    samples = []
    for greedy in (True, False):
        if w.sampler() is not None:
            samples.append(w.sample_run("rnnext", greedy, 20_000))
        samples.append(w.sample_run("numpy", greedy, 500))
    extras = [one_thread, *samples]
    if "tutorial" not in steps:
        extras.append(two_threads)
    everything = [x for runs in steps.values() for x in runs.values()] + extras
    print(f"{len(everything)} workloads checked; measuring", flush=True)

    t0 = time.perf_counter()
    times = measure(everything, args.rounds, args.min_time, args.gap)
    elapsed = time.perf_counter() - t0
    print(f"load average after: {os.getloadavg()}")
    noise = sorted(spread(ts) for ts in times.values())
    print(
        f"{args.rounds} rounds in {elapsed:.0f} s; interquartile range / median "
        f"of a workload's rounds: median {statistics.median(noise):.1%}, "
        f"worst {noise[-1]:.1%}\n"
    )

    limit = gflops * 1e9 * cores
    header = ["config (H, B, T)", "FLOP/token", "rnnext tok/s", "NumPy tok/s"]
    if torch:
        header.append("PyTorch tok/s")
    header += ["rnnext / NumPy"] + (["rnnext / PyTorch"] if torch else [])
    header += [f"% of {cores}-core limit: rnnext", "NumPy"]
    header += (["PyTorch"] if torch else []) + ["spread"]
    rows = []
    for config, runs in steps.items():
        H, B, T = w.CONFIGS[config]
        F = w.flop_per_token(H, V)
        impls = [i for i in ("rnnext", "numpy", "torch") if i in runs]
        r = {i: rate(runs[i], times) for i in impls}
        row = [f"{config} ({H}, {B}, {T})", f"{F / 1e3:.1f} k"]
        row += [si(r[i]) for i in impls]
        row += [f"{r['rnnext'] / r[i]:.2f}" for i in impls[1:]]
        row += [f"{100 * r[i] * F / limit:.1f}" for i in impls]
        row.append(f"{max(spread(times[id(runs[i])]) for i in impls):.0%}")
        rows.append(row)
    print("One Adagrad step, float32, median tokens per second\n")
    print(table(header, rows) + "\n")

    rows = []
    for config, runs in steps.items():
        r32, r64 = rate(runs["rnnext"], times), rate(runs["f64"], times)
        rows.append([config, si(r32), si(r64), f"{r32 / r64:.2f}"])
    print("rnnext float32 against float64\n")
    print(table(["config", "float32 tok/s", "float64 tok/s", "ratio"], rows))

    H, B, T = w.CONFIGS["tutorial"]
    F = w.flop_per_token(H, V)
    r1, r2 = rate(one_thread, times), rate(two_threads, times)
    print("\nrnnext threads at the tutorial size\n")
    print(
        table(
            ["threads", "tok/s", "% of limit of those cores"],
            [
                ["1", si(r1), f"{100 * r1 * F / (gflops * 1e9):.1f}"],
                [str(w.THREADS), si(r2), f"{100 * r2 * F / limit:.1f}"],
                ["speed-up", f"{r2 / r1:.2f}", ""],
            ],
        )
    )

    rows = [[x.name, si(rate(x, times))] for x in samples]
    print("\nSampling one stream at H=16, characters per second\n")
    print(table(["sampler", "chars/s"], rows))

    if not args.no_job:
        print("\nThe tutorial's whole job: 100 epochs of (16, 200, 10)\n")
        rows = []
        for impl, epochs in [("rnnext", 100), ("numpy", 1)] + (
            [("torch", 1)] if torch else []
        ):
            job = w.Job(impl, epochs=epochs)
            t0 = time.perf_counter()
            means = job()
            dt = time.perf_counter() - t0
            w.check_job(means, job.V)
            full = dt * 100 / epochs
            kind = "measured" if epochs == 100 else "1 epoch x 100"
            rows.append([job.impl.name, f"{full:.1f} s ({kind})", si(job.tokens / dt)])
            rows[-1].append(f"{means[-1]:.3f}")
        print(table(["implementation", "time", "tok/s", "last epoch loss"], rows))


if __name__ == "__main__":
    main()
