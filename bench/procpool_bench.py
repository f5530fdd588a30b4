#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Process pools: evexec (bench/procpool_bench) against Python's
ProcessPoolExecutor driven by asyncio's run_in_executor(), and against
fork-per-job (measured by the C program), on the same workloads in one run:

  P1 round trip, 64 bytes in and out, one in flight, pool of 4
  P2 many small jobs at once, pool of 4
  P3 echo of 1 MiB and 64 MiB (MB/s), with a plain memcpy() for scale:
     evexec's copying submit and its input written in place
     (evexec_procpool_submit_input()), each after an idle worker and back
     to back (see bench/procpool_bench.c); the target (>= 0.5 x memcpy at
     64 MiB) is judged on the in-place path after an idle worker
  P4 crash recovery, pool of 1: ms from a crash to the next job's result
     (Python: BrokenProcessPool, then a new executor)

usage: procpool_bench.py [--quick] PATH/TO/procpool_bench
"""
import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import time


def echo(b):
    return b


def crash(_):
    os.kill(os.getpid(), signal.SIGSEGV)


async def p1(n):
    loop = asyncio.get_running_loop()
    data = bytes(64)
    with concurrent.futures.ProcessPoolExecutor(4) as ex:
        for _ in range(200):
            await loop.run_in_executor(ex, echo, data)
        lat = []
        t0 = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            await loop.run_in_executor(ex, echo, data)
            lat.append((time.perf_counter() - t) * 1e6)
        total = time.perf_counter() - t0
    lat.sort()
    return {"P1_python_p50_us": lat[n // 2], "P1_python_p99_us": lat[n * 99 // 100],
            "P1_python_jobs_s": n / total}


async def p2(n):
    loop = asyncio.get_running_loop()
    data = bytes(64)
    with concurrent.futures.ProcessPoolExecutor(4) as ex:
        await asyncio.gather(*(loop.run_in_executor(ex, echo, data) for _ in range(100)))
        t0 = time.perf_counter()
        await asyncio.gather(*(loop.run_in_executor(ex, echo, data) for _ in range(n)))
        total = time.perf_counter() - t0
    return {"P2_python_jobs_s": n / total}


async def p3(size, reps, tag):
    loop = asyncio.get_running_loop()
    data = bytes([7]) * size
    best = 1e30
    with concurrent.futures.ProcessPoolExecutor(1) as ex:
        await loop.run_in_executor(ex, echo, data)
        for _ in range(reps):
            t = time.perf_counter()
            out = await loop.run_in_executor(ex, echo, data)
            best = min(best, time.perf_counter() - t)
            assert len(out) == size
    return {"P3_%s_python_MBs" % tag: size / best / 1e6}


async def p4(reps):
    loop = asyncio.get_running_loop()
    data = bytes(64)
    ex = concurrent.futures.ProcessPoolExecutor(1)
    await loop.run_in_executor(ex, echo, data)
    ms = []
    for _ in range(reps):
        try:
            await loop.run_in_executor(ex, crash, data)
        except concurrent.futures.process.BrokenProcessPool:
            pass
        t = time.perf_counter()
        ex.shutdown(wait=False)
        ex = concurrent.futures.ProcessPoolExecutor(1)  # the pool is broken for good
        await loop.run_in_executor(ex, echo, data)
        ms.append((time.perf_counter() - t) * 1e3)
    ex.shutdown()
    ms.sort()
    return {"P4_python_ms": ms[len(ms) // 2]}


async def python_side(quick):
    r = {}
    r.update(await p1(2000 if quick else 20000))
    r.update(await p2(10000 if quick else 100000))
    r.update(await p3(1 << 20, 3 if quick else 10, "1MiB"))
    r.update(await p3(64 << 20, 2 if quick else 5, "64MiB"))
    r.update(await p4(5 if quick else 21))
    return r


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    if len(args) != 1:
        sys.exit(__doc__)
    cmd = [args[0]] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = {}
    for line in out.splitlines():
        k, v = line.split()
        r[k] = float(v)
    r.update(asyncio.run(python_side(quick)))

    def ratio(a, b, digits=1):
        return "%.*f x" % (digits, r[a] / r[b]) if r.get(a) and r.get(b) else "-"

    rows = [
        ("P1 round trip p50 (us)", "P1_evexec_p50_us", "P1_python_p50_us", "P1_fork_p50_us",
         ratio("P1_python_p50_us", "P1_evexec_p50_us"), ratio("P1_fork_p50_us", "P1_evexec_p50_us")),
        ("P1 round trip p99 (us)", "P1_evexec_p99_us", "P1_python_p99_us", "P1_fork_p99_us",
         ratio("P1_python_p99_us", "P1_evexec_p99_us"), ratio("P1_fork_p99_us", "P1_evexec_p99_us")),
        ("P1 jobs/s", "P1_evexec_jobs_s", "P1_python_jobs_s", "P1_fork_jobs_s",
         ratio("P1_evexec_jobs_s", "P1_python_jobs_s"), ratio("P1_evexec_jobs_s", "P1_fork_jobs_s")),
        ("P2 jobs/s", "P2_evexec_jobs_s", "P2_python_jobs_s", "P2_fork_jobs_s",
         ratio("P2_evexec_jobs_s", "P2_python_jobs_s"), ratio("P2_evexec_jobs_s", "P2_fork_jobs_s")),
        ("P4 crash recovery (ms)", "P4_evexec_ms", "P4_python_ms", None,
         ratio("P4_python_ms", "P4_evexec_ms"), "-"),
    ]
    # P3: each size and path against Python's echo and a plain memcpy
    p4 = rows.pop()
    for size, mib in (("1 MiB", "1MiB"), ("64 MiB", "64MiB")):
        for path, key in (("copying", "evexec"), ("copying, back to back", "evexec_b2b"),
                          ("in place", "inplace"), ("in place, back to back", "inplace_b2b")):
            ev, py, mc = "P3_%s_%s_MBs" % (mib, key), "P3_%s_python_MBs" % mib, "P3_%s_memcpy_MBs" % mib
            rows.append(("P3 %s echo, %s (MB/s)" % (size, path), ev, py, mc,
                         ratio(ev, py), ratio(ev, mc, 2)))
    rows.append(p4)
    print("| workload | evexec | Python | fork per job (P3: memcpy) | vs Python | vs fork (P3: vs memcpy) |")
    print("|---|---|---|---|---|---|")
    for name, e, p, f, rp, rf in rows:
        fmt = lambda k: "%.1f" % r[k] if k and k in r else "-"
        print("| %s | %s | %s | %s | %s | %s |" % (name, fmt(e), fmt(p), fmt(f), rp, rf))
    if r.get("P3_64MiB_memcpy_MBs"):
        m = r["P3_64MiB_memcpy_MBs"]
        inplace = r["P3_64MiB_inplace_MBs"] / m
        print()
        print("P3 target (>= 0.5 x memcpy, 64 MiB, in place): %.2f x: %s; copying submit "
              "beside it: %.2f x; back to back: in place %.2f x, copying %.2f x"
              % (inplace, "met" if inplace >= 0.5 else "MISSED",
                 r["P3_64MiB_evexec_MBs"] / m, r["P3_64MiB_inplace_b2b_MBs"] / m,
                 r["P3_64MiB_evexec_b2b_MBs"] / m))
        print("P3 writing the 64 MiB input (left out of both paths' times): into the "
              "caller's buffer %.0f MB/s, in place %.0f MB/s"
              % (r["P3_64MiB_fill_src_MBs"], r["P3_64MiB_fill_inplace_MBs"]))
    errors = sum(v for k, v in r.items() if k.endswith("_errors"))
    if errors:
        print("evexec jobs failed: %d" % errors, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
