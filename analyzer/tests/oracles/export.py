"""Exports real series shipped by statsmodels and statsforecast (and a few
simulated ones with known orders) to CSV, and forecasts each held-out tail
with statsforecast's AutoARIMA, AutoETS and Theta, for analyzer/tests/oracles.rs.

Usage: python export.py OUT_DIR
Writes OUT_DIR/series.csv (series_id,timestamp,value), meta.csv
(series_id,season,horizon,kind), sf.csv (series_id,step,arima,arima_lo,
arima_hi,ets,ets_ns,theta,ets_aa: AutoETS among additive-error forms with an
additive season, or none when m is 1) and orders.csv (series_id,p,d,q,P,D,Q,m: AutoARIMA's
choice on the whole series).
"""

import csv
import os
import sys
import warnings

import numpy as np
import statsmodels.api as sm
from statsforecast.models import AutoARIMA, AutoETS, Theta
from statsforecast.utils import AirPassengers

warnings.filterwarnings("ignore")
out = sys.argv[1]


def real():
    co2 = sm.datasets.co2.load_pandas().data["co2"].resample("MS").mean().ffill().bfill()
    yield "co2_monthly", co2.to_numpy(), 12, 12
    yield "air_passengers", np.asarray(AirPassengers, dtype=float), 12, 12
    el = sm.datasets.elnino.load_pandas().data.drop(columns=["YEAR"]).to_numpy().ravel()
    yield "elnino_sst", el, 12, 12
    sun = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    yield "sunspots", sun, 1, 10
    nile = sm.datasets.nile.load_pandas().data["volume"].to_numpy()
    yield "nile", nile, 1, 10
    macro = sm.datasets.macrodata.load_pandas().data
    for col in ["realgdp", "cpi", "unemp", "tbilrate", "m1"]:
        yield "macro_" + col, macro[col].to_numpy(dtype=float), 4, 8


def simulate(n, phi=(), theta=(), sphi=(), stheta=(), m=1, d=0, sd=0, seed=0, level=0.0):
    """ARIMA(p,d,q)(P,D,Q)m with unit innovations, after a burn-in."""
    rng = np.random.default_rng(seed)
    burn = 200 + 3 * m
    e = rng.standard_normal(n + burn)
    ar = np.zeros(len(phi) + m * len(sphi) + 1)
    ma = np.zeros(len(theta) + m * len(stheta) + 1)
    for i, c in enumerate(phi):
        ar[i + 1] += c
    for j, c in enumerate(sphi):
        ar[m * (j + 1)] += c
        for i, ci in enumerate(phi):
            ar[i + 1 + m * (j + 1)] -= ci * c
    for i, c in enumerate(theta):
        ma[i + 1] += c
    for j, c in enumerate(stheta):
        ma[m * (j + 1)] += c
        for i, ci in enumerate(theta):
            ma[i + 1 + m * (j + 1)] += ci * c
    w = np.zeros(n + burn)
    for t in range(n + burn):
        v = e[t]
        for k in range(1, len(ar)):
            if t >= k:
                v += ar[k] * w[t - k]
        for k in range(1, len(ma)):
            if t >= k:
                v += ma[k] * e[t - k]
        w[t] = v
    y = w[burn:]
    for _ in range(sd):
        y = np.concatenate([np.zeros(m), y])
        for t in range(m, len(y)):
            y[t] += y[t - m]
        y = y[m:]
    for _ in range(d):
        y = np.cumsum(y)
    return y + level


def generated():
    yield "sim_ar2", simulate(400, phi=(1.0, -0.5), seed=1, level=10.0), 1, 10
    yield "sim_ma1", simulate(400, theta=(0.7,), seed=2, level=10.0), 1, 10
    yield "sim_sar1", simulate(400, phi=(0.5,), sphi=(0.7,), m=12, seed=3, level=10.0), 12, 12
    yield "sim_airline", simulate(300, theta=(-0.4,), stheta=(-0.6,), m=12, d=1, sd=1, seed=4, level=100.0), 12, 12
    rng = np.random.default_rng(5)
    t = np.arange(480)
    trend_season = 50 + 0.05 * t + 8 * np.sin(2 * np.pi * t / 24) + rng.standard_normal(480) * 1.5
    yield "gen_trend_daily", trend_season, 24, 24
    walk = 100 + np.cumsum(rng.standard_normal(300))
    yield "gen_random_walk", walk, 1, 10


rows = list(real()) + list(generated())
with open(os.path.join(out, "series.csv"), "w", newline="") as f_series, open(
    os.path.join(out, "meta.csv"), "w", newline=""
) as f_meta, open(os.path.join(out, "sf.csv"), "w", newline="") as f_sf, open(
    os.path.join(out, "orders.csv"), "w", newline=""
) as f_orders:
    ws, wm, wf, wo = (csv.writer(f) for f in (f_series, f_meta, f_sf, f_orders))
    ws.writerow(["series_id", "timestamp", "value"])
    wm.writerow(["series_id", "season", "horizon", "kind"])
    wf.writerow(["series_id", "step", "arima", "arima_lo", "arima_hi", "ets", "ets_ns", "theta", "ets_aa"])
    wo.writerow(["series_id", "p", "d", "q", "P", "D", "Q", "m"])
    for name, y, m, h in rows:
        y = np.asarray(y, dtype=float)
        assert np.all(np.isfinite(y)), name
        for i, v in enumerate(y):
            ws.writerow([name, i, repr(float(v))])
        kind = "simulated" if name.startswith(("sim_", "gen_")) else "real"
        wm.writerow([name, m, h, kind])
        train = y[:-h]
        fa = AutoARIMA(season_length=m).forecast(y=train, h=h, level=[95])
        fe = AutoETS(season_length=m).forecast(y=train, h=h)
        fn = AutoETS(season_length=1, model="ZZN").forecast(y=train, h=h)
        ft = Theta(season_length=m).forecast(y=train, h=h)
        fa_a = AutoETS(season_length=m, model="AZA" if m > 1 else "AZN").forecast(y=train, h=h)
        for k in range(h):
            wf.writerow(
                [
                    name,
                    k + 1,
                    repr(float(fa["mean"][k])),
                    repr(float(fa["lo-95"][k])),
                    repr(float(fa["hi-95"][k])),
                    repr(float(fe["mean"][k])),
                    repr(float(fn["mean"][k])),
                    repr(float(ft["mean"][k])),
                    repr(float(fa_a["mean"][k])),
                ]
            )
        whole = AutoARIMA(season_length=m).fit(y)
        p, q, sp, sq, mm, d, sd = whole.model_["arma"]
        wo.writerow([name, p, d, q, sp, sd, sq, mm])
