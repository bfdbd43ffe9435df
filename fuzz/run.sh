#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 20 s each):
#   bash fuzz/run.sh [SECONDS] [TARGET...]
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets it take the
# sanitizer flags cargo-fuzz passes. Installs cargo-fuzz when missing.
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
    targets=(xor_chunk remote_read_frames text_format logs_config analyzer_config)
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
started=$(date +%s)
cargo fuzz build -O
echo "fuzz targets built in $(( $(date +%s) - started )) s"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "fuzzing $t for ${seconds} s"
    # -timeout: one input taking over 10 s is a hang, reported as a failure.
    if ! cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
        >"corpus/$t.log" 2>&1; then
        tail -50 "corpus/$t.log"
        echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "corpus/$t.log" || true
done
echo "fuzzing finished in $(( $(date +%s) - started )) s"
