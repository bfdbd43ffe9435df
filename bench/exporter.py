#!/usr/bin/env python3
"""Scrape benchmark: imd-exporter against Debian's prometheus-node-exporter.

Run from the repository root:

    python3 bench/exporter.py --scrapes 1000

It builds the release binary first (`cargo build --release -p imd-exporter`,
skip with --no-build), starts imd-exporter and `prometheus-node-exporter
--no-collector.systemd` on loopback ports with the SAME collectors (the ones
both have: cpu, meminfo, loadavg, stat, diskstats, filesystem, netdev,
pressure, uname, time, os, netclass - as far as imd-exporter has them) and the
same device/mount filters, warms each up, then scrapes each in turn, alone:

* N scrapes (--scrapes, default 1000) one after another over one keep-alive
  HTTP/1.1 connection (http.client), without compression: per-scrape latency
  p50/p99, response bytes, and CPU seconds the exporter spent (utime+stime
  from /proc/PID/stat) per 1,000 scrapes;
* N/4 (at least 50) scrapes with `Accept-Encoding: gzip`, as Prometheus asks:
  latency p50/p99, compressed bytes and CPU seconds per 1,000 scrapes;
* RSS: VmRSS from /proc/PID/status sampled every 50 scrapes (maximum), and
  VmHWM (the kernel's peak) at the end;
* what the plain bytes are made of: # HELP / # TYPE lines against sample
  lines, and bytes per sample (the two exporters emit different numbers of
  samples, so whole-response ratios alone mislead).

It prints a table with both exporters and the ratio imd/node_exporter, with
the machine (nproc, CPU model, kernel) and the date, and writes the same to
bench/out/exporter-<date>.md. Everything is bounded (--max-seconds, default
300, stops the scraping early and says so), talks to 127.0.0.1 only, and both
exporters are stopped by PID at the end (SIGTERM, then SIGKILL).

Python 3 standard library only.
"""

import argparse
import datetime
import gzip
import http.client
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMD_BIN = os.environ.get("IMD_EXPORTER_BIN") or os.path.join(ROOT, "target", "release", "imd-exporter")
NE_BIN = "prometheus-node-exporter"

# node_exporter collectors imd-exporter also has (node_exporter's names).
SHARED = ["cpu", "meminfo", "loadavg", "stat", "diskstats", "filesystem", "netdev",
          "pressure", "uname", "time", "os", "netclass"]

# Debian patches node_exporter's defaults of these two; both exporters get
# them explicitly so that they report the same mounts and devices.
FILTER_FLAGS = {
    "filesystem": "--collector.filesystem.mount-points-exclude="
                  "^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
    "netdev": "--collector.netdev.device-exclude=^lo$",
}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def wait_ready(proc, port, name, log, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            sys.exit(f"{name} exited with {proc.returncode}:\n{log.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{name} not ready on 127.0.0.1:{port} within {timeout}s")


def stop(proc):
    """SIGTERM by PID, SIGKILL after 5 s; always reaps."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def scrape_series(port, pid, count, gzip_ok, deadline):
    """`count` sequential scrapes over one keep-alive connection. Returns
    latencies (s), the last body size, CPU seconds used, max VmRSS (KiB),
    sample lines in the last body, and how many scrapes were done, and the
    bytes of the last (uncompressed) body's # HELP / # TYPE lines."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {"Accept-Encoding": "identity"}
    latencies, size, lines, max_rss, meta = [], 0, 0, 0, 0
    cpu0 = cpu_seconds(pid)
    try:
        for i in range(count):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            conn.request("GET", "/metrics", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            latencies.append(time.perf_counter() - t0)
            if resp.status != 200:
                sys.exit(f"scrape {i} of 127.0.0.1:{port} answered {resp.status}")
            if gzip_ok and resp.getheader("Content-Encoding") != "gzip":
                sys.exit(f"127.0.0.1:{port} did not gzip the response")
            size = len(body)
            if i % 50 == 0 or i == count - 1:
                max_rss = max(max_rss, status_kib(pid, "VmRSS"))
                text = gzip.decompress(body) if gzip_ok else body
                split = text.split(b"\n")
                lines = sum(1 for l in split if l and not l.startswith(b"#"))
                meta = sum(len(l) + 1 for l in split if l.startswith(b"#"))
    finally:
        conn.close()
    return latencies, size, cpu_seconds(pid) - cpu0, max_rss, lines, len(latencies), meta


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return os.cpu_count(), model, platform.release()


def version_of(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scrapes", type=int, default=1000, help="plain scrapes per exporter (default 1000)")
    ap.add_argument("--warmup", type=int, default=50, help="scrapes before measuring (default 50)")
    ap.add_argument("--max-seconds", type=float, default=300, help="time limit for all scraping (default 300)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release first")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"), help="directory for the report")
    args = ap.parse_args()
    if args.scrapes < 1 or args.scrapes > 100_000:
        sys.exit("--scrapes must be between 1 and 100000")

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "imd-exporter"], cwd=ROOT, check=True)
    if not os.access(IMD_BIN, os.X_OK):
        sys.exit(f"{IMD_BIN} not found: run `cargo build --release -p imd-exporter`")
    if shutil.which(NE_BIN) is None:
        sys.exit(f"{NE_BIN} not found: run the README's test command (it installs it)")

    work = tempfile.mkdtemp(prefix="imd-bench-")
    try:
        # The collectors imd-exporter has among the shared ones.
        out = subprocess.run([IMD_BIN, "--check-config", f"--storage.path={work}/state"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            sys.exit(f"imd-exporter --check-config failed:\n{out.stderr}")
        have = out.stdout.split("collectors:", 1)[1].replace(",", " ").split()
        collectors = [c for c in SHARED if c in have]
        skipped = [c for c in SHARED if c not in have]
        flags = ["--collector.disable-defaults"] + [f"--collector.{c}" for c in collectors]
        flags += [FILTER_FLAGS[c] for c in collectors if c in FILTER_FLAGS]

        results = {}
        deadline = time.monotonic() + args.max_seconds
        truncated = False
        for name, cmd in [
            ("imd-exporter", [IMD_BIN, f"--storage.path={work}/state"]),
            ("node_exporter", [NE_BIN, "--no-collector.systemd"]),
        ]:
            port = free_port()
            log = open(os.path.join(work, f"{name}.log"), "w+")
            proc = subprocess.Popen(cmd + [f"--web.listen-address=127.0.0.1:{port}"] + flags,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=work)
            try:
                wait_ready(proc, port, name, log)
                scrape_series(port, proc.pid, args.warmup, False, deadline)
                lat, size, cpu, rss, lines, n, meta = scrape_series(
                    port, proc.pid, args.scrapes, False, deadline)
                gz_n = max(50, args.scrapes // 4)
                glat, gsize, gcpu, grss, _, gn, _ = scrape_series(port, proc.pid, gz_n, True, deadline)
                truncated |= n < args.scrapes or gn < gz_n
                lat.sort()
                glat.sort()
                results[name] = {
                    "n": n,
                    "gn": gn,
                    "p50": percentile(lat, 50) * 1000,
                    "p99": percentile(lat, 99) * 1000,
                    "gp50": percentile(glat, 50) * 1000,
                    "gp99": percentile(glat, 99) * 1000,
                    "bytes": size,
                    "gbytes": gsize,
                    "lines": lines,
                    "meta": meta,
                    "sample_bytes": size - meta,
                    "per_sample": size / max(lines, 1),
                    "gper_sample": gsize / max(lines, 1),
                    "rss": max(rss, grss) / 1024,
                    "hwm": status_kib(proc.pid, "VmHWM") / 1024,
                    "cpu1k": cpu / max(n, 1) * 1000,
                    "gcpu1k": gcpu / max(gn, 1) * 1000,
                }
            finally:
                stop(proc)
                log.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    nproc, model, kernel = machine()
    now = datetime.datetime.now().astimezone()
    imd, ne = results["imd-exporter"], results["node_exporter"]
    rows = [
        ("scrapes measured (plain / gzip)", lambda r: f"{r['n']} / {r['gn']}", None),
        ("samples per scrape", lambda r: f"{r['lines']}", "lines"),
        ("latency p50, ms (plain)", lambda r: f"{r['p50']:.2f}", "p50"),
        ("latency p99, ms (plain)", lambda r: f"{r['p99']:.2f}", "p99"),
        ("latency p50, ms (gzip)", lambda r: f"{r['gp50']:.2f}", "gp50"),
        ("latency p99, ms (gzip)", lambda r: f"{r['gp99']:.2f}", "gp99"),
        ("response bytes (plain)", lambda r: f"{r['bytes']}", "bytes"),
        ("response bytes (gzip)", lambda r: f"{r['gbytes']}", "gbytes"),
        ("of plain: # HELP / # TYPE lines", lambda r: f"{r['meta']}", "meta"),
        ("of plain: sample lines", lambda r: f"{r['sample_bytes']}", "sample_bytes"),
        ("bytes per sample (plain)", lambda r: f"{r['per_sample']:.1f}", "per_sample"),
        ("bytes per sample (gzip)", lambda r: f"{r['gper_sample']:.1f}", "gper_sample"),
        ("RSS max, MiB (VmRSS sampled)", lambda r: f"{r['rss']:.1f}", "rss"),
        ("RSS peak, MiB (VmHWM)", lambda r: f"{r['hwm']:.1f}", "hwm"),
        ("CPU seconds per 1,000 scrapes", lambda r: f"{r['cpu1k']:.3f}", "cpu1k"),
        ("CPU seconds per 1,000 scrapes (gzip)", lambda r: f"{r['gcpu1k']:.3f}", "gcpu1k"),
    ]
    lines = [
        f"# imd-exporter vs node_exporter scrape benchmark, {now:%Y-%m-%d %H:%M %Z}",
        "",
        f"- machine: {nproc} CPUs, {model}, Linux {kernel}",
        f"- imd-exporter: {version_of([IMD_BIN, '--version'])} (release build)",
        f"- node_exporter: {version_of([NE_BIN, '--version'])}",
        f"- collectors (both): {', '.join(collectors)}"
        + (f"; not in imd-exporter, left out: {', '.join(skipped)}" if skipped else ""),
        f"- method: {args.warmup} warm-up scrapes, then sequential scrapes over one keep-alive"
        " connection on 127.0.0.1, one exporter at a time; CPU = utime+stime of the exporter",
        f"- command: python3 bench/exporter.py --scrapes {args.scrapes}",
    ]
    if truncated:
        lines.append(f"- NOTE: stopped early at the {args.max_seconds:.0f} s limit; counts above are what was measured")
    lines += ["", "| metric | imd-exporter | node_exporter | imd / node_exporter |", "|---|---:|---:|---:|"]
    for label, fmt, key in rows:
        ratio = ""
        if key and ne[key]:
            ratio = f"{imd[key] / ne[key]:.2f}"
        lines.append(f"| {label} | {fmt(imd)} | {fmt(ne)} | {ratio} |")
    lines.append("")
    lines.append("Samples per scrape include each exporter's own metrics (node_exporter: go_*, promhttp_*, process_*;"
                 " imd-exporter: process_*).")
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"exporter-{now:%Y-%m-%d}.md")
    with open(path, "w") as f:
        f.write(report)
    print(f"written to {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
