#!/usr/bin/env python3
"""forecast/score throughput and accuracy: imd-analyzer against statsforecast
on the same data, in the same run.

Run from the repository root (bench/run does it for you):

    python3 bench/forecast.py --bin target/bench/release/imd-analyzer [--models auto,ets]

Data: --series (1,000) hourly series of --points (1,000) points each, season
24: a level, a slow trend, a daily shape of random amplitude and phase, and
noise; seeded, so every run sees the same numbers. The last --horizon (48)
points of each series are held out.

forecast: `imd-analyzer forecast --model M --horizon 48 --season 24` (release
build, all cores) for each M in --models, and statsforecast 2.1.1 (venv
$IMD_TOOLS_VENV, default target/ci-venv, made by `bash .ci/test`) with
AutoETS and MSTL (season 24, n_jobs=2; AutoARIMA on request) on the same training CSV.
Reported per job: wall and CPU seconds of the whole process (imd: one
process; statsforecast: the Python process and its workers, so import and
numba compilation are included), statsforecast's own fit+forecast call
time (warm: after a compile run on 2 series), and accuracy on the held-out
tail: MASE (scale: in-sample seasonal-naive error, m = 24), averaged over
series, with seasonal naive itself as the floor to beat.

score: `imd-analyzer score --model M` on --score-series (20) of the series
(one process per series, as the command takes one series per file): CPU
microseconds per point. imd scores online (each point judged only on the
rows before it, the model updated after). statsforecast has no online
scorer; its documented anomaly detection is in-sample: fit AutoETS, then
flag points outside the fitted values' 99% interval (`forecast(...,
fitted=True, level=[99])`). That is timed on the same series as the nearest
equivalent, and is a cheaper job (one fit per series, not one update per
point).

Prints a table and writes it to bench/out/forecast-<date>.md.
"""

import argparse
import csv
import datetime
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEASON = 24

SF_SCRIPT = r'''
import json, sys, time, os
import numpy as np, pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoETS, AutoARIMA, MSTL
train_csv, out_json, horizon, season, kind, score_csv = sys.argv[1:7]
horizon, season = int(horizon), int(season)
df = pd.read_csv(train_csv)
df = df.rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})
def model(name):
    if name == "AutoETS": return AutoETS(season_length=season)
    if name == "AutoARIMA": return AutoARIMA(season_length=season)
    if name == "MSTL": return MSTL(season_length=season)
    raise SystemExit("unknown model " + name)
out = {}
if kind == "score":
    sdf = pd.read_csv(score_csv).rename(columns={"series_id": "unique_id", "timestamp": "ds", "value": "y"})
    small = sdf[sdf.unique_id.isin(sdf.unique_id.unique()[:1])]
    StatsForecast(models=[AutoETS(season_length=season)], freq=1, n_jobs=1).forecast(
        df=small, h=1, fitted=True, level=[99])
    t0 = time.perf_counter(); c0 = time.process_time()
    sf = StatsForecast(models=[AutoETS(season_length=season)], freq=1, n_jobs=1)
    sf.forecast(df=sdf, h=1, fitted=True, level=[99])
    fitted = sf.forecast_fitted_values()
    out["score"] = {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                    "points": int(len(fitted))}
else:
    small = df[df.unique_id.isin(df.unique_id.unique()[:2])]
    StatsForecast(models=[model(kind)], freq=1, n_jobs=1).forecast(df=small, h=horizon)
    t0 = time.perf_counter()
    fc = StatsForecast(models=[model(kind)], freq=1, n_jobs=2).forecast(df=df, h=horizon)
    out["seconds"] = time.perf_counter() - t0
    fc = fc.reset_index() if "unique_id" not in fc.columns else fc
    col = [c for c in fc.columns if c not in ("unique_id", "ds")][0]
    out["forecast"] = {str(u): g[col].tolist() for u, g in fc.groupby("unique_id", sort=False)}
with open(out_json, "w") as f:
    json.dump(out, f)
'''


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_timed(cmd, **kw):
    c0, t0 = children_cpu(), time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return wall, cpu, r.stdout


def make_series(n_series, n_points, seed=7):
    rng = random.Random(seed)
    out = []
    for i in range(n_series):
        level = rng.uniform(10, 1000)
        amp = level * rng.uniform(0.05, 0.4)
        phase = rng.uniform(0, 2 * math.pi)
        trend = level * rng.uniform(-0.0003, 0.0005)
        noise = level * rng.uniform(0.01, 0.08)
        shape2 = rng.uniform(0, 0.5)
        ys = []
        for k in range(n_points):
            a = 2 * math.pi * k / SEASON + phase
            ys.append(level + trend * k + amp * (math.sin(a) + shape2 * math.sin(2 * a)) + rng.gauss(0, noise))
        out.append(ys)
    return out


def write_csv(path, series, upto):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series_id", "timestamp", "value"])
        for i, ys in enumerate(series):
            for k in range(upto):
                w.writerow([f"s{i:04d}", k, repr(ys[k])])


def mase(train, test, pred):
    scale = sum(abs(train[k] - train[k - SEASON]) for k in range(SEASON, len(train))) / (len(train) - SEASON)
    return sum(abs(a - b) for a, b in zip(test, pred)) / len(test) / max(scale, 1e-12)


def venv_python():
    venv = os.environ.get("IMD_TOOLS_VENV", os.path.join(ROOT, "target", "ci-venv"))
    py = os.path.join(venv, "bin", "python")
    return py if os.access(py, os.X_OK) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "bench", "release", "imd-analyzer"))
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--horizon", type=int, default=48)
    ap.add_argument("--models", default="auto", help="imd models, comma separated (default auto)")
    ap.add_argument("--sf-models", default="AutoETS,MSTL",
                    help="statsforecast models (AutoETS, AutoARIMA, MSTL; empty: none). AutoARIMA with "
                         "season 24 took over 10 minutes for 20 series on the loaded 2-core machine, so it "
                         "is not in the default")
    ap.add_argument("--score-series", type=int, default=20)
    ap.add_argument("--score-models", default="auto", help="imd models for score (default auto)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    ap.add_argument("--json", help="also write the figures as JSON here")
    args = ap.parse_args()
    if args.points <= args.horizon + 2 * SEASON:
        sys.exit("--points must exceed --horizon by at least two seasons")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} not found: build it with bench/run")
    py = venv_python()
    sf_models = [m for m in args.sf_models.split(",") if m]
    if sf_models and py is None:
        sys.exit("statsforecast's venv not found: run `bash .ci/test` (it makes target/ci-venv) "
                 "or pass --sf-models ''")

    series = make_series(args.series, args.points)
    n_train = args.points - args.horizon
    work = tempfile.mkdtemp(prefix="imd-bench-fc-")
    rows = []
    try:
        train_csv = os.path.join(work, "train.csv")
        write_csv(train_csv, series, n_train)
        snaive = []
        for ys in series:
            train, test = ys[:n_train], ys[n_train:]
            pred = [train[n_train - SEASON + (h % SEASON)] for h in range(args.horizon)]
            snaive.append(mase(train, test, pred))
        rows.append({"job": "seasonal naive (reference)", "wall": 0.0, "cpu": 0.0, "warm": None,
                     "mase": sum(snaive) / len(snaive)})
        for m in [m for m in args.models.split(",") if m]:
            out_csv = os.path.join(work, f"imd-{m}.csv")
            wall, cpu, _ = run_timed([args.bin, "forecast", "--input", train_csv, "--horizon", str(args.horizon),
                                      "--season", str(SEASON), "--model", m, "--output", out_csv])
            preds = {}
            with open(out_csv) as f:
                for r in csv.DictReader(f):
                    preds.setdefault(r["series_id"], []).append(float(r["yhat"]))
            scores = [mase(ys[:n_train], ys[n_train:], preds[f"s{i:04d}"]) for i, ys in enumerate(series)]
            rows.append({"job": f"imd forecast --model {m}", "wall": wall, "cpu": cpu, "warm": None,
                         "mase": sum(scores) / len(scores)})
            print(f"imd {m}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        for m in sf_models:
            out_json = os.path.join(work, f"sf-{m}.json")
            wall, cpu, _ = run_timed([py, "-c", SF_SCRIPT, train_csv, out_json, str(args.horizon), str(SEASON), m, ""])
            with open(out_json) as f:
                res = json.load(f)
            scores = [mase(ys[:n_train], ys[n_train:], res["forecast"][f"s{i:04d}"]) for i, ys in enumerate(series)]
            rows.append({"job": f"statsforecast {m} (n_jobs=2)", "wall": wall, "cpu": cpu, "warm": res["seconds"],
                         "mase": sum(scores) / len(scores)})
            print(f"statsforecast {m}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)

        # score: one series per file, online.
        k = min(args.score_series, args.series)
        score_rows = []
        for m in [m for m in args.score_models.split(",") if m]:
            cpu_total, wall_total, points = 0.0, 0.0, 0
            for i in range(k):
                one = os.path.join(work, f"one-{i}.csv")
                with open(one, "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["timestamp", "value"])
                    for j, y in enumerate(series[i]):
                        w.writerow([1_700_000_000 + 3600 * j, repr(y)])
                wall, cpu, _ = run_timed([args.bin, "score", "--input", one, "--output", one + ".out",
                                          "--model", m, "--season", str(SEASON)])
                cpu_total += cpu
                wall_total += wall
                points += len(series[i])
            score_rows.append({"job": f"imd score --model {m} (online)", "points": points,
                               "us_per_point": cpu_total / points * 1e6, "wall": wall_total})
        if py is not None and sf_models:
            score_csv = os.path.join(work, "score.csv")
            write_csv(score_csv, series[:k], args.points)
            out_json = os.path.join(work, "sf-score.json")
            wall, cpu, _ = run_timed([py, "-c", SF_SCRIPT, train_csv, out_json, "1", str(SEASON), "score", score_csv])
            with open(out_json) as f:
                res = json.load(f)["score"]
            score_rows.append({"job": "statsforecast AutoETS in-sample fitted 99% interval", "points": res["points"],
                               "us_per_point": res["cpu"] / res["points"] * 1e6, "wall": wall,
                               "process_us_per_point": cpu / res["points"] * 1e6})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    now = datetime.datetime.now().astimezone()
    lines = [
        f"# forecast/score: imd-analyzer vs statsforecast, {now:%Y-%m-%d %H:%M %Z}",
        "",
        f"- data: {args.series} seasonal series x {args.points} points (season {SEASON}), last {args.horizon} held out",
        f"- command: python3 bench/forecast.py --series {args.series} --points {args.points} "
        f"--models {args.models} --sf-models '{args.sf_models}'",
        "",
        "| forecast job | wall s | CPU s | fit+forecast call s (warm) | MASE (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        warm = f"{r['warm']:.1f}" if r["warm"] is not None else ""
        lines.append(f"| {r['job']} | {r['wall']:.1f} | {r['cpu']:.1f} | {warm} | {r['mase']:.3f} |")
    imd_rows = [r for r in rows if r["job"].startswith("imd")]
    sf_rows = [r for r in rows if r["job"].startswith("statsforecast")]
    if imd_rows and sf_rows:
        lines.append("")
        for a in imd_rows:
            for b in sf_rows:
                lines.append(f"- {a['job']} / {b['job']}: wall {a['wall'] / b['wall']:.2f}, CPU "
                             f"{a['cpu'] / max(b['cpu'], 1e-9):.2f}, MASE {a['mase'] / b['mase']:.2f}")
    lines += ["", "| score job | points | CPU µs per point |", "|---|---:|---:|"]
    for r in score_rows:
        lines.append(f"| {r['job']} | {r['points']} | {r['us_per_point']:.1f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"forecast-{now:%Y-%m-%d}.md"), "w") as f:
        f.write(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"forecast": rows, "score": score_rows}, f)


if __name__ == "__main__":
    main()
