//! Synthetic GGUF files: every value type, v2/v3, alignment, and each kind of bad input.

mod common;

use common::{all_values, Bytes, Gguf, Tensor};
use huarizo_formats::{parse_header, GgmlType, GgufError, GgufFile, ParseError, Value};

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// A valid small file: all value types plus three tensors of different types.
fn sample(version: u32) -> Gguf {
    let mut g = Gguf::new(version);
    g.metadata = all_values();
    g.kv("general.architecture", s("llama"))
        .tensor(Tensor::new("a.f32", &[3, 2], 0, 24))
        .tensor(Tensor::new("b.q8_0", &[64, 2], 8, 4 * 34))
        .tensor(Tensor::new("c.q4_k", &[256], 12, 144))
}

fn err(bytes: &[u8]) -> ParseError {
    match parse_header(bytes) {
        Ok(h) => panic!("expected an error, parsed {} tensors", h.tensors.len()),
        Err(e) => e,
    }
}

/// Header prefix: magic, version, counts.
fn prefix(version: u32, n_tensors: u64, n_kv: u64) -> Bytes {
    let mut b = Bytes::default();
    b.0.extend_from_slice(b"GGUF");
    b.u32(version).u64(n_tensors).u64(n_kv);
    b
}

#[test]
fn every_value_type_round_trips_v2_and_v3() {
    for version in [2, 3] {
        let g = sample(version);
        let h = parse_header(&g.build()).expect("valid file");
        assert_eq!(h.version, version);
        assert_eq!(h.metadata, g.metadata);
        assert_eq!(h.alignment, 32);
        assert_eq!(h.data_offset % 32, 0);
        let names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.f32", "b.q8_0", "c.q4_k"]);
        assert_eq!(h.tensors[1].ggml_type, GgmlType::Q8_0);
        assert_eq!(h.tensors[1].shape, [64, 2]);
        assert_eq!(h.tensors[1].n_bytes, 136);
        assert_eq!(h.tensors[1].n_elements(), 128);
        assert_eq!(h.tensors[2].ggml_type, GgmlType::Q4_K);
        assert_eq!(h.tensors[0].offset, 0);
        assert_eq!(h.tensors[1].offset, 32);
        assert_eq!(h.tensors[2].offset, 192);
        assert_eq!(h.get("t.nested3").unwrap().as_array().unwrap().len(), 1);
    }
}

#[test]
fn open_maps_and_slices_tensor_data() {
    let g = sample(3);
    let path = common::temp_file("open", &g.build());
    let f = GgufFile::open(&path).expect("open");
    std::fs::remove_file(&path).ok();
    assert_eq!(f.path(), path);
    assert_eq!(f.version(), 3);
    assert_eq!(f.metadata().len(), g.metadata.len());
    assert_eq!(
        f.get("general.architecture").and_then(Value::as_str),
        Some("llama")
    );
    assert_eq!(f.get("t.u32").and_then(Value::as_u64), Some(4_000_000_000));
    assert_eq!(f.get("missing"), None);
    assert_eq!(f.tensors().len(), 3);
    assert!(f.tensor("nope").is_none());
    for (ti, t) in f.tensors().iter().enumerate() {
        assert_eq!(f.tensor(&t.name), Some(t));
        let data = f.tensor_data(t);
        assert_eq!(data.len(), t.n_bytes);
        for (i, &b) in data.iter().enumerate() {
            assert_eq!(b, Gguf::pattern(ti, i), "tensor {} byte {i}", t.name);
        }
    }
}

#[test]
fn custom_alignment() {
    for align in [1u32, 8, 64, 4096] {
        let g = Gguf::new(3)
            .kv("general.alignment", Value::U32(align))
            .tensor(Tensor::new("x", &[5], 0, 20))
            .tensor(Tensor::new("y", &[3], 1, 6));
        let bytes = g.build();
        let h = parse_header(&bytes).expect("valid");
        assert_eq!(h.alignment, u64::from(align));
        assert_eq!(h.data_offset % u64::from(align), 0);
        assert_eq!(h.tensors[1].offset, 20u64.next_multiple_of(align.into()));
        assert_eq!(h.tensors[1].offset % u64::from(align), 0);
    }
}

#[test]
fn empty_file_no_tensors_is_valid() {
    let bytes = prefix(3, 0, 0).0;
    let h = parse_header(&bytes).expect("valid");
    assert!(h.metadata.is_empty() && h.tensors.is_empty());
    assert_eq!(h.data_offset, 32);
}

#[test]
fn zero_dim_and_scalar_tensors() {
    let g = Gguf::new(3)
        .tensor(Tensor::new("scalar", &[], 0, 4))
        .tensor(Tensor::new("empty", &[0, 7], 8, 0));
    let h = parse_header(&g.build()).expect("valid");
    assert_eq!(h.tensors[0].shape, Vec::<u64>::new());
    assert_eq!(h.tensors[0].n_bytes, 4);
    assert_eq!(h.tensors[1].n_bytes, 0);
}

// ---- bad input: every error names the fault ----

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample(3).build();
    for len in 0..bytes.len() {
        let e = err(&bytes[..len]);
        assert!(
            matches!(
                e,
                ParseError::Truncated { .. }
                    | ParseError::CountTooLarge { .. }
                    | ParseError::TensorOutOfBounds { .. }
            ),
            "len {len}: {e}"
        );
    }
    let mut b = prefix(3, 0, 1);
    b.str("general.name").value(&s("abcdef"));
    let e = err(&b.0[..b.0.len() - 2]);
    assert_eq!(
        e.to_string(),
        "truncated file: value of key `general.name` at offset 56 needs 6 bytes, only 4 remain"
    );
}

#[test]
fn wrong_magic() {
    let mut bytes = sample(3).build();
    bytes[..4].copy_from_slice(b"GGML");
    let e = err(&bytes);
    assert_eq!(e, ParseError::BadMagic { got: *b"GGML" });
    assert!(e.to_string().starts_with("not a GGUF file"), "{e}");
}

#[test]
fn unsupported_versions() {
    let e = err(&sample(1).build());
    assert_eq!(e.to_string(), "unsupported GGUF version 1, supported: 2, 3");
    assert_eq!(
        err(&sample(4).build()),
        ParseError::UnsupportedVersion { version: 4 }
    );
    let e = err(&sample(3u32.swap_bytes()).build());
    assert!(matches!(e, ParseError::BigEndian { .. }), "{e}");
}

#[test]
fn errors_from_open_name_the_path() {
    let path = common::temp_file("v1", &sample(1).build());
    let e = GgufFile::open(&path).unwrap_err();
    std::fs::remove_file(&path).ok();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: unsupported GGUF version 1, supported: 2, 3",
            path.display()
        )
    );
    assert_eq!(e.path(), path);
    assert!(matches!(
        e.parse_error(),
        Some(ParseError::UnsupportedVersion { version: 1 })
    ));

    let path = common::temp_file("empty", b"");
    let e = GgufFile::open(&path).unwrap_err();
    std::fs::remove_file(&path).ok();
    assert!(
        e.to_string()
            .starts_with(&format!("{}: truncated file", path.display())),
        "{e}"
    );

    let missing = std::path::Path::new("/nonexistent/huarizo/model.gguf");
    let e = GgufFile::open(missing).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/huarizo/model.gguf: "),
        "{e}"
    );
}

#[test]
fn tensor_data_past_end_of_file() {
    let g = Gguf::new(3).tensor(Tensor::new("w", &[4], 0, 16));
    let mut bytes = g.build();
    bytes.truncate(bytes.len() - 1);
    let e = err(&bytes);
    assert!(
        matches!(&e, ParseError::TensorOutOfBounds { tensor, .. } if tensor == "w"),
        "{e}"
    );
    assert!(
        e.to_string().contains("`w`") && e.to_string().contains("past the end"),
        "{e}"
    );

    // An offset so large that data_offset + offset overflows.
    let g = Gguf::new(3).tensor(Tensor::new("far", &[4], 0, 16).at(u64::MAX - 31));
    let e = err(&g.build());
    assert!(matches!(e, ParseError::TensorOutOfBounds { .. }), "{e}");
}

#[test]
fn overlapping_tensors() {
    let g = Gguf::new(3)
        .tensor(Tensor::new("a", &[16], 0, 64).at(0))
        .tensor(Tensor::new("b", &[8], 0, 32).at(32));
    let e = err(&g.build());
    assert_eq!(
        e,
        ParseError::OverlappingTensors {
            first: "a".into(),
            first_offset: 0,
            first_bytes: 64,
            second: "b".into(),
            second_offset: 32,
        }
    );
    // Same offset, listed in the other order.
    let g = Gguf::new(3)
        .tensor(Tensor::new("b", &[8], 0, 32).at(64))
        .tensor(Tensor::new("a", &[8], 0, 32).at(64));
    assert!(matches!(
        err(&g.build()),
        ParseError::OverlappingTensors { .. }
    ));
}

#[test]
fn absurd_counts() {
    let e = err(&prefix(3, u64::MAX, 0).0);
    assert!(
        matches!(&e, ParseError::CountTooLarge { what, count: u64::MAX, offset: 8, .. } if what == "tensor"),
        "{e}"
    );
    let e = err(&prefix(3, 0, 1 << 40).0);
    assert!(
        matches!(e, ParseError::CountTooLarge { offset: 16, .. }),
        "{e}"
    );

    // An array claiming 2^61 u64 elements (count × 8 overflows u64).
    let mut b = prefix(3, 0, 1);
    b.str("big").u32(9).u32(10).u64(1 << 61);
    let e = err(&b.0);
    assert!(matches!(e, ParseError::CountTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("`big`"), "{e}");

    // A string claiming u64::MAX bytes.
    let mut b = prefix(3, 0, 1);
    b.u64(u64::MAX).u64(0);
    let e = err(&b.0);
    assert!(
        matches!(
            e,
            ParseError::Truncated {
                needed: u64::MAX,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn absurd_dimensions() {
    let g = Gguf::new(3).tensor(Tensor::new("huge", &[1 << 32, 1 << 32, 1 << 32], 0, 0));
    let e = err(&g.build());
    assert!(
        matches!(&e, ParseError::ShapeOverflow { tensor, .. } if tensor == "huge"),
        "{e}"
    );

    // Element count fits u64 but not ggml's int64.
    let g = Gguf::new(3).tensor(Tensor::new("big", &[1 << 32, 1 << 31], 0, 0));
    assert!(matches!(err(&g.build()), ParseError::ShapeOverflow { .. }));

    // Zero elements, but the row (or a stride) is unrepresentable: still an error,
    // since downstream code computes row bytes and strides from the shape.
    for shape in [
        &[1u64 << 62, 0][..],
        &[32, 1 << 63, 0],
        &[0, 1 << 40, 1 << 40],
    ] {
        let g = Gguf::new(3).tensor(Tensor::new("empty", shape, 0, 0));
        let e = err(&g.build());
        assert!(
            matches!(e, ParseError::ShapeOverflow { .. }),
            "{shape:?}: {e}"
        );
    }

    let g = Gguf::new(3).tensor(Tensor::new("odd", &[33, 2], 8, 0));
    let e = err(&g.build());
    assert!(
        matches!(
            &e,
            ParseError::NotBlockMultiple {
                row: 33,
                block_size: 32,
                ggml_type: GgmlType::Q8_0,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("`odd`") && e.to_string().contains("Q8_0"),
        "{e}"
    );

    let g = Gguf::new(3).tensor(Tensor::new("five", &[1, 1, 1, 1, 1], 0, 4));
    let e = err(&g.build());
    assert!(
        matches!(&e, ParseError::TooManyDims { n_dims: 5, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("`five`"), "{e}");

    // n_dims absurd: must fail on the count, not try to read 4 billion dims.
    let mut b = prefix(3, 1, 0);
    b.str("x").u32(u32::MAX).u64(0).u64(0);
    assert!(matches!(err(&b.0), ParseError::TooManyDims { .. }));
}

#[test]
fn duplicates() {
    let g = Gguf::new(3).kv("k", Value::U8(1)).kv("k", Value::U8(2));
    let e = err(&g.build());
    assert!(
        matches!(&e, ParseError::DuplicateKey { key, offset: 38 } if key == "k"),
        "{e}"
    );
    let g = Gguf::new(3)
        .tensor(Tensor::new("w", &[1], 0, 4))
        .tensor(Tensor::new("w", &[1], 0, 4));
    let e = err(&g.build());
    assert!(
        matches!(&e, ParseError::DuplicateTensor { tensor, .. } if tensor == "w"),
        "{e}"
    );
}

#[test]
fn invalid_utf8() {
    let mut b = prefix(3, 0, 1);
    b.raw_str(b"bad\xff");
    b.u32(0).u8(1);
    let e = err(&b.0);
    assert_eq!(
        e,
        ParseError::InvalidUtf8 {
            what: "key of metadata entry 0".into(),
            offset: 24
        }
    );

    let mut b = prefix(3, 0, 1);
    b.str("general.name").u32(8).raw_str(b"\xc3\x28");
    let e = err(&b.0);
    assert!(
        e.to_string().contains("`general.name`") && e.to_string().contains("UTF-8"),
        "{e}"
    );

    let mut b = prefix(3, 1, 0);
    b.raw_str(b"\x80tensor").u32(1).u64(1).u32(0).u64(0);
    assert!(matches!(
        err(&b.0),
        ParseError::InvalidUtf8 { offset: 24, .. }
    ));
}

#[test]
fn unknown_metadata_value_type() {
    let mut b = prefix(3, 0, 1);
    b.str("k").u32(13).u64(0);
    let e = err(&b.0);
    assert_eq!(
        e,
        ParseError::UnknownValueType {
            key: "k".into(),
            type_id: 13,
            offset: 33
        }
    );
    // Unknown array element type.
    let mut b = prefix(3, 0, 1);
    b.str("arr").u32(9).u32(99).u64(1).u64(0);
    let e = err(&b.0);
    assert!(
        matches!(e, ParseError::UnknownValueType { type_id: 99, .. }),
        "{e}"
    );
}

#[test]
fn unknown_tensor_type() {
    let g = Gguf::new(3).tensor(Tensor::new("blk.0.w", &[32], 4, 0));
    let e = err(&g.build());
    assert!(
        matches!(e, ParseError::UnknownTensorType { type_id: 4, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains("`blk.0.w`") && msg.contains(" 4 "), "{msg}");
    assert!(msg.contains("Q4_K=12") && msg.contains("BF16=30"), "{msg}");
}

#[test]
fn misaligned_tensor_offset() {
    let g = Gguf::new(3).tensor(Tensor::new("w", &[1], 0, 4).at(4));
    let e = err(&g.build());
    assert_eq!(
        e,
        ParseError::MisalignedTensor {
            tensor: "w".into(),
            offset: 4,
            alignment: 32
        }
    );
}

#[test]
fn bad_alignment() {
    for v in [
        Value::U32(0),
        Value::U32(48),
        s("32"),
        Value::I32(-32),
        Value::U64(1 << 40),
    ] {
        let g = Gguf::new(3).kv("general.alignment", v.clone());
        let e = err(&g.build());
        assert!(matches!(e, ParseError::BadAlignment { .. }), "{v:?}: {e}");
        assert!(e.to_string().contains("power of two"), "{e}");
    }
}

#[test]
fn invalid_bool() {
    let mut b = prefix(3, 0, 1);
    b.str("flag").u32(7).u8(2);
    assert_eq!(
        err(&b.0),
        ParseError::InvalidBool {
            key: "flag".into(),
            byte: 2,
            offset: 40
        }
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut b = prefix(3, 0, 1);
    b.str("deep").u32(9);
    for _ in 0..100_000 {
        b.u32(9).u64(1);
    }
    b.u32(0).u64(0);
    let e = err(&b.0);
    assert!(
        matches!(e, ParseError::NestingTooDeep { max: 16, .. }),
        "{e}"
    );
}

/// Writes fuzz seeds when `HUARIZO_FUZZ_SEEDS` names a directory (see fuzz/README.md);
/// otherwise only checks that they parse.
#[test]
fn fuzz_seeds() {
    let seeds = [
        ("sample_v3", sample(3).build()),
        ("sample_v2", sample(2).build()),
        ("empty_v3", prefix(3, 0, 0).0),
        (
            "aligned_64",
            Gguf::new(3)
                .kv("general.alignment", Value::U32(64))
                .kv("general.architecture", s("llama"))
                .tensor(Tensor::new("token_embd.weight", &[32, 2], 8, 68))
                .tensor(Tensor::new("output_norm.weight", &[4], 0, 16))
                .build(),
        ),
    ];
    for (name, bytes) in &seeds {
        parse_header(bytes).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
    if let Some(dir) = std::env::var_os("HUARIZO_FUZZ_SEEDS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("create seed dir");
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).expect("write seed");
        }
    }
}
