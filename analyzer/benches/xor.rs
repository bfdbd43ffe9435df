//! XOR chunk decoding speed, in samples per second on one core.
//!
//! `cargo bench -p imd-analyzer --bench xor` (bench/run runs it too). A
//! plain `harness = false` bench timed with `std::time`: criterion would add
//! about a dozen crates to the build for one number; each figure here is
//! the best of several rounds, which is what a noisy shared machine allows.
//!
//! Two data sets of 120-sample chunks (Prometheus' usual chunk size):
//! - `gauge`: timestamps 15 s apart with up to 15 ms of jitter, values with
//!   one decimal drawn at random (every value differs: the worst case for
//!   the value coding);
//! - `counter`: regular 15 s timestamps, a counter growing by small integer
//!   steps, repeated values now and then (what most node metrics look like).
//!
//! Output lines `xor/<set>/<api>: <M> M samples/s per core` are parsed by
//! bench/run. Options: `--rounds N` (default 15), `--quick` (3 rounds).

use std::time::Instant;

use imd_analyzer::read::remote::xor::{XorDecoder, decode_xor};

/// A minimal XOR chunk encoder (Prometheus' appender), written for this
/// bench because the crate's own test encoder is compiled for unit tests
/// only.
struct Writer {
    bytes: Vec<u8>,
    bit: u32,
}

impl Writer {
    fn bits(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            if self.bit % 8 == 0 {
                self.bytes.push(0);
            }
            if (v >> i) & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 0x80 >> (self.bit % 8);
            }
            self.bit += 1;
        }
    }

    fn uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.bits(u64::from(x as u8 | 0x80), 8);
            x >>= 7;
        }
        self.bits(x, 8);
    }
}

fn fits(x: i64, n: u32) -> bool {
    -((1i64 << (n - 1)) - 1) <= x && x <= 1i64 << (n - 1)
}

fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut w = Writer {
        bytes: (samples.len() as u16).to_be_bytes().to_vec(),
        bit: 16,
    };
    let (mut t_prev, mut v_prev, mut d_prev) = (0i64, 0u64, 0i64);
    let (mut lead, mut trail) = (u32::MAX, 0u32);
    for (i, &(t, v)) in samples.iter().enumerate() {
        let v = v.to_bits();
        let d = t - t_prev;
        match i {
            0 => {
                w.uvarint(((t << 1) ^ (t >> 63)) as u64);
                w.bits(v, 64);
            }
            _ => {
                if i == 1 {
                    w.uvarint(d as u64);
                } else {
                    let dod = d - d_prev;
                    match dod {
                        0 => w.bits(0, 1),
                        x if fits(x, 14) => w.bits(0b10 << 14 | (x as u64 & 0x3fff), 16),
                        x if fits(x, 17) => w.bits(0b110 << 17 | (x as u64 & 0x1ffff), 20),
                        x if fits(x, 20) => w.bits(0b1110 << 20 | (x as u64 & 0xfffff), 24),
                        x => {
                            w.bits(0b1111, 4);
                            w.bits(x as u64, 64);
                        }
                    }
                }
                let x = v ^ v_prev;
                if x == 0 {
                    w.bits(0, 1);
                } else {
                    let lz = x.leading_zeros().min(31);
                    let tz = x.trailing_zeros();
                    if lead != u32::MAX && lz >= lead && tz >= trail {
                        w.bits(0b10, 2);
                        w.bits(x >> trail, 64 - lead - trail);
                    } else {
                        (lead, trail) = (lz, tz);
                        w.bits(0b11, 2);
                        w.bits(u64::from(lz), 5);
                        w.bits(u64::from(64 - lz - tz), 6);
                        w.bits(x >> tz, 64 - lz - tz);
                    }
                }
            }
        }
        (t_prev, v_prev, d_prev) = (t, v, d);
    }
    w.bytes
}

/// 1,000 chunks of 120 samples.
fn data_set(name: &str) -> Vec<Vec<u8>> {
    let mut seed = 42u64;
    let mut rand = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed
    };
    let mut counter = 0.0;
    (0..1000i64)
        .map(|c| {
            let samples: Vec<(i64, f64)> = (0..120i64)
                .map(|i| {
                    let r = rand();
                    let t0 = c * 1_800_000 + i * 15_000;
                    if name == "gauge" {
                        (t0 + (r >> 60) as i64, ((r >> 33) % 1000) as f64 / 10.0)
                    } else {
                        if r >> 62 != 0 {
                            counter += ((r >> 40) % 4096) as f64;
                        }
                        (t0, counter)
                    }
                })
                .collect();
            encode(&samples)
        })
        .collect()
}

/// Best samples/s over `rounds` rounds of decoding every chunk, and a
/// checksum so that the work cannot be optimised away.
fn measure(chunks: &[Vec<u8>], rounds: usize, into_vec: bool) -> (f64, u64) {
    let mut best = 0.0f64;
    let mut sum = 0u64;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut n = 0usize;
        for c in chunks {
            if into_vec {
                let v = decode_xor(c).expect("the bench's chunks decode");
                n += v.len();
                sum = sum.wrapping_add(v.last().map_or(0, |s| s.0 as u64 ^ s.1.to_bits()));
            } else {
                let mut d = XorDecoder::new(c).expect("the bench's chunks decode");
                while let Some((t, v)) = d.next_bits().expect("the bench's chunks decode") {
                    sum = sum.wrapping_add(t as u64 ^ v);
                    n += 1;
                }
            }
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    (best, sum)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut rounds = 15;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => rounds = 3,
            "--rounds" => {
                i += 1;
                rounds = args
                    .get(i)
                    .and_then(|s| s.parse().ok())
                    .filter(|r| *r > 0)
                    .unwrap_or_else(|| {
                        eprintln!("--rounds takes a positive number");
                        std::process::exit(2)
                    });
            }
            // cargo bench passes --bench; test filters are ignored.
            _ => {}
        }
        i += 1;
    }
    for set in ["gauge", "counter"] {
        let chunks = data_set(set);
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        for (api, into_vec) in [("next_bits", false), ("decode_xor", true)] {
            let (rate, sum) = measure(&chunks, rounds, into_vec);
            println!(
                "xor/{set}/{api}: {:.1} M samples/s per core ({:.2} bytes/sample, best of {rounds}, checksum {sum:x})",
                rate / 1e6,
                bytes as f64 / 120_000.0
            );
        }
    }
}
