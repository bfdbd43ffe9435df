//! A STREAMED_XOR_CHUNKS answer on arbitrary bytes: frames are read,
//! checked and joined into series, and every XOR chunk is decoded, with a
//! typed error (never a panic) for anything malformed.
#![no_main]

use imd_analyzer::read::remote::frames::SeriesStream;
use imd_analyzer::read::remote::proto::ChunkEncoding;
use imd_analyzer::read::remote::xor::decode_xor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small frame limit, so that oversized announcements are exercised.
    let mut stream = SeriesStream::new(data, 64 * 1024);
    // Each series takes at least one byte, so this ends.
    while let Ok(Some(series)) = stream.next_series() {
        for chunk in &series.chunks {
            if chunk.r#type == ChunkEncoding::Xor as i32 {
                let _ = decode_xor(&chunk.data);
            }
        }
    }
});
