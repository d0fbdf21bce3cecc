//! Fuzzes `huarizo_formats::parse_header`: any byte string must give `Ok` or `Err`,
//! never a panic, an abort, or an allocation out of proportion to the input; and an
//! `Ok` header must keep the promises its docs make.

#![no_main]

use huarizo_formats::{parse_header, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = parse_header(data) else { return };
    assert!(matches!(h.version, 2 | 3));
    assert!(h.alignment.is_power_of_two());
    let mut ranges = Vec::new();
    for t in &h.tensors {
        assert!(t.shape.len() <= huarizo_formats::MAX_DIMS);
        assert_eq!(t.offset % h.alignment, 0);
        let start = h.data_offset + t.offset;
        let end = start + t.n_bytes as u64;
        assert!(end <= data.len() as u64, "tensor {} out of bounds", t.name);
        // Every row length and stride derived from the shape is representable.
        let row = t.shape.first().copied().unwrap_or(1) as usize;
        let mut stride = t.ggml_type.row_bytes(row).expect("row bytes");
        for &d in t.shape.iter().skip(1) {
            stride = stride.checked_mul(d as usize).expect("stride");
        }
        let span = t.shape.iter().try_fold(1i64, |acc, &d| {
            acc.checked_mul(i64::try_from(d.max(1)).ok()?)
        });
        assert!(span.is_some(), "span overflows int64");
        if t.n_bytes > 0 {
            ranges.push((start, end));
        }
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap");
    }
    // Exercise every accessor on every value.
    fn walk(v: &Value) {
        let _ = (
            v.as_u64(),
            v.as_i64(),
            v.as_f64(),
            v.as_f32(),
            v.as_bool(),
            v.as_str(),
        );
        let _ = v.type_name();
        if let Some(items) = v.as_array() {
            items.iter().for_each(walk);
        }
    }
    for (_, v) in &h.metadata {
        walk(v);
    }
});
