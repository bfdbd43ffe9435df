#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 20 s each):
#   bash fuzz/run.sh [SECONDS] [TARGET...]
# Built optimised with debug assertions and overflow checks (-O -a), and
# without AddressSanitizer: imd's own code has no `unsafe`, and leaving it
# out builds in about half the time and runs 3-10x more inputs; set
# IMD_FUZZ_SANITIZER=address to turn it on. IMD_FUZZ_TARGET_DIR=DIR builds
# into DIR instead of fuzz/target.
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets it take the unstable
# (-Z) flags cargo-fuzz passes. Installs cargo-fuzz when missing.
# New inputs go to fuzz/corpus/<target> (not committed); the committed
# seeds in fuzz/seeds/<target> are read too. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the run: turn it into a regression
# test (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-20}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(xor_chunk remote_read_frames text_format logs_config analyzer_config query_range_answer
        web_config log_lines alertmanager_webhook alert_action silences_answer csv_input
        model_state)
fi
export RUSTC_BOOTSTRAP=1
# libfuzzer-sys compiles libFuzzer (C++).
if ! command -v c++ >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
flags=(-O -a --sanitizer "${IMD_FUZZ_SANITIZER:-none}")
# A build dir kept outside the clone makes later runs rebuild only what changed.
if [ -n "${IMD_FUZZ_TARGET_DIR:-}" ]; then
    flags+=(--target-dir "$IMD_FUZZ_TARGET_DIR")
fi
started=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "fuzz targets built in $(( $(date +%s) - started )) s"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "fuzzing $t for ${seconds} s"
    # -timeout: one input taking over 10 s is a hang, reported as a failure.
    if ! cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
        >"corpus/$t.log" 2>&1; then
        tail -50 "corpus/$t.log"
        echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "corpus/$t.log" || true
done
echo "fuzzing finished in $(( $(date +%s) - started )) s"
