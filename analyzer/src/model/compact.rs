//! Compact saved forms shared by the models' state and the engine's: floats
//! as base64 of their little-endian bytes, and times as runs of equal
//! spacing. A state file holds thousands of series, each with thousands of
//! numbers; as decimal JSON text each float takes 10 to 24 bytes, as its
//! bytes in base64 5.3 (f32) or 10.7 (f64), and exactly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// Defines a list of floats saved as base64 of their little-endian bytes.
/// (A macro rather than a generic type, so that each keeps its plain
/// tuple-struct constructor.)
macro_rules! base64_floats {
    ($(#[$doc:meta])* $name:ident, $float:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name(pub Vec<$float>);

        impl $name {
            /// The base64 text of `values`' bytes.
            pub fn text(values: &[$float]) -> String {
                let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
                B64.encode(bytes)
            }

            /// The values in a base64 text, or why it holds none.
            pub fn from_text(text: &str) -> Result<Vec<$float>, String> {
                const SIZE: usize = std::mem::size_of::<$float>();
                let bytes = B64
                    .decode(text.as_bytes())
                    .map_err(|e| format!("bad base64: {e}"))?;
                if bytes.len() % SIZE != 0 {
                    return Err(format!(
                        "{} bytes is not a whole number of {} values",
                        bytes.len(),
                        stringify!($float)
                    ));
                }
                Ok(bytes
                    .chunks_exact(SIZE)
                    .map(|c| {
                        let mut b = [0; SIZE];
                        b.copy_from_slice(c);
                        <$float>::from_le_bytes(b)
                    })
                    .collect())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&$name::text(&self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $name::from_text(&text)
                    .map($name)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

base64_floats!(
    /// `f32` values saved as base64 of their bytes (a neural network's
    /// weights, a window's distances from its blocks' bases).
    F32s,
    f32
);

base64_floats!(
    /// `f64` values saved as base64 of their bytes (values and scores kept
    /// as they are).
    F64s,
    f64
);

/// Serde form (`#[serde(with = ...)]`) of a `Vec<f64>` field saved as
/// [`F64s`] text, which also reads the list of JSON numbers such fields
/// held before 2026-12-06 (a model's online errors).
pub mod f64s_or_list {
    use super::F64s;
    use serde::de::{Error, SeqAccess, Visitor};

    /// Writes the values as [`F64s`] text.
    pub fn serialize<S: serde::Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&F64s::text(values))
    }

    /// Reads [`F64s`] text or a list of numbers.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = Vec<f64>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("base64 text of f64 values, or a list of numbers")
            }
            fn visit_str<E: Error>(self, text: &str) -> Result<Vec<f64>, E> {
                F64s::from_text(text).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f64>, A::Error> {
                let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(v) = seq.next_element()? {
                    values.push(v);
                }
                Ok(values)
            }
        }
        d.deserialize_any(Either)
    }
}

/// A run of equal spacings between consecutive times: `(spacing, count)`.
pub type Run = (i64, u32);

/// Counts one more spacing `d` after the runs ending in `last`: that run
/// grows when it has the same spacing (and room); otherwise the new run
/// to append is returned.
pub fn add_spacing(last: Option<&mut Run>, d: i64) -> Option<Run> {
    match last {
        Some((spacing, n)) if *spacing == d && *n < u32::MAX => {
            *n += 1;
            None
        }
        _ => Some((d, 1)),
    }
}

/// The runs of spacing between consecutive `times`.
pub fn runs_of(times: impl IntoIterator<Item = i64>) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut prev = None;
    for t in times {
        if let Some(p) = prev {
            let d = i64::wrapping_sub(t, p);
            let new = add_spacing(runs.last_mut(), d);
            runs.extend(new);
        }
        prev = Some(t);
    }
    runs
}

/// Whether `runs` space exactly `points` times (one spacing fewer than
/// points, and no empty run); the error says what they hold instead.
pub fn check_runs(runs: &[Run], points: usize) -> Result<(), String> {
    let spaced: u64 = runs.iter().map(|r| u64::from(r.1)).sum();
    if spaced != points.saturating_sub(1) as u64 || runs.iter().any(|r| r.1 == 0) {
        return Err(format!(
            "{points} points need {} spacings, the runs hold {spaced}{}",
            points.saturating_sub(1),
            if runs.iter().any(|r| r.1 == 0) {
                " (one run is empty)"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// The times from `first_t` on, spaced as `runs` say (`first_t` alone when
/// there are no runs).
pub fn times(first_t: i64, runs: &[Run]) -> impl Iterator<Item = i64> + '_ {
    let spaced = runs
        .iter()
        .flat_map(|&(d, n)| std::iter::repeat_n(d, n as usize))
        .scan(first_t, |t, d| {
            *t = t.wrapping_add(d);
            Some(*t)
        });
    std::iter::once(first_t).chain(spaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn floats_refuse_a_partial_value() {
        assert!(serde_json::from_str::<F32s>("\"AAA\"").is_err());
        let err = serde_json::from_str::<F64s>("\"AAAAAA==\"").unwrap_err();
        assert!(err.to_string().contains("4 bytes"), "{err}");
        assert!(serde_json::from_str::<F64s>("\"not base64!\"").is_err());
    }

    #[test]
    fn a_float_field_reads_its_text_and_the_old_list() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Holder {
            #[serde(with = "f64s_or_list")]
            xs: Vec<f64>,
        }
        let h = Holder {
            xs: vec![0.1, -2.5, 1e300],
        };
        let text = serde_json::to_string(&h).unwrap();
        assert!(text.contains(&F64s::text(&h.xs)), "{text}");
        assert_eq!(serde_json::from_str::<Holder>(&text).unwrap(), h);
        let old: Holder = serde_json::from_str(r#"{"xs": [0.1, -2.5, 1e300]}"#).unwrap();
        assert_eq!(old, h);
        let err = serde_json::from_str::<Holder>(r#"{"xs": "AAAA"}"#).unwrap_err();
        assert!(err.to_string().contains("3 bytes"), "{err}");
        assert!(serde_json::from_str::<Holder>(r#"{"xs": {"a": 1}}"#).is_err());
    }

    #[test]
    fn empty_runs_and_wrong_counts_are_refused() {
        assert!(check_runs(&[], 0).is_ok());
        assert!(check_runs(&[], 1).is_ok());
        assert!(check_runs(&[(10, 2)], 3).is_ok());
        assert!(check_runs(&[(10, 2)], 4).unwrap_err().contains("hold 2"));
        let err = check_runs(&[(10, 2), (5, 0)], 3).unwrap_err();
        assert!(err.contains("empty"), "{err}");
    }

    proptest! {
        #[test]
        fn floats_save_and_load_to_themselves(
            xs in proptest::collection::vec(any::<f64>(), 0..50),
        ) {
            let text = serde_json::to_string(&F64s(xs.clone())).unwrap();
            let back: F64s = serde_json::from_str(&text).unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&back.0), bits(&xs));
            let small: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
            let text = serde_json::to_string(&F32s(small.clone())).unwrap();
            let back: F32s = serde_json::from_str(&text).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&back.0), bits(&small));
        }

        #[test]
        fn runs_give_back_the_times(
            first in any::<i64>(),
            steps in proptest::collection::vec(prop_oneof![Just(15_000i64), any::<i64>()], 0..60),
        ) {
            let ts: Vec<i64> = std::iter::once(first)
                .chain(steps.iter().scan(first, |t, d| {
                    *t = t.wrapping_add(*d);
                    Some(*t)
                }))
                .collect();
            let runs = runs_of(ts.iter().copied());
            prop_assert!(check_runs(&runs, ts.len()).is_ok());
            prop_assert!(runs.windows(2).all(|w| w[0].0 != w[1].0));
            prop_assert_eq!(times(first, &runs).collect::<Vec<_>>(), ts);
        }
    }
}
