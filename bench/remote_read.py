#!/usr/bin/env python3
"""Read-path benchmark: remote read (SAMPLES, STREAMED_XOR_CHUNKS) against
query_range, through imd-analyzer's own client, against a real Prometheus.

Run from the repository root (bench/run does it for you):

    python3 bench/remote_read.py --bin target/bench/release/imd-analyzer

1. Builds (once; cached under target/bench/tsdb-<series>x<days>d-<step>s-v1)
   a TSDB of --series gauges x --days at --step seconds ending at
   2026-11-01 00:00 UTC, with `promtool tsdb create-blocks-from openmetrics`.
   promtool re-reads its whole input for every 2-hour block it writes, so
   the input is written as one OpenMetrics file per 2-hour block and promtool
   runs once per file (two at a time); the time this takes is reported.
2. Starts Debian's Prometheus on it (loopback, free port, no scrape jobs,
   --storage.tsdb.{min,max}-block-duration=2h so that it does not compact
   while being measured), and stops it by PID at the end.
3. Reads the whole range of every series with `imd-analyzer bench-read` on
   each path: --mode samples, chunks and query_range (step = --step, split as
   the analyzer splits it, at most 11,000 points per series per request).
   For each: samples/s, bytes on the wire per sample, CPU seconds of the
   client (from its own /proc/self/stat) and of Prometheus (/proc/PID/stat
   before and after).
4. Sends the very same requests with curl, which only counts the bytes
   (`-o /dev/null`): what Prometheus can serve to a client that costs
   nothing. imd's wall time over curl's says whether the client is the
   bottleneck.
5. Steps 3 and 4 alternate --runs times (default 3) per path; the table
   gives the medians and the range of imd / curl, since single runs on a
   small machine vary by a fifth.
6. Records Prometheus' streamed-chunks answer once and replays it from
   memory (sendfile) to the client: the client's speed when it has the
   cores to itself (as on a host of its own), against what Prometheus
   serves on one stream.

Prints a table and writes it to bench/out/remote_read-<date>.md. Python 3
standard library only.
"""

import argparse
import calendar
import concurrent.futures
import datetime
import http.server
import json
import math
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
END_S = calendar.timegm((2026, 11, 1, 0, 0, 0))
BLOCK_S = 2 * 3600
METRIC = "bench_gauge"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def value(i, k):
    """Sample k of series i: a node-exporter-like gauge (daily cycle, level
    per series, a little noise, two decimals)."""
    noise = ((k * 2654435761 + i * 40503) % 1000) / 1000.0
    return round(50 + (i % 40) + 10 * math.sin(2 * math.pi * k / 5760 + i) + noise, 2)


def write_block_input(path, series, start_s, end_s, step, first_s):
    """OpenMetrics for samples with start_s <= t < end_s."""
    k0 = (start_s - first_s + step - 1) // step
    k1 = (end_s - first_s + step - 1) // step
    with open(path, "w") as f:
        f.write(f"# TYPE {METRIC} gauge\n")
        for i in range(series):
            lab = f'{METRIC}{{instance="host-{i:05d}",job="bench"}} '
            f.write("".join(f"{lab}{value(i, k)} {first_s + k * step}\n" for k in range(k0, k1)))
        f.write("# EOF\n")


def build_tsdb(args):
    key = f"tsdb-{args.series}x{args.days:g}d-{args.step}s-v1"
    root = os.path.join(args.cache, key)
    done = os.path.join(root, "built.json")
    if os.path.exists(done):
        with open(done) as f:
            info = json.load(f)
        info["cached"] = True
        return os.path.join(root, "data"), info
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    data = os.path.join(root, "data")
    n = int(args.days * 86400 // args.step)
    first_s = END_S - (n - 1) * args.step
    blocks = list(range(first_s - first_s % BLOCK_S, END_S + 1, BLOCK_S))
    t0 = time.monotonic()
    cpu0 = children_cpu()
    work = tempfile.mkdtemp(prefix="imd-bench-om-", dir=root)

    def one(b):
        path = os.path.join(work, f"{b}.om")
        write_block_input(path, args.series, max(b, first_s), min(b + BLOCK_S, END_S + 1), args.step, first_s)
        out = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", path, data],
                             capture_output=True, text=True)
        size = os.path.getsize(path)
        os.remove(path)
        if out.returncode != 0:
            raise RuntimeError(f"promtool failed on {path}: {out.stderr[-2000:]}")
        return size

    # Writing the input is Python (one core); promtool runs beside it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        input_bytes = sum(pool.map(one, blocks))
    shutil.rmtree(work, ignore_errors=True)
    info = {
        "series": args.series, "days": args.days, "step_s": args.step,
        "samples": n * args.series, "first_s": first_s, "end_s": END_S,
        "blocks": len(blocks), "input_bytes": input_bytes,
        "build_wall_seconds": time.monotonic() - t0,
        "build_child_cpu_seconds": children_cpu() - cpu0,
        "tsdb_bytes": sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs),
        "cached": False,
    }
    with open(done, "w") as f:
        json.dump(info, f)
    return data, info


def start_prometheus(data, work):
    port = free_port()
    cfg = os.path.join(work, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    log = open(os.path.join(work, "prometheus.log"), "w+")
    proc = subprocess.Popen([
        "prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h",
        "--storage.remote.read-sample-limit=0", "--query.max-samples=100000000",
    ], stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=work)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            sys.exit(f"prometheus exited:\n{log.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
                if r.status == 200:
                    return proc, port, log
        except OSError:
            pass
        time.sleep(0.2)
    stop(proc)
    sys.exit("prometheus not ready within 120 s")


def stop(proc):
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def query_range_windows(from_ms, to_ms, step_ms, max_points=11000):
    """The analyzer's split (read/promql.rs): step-aligned starts, at most
    max_points points per request."""
    def align_up(t):
        r = t % step_ms
        return t if r == 0 else t + step_ms - r
    span = step_ms * (max_points - 1)
    out, start = [], align_up(from_ms)
    while start <= to_ms:
        end = min(start + span, to_ms)
        out.append((start, end))
        start = align_up(end + step_ms)
    return out


def secs(ms):
    return f"{ms // 1000}.{ms % 1000:03d}"


def measure(prom_pid, cmd_list):
    """Runs the commands in turn; wall time, client CPU (children rusage),
    Prometheus CPU, and the commands' stdout."""
    p0, c0, t0 = cpu_seconds(prom_pid), children_cpu(), time.perf_counter()
    outs = []
    for cmd in cmd_list:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
        outs.append(r.stdout)
    return time.perf_counter() - t0, children_cpu() - c0, cpu_seconds(prom_pid) - p0, outs


class Replay(http.server.BaseHTTPRequestHandler):
    """Answers every POST with one recorded streamed remote-read answer."""
    protocol_version = "HTTP/1.1"
    answer = None

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type",
                         "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse")
        self.send_header("Content-Length", str(os.path.getsize(self.answer)))
        self.end_headers()
        self.wfile.flush()
        with open(self.answer, "rb") as f:
            self.connection.sendfile(f)

    def log_message(self, *_):
        pass


def client_alone(args, base, req, work, info, selector, from_ms, to_ms):
    """The chunks client reading a recorded answer replayed from memory:
    how fast the client is when it does not share the cores with
    Prometheus."""
    answer = os.path.join(work, "answer.bin")
    subprocess.run(["curl", "-sS", "--fail", "-o", answer,
                    "-H", "Content-Encoding: snappy", "-H", "Content-Type: application/x-protobuf",
                    "-H", "X-Prometheus-Remote-Read-Version: 0.1.0",
                    "--data-binary", f"@{req}", f"{base}/api/v1/read"], check=True)
    Replay.answer = answer
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    out = []
    try:
        runs = []
        for _ in range(max(args.runs, 1)):
            t0 = time.perf_counter()
            r = subprocess.run([args.bin, "bench-read", "--url", url, "--selector", selector,
                                "--from", str(from_ms), "--to", str(to_ms), "--mode", "chunks"],
                               capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            imd = json.loads(r.stdout.strip().splitlines()[-1])
            if imd["points"] != info["samples"]:
                raise RuntimeError(f"replayed answer: {imd['points']} points, expected {info['samples']}")
            runs.append((imd["wall_seconds"], imd["cpu_seconds"], wall,
                         imd["decode_wall_seconds"], imd["decode_cpu_seconds"]))
        out.append({"wall": statistics.median(x[0] for x in runs),
                    "cpu": statistics.median(x[1] for x in runs),
                    "decode_wall": statistics.median(x[3] for x in runs),
                    "decode_cpu": statistics.median(x[4] for x in runs)})
        print(f"chunks, replayed: {out[-1]['wall']:.2f} s", flush=True)
    finally:
        server.shutdown()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "bench", "release", "imd-analyzer"))
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--step", type=int, default=15, help="sample interval, seconds")
    ap.add_argument("--repeat", type=int, default=1, help="reads of the whole range per measurement")
    ap.add_argument("--runs", type=int, default=3,
                    help="measurements per path, imd and curl alternating; the table gives medians "
                         "and the range of imd / raw (single runs on a 2-core machine vary by 20 %%)")
    ap.add_argument("--cache", default=os.path.join(ROOT, "target", "bench"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--build-only", action="store_true", help="only build (or find) the cached TSDB")
    args = ap.parse_args()
    for tool in ["prometheus", "promtool", "curl"]:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: run `bash .ci/test` (it installs Debian's prometheus) or apt-get install curl")
    if not args.build_only and not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} not found: build it with bench/run")

    data, info = build_tsdb(args)
    print(f"TSDB: {info['samples']:,} samples in {info['blocks']} blocks, {info['tsdb_bytes'] / 2**20:.0f} MiB; "
          + ("cached" if info["cached"] else "") + f" built in {info['build_wall_seconds']:.0f} s "
          f"({info['build_child_cpu_seconds']:.0f} CPU s in promtool)", flush=True)
    if args.build_only:
        return
    from_ms, to_ms = info["first_s"] * 1000, info["end_s"] * 1000
    selector = f'{METRIC}{{job="bench"}}'
    work = tempfile.mkdtemp(prefix="imd-bench-rr-")
    results = {}
    alone = []
    try:
        proc, port, log = start_prometheus(data, work)
        try:
            base = f"http://127.0.0.1:{port}"
            # Warm Prometheus' page cache and index once.
            subprocess.run([args.bin, "bench-read", "--url", base, "--selector", selector,
                            "--from", str(from_ms), "--to", str(to_ms), "--mode", "chunks"],
                           capture_output=True, check=True)
            for mode in ["samples", "chunks", "query_range"]:
                cmd = [args.bin, "bench-read", "--url", base, "--selector", selector,
                       "--from", str(from_ms), "--to", str(to_ms), "--mode", mode,
                       "--step", f"{args.step}s", "--repeat", str(args.repeat)]
                req = os.path.join(work, f"{mode}.req")
                if mode != "query_range":
                    cmd += ["--dump-request", req]
                # The same requests through curl, bytes only.
                if mode != "query_range":
                    curl = [["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}\n",
                             "-H", "Content-Encoding: snappy", "-H", "Accept-Encoding: snappy",
                             "-H", "Content-Type: application/x-protobuf",
                             "-H", "X-Prometheus-Remote-Read-Version: 0.1.0",
                             "--data-binary", f"@{req}", f"{base}/api/v1/read"]] * args.repeat
                else:
                    curl = []
                    q = urllib.parse.quote(selector, safe="")
                    for s, e in query_range_windows(from_ms, to_ms, args.step * 1000):
                        curl.append(["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}\n",
                                     f"{base}/api/v1/query_range?query={q}&start={secs(s)}&end={secs(e)}"
                                     f"&step={args.step}"])
                    curl = curl * args.repeat
                runs = []
                for _ in range(max(args.runs, 1)):
                    wall, _, pcpu, outs = measure(proc.pid, [cmd])
                    imd = json.loads(outs[0].strip().splitlines()[-1])
                    if imd["series"] != args.series or imd["points"] != info["samples"] * args.repeat:
                        raise RuntimeError(f"{mode}: imd read {imd['series']} series and {imd['points']} points, "
                                           f"expected {args.series} and {info['samples'] * args.repeat}")
                    rwall, rcpu, rpcpu, routs = measure(proc.pid, curl)
                    rbytes = sum(int(o.strip() or 0) for o in routs)
                    runs.append({
                        "imd": imd, "wall": wall, "client_cpu": imd["cpu_seconds"], "prom_cpu": pcpu,
                        "raw_wall": rwall, "raw_cpu": rcpu, "raw_prom_cpu": rpcpu, "raw_bytes": rbytes,
                        "ratio": wall / max(rwall, 1e-9),
                        # The read alone (what the engine waits for), and
                        # the decoding of streamed chunks into points that
                        # the engine's jobs do after it.
                        "read_wall": imd["wall_seconds"], "read_ratio": imd["wall_seconds"] / max(rwall, 1e-9),
                        "decode_wall": imd["decode_wall_seconds"], "decode_cpu": imd["decode_cpu_seconds"],
                    })
                    print(f"{mode}: imd {imd['points']:,} points in {wall:.2f} s, curl {rbytes:,} bytes "
                          f"in {rwall:.2f} s", flush=True)
                keys = ["wall", "client_cpu", "prom_cpu", "raw_wall", "raw_cpu", "raw_prom_cpu", "ratio",
                        "read_wall", "read_ratio", "decode_wall", "decode_cpu"]
                results[mode] = {k: statistics.median(r[k] for r in runs) for k in keys}
                results[mode].update({
                    "imd": runs[0]["imd"], "raw_bytes": runs[0]["raw_bytes"], "requests": len(curl),
                    "ratio_range": [min(r["ratio"] for r in runs), max(r["ratio"] for r in runs)],
                    "runs": runs,
                })
            if "chunks" in results:
                alone = client_alone(args, base, os.path.join(work, "chunks.req"), work, info, selector,
                                     from_ms, to_ms)
        finally:
            stop(proc)
            log.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    now = datetime.datetime.now().astimezone()
    n = info["samples"] * args.repeat
    lines = [
        f"# Read paths: remote read vs query_range, {now:%Y-%m-%d %H:%M %Z}",
        "",
        f"- data: {args.series} series x {args.days:g} days at {args.step} s = {info['samples']:,} samples, "
        f"{info['blocks']} promtool blocks, {info['tsdb_bytes'] / 2**20:.0f} MiB on disk; TSDB build "
        f"{info['build_wall_seconds']:.0f} s wall, {info['build_child_cpu_seconds']:.0f} s CPU"
        + (" (cached from an earlier run)" if info["cached"] else ""),
        f"- each path reads the whole range of every series {args.repeat}x through imd-analyzer bench-read "
        "(the analyzer's client); 'raw' is curl sending the same requests and discarding the answer",
        f"- {max(args.runs, 1)} runs per path, imd and curl alternating: medians, and the range of imd / raw",
        "- 'imd s' is the whole bench-read process: the read, then the decoding of every series into points on "
        "every core, as the engine's jobs do (only streamed chunks are still encoded after the read); "
        "'read s' is the read alone, what the engine waits for before its jobs start; 'imd client CPU s' is the read's",
        f"- command: python3 bench/remote_read.py --series {args.series} --days {args.days:g} --step {args.step}"
        f" --runs {max(args.runs, 1)}",
        "",
        "| path | requests | samples/s (imd) | bytes/sample | imd client CPU s | Prometheus CPU s | "
        "client CPU / Prometheus CPU | raw curl s | imd s | imd / raw | imd / raw, range | "
        "read s / raw | then decoded, s (CPU s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, r in results.items():
        imd = r["imd"]
        lines.append(
            f"| {mode} | {r['requests']} | {imd['points'] / r['wall'] / 1e6:.2f} M | "
            f"{imd['bytes'] / max(imd['points'], 1):.2f} | {r['client_cpu']:.2f} | {r['prom_cpu']:.2f} | "
            f"{r['client_cpu'] / max(r['prom_cpu'], 1e-9):.2f} | {r['raw_wall']:.2f} | {r['wall']:.2f} | "
            f"{r['ratio']:.2f} | {r['ratio_range'][0]:.2f}–{r['ratio_range'][1]:.2f} | "
            f"{r['read_wall']:.2f} / {r['read_ratio']:.2f} | {r['decode_wall']:.2f} ({r['decode_cpu']:.2f}) |")
    if alone:
        served = n / results["chunks"]["raw_wall"]
        lines += [
            "",
            "The streamed-chunks client on its own: Prometheus' answer, recorded once, is replayed from memory "
            "(sendfile, about no CPU), so that the client has the cores to itself, as it does when it runs on "
            "another host than Prometheus. 'Prometheus serves' is the chunks row's samples over its raw curl time "
            "(one stream takes Prometheus about one core).",
            "",
            "| client s | client CPU s | samples/s | over what Prometheus serves "
            f"({served / 1e6:.1f} M/s) | then decoded, s (CPU s) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for a in alone:
            rate = n / a["wall"]
            lines.append(f"| {a['wall']:.2f} | {a['cpu']:.2f} | {rate / 1e6:.1f} M | "
                         f"{rate / served:.2f} | {a['decode_wall']:.2f} ({a['decode_cpu']:.2f}) |")
    if "chunks" in results and "query_range" in results:
        c, q = results["chunks"], results["query_range"]
        lines.append("")
        lines.append(f"Streamed chunks over query_range: {q['wall'] / c['wall']:.1f}x faster, "
                     f"{(q['imd']['bytes'] / max(q['imd']['points'], 1)) / (c['imd']['bytes'] / max(c['imd']['points'], 1)):.1f}x fewer bytes per sample, "
                     f"{q['prom_cpu'] / max(c['prom_cpu'], 1e-9):.1f}x less Prometheus CPU.")
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"remote_read-{now:%Y-%m-%d}.md"), "w") as f:
        f.write(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tsdb": info, "paths": results, "samples": n, "client_alone": alone}, f)


if __name__ == "__main__":
    main()
