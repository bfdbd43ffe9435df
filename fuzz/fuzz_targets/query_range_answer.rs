//! A `query_range` answer (the HTTP API's JSON, as a query_range source or
//! VictoriaMetrics sends it) on arbitrary bytes: read with a typed error
//! for anything malformed, never a panic; what it accepts has sorted labels.
#![no_main]

use imd_analyzer::read::promql::parse_matrix;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse_matrix(data) {
        for (labels, _) in &m.series {
            assert!(labels.windows(2).all(|w| w[0] <= w[1]), "{labels:?}");
        }
    }
});
