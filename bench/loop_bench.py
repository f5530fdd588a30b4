#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/loop_bench.py: the Python peer of bench/loop_bench.c.

An asyncio event loop runs in a background thread; blocking threads submit a
no-op coroutine with asyncio.run_coroutine_threadsafe() and wait on the
concurrent.futures.Future it returns: the pattern evexec's loop thread
mirrors. Same workloads as loop_bench.c:

  L1 sync    T threads (1, 4, 16), one call in flight each: submit, .result()
  L2 window  T threads, W calls in flight each: submit W, then .result() each
  L3 latency one thread, one call in flight: round-trip p50 / p99 / p99.9

  python3 bench/loop_bench.py [--calls N] [--latency-calls N] [--runs R]
                              [--window W] [--compare PATH/TO/loop_bench]

With --compare, the C benchmark (run with --machine --runs 1) and this one
take turns, R times each, and the table gives both medians and their ratio,
measured in the same session on the same machine (see /work/shared BENCH.md:
judge by ratios measured in the same run).
"""
import argparse
import asyncio
import statistics
import subprocess
import sys
import threading
import time

THREADS = (1, 4, 16)


async def echo(x):
    return x


class LoopThread:
    """An asyncio loop in a thread of its own, like evexec_loop_start()."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="asyncio-loop", daemon=True)
        started = threading.Event()
        self.loop.call_soon(started.set)
        self.thread.start()
        started.wait()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, x):
        return asyncio.run_coroutine_threadsafe(echo(x), self.loop)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def throughput(lt, threads, window, total):
    per = total // threads
    barrier = threading.Barrier(threads + 1)
    bad = []
    starts, ends = [], []

    def poster():
        barrier.wait()
        starts.append(time.perf_counter())  # each thread times itself
        done = 0
        while done < per:
            n = min(window, per - done)
            futs = [lt.call(done + i) for i in range(n)]
            for i, f in enumerate(futs):
                if f.result() != done + i:
                    bad.append(done + i)
            done += n
        ends.append(time.perf_counter())

    ths = [threading.Thread(target=poster) for _ in range(threads)]
    for t in ths:
        t.start()
    barrier.wait()
    for t in ths:
        t.join()
    if bad:
        sys.exit("loop_bench.py: wrong results")
    return per * threads / (max(ends) - min(starts))


def latency(lt, n):
    samples = []
    for i in range(1000 + n):
        t0 = time.perf_counter_ns()
        lt.call(None).result()
        t1 = time.perf_counter_ns()
        if i >= 1000:
            samples.append(t1 - t0)
    samples.sort()
    return (samples[n // 2] / 1e3, samples[n * 99 // 100] / 1e3, samples[n * 999 // 1000] / 1e3)


def python_run(args):
    """One run of every workload: a dict like loop_bench --machine prints."""
    lt = LoopThread()
    throughput(lt, 4, 16, 2000)  # warm-up, untimed
    out = {}
    for t in THREADS:
        out["sync_calls_per_s_%d" % t] = throughput(lt, t, 1, args.calls)
        out["window_calls_per_s_%d" % t] = throughput(lt, t, args.window, args.calls)
    p50, p99, p999 = latency(lt, args.latency_calls)
    out.update(rtt_p50_us=p50, rtt_p99_us=p99, rtt_p999_us=p999)
    lt.stop()
    return out


def c_run(path, args):
    cmd = [path, "--machine", "--runs", "1", "--window", str(args.window)]
    if args.c_calls:
        cmd += ["--calls", str(args.c_calls)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {k: float(v) for k, v in (line.split() for line in res.splitlines() if line.strip())}


ROWS = (
    [("L1 sync, %2d thread%s: calls/s" % (t, "s" if t > 1 else " "), "sync_calls_per_s_%d" % t)
     for t in THREADS]
    + [("L2 window, %2d thread%s: calls/s" % (t, "s" if t > 1 else " "), "window_calls_per_s_%d" % t)
       for t in THREADS]
    + [("L3 round trip p50 us", "rtt_p50_us"), ("L3 round trip p99 us", "rtt_p99_us"),
       ("L3 round trip p99.9 us", "rtt_p999_us")]
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000, help="calls per throughput run (Python)")
    ap.add_argument("--c-calls", type=int, default=0, help="calls per throughput run (C; default its own)")
    ap.add_argument("--latency-calls", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--compare", metavar="LOOP_BENCH", help="path to bench/loop_bench")
    args = ap.parse_args()

    py, c = [], []
    for _ in range(args.runs):
        if args.compare:
            c.append(c_run(args.compare, args))
        py.append(python_run(args))

    med = lambda runs, k: statistics.median(r[k] for r in runs)
    print("Python %s asyncio run_coroutine_threadsafe(): medians of %d runs"
          % (sys.version.split()[0], args.runs))
    if not args.compare:
        for label, key in ROWS:
            print("  %-32s %12.1f" % (label, med(py, key)))
        return
    print("(interleaved with %s --machine --runs 1)" % args.compare)
    print("  %-32s %12s %12s %10s" % ("", "evexec", "Python", "ratio"))
    for label, key in ROWS:
        e, p = med(c, key), med(py, key)
        # ratio > 1 means evexec is better: faster, or lower latency
        ratio = e / p if key.startswith(("sync", "window")) else p / e
        print("  %-32s %12.1f %12.1f %9.1fx" % (label, e, p, ratio))


if __name__ == "__main__":
    main()
