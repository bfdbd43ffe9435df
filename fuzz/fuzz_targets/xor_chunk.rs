//! The XOR chunk decoder on arbitrary bytes: never a panic, and the
//! streaming decoder agrees with the whole-chunk one.
#![no_main]

use imd_analyzer::read::remote::xor::{XorDecoder, decode_xor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = decode_xor(data);
    let Ok(mut d) = XorDecoder::new(data) else {
        assert!(whole.is_err());
        return;
    };
    let announced = d.num_samples();
    let mut streamed = Vec::new();
    let streamed_ok = loop {
        match d.next_bits() {
            Ok(Some((t, bits))) => streamed.push((t, bits)),
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    match whole {
        Ok(samples) => {
            assert!(streamed_ok);
            assert!(samples.len() <= announced);
            let bits: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            assert_eq!(bits, streamed);
        }
        Err(_) => assert!(!streamed_ok),
    }
});
