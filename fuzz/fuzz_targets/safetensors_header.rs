//! Fuzzes `huarizo_formats::parse_safetensors`: any byte string must give `Ok` or `Err`
//! naming what is wrong, never a panic; an `Ok` list must keep its documented promises
//! (ranges inside the file, sorted, not overlapping, lengths matching shape × dtype).

#![no_main]

use huarizo_formats::parse_safetensors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tensors) = parse_safetensors(data) else { return };
    let mut end_prev = 0;
    for t in &tensors {
        let elems = t.shape.iter().product::<u64>() as usize;
        assert_eq!(t.n_bytes, elems * t.dtype.type_size(), "{}", t.name);
        assert!(t.start + t.n_bytes <= data.len(), "{} out of bounds", t.name);
        if t.n_bytes > 0 {
            assert!(t.start >= end_prev, "{} overlaps", t.name);
            end_prev = t.start + t.n_bytes;
        }
    }
});
