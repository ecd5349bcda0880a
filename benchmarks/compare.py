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

LABEL = {"rnnext": "rnnext", "numpy": "NumPy", "torch": "PyTorch"}
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
    loads = []
    for r in range(rounds):
        k = r % len(workloads)
        for x in workloads[k:] + workloads[:k]:
            time.sleep(gap)
            times[id(x)].append(per_call(x, n[id(x)]))
        loads.append(os.getloadavg()[0])
        print(f"  round {r + 1}/{rounds} done", flush=True)
    lo, hi = min(loads), max(loads)
    print(f"1-minute load average after each round: {lo:.1f} to {hi:.1f}")
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


def rate(x: Any, times: Times, best: bool = False) -> float:
    """Tokens (or characters) per second of a workload: of its median round,
    or of its fastest with best=True."""
    ts = times[id(x)]
    return x.tokens / (min(ts) if best else statistics.median(ts))


def paired(fast: Any, slow: Any, times: Times) -> float:
    """The median over rounds of slow's time per token over fast's, both
    from the same round: a slow spell of the host that lasts a round
    cancels out of it."""
    a, b = times[id(fast)], times[id(slow)]
    return statistics.median(
        (tb / slow.tokens) / (ta / fast.tokens) for ta, tb in zip(a, b)
    )


def paired_table(
    steps: dict[str, dict[str, Any]],
    f64: dict[str, Any],
    threads: dict[tuple[str, int], Any],
    times: Times,
) -> str:
    impls = [i for i in ("numpy", "torch") if i in next(iter(steps.values()))]
    header = ["config"] + [f"rnnext / {LABEL[i]}" for i in impls]
    header += ["f32 / f64", "2 threads / 1"]
    rows = []
    for config, runs in steps.items():
        row = [config]
        row += [f"{paired(runs['rnnext'], runs[i], times):.2f}" for i in impls]
        row.append(f"{paired(runs['rnnext'], f64[config], times):.2f}")
        two = threads.get(("rnnext", 2)), threads.get(("rnnext", 1))
        row.append(
            f"{paired(two[0], two[1], times):.2f}"
            if config == "tutorial" and None not in two
            else ""
        )
        rows.append(row)
    return table(header, rows)


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


def parse_args() -> argparse.Namespace:
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
    return p.parse_args()


def step_table(
    steps: dict[str, dict[str, Any]], times: Times, limit: float, best: bool = False
) -> str:
    impls = [i for i in ("rnnext", "numpy", "torch") if i in next(iter(steps.values()))]
    header = ["config (H, B, T)", "FLOP/token"]
    header += [f"{LABEL[i]} tok/s" for i in impls]
    header += [f"rnnext / {LABEL[i]}" for i in impls[1:]]
    header += [f"{LABEL[i]} % of limit" for i in impls] + ["spread"]
    _, V = w.corpus_ids()
    rows = []
    for config, runs in steps.items():
        H, B, T = w.CONFIGS[config]
        F = w.flop_per_token(H, V)
        r = {i: rate(runs[i], times, best) for i in impls}
        row = [f"{config} ({H}, {B}, {T})", f"{F / 1e3:.1f} k"]
        row += [si(r[i]) for i in impls]
        row += [f"{r['rnnext'] / r[i]:.2f}" for i in impls[1:]]
        row += [f"{100 * r[i] * F / limit:.1f}" for i in impls]
        row.append(f"{max(spread(times[id(runs[i])]) for i in impls):.0%}")
        rows.append(row)
    return table(header, rows)


def job_table(torch: Any) -> str:
    """The Trainer's whole run, measured; step loops timed on a few epochs."""
    job = w.TrainerJob()
    t0 = time.perf_counter()
    means = job()
    dt = time.perf_counter() - t0
    w.check_job(means, job.V)
    epochs = len(means)
    rows = [[job.name, f"{dt:.1f} s (measured)", si(job.tokens / dt)]]
    rows[-1].append(f"{means[-1]:.3f}")
    for impl, n in [("rnnext", 5), ("numpy", 1)] + ([("torch", 1)] if torch else []):
        loop = w.StepLoop(impl, epochs=n)
        t0 = time.perf_counter()
        loop_means = loop()
        loop_dt = time.perf_counter() - t0
        w.check_job(loop_means, loop.V)
        rows.append(
            [
                f"{loop.impl.name}, one step() per feed",
                f"{loop_dt * epochs / n:.1f} s ({n} epoch(s) x {epochs / n:g})",
                si(loop.tokens / loop_dt),
                f"{loop_means[-1]:.3f} (epoch {n})",
            ]
        )
    header = ["implementation", "time for 100 epochs", "train tok/s", "last loss"]
    return table(header, rows)


def main() -> None:
    args = parse_args()
    cores = len(os.sched_getaffinity(0))
    print("\n".join(w.machine_report()))
    print(f"load average before: {os.getloadavg()}")
    gflops, how = measure_peak(args.peak)
    print(f"peak: {gflops:.1f} GFLOP/s per core ({how}), {cores} cores")
    limit = gflops * 1e9 * cores
    torch = None if args.no_torch else w.torch_or_none()

    # Build and check every workload before timing any.
    impls = ["rnnext", "numpy"] + (["torch"] if torch else [])
    steps = {c: {i: w.step_run(i, c) for i in impls} for c in args.configs}
    f64 = {c: w.step_run("rnnext", c, dtype="float64") for c in args.configs}
    chunked = {c: w.StepsRun(c) for c in args.configs}
    threads = {
        (impl, n): w.step_run(impl, "tutorial", threads=n)
        for impl in impls
        for n in (1, 2)
    }
    samples = [
        w.sample_run(impl, greedy, length)
        for greedy in (True, False)
        for impl, length in (("rnnext", 20_000), ("numpy", 500))
        if impl == "numpy" or w.has_sampler()
    ]
    everything = [x for runs in steps.values() for x in runs.values()]
    everything += [*f64.values(), *chunked.values(), *threads.values(), *samples]
    print(f"{len(everything)} workloads checked; measuring", flush=True)

    t0 = time.perf_counter()
    times = measure(everything, args.rounds, args.min_time, args.gap)
    elapsed = time.perf_counter() - t0
    print(f"load average after: {os.getloadavg()}")
    noise = sorted(spread(ts) for ts in times.values())
    print(
        f"{args.rounds} rounds in {elapsed:.0f} s; spread (interquartile range "
        f"/ median of a workload's rounds): median {statistics.median(noise):.1%}"
        f", worst {noise[-1]:.1%}\n"
    )

    print(f"One Adagrad step, float32, median tokens/s; limit: {cores} cores\n")
    print(step_table(steps, times, limit) + "\n")
    print("The same from each workload's fastest round (the quietest moments)\n")
    print(step_table(steps, times, limit, best=True) + "\n")

    print("Ratios taken within each round, then the median over rounds\n")
    print(paired_table(steps, f64, threads, times) + "\n")

    rows = []
    for c, runs in steps.items():
        r1, r64, r25 = (rate(x, times) for x in (runs["rnnext"], f64[c], chunked[c]))
        rows.append([c, si(r1), si(r64), f"{r1 / r64:.2f}", si(r25), f"{r25 / r1:.2f}"])
    print("rnnext: float64, and 25 feeds per call (Adagrad.steps)\n")
    header = ["config", "float32 step()", "float64 step()", "f32 / f64"]
    print(table(header + ["float32 steps(25)", "steps / step"], rows) + "\n")

    _, V = w.corpus_ids()
    F = w.flop_per_token(w.CONFIGS["tutorial"][0], V)
    rows = []
    for (impl, n), x in threads.items():
        r = rate(x, times)
        pct = 100 * r * F / (gflops * 1e9 * n)
        rows.append([LABEL[impl], str(n), si(r), f"{pct:.1f}"])
    print("Threads at the tutorial size\n")
    header = ["implementation", "threads", "tok/s", "% of those cores' limit"]
    print(table(header, rows) + "\n")

    rows = [[x.name, si(rate(x, times))] for x in samples]
    print("Sampling one stream at H=16, characters per second\n")
    print(table(["sampler", "chars/s"], rows) + "\n")

    if not args.no_job:
        print("The tutorial's whole job: TrainConfig() on the bundled corpus\n")
        print(job_table(torch))


if __name__ == "__main__":
    main()
