//! GgufWriter: synthetic files of every value type and several tensor types read back
//! equal, the layout matches an independent encoder, writes are atomic, and the real
//! SmolLM2 file (written by llama.cpp's gguf-py) copies through the writer byte for byte.

mod common;

use std::path::PathBuf;

use common::{all_values, Gguf, Tensor};
use huarizo_formats::{GgmlType, GgufFile, GgufWriter, Value, WriteError};

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// A fresh, empty temp folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("huarizo-writer-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// `n` bytes of a pattern particular to `seed`.
fn pattern(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

#[test]
fn every_value_type_and_tensor_type_round_trips() {
    let dir = temp_dir("round-trip");
    let path = dir.join("out.gguf");
    let tensors: Vec<(&str, Vec<u64>, GgmlType)> = vec![
        ("a.f32", vec![3, 2], GgmlType::F32),
        ("b.f16", vec![5], GgmlType::F16),
        ("c.q8_0", vec![64, 2, 3], GgmlType::Q8_0),
        ("d.q4_k", vec![256, 2], GgmlType::Q4_K),
        ("e.bf16", vec![2, 2, 2, 2], GgmlType::BF16),
        ("f.scalar", vec![], GgmlType::F32),
        ("g.q4_1", vec![32, 3], GgmlType::Q4_1),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in all_values() {
        w.metadata(k, v);
    }
    w.metadata("general.architecture", s("llama"));
    let mut expected = Vec::new();
    for (i, (name, shape, ty)) in tensors.iter().enumerate() {
        let rows: u64 = shape.iter().skip(1).product();
        let n = ty.row_bytes(*shape.first().unwrap_or(&1) as usize).unwrap() * rows as usize;
        let data = pattern(i as u8, n);
        if i % 2 == 0 {
            w.tensor(*name, shape.clone(), *ty, data.clone()).unwrap();
        } else {
            w.tensor_deferred(*name, shape.clone(), *ty).unwrap();
        }
        expected.push(data);
    }
    let mut filled = Vec::new();
    let len = w
        .write_with(&path, |info, buf| {
            let i = tensors.iter().position(|t| t.0 == info.name).unwrap();
            filled.push(info.name.clone());
            buf.extend_from_slice(&expected[i]);
            Ok::<_, WriteError>(())
        })
        .unwrap();
    assert_eq!(filled, ["b.f16", "d.q4_k", "f.scalar"]);

    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    assert_eq!(len % 32, 0, "the last tensor is padded too");
    assert_eq!(f.version(), 3);
    assert_eq!(f.metadata(), w.metadata_entries());
    assert_eq!(f.tensors().len(), tensors.len());
    for ((t, (name, shape, ty)), data) in f.tensors().iter().zip(&tensors).zip(&expected) {
        assert_eq!((&t.name[..], &t.shape, t.ggml_type), (*name, shape, *ty));
        assert_eq!(f.tensor_data(t), &data[..], "{name}");
        assert_eq!(t.offset % 32, 0, "{name}");
    }
    assert_eq!(f.tensors(), &w.tensor_infos().unwrap()[..]);
    // Nothing but the output is left in the folder.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

/// The same file built by the test suite's own encoder (tests/common), which writes the
/// spec's layout independently, is our output minus the last tensor's padding.
#[test]
fn layout_matches_the_independent_encoder() {
    for align in [1u32, 8, 32, 64, 4096] {
        let g = Gguf::new(3)
            .kv("general.alignment", Value::U32(align))
            .kv("general.name", s("x"))
            .tensor(Tensor::new("x", &[5], 0, 20))
            .tensor(Tensor::new("y", &[3], 1, 6))
            .tensor(Tensor::new("z", &[32, 2], 8, 68));
        let reference = g.build();
        let mut w = GgufWriter::new();
        for (k, v) in &g.metadata {
            w.metadata(k.clone(), v.clone());
        }
        for (ti, t) in g.tensors.iter().enumerate() {
            let data: Vec<u8> = (0..t.n_bytes as usize)
                .map(|i| Gguf::pattern(ti, i))
                .collect();
            let ty = GgmlType::from_id(t.type_id).unwrap();
            w.tensor(t.name.clone(), t.shape.clone(), ty, data).unwrap();
        }
        let ours = w.to_bytes().unwrap();
        assert_eq!(
            &ours[..reference.len()],
            &reference[..],
            "alignment {align}"
        );
        assert_eq!(
            ours.len() as u64,
            (reference.len() as u64).next_multiple_of(align.into())
        );
        assert!(ours[reference.len()..].iter().all(|&b| b == 0));
    }
}

#[test]
fn failed_writes_leave_the_destination_alone() {
    let dir = temp_dir("atomic");
    let path = dir.join("keep.gguf");
    std::fs::write(&path, b"old contents").unwrap();
    let mut w = GgufWriter::new();
    w.tensor_deferred("t", vec![4], GgmlType::F32).unwrap();

    let e = w.write_to(&path).unwrap_err();
    assert!(matches!(e, WriteError::MissingData { .. }), "{e}");
    let e = w
        .write_with(&path, |_, buf| {
            buf.extend_from_slice(&[0; 15]);
            Ok::<_, WriteError>(())
        })
        .unwrap_err();
    assert!(e.to_string().contains("`t`: 15 bytes of data"), "{e}");
    let e = w
        .write_with(&path, |info, _| {
            Err(FillError::Mine(format!("no data for {}", info.name)))
        })
        .unwrap_err();
    assert!(
        matches!(&e, FillError::Mine(m) if m == "no data for t"),
        "{e:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "temp files removed"
    );

    let missing = dir.join("no-such-folder/out.gguf");
    let e = GgufWriter::new()
        .write_to(&missing)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&missing.display().to_string()), "{e}");
    assert!(e.contains("creating a temporary file"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A caller's own error type for `write_with`: its fill errors plus the writer's.
#[derive(Debug)]
enum FillError {
    Mine(String),
    #[allow(dead_code)] // read through Debug only
    Write(WriteError),
}

impl From<WriteError> for FillError {
    fn from(e: WriteError) -> Self {
        FillError::Write(e)
    }
}

/// SmolLM2 (written by llama.cpp's gguf-py) through from_file plus every tensor, borrowed
/// from the map: the copy is the same file, byte for byte.
#[test]
fn smollm2_copies_byte_for_byte() {
    let input = huarizo_testdata::file("smollm2.gguf");
    let f = GgufFile::open(&input).unwrap_or_else(|e| panic!("{e}"));
    let mut w = GgufWriter::from_file(&f);
    for t in f.tensors() {
        w.tensor(
            t.name.clone(),
            t.shape.clone(),
            t.ggml_type,
            f.tensor_data(t),
        )
        .unwrap();
    }
    let dir = temp_dir("smollm2");
    let output = dir.join("copy.gguf");
    w.write_to(&output).unwrap();

    let copy = GgufFile::open(&output).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(copy.metadata(), f.metadata());
    assert_eq!(copy.tensors(), f.tensors());
    for (a, b) in f.tensors().iter().zip(copy.tensors()) {
        assert!(f.tensor_data(a) == copy.tensor_data(b), "{}", a.name);
    }
    drop(copy);
    let (a, b) = (
        std::fs::read(&input).unwrap(),
        std::fs::read(&output).unwrap(),
    );
    assert_eq!(a.len(), b.len(), "file lengths");
    let first_diff = a.iter().zip(&b).position(|(x, y)| x != y);
    assert_eq!(first_diff, None, "first differing byte");
    std::fs::remove_dir_all(&dir).ok();
}

/// Released pages come back from the file: a tensor reads the same after
/// `release_pages` of all or part of it (and a range past its end is harmless).
#[test]
fn released_pages_read_back_the_same_bytes() {
    let dir = temp_dir("release");
    let path = dir.join("out.gguf");
    let n = 64 * 4096;
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", s("llama"));
    w.tensor(
        "big.q8_0",
        vec![32, (n / 34) as u64],
        GgmlType::Q8_0,
        pattern(9, n / 34 * 34),
    )
    .unwrap();
    w.tensor("small.f32", vec![3], GgmlType::F32, pattern(3, 12))
        .unwrap();
    w.write_to(&path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let big = file.tensor("big.q8_0").unwrap().clone();
    let small = file.tensor("small.f32").unwrap().clone();
    let before = (
        file.tensor_data(&big).to_vec(),
        file.tensor_data(&small).to_vec(),
    );
    file.release_pages(&big, 5000..70_000);
    file.release_pages(&big, 0..big.n_bytes + 4096);
    file.release_pages(&small, 0..12);
    assert_eq!(file.tensor_data(&big), &before.0[..]);
    assert_eq!(file.tensor_data(&small), &before.1[..]);
    let _ = std::fs::remove_dir_all(&dir);
}
