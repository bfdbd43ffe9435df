#!/usr/bin/env python3
"""The analyzer's engine at scale: --series (10,000) series with --days (7)
of 1-minute history, fitted in the first cycle and then scored every minute.

Run from the repository root (bench/run does it for you):

    python3 bench/engine.py --bin target/bench/release/imd-analyzer [--models mad,drift auto,auto]

For each model pair it runs `imd-analyzer bench-engine` (a hidden command:
the engine's own cycle over a generated source that serves the series as a
remote-read answer would, decoded afresh on each read; the series are split
among --queries queries, analysed two at a time as in the run mode) in a
process of its own, and reports: initial fit time (wall and CPU), CPU per
steady-state cycle and its share of one core at a 1-minute interval
(target: under 0.25), RSS after the cycles minus RSS before the engine, per
series, and the peak RSS (target: under 1 GiB). The steady state also
counts the periodic full refits (`global.fit_every`, 6 h by default: every
series is fitted again on its whole history): bench-engine times one after
the steady cycles, its share of a core is that CPU time over --fit-every,
and the target applies to the cycles' share plus this one.

A pair with `auto` or `mstl` is measured on --auto-series series and scaled up to
--series. What does not grow with the series (the cycle's own work, the
process's memory before it) must not be scaled with them, and reading and
decoding the generated answer is the same work whatever the models: so
when a pair without `auto` is measured at --series too, it is also run at
--auto-series, and the `auto` figure at --series is that pair's measured
one plus the difference between the two at --auto-series, scaled up.

Prints a table and writes it to bench/out/engine-<date>.md.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "bench", "release", "imd-analyzer"))
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--days", type=float, default=7)
    # 60 one-minute cycles: long enough to include the periodic refits
    # (every season, at most every 48 points) that dominate auto's cost;
    # 10 cycles would miss them and flatter it.
    ap.add_argument("--cycles", type=int, default=60)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--fit-every", type=float, default=6.0,
                    help="hours between full refits (the analyzer's global.fit_every; default 6)")
    # mstl,mstl: what auto costs per cycle on series where it picks MSTL
    # (the generated gauges' clean daily cycle mostly gets seasonal naive).
    ap.add_argument("--models", default="mad,drift auto,auto mstl,mstl",
                    help="space-separated ANOMALY,FORECAST pairs (default: 'mad,drift auto,auto mstl,mstl')")
    ap.add_argument("--auto-series", type=int, default=500,
                    help="series for pairs with `auto` or `mstl` (auto fits for about 0.15 CPU seconds per series on 7 days: "
                         "10,000 take a quarter of an hour on 2 cores); its fit time is scaled up linearly to --series")
    ap.add_argument("--window", type=int, help="model window in points (default: the models' default)")
    ap.add_argument("--shard-count", type=int, default=1, help="measure shard 0 of this many")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    ap.add_argument("--json", help="also write the figures as JSON here")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} not found: build it with bench/run")
    def measure(pair, n):
        cmd = [args.bin, "bench-engine", "--series", str(n), "--days", str(args.days),
               "--cycles", str(args.cycles), "--models", pair, "--queries", str(min(args.queries, n)),
               "--shard-count", str(args.shard_count)]
        if args.window:
            cmd += ["--window", str(args.window)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"bench-engine {pair} failed ({r.returncode}):\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{pair} at {n} series: fit {res['fit_wall_seconds']:.1f} s, "
              f"cycle {res['cycle_cpu_seconds'] * 1000:.0f} ms CPU", flush=True)
        return res

    results = []
    # The cheap pair measured at --series (and at the smaller counts): the
    # reference that scaled pairs are added to.
    full_ref = None
    small_ref = {}
    pairs = args.models.split()
    # Pairs measured at --series first, so that the reference is known.
    for pair in sorted(pairs, key=lambda p: "auto" in p or "mstl" in p):
        heavy = "auto" in pair or "mstl" in pair
        n = min(args.series, args.auto_series) if heavy else args.series
        res = measure(pair, n)
        scale = args.series / n
        res["scaled_from"] = n if n < args.series else None
        res["reference"] = None
        if n == args.series and full_ref is None:
            full_ref = res
        ref_n = None
        if n < args.series and full_ref is not None:
            if n not in small_ref:
                small_ref[n] = measure(full_ref["models"], n)
            ref_n = small_ref[n]
        if ref_n is None:
            res["fit_wall_at_series"] = res["fit_wall_seconds"] * scale
            res["fit_cpu_at_series"] = res["fit_cpu_seconds"] * scale
            res["cycle_cpu_at_series"] = res["cycle_cpu_seconds"] * scale
            res["refit_cpu_at_series"] = res["refit_cpu_seconds"] * scale
            res["mib_at_series"] = res["rss_per_series_kib"] * args.series / 1024 + res["rss_before_mib"]
        else:
            res["reference"] = full_ref["models"]
            for key in ("fit_wall", "fit_cpu", "cycle_cpu", "refit_cpu"):
                extra = max(0.0, res[f"{key}_seconds"] - ref_n[f"{key}_seconds"])
                res[f"{key}_at_series"] = full_ref[f"{key}_seconds"] + extra * scale
            extra_kib = max(0.0, res["rss_per_series_kib"] - ref_n["rss_per_series_kib"])
            res["mib_at_series"] = full_ref["rss_after_mib"] + extra_kib * args.series / 1024
            res["model_cycle_ms_per_series"] = extra / n * 1000
        step_s = res["cycle_cpu_seconds"] / res["core_share_at_step"] if res["core_share_at_step"] else 60.0
        res["share_at_series"] = res["cycle_cpu_at_series"] / step_s
        res["refit_share_at_series"] = res["refit_cpu_at_series"] / (args.fit_every * 3600)
        res["total_share_at_series"] = res["share_at_series"] + res["refit_share_at_series"]
        results.append(res)
    results.sort(key=lambda r: pairs.index(r["models"]) if r["models"] in pairs else len(pairs))

    now = datetime.datetime.now().astimezone()
    lines = [
        f"# Engine at scale, {now:%Y-%m-%d %H:%M %Z}",
        "",
        f"- {args.series} series x {args.days:g} days of 1-minute history ({results[0]['history_points']} points each),"
        f" {args.queries} queries, {args.cycles} steady cycles one minute apart"
        + (f", shard 0 of {args.shard_count}" if args.shard_count > 1 else ""),
        f"- command: python3 bench/engine.py --series {args.series} --days {args.days:g} --cycles {args.cycles}"
        f" --models '{args.models}' --fit-every {args.fit_every:g}",
        "",
        "| models | series measured | fit wall s | fit CPU s | CPU per cycle, ms | share of one core at 1 min | "
        "refit CPU s | RSS per series, KiB | RSS after, MiB | peak RSS, MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['models']} | {r['tracked']} | {r['fit_wall_seconds']:.1f} | {r['fit_cpu_seconds']:.1f} | "
            f"{r['cycle_cpu_seconds'] * 1000:.0f} | {r['core_share_at_step']:.4f} | {r['refit_cpu_seconds']:.1f} | "
            f"{r['rss_per_series_kib']:.1f} | "
            f"{r['rss_after_mib']:.0f} | {r['hwm_mib']:.0f} |")
    lines += [
        "",
        f"At {args.series} series (measured; or scaled from the series measured: linearly, or, with a "
        "reference, the reference pair's figure at this count plus the difference between the two at the "
        "count measured, scaled):",
        "",
        f"| models | fit wall s | fit CPU s | CPU per cycle, s | cycles' share of one core | "
        f"full refits' share (every {args.fit_every:g} h) | steady share | memory, MiB | "
        "under 1/4 core | under 1 GiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        note = f" (scaled from {r['scaled_from']}" if r["scaled_from"] else ""
        if r["scaled_from"]:
            note += f", over {r['reference']})" if r["reference"] else ", linearly)"
        mem = max(r["mib_at_series"], r["hwm_mib"]) if not r["scaled_from"] else r["mib_at_series"]
        lines.append(
            f"| {r['models']}{note} | {r['fit_wall_at_series']:.0f} | {r['fit_cpu_at_series']:.0f} | "
            f"{r['cycle_cpu_at_series']:.3f} | {r['share_at_series']:.4f} | "
            f"{r['refit_share_at_series']:.4f} | {r['total_share_at_series']:.4f} | {mem:.0f} | "
            f"{'yes' if r['total_share_at_series'] < 0.25 else 'NO'} | {'yes' if mem < 1024 else 'NO'} |")
    lines += [
        "",
        "Model state on disk (the run mode saves it every 5 minutes and at shutdown, and a restart loads it): "
        "file size, and the memory the save and the load take above what was resident before them (peaks "
        "from a reset high-water mark; a loaded state is held until its series comes back in the first "
        "cycle), and that first cycle, where every series resumes from its state on its whole history "
        "(restart peak: from before the load), at the series measured:",
        "",
        "| models | series | file, MB | bytes per series | save s | save, MiB above | load s | "
        "load, MiB above | resume s (CPU s) | restart peak, MiB above | running, MiB above |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        st = r["state"]
        lines.append(
            f"| {r['models']} | {st['series']} | {st['file_bytes'] / 1e6:.1f} | "
            f"{st['file_bytes'] / max(st['series'], 1):,.0f} | {st['save_seconds']:.2f} | "
            f"{st['save_peak_mib']:.1f} | {st['load_seconds']:.2f} | {st['load_peak_mib']:.1f} | "
            f"{st['resume_seconds']:.2f} ({st['resume_cpu_seconds']:.2f}) | {st['restart_peak_mib']:.1f} | "
            f"{st['resumed_held_mib']:.1f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"engine-{now:%Y-%m-%d}.md"), "w") as f:
        f.write(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
