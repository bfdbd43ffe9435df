//! A STREAMED_XOR_CHUNKS answer on arbitrary bytes: frames are read,
//! checked and joined into series, every XOR chunk is decoded, and each
//! series of XOR chunks is taken in as a read and the job using it would
//! (headers and last chunks at read time, the rest later), with a typed error
//! (never a panic) for anything malformed and points in time order within
//! the range asked for.
#![no_main]

use imd_analyzer::read::remote::encoded::read_and_decode;
use imd_analyzer::read::remote::frames::SeriesStream;
use imd_analyzer::read::remote::proto::ChunkEncoding;
use imd_analyzer::read::remote::xor::decode_xor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small frame limit, so that oversized announcements are exercised.
    let mut stream = SeriesStream::new(data, 64 * 1024);
    // Each series takes at least one byte, so this ends.
    while let Ok(Some(series)) = stream.next_series() {
        let mut all_xor = true;
        for chunk in &series.chunks {
            if chunk.r#type == ChunkEncoding::Xor as i32 {
                let _ = decode_xor(&chunk.data);
            } else {
                all_xor = false;
            }
        }
        if !all_xor {
            continue;
        }
        // The whole of time, and a range that cuts chunks.
        for (from, to) in [(i64::MIN, i64::MAX), (1_000, 100_000)] {
            if let Ok((points, announced)) = read_and_decode(&series, from, to) {
                assert!(points.len() <= announced, "{} > {announced}", points.len());
                assert!(points.windows(2).all(|w| w[0].t < w[1].t));
                assert!(points.iter().all(|p| p.t >= from && p.t <= to));
            }
        }
    }
});
