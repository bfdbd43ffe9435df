//! Decoder for Prometheus' XOR chunks (the Gorilla encoding as Prometheus'
//! TSDB writes it, `tsdb/chunkenc/xor.go`).
//!
//! Written by hand because no maintained crate decodes Prometheus' variant
//! (millisecond timestamps with 14/17/20/64-bit delta-of-delta buckets and a
//! 5-bit leading-zero count clamped at 31).
//!
//! Layout of a chunk:
//! - 2 bytes, big endian: number of samples;
//! - sample 1: timestamp as a zig-zag varint, value as its 64 raw bits;
//! - sample 2: timestamp delta as a uvarint, value XOR-coded;
//! - every later sample: the delta of the timestamp delta in a bucket chosen
//!   by a unary prefix (`0`: zero, `10`: 14 bits, `110`: 17 bits, `1110`:
//!   20 bits, `1111`: 64 bits), then the value XOR-coded.
//!
//! A value is XOR-ed with the previous one: `0` means equal; `10` reuses
//! the previous window of meaningful bits; `11` gives a new window as 5 bits
//! of leading zeros and 6 bits of meaningful-bit count (0 standing for 64),
//! followed by the meaningful bits.
//!
//! Values are carried as raw bits so NaN payloads survive (staleness markers
//! are a particular NaN).

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The chunk uses an encoding this reader does not decode (native
    /// histograms, or something newer).
    #[error("unknown chunk encoding {encoding} ({name})")]
    UnknownEncoding {
        /// The encoding number as sent.
        encoding: i32,
        /// Its name when known.
        name: &'static str,
    },
    /// The chunk's bytes do not hold what its header promises.
    #[error("corrupt XOR chunk: {0}")]
    Corrupt(String),
}

/// Reads bits most significant first from a byte slice. `pos` counts the
/// bits read so far; every read loads the eight (unaligned) bytes that hold
/// the next bits as one big-endian word, so a read of up to 57 bits is one
/// load, one shift and one bounds check, with no per-bit loop.
struct BitReader<'a> {
    data: &'a [u8],
    /// Bits read so far.
    pos: usize,
    /// Bits in `data`.
    len: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            len: data.len() * 8,
        }
    }

    /// Bits not read yet.
    #[inline(always)]
    fn remaining(&self) -> usize {
        self.len - self.pos
    }

    /// The next bits, left-aligned: at least the top 57 are the stream's
    /// next bits; bits past the end of the data read as zeros (callers
    /// check [`BitReader::remaining`] before consuming them).
    #[inline(always)]
    fn peek(&self) -> u64 {
        let byte = self.pos >> 3;
        let word = match self.data.get(byte..).and_then(|r| r.first_chunk::<8>()) {
            Some(w) => u64::from_be_bytes(*w),
            None => self.peek_tail(byte),
        };
        word << (self.pos & 7)
    }

    /// [`BitReader::peek`]'s word within the last seven bytes, zero-padded.
    #[cold]
    fn peek_tail(&self, byte: usize) -> u64 {
        let mut w = [0u8; 8];
        let rest = self.data.get(byte..).unwrap_or(&[]);
        w[..rest.len()].copy_from_slice(rest);
        u64::from_be_bytes(w)
    }

    /// Marks `n` bits as read (the caller has checked that they exist).
    #[inline(always)]
    fn skip(&mut self, n: usize) {
        self.pos += n;
    }

    /// The next `n` bits (0..=64) as the low bits of a word.
    #[inline(always)]
    fn bits(&mut self, n: u32) -> Option<u64> {
        if n as usize > self.remaining() {
            return None;
        }
        if n == 0 {
            return Some(0);
        }
        if n <= 57 {
            let v = self.peek() >> (64 - n);
            self.pos += n as usize;
            return Some(v);
        }
        // Wider than one load guarantees: the high 32 bits, then the rest.
        let high = self.peek() >> 32;
        self.pos += 32;
        let low_n = n - 32;
        let low = self.peek() >> (64 - low_n);
        self.pos += low_n as usize;
        Some((high << low_n) | low)
    }

    fn byte(&mut self) -> Option<u8> {
        self.bits(8).map(|b| b as u8)
    }

    /// An unsigned LEB128 varint as Go's `binary.ReadUvarint` reads it.
    fn uvarint(&mut self) -> Result<u64, String> {
        let mut x = 0u64;
        let mut shift = 0u32;
        for i in 0..10 {
            let b = self
                .byte()
                .ok_or_else(|| "data ends inside a varint".to_string())?;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err("varint overflows 64 bits".into());
                }
                return Ok(x | (u64::from(b) << shift));
            }
            x |= u64::from(b & 0x7f) << shift;
            shift += 7;
        }
        Err("varint overflows 64 bits".into())
    }

    /// A zig-zag signed varint as Go's `binary.ReadVarint` reads it.
    fn varint(&mut self) -> Result<i64, String> {
        let u = self.uvarint()?;
        let x = (u >> 1) as i64;
        Ok(if u & 1 != 0 { !x } else { x })
    }
}

/// Iterates over the samples of one XOR chunk.
pub struct XorDecoder<'a> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    value_bits: u64,
    t_delta: u64,
    leading: u32,
    trailing: u32,
    failed: bool,
}

impl<'a> XorDecoder<'a> {
    /// A decoder over a chunk's bytes (header included).
    pub fn new(chunk: &'a [u8]) -> Result<Self, ChunkError> {
        if chunk.len() < 2 {
            return Err(ChunkError::Corrupt(format!(
                "{} bytes is too short for the 2-byte sample count",
                chunk.len()
            )));
        }
        Ok(XorDecoder {
            reader: BitReader::new(&chunk[2..]),
            total: u16::from_be_bytes([chunk[0], chunk[1]]),
            read: 0,
            t: 0,
            value_bits: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            failed: false,
        })
    }

    /// How many samples the chunk's header announces.
    pub fn num_samples(&self) -> usize {
        usize::from(self.total)
    }

    /// The next sample as (timestamp ms, value bits), `None` after the last.
    // Inlined into the caller's loop (a plain `#[inline]` was not taken):
    // called once per sample, a call kept apart returns its 32-byte answer
    // through memory. About 7 % less client CPU on the read benchmark.
    #[inline(always)]
    pub fn next_bits(&mut self) -> Result<Option<(i64, u64)>, ChunkError> {
        if self.failed || self.read == self.total {
            return Ok(None);
        }
        match self.step() {
            Ok(()) => {
                self.read += 1;
                Ok(Some((self.t, self.value_bits)))
            }
            Err(reason) => Err(self.fail(reason)),
        }
    }

    /// Ends decoding at the sample that could not be read, and says why.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, reason: String) -> ChunkError {
        self.failed = true;
        ChunkError::Corrupt(format!(
            "sample {} of {}: {reason}",
            u32::from(self.read) + 1,
            self.total
        ))
    }

    #[inline(always)]
    fn step(&mut self) -> Result<(), String> {
        const ENDED: &str = "data ends early";
        let r = &mut self.reader;
        // `w` holds the next bits (at least 57 of them, left-aligned) and
        // `used` how many of them the timestamp took: the value's control
        // bits, and often its meaningful bits too, come from the same word.
        let (w, used) = match self.read {
            0 => {
                self.t = r.varint()?;
                self.value_bits = r.bits(64).ok_or(ENDED)?;
                return Ok(());
            }
            1 => {
                self.t_delta = r.uvarint()?;
                self.t = self.t.wrapping_add(self.t_delta as i64);
                (r.peek(), 0)
            }
            _ => {
                // The bucket's unary prefix is the count of leading ones
                // (at most four); the 14/17/20-bit buckets fit in one word
                // with their prefix.
                let w = r.peek();
                let (used, dod) = match (!w).leading_zeros() {
                    0 => (1, 0),
                    1 => (16, signed_bucket((w << 2) >> 50, 14)),
                    2 => (20, signed_bucket((w << 3) >> 47, 17)),
                    3 => (24, signed_bucket((w << 4) >> 44, 20)),
                    _ => {
                        if r.remaining() < 4 {
                            return Err(ENDED.into());
                        }
                        r.skip(4);
                        let dod = r.bits(64).ok_or(ENDED)? as i64;
                        self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
                        self.t = self.t.wrapping_add(self.t_delta as i64);
                        let w = r.peek();
                        return self.value(w, 0);
                    }
                };
                self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
                self.t = self.t.wrapping_add(self.t_delta as i64);
                (w, used)
            }
        };
        self.value(w, used)
    }

    /// Decodes the value, XOR-ed with the previous one, whose control bits
    /// start `used` bits into `w` (the reader still stands before those
    /// `used` bits): `0` (same value), `10` (previous window) or `11` (new
    /// window: 5 bits of leading zeros, 6 of meaningful-bit count).
    #[inline(always)]
    fn value(&mut self, w: u64, used: usize) -> Result<(), String> {
        const ENDED: &str = "data ends early";
        let r = &mut self.reader;
        let avail = r.remaining();
        let c = w << used;
        let control = if c >> 63 == 0 {
            if used + 1 > avail {
                return Err(ENDED.into());
            }
            r.skip(used + 1);
            return Ok(());
        } else if (c >> 62) & 1 == 0 {
            2
        } else {
            if used + 13 > avail {
                return Err(ENDED.into());
            }
            let leading = ((c >> 57) & 31) as u32;
            let mut significant = ((c >> 51) & 63) as u32;
            if significant == 0 {
                significant = 64;
            }
            if leading + significant > 64 {
                return Err(format!(
                    "value window of {leading} leading zeros and {significant} significant bits exceeds 64 bits"
                ));
            }
            self.leading = leading;
            self.trailing = 64 - leading - significant;
            13
        };
        let significant = 64 - self.leading - self.trailing;
        let total = used + control + significant as usize;
        let xor = if total <= 57 {
            // Everything is in `w`.
            if total > avail {
                return Err(ENDED.into());
            }
            r.skip(total);
            (c << control) >> (64 - significant)
        } else {
            if used + control > avail {
                return Err(ENDED.into());
            }
            r.skip(used + control);
            r.bits(significant).ok_or(ENDED)?
        };
        self.value_bits ^= xor << self.trailing;
        Ok(())
    }
}

/// Sign-extends an `n`-bit bucket the way the encoder wrote it: the range
/// is `-(2^(n-1) - 1) ..= 2^(n-1)`, so only values above `2^(n-1)` are
/// negative.
#[inline]
fn signed_bucket(bits: u64, n: u32) -> i64 {
    if bits > 1u64 << (n - 1) {
        bits.wrapping_sub(1u64 << n) as i64
    } else {
        bits as i64
    }
}

impl Iterator for XorDecoder<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_bits()
            .map(|s| s.map(|(t, bits)| (t, f64::from_bits(bits))))
            .transpose()
    }
}

/// Decodes a whole XOR chunk into (timestamp ms, value) pairs.
pub fn decode_xor(chunk: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let mut d = XorDecoder::new(chunk)?;
    let mut out = Vec::with_capacity(d.num_samples());
    while let Some((t, bits)) = d.next_bits()? {
        out.push((t, f64::from_bits(bits)));
    }
    Ok(out)
}

/// Test-only XOR encoder: Prometheus' appender rewritten to round-trip
/// arbitrary series through the decoder.
#[cfg(test)]
pub(crate) mod encoder {
    /// A bit stream writer: bits are appended most significant first, and
    /// `free` counts the unused low bits of the last byte.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        free: u32,
    }

    impl BitWriter {
        fn bit(&mut self, one: bool) {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            self.free -= 1;
            if one {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 1 << self.free;
            }
        }

        /// Writes the low `n` bits of `v`, most significant first.
        fn bits(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1 == 1);
            }
        }
    }

    fn fits(x: i64, n: u32) -> bool {
        -((1i64 << (n - 1)) - 1) <= x && x <= 1i64 << (n - 1)
    }

    /// Encodes samples (timestamp ms, value bits) as Prometheus would.
    pub(crate) fn encode(samples: &[(i64, u64)]) -> Vec<u8> {
        assert!(samples.len() <= usize::from(u16::MAX));
        let mut w = BitWriter::default();
        let (mut t_prev, mut v_prev, mut delta_prev) = (0i64, 0u64, 0u64);
        let (mut leading, mut trailing) = (0xffu32, 0u32);
        for (i, &(t, v)) in samples.iter().enumerate() {
            let mut delta = 0u64;
            if i == 0 {
                let zz = ((t << 1) ^ (t >> 63)) as u64;
                write_uvarint(&mut w, zz);
                w.bits(v, 64);
            } else {
                delta = t.wrapping_sub(t_prev) as u64;
                if i == 1 {
                    write_uvarint(&mut w, delta);
                } else {
                    let dod = delta.wrapping_sub(delta_prev) as i64;
                    if dod == 0 {
                        w.bit(false);
                    } else if fits(dod, 14) {
                        w.bits(0b10, 2);
                        w.bits(dod as u64, 14);
                    } else if fits(dod, 17) {
                        w.bits(0b110, 3);
                        w.bits(dod as u64, 17);
                    } else if fits(dod, 20) {
                        w.bits(0b1110, 4);
                        w.bits(dod as u64, 20);
                    } else {
                        w.bits(0b1111, 4);
                        w.bits(dod as u64, 64);
                    }
                }
                let xor = v ^ v_prev;
                if xor == 0 {
                    w.bit(false);
                } else {
                    w.bit(true);
                    let lz = xor.leading_zeros().min(31);
                    let tz = xor.trailing_zeros();
                    if leading != 0xff && lz >= leading && tz >= trailing {
                        w.bit(false);
                        w.bits(xor >> trailing, 64 - leading - trailing);
                    } else {
                        leading = lz;
                        trailing = tz;
                        w.bit(true);
                        w.bits(u64::from(lz), 5);
                        let sig = 64 - lz - tz;
                        w.bits(u64::from(sig), 6); // 64 wraps to 0 in 6 bits
                        w.bits(xor >> tz, sig);
                    }
                }
            }
            t_prev = t;
            v_prev = v;
            delta_prev = delta;
        }
        let mut out = (samples.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&w.bytes);
        out
    }

    fn write_uvarint(w: &mut BitWriter, mut x: u64) {
        while x >= 0x80 {
            w.bits((x as u8 | 0x80).into(), 8);
            x >>= 7;
        }
        w.bits(x, 8);
    }
}

#[cfg(test)]
mod tests {
    use super::encoder::encode;
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(samples: &[(i64, u64)]) -> Vec<(i64, u64)> {
        let chunk = encode(samples);
        let mut d = XorDecoder::new(&chunk).unwrap();
        assert_eq!(d.num_samples(), samples.len());
        let mut out = Vec::new();
        while let Some(s) = d.next_bits().unwrap() {
            out.push(s);
        }
        out
    }

    /// The encoder writes the documented header: the sample count, then the
    /// first timestamp as a zig-zag varint; NaN payloads survive.
    #[test]
    fn header_layout_and_nan_payloads() {
        let samples = [
            (1_700_000_000_000i64, 1.0f64.to_bits()),
            (1_700_000_015_000, 2.0f64.to_bits()),
            (1_700_000_030_000, 3.0f64.to_bits()),
            (1_700_000_045_000, 2.5f64.to_bits()),
            (1_700_000_060_000, 0x7ff8_0000_0000_0001),
            (1_700_000_075_100, 0x7ff0_0000_0000_0002),
        ];
        assert_eq!(roundtrip(&samples), samples);
        // Check the first bytes against the layout by hand: count 6, then the
        // zig-zag varint of the first timestamp.
        let chunk = encode(&samples);
        assert_eq!(&chunk[..2], &[0, 6]);
        let zz = (1_700_000_000_000u64) << 1;
        let mut first = Vec::new();
        let mut x = zz;
        while x >= 0x80 {
            first.push(x as u8 | 0x80);
            x >>= 7;
        }
        first.push(x as u8);
        assert_eq!(&chunk[2..2 + first.len()], &first[..]);
    }

    /// A chunk written by Prometheus 2.42's own appender: `promtool tsdb
    /// create-blocks-from openmetrics` on 25 samples, the XOR chunk then cut
    /// out of the block's `chunks/000001` file. The expected samples are
    /// what `promtool tsdb dump` printed for that block. Timestamps cover
    /// the 0, 14-bit and 64-bit delta-of-delta buckets (ms offsets, a jump
    /// of 10 minutes); values cover repeats, NaN (Go's `math.NaN()` bits),
    /// infinities, tiny and huge magnitudes.
    #[test]
    #[allow(clippy::approx_constant)] // 3.14159 and 2.71828 are fixture data
    fn decodes_a_chunk_written_by_prometheus() {
        let hex = [
        "001980ccc9fdf9623ff000000000000098753097ffdb41c000e03e003dfff60faf8f790f22001d678001cfcf3f90f220",
        "01d676ffff0ffffe000000000000600097fff40fe240c9fbe76c96003fa13cff8140b66057f1febf94d5e57a4023fb50",
        "00000000000e124f8a0000000000000003ba9162bfec0000000000004000000008637bd07e0000000000123811013600",
        "00218def41ffffffffffffb8d54404f243f3e0370cdc800327bc196c5c7f97ffadf84cad57bc864f1a50093333333333",
        "335ac39900380000000000002001aaaaaaaaaaaae0",
        ]
        .concat();
        let chunk: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let expected: [(i64, f64); 25] = [
            (1699999200000, 1.0),
            (1699999215000, 1.0),
            (1699999230000, 2.0),
            (1699999245000, 2.5),
            (1699999260001, -3.25),
            (1699999275000, 1e300),
            (1699999290000, f64::NAN),
            (1699999304999, 0.0),
            (1699999320000, 0.0),
            (1699999335000, 123456.789),
            (1699999350000, -1e-07),
            (1699999365000, 42.0),
            (1699999380000, 42.0),
            (1699999395000, 42.0),
            (1699999410000, f64::INFINITY),
            (1699999500000, f64::NEG_INFINITY),
            (1699999501000, 7.0),
            (1699999502000, 7.000001),
            (1700000100000, 1.099511627776e12),
            (1700000115000, 3.14159),
            (1700000130000, 2.71828),
            (1700000145000, -1.0),
            (1700000200500, 0.1),
            (1700000215500, 0.2),
            (1700000230500, 0.30000000000000004),
        ];
        let got = decode_xor(&chunk).unwrap();
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.0, e.0, "timestamp of sample {i}");
            if e.1.is_nan() {
                assert_eq!(g.1.to_bits(), 0x7ff8_0000_0000_0001, "Go's NaN, sample {i}");
            } else {
                assert_eq!(g.1.to_bits(), e.1.to_bits(), "value of sample {i}");
            }
        }
        // The test encoder writes the same bytes as Prometheus for them.
        let bits: Vec<(i64, u64)> = got.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(encode(&bits), chunk);
    }

    /// Another chunk from promtool, with the delta of delta at each
    /// bucket's edges (8192, -8191, 8193, 65536, -65535, 65537, 524288,
    /// -524287, 524289 ms): the signed ranges are asymmetric, and an
    /// off-by-one there is invisible on regular data.
    #[test]
    fn bucket_edges_match_a_chunk_written_by_prometheus() {
        let hex = "000c80ccc9fdf96200000000000000000ac45fffa000c25fffa001d626e1000cba00011e8000ea13f840007687fa\
                   00003609bd000031f8000000000040000cb0007ac6f4";
        let chunk: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let times = [
            1699999200000i64,
            1699999200010,
            1699999208212,
            1699999208223,
            1699999216427,
            1699999290167,
            1699999298372,
            1699999372114,
            1699999970144,
            1700000043887,
            1700000641919,
            1700001239954,
        ];
        let expected: Vec<(i64, f64)> = times
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i as f64 * 1.5))
            .collect();
        assert_eq!(decode_xor(&chunk).unwrap(), expected);
        let bits: Vec<(i64, u64)> = expected.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(encode(&bits), chunk);
    }

    #[test]
    fn every_timestamp_bucket_and_edge_decodes() {
        // Deltas of delta at each bucket's positive edge, just past it, and
        // at the negative edge; then a 64-bit jump backwards in time.
        let mut t = 1_000i64;
        let mut delta = 10i64;
        let mut samples = vec![(t, 0u64)];
        for dod in [
            0,
            8192,
            -8191,
            8193,
            65536,
            -65535,
            65537,
            524288,
            -524287,
            524289,
            i64::MIN / 4,
            1,
        ] {
            delta += dod;
            t = t.wrapping_add(delta);
            samples.push((t, samples.len() as u64));
        }
        assert_eq!(roundtrip(&samples), samples);
    }

    #[test]
    fn empty_and_single_sample_chunks() {
        assert_eq!(roundtrip(&[]), vec![]);
        assert_eq!(
            roundtrip(&[(-5, f64::NAN.to_bits())]),
            vec![(-5, f64::NAN.to_bits())]
        );
    }

    #[test]
    fn truncated_and_malformed_chunks_are_errors_not_panics() {
        assert!(matches!(XorDecoder::new(&[0]), Err(ChunkError::Corrupt(_))));
        let samples: Vec<(i64, u64)> = (0..50)
            .map(|i| (i * 15_000, (i as f64 * 0.37).to_bits()))
            .collect();
        let chunk = encode(&samples);
        for cut in 2..chunk.len() {
            let r = decode_xor(&chunk[..cut]);
            let err = r.expect_err("a cut chunk must not decode fully");
            assert!(err.to_string().contains("corrupt XOR chunk"), "{err}");
        }
        // A header promising more samples than there are. (One or two extra
        // may decode from the last byte's zero padding, as in Prometheus: a
        // repeated sample costs two bits. Four need eight bits, more than any
        // padding.)
        let mut more = chunk.clone();
        more[1] += 4;
        assert!(
            decode_xor(&more)
                .unwrap_err()
                .to_string()
                .contains("ends early")
        );
        // A new value window wider than 64 bits: leading 31, count 40.
        let mut w = vec![0u8, 2];
        let zz_t = 0u8; // timestamp 0
        w.push(zz_t);
        w.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        w.push(1); // delta 1
        // control bits 1,1 then leading=31 (11111) then 40 (101000) then padding.
        let bits: u64 = (0b11 << 11 | 0b11111 << 6 | 0b101000) << (64 - 13);
        w.extend_from_slice(&bits.to_be_bytes());
        let err = decode_xor(&w).unwrap_err().to_string();
        assert!(err.contains("exceeds 64 bits"), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_xor(&bytes);
        }
    }

    fn series() -> impl Strategy<Value = Vec<(i64, u64)>> {
        let delta = prop_oneof![
            Just(15_000i64),
            14_990i64..15_010,
            0i64..100_000,
            0i64..(1 << 40),
            any::<i64>(),
        ];
        let value = prop_oneof![
            any::<u64>(),
            (-1000i64..1000).prop_map(|v| (v as f64).to_bits()),
            any::<f64>().prop_map(f64::to_bits),
            Just(0x7ff0_0000_0000_0002u64),
            Just(f64::NAN.to_bits()),
            (0u64..8).prop_map(|p| 0x7ff8_0000_0000_0000 | p),
        ];
        (any::<i64>(), prop::collection::vec((delta, value), 0..400)).prop_map(|(start, steps)| {
            let mut t = start;
            steps
                .into_iter()
                .map(|(d, v)| {
                    t = t.wrapping_add(d);
                    (t, v)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn arbitrary_series_roundtrip_bit_for_bit(samples in series()) {
            prop_assert_eq!(roundtrip(&samples), samples);
        }
    }

    /// Decode speed in samples per second; run in release mode:
    /// `cargo test --release -p imd-analyzer --lib xor::tests::decode_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn decode_speed() {
        // 120-sample chunks (Prometheus' usual size) of a jittery gauge.
        let mut chunks = Vec::new();
        let mut seed = 42u64;
        for c in 0..1000i64 {
            let samples: Vec<(i64, u64)> = (0..120i64)
                .map(|i| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let jitter = (seed >> 60) as i64;
                    let v = ((seed >> 33) % 1000) as f64 / 10.0;
                    (c * 1_800_000 + i * 15_000 + jitter, v.to_bits())
                })
                .collect();
            chunks.push(encode(&samples));
        }
        let start = std::time::Instant::now();
        let mut n = 0usize;
        let mut sum = 0u64;
        for _ in 0..100 {
            for c in &chunks {
                let mut d = XorDecoder::new(c).unwrap();
                while let Some((t, v)) = d.next_bits().unwrap() {
                    sum = sum.wrapping_add(t as u64 ^ v);
                    n += 1;
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "decoded {n} samples in {secs:.3} s: {:.1} M samples/s (checksum {sum})",
            n as f64 / secs / 1e6
        );
    }
}
