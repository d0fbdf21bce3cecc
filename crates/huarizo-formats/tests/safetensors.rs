//! Safetensors: what the writer writes reads back; headers that lie (offsets past the file,
//! sizes that do not match the shape, overlapping tensors, bad lengths, unsupported
//! dtypes) are errors naming the file and tensor, never panics; and a view assembled from
//! parts hands out the right bytes.

use huarizo_formats::{
    parse_safetensors, write_safetensors, GgmlType, GgufFile, PartTensor, SafeTensorOut,
    SafetensorsError, SafetensorsFault, SafetensorsFile, Value, WriteError,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("huarizo-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A file with the given header JSON and `data_len` data bytes (value = index).
fn raw(header: &str, data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend((0..data_len).map(|i| i as u8));
    b
}

fn fault(bytes: &[u8]) -> SafetensorsFault {
    parse_safetensors(bytes).expect_err("a lying header is refused")
}

#[test]
fn written_file_reads_back() {
    let path = tmp("rt.safetensors");
    let tensors = vec![
        SafeTensorOut {
            name: "a".into(),
            dtype: GgmlType::F32,
            shape: vec![2, 3],
        },
        SafeTensorOut {
            name: "b.weight".into(),
            dtype: GgmlType::BF16,
            shape: vec![5],
        },
    ];
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors::<WriteError>(&path, &tensors, &meta, |i, buf| {
        buf.extend((0..tensors[i].n_bytes()).map(|k| (k + 10 * i) as u8));
        Ok(())
    })
    .unwrap();
    let f = SafetensorsFile::open(&path).unwrap();
    assert_eq!(f.tensors().len(), 2);
    let a = &f.tensors()[0];
    assert_eq!(
        (a.name.as_str(), a.dtype, a.shape.clone()),
        ("a", GgmlType::F32, vec![2, 3])
    );
    assert_eq!(f.data(a), (0..24).map(|k| k as u8).collect::<Vec<_>>());
    let b = &f.tensors()[1];
    assert_eq!(f.data(b), (10..20).map(|k| k as u8).collect::<Vec<_>>());
    assert_eq!((a.start - 8) % 8, 0, "data starts 8-byte aligned");

    // Too few bytes from the callback: refused, nothing left under the name.
    let bad = tmp("short.safetensors");
    let e = write_safetensors::<WriteError>(&bad, &tensors, &meta, |_, buf| {
        buf.push(0);
        Ok(())
    })
    .unwrap_err();
    assert!(e.to_string().contains("tensor `a`"), "{e}");
    assert!(!bad.exists());
}

#[test]
fn lying_headers_name_the_tensor() {
    // Offsets past the end of the data.
    let f = fault(&raw(
        r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"x":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}"#,
        20,
    ));
    assert!(
        matches!(&f, SafetensorsFault::Tensor { tensor, .. } if tensor == "x"),
        "{f}"
    );
    assert!(
        f.to_string().contains("lie outside the 20 data bytes"),
        "{f}"
    );
    // A size that does not match the shape.
    let f = fault(&raw(
        r#"{"w":{"dtype":"F16","shape":[3,4],"data_offsets":[0,16]}}"#,
        64,
    ));
    assert!(
        f.to_string().contains("tensor `w`") && f.to_string().contains("needs 24"),
        "{f}"
    );
    // Overlapping tensors.
    let f = fault(&raw(
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
        16,
    ));
    assert!(f.to_string().contains("overlaps tensor `a`"), "{f}");
    // Reversed offsets, unsupported dtype, missing fields.
    let f = fault(&raw(
        r#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#,
        8,
    ));
    assert!(f.to_string().contains("tensor `w`"), "{f}");
    let f = fault(&raw(
        r#"{"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
        8,
    ));
    assert!(f.to_string().contains("I64 is not supported"), "{f}");
    let f = fault(&raw(r#"{"w":{"dtype":"F32","shape":[1]}}"#, 4));
    assert!(f.to_string().contains("tensor `w`: bad entry"), "{f}");
    // Shapes whose byte count overflows.
    let f = fault(&raw(
        r#"{"w":{"dtype":"F32","shape":[18446744073709551615,4],"data_offsets":[0,4]}}"#,
        4,
    ));
    assert!(f.to_string().contains("too large"), "{f}");
}

#[test]
fn bad_header_framing_is_an_error() {
    for bytes in [
        vec![],
        vec![1, 2, 3],
        u64::MAX.to_le_bytes().to_vec(),
        raw("not json", 0),
        raw("[1,2]", 0),
        {
            let mut b = raw("{}", 0);
            b[0] = 200; // header length beyond the file
            b
        },
    ] {
        assert!(matches!(fault(&bytes), SafetensorsFault::Header(_)));
    }
}

#[test]
fn open_names_the_file() {
    let path = tmp("lying.safetensors");
    std::fs::write(
        &path,
        raw(
            r#"{"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}"#,
            16,
        ),
    )
    .unwrap();
    let e = SafetensorsFile::open(&path).unwrap_err();
    assert!(matches!(e, SafetensorsError::Format { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("lying.safetensors") && msg.contains("model.norm.weight"),
        "{msg}"
    );
}

#[test]
fn views_from_parts_read_each_map() {
    let a = tmp("a.bin");
    let b = tmp("b.bin");
    std::fs::write(&a, [1u8, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    std::fs::write(&b, [9u8; 16]).unwrap();
    let map =
        |p: &PathBuf| unsafe { memmap2::Mmap::map(&std::fs::File::open(p).unwrap()) }.unwrap();
    let part = |name: &str, map: usize, start: usize, n: u64| PartTensor {
        name: name.into(),
        shape: vec![n],
        ggml_type: GgmlType::F32,
        map,
        start,
    };
    let view = GgufFile::from_parts(
        &tmp("view"),
        vec![("general.architecture".into(), Value::String("llama".into()))],
        vec![part("x", 0, 4, 1), part("y", 1, 0, 4)],
        vec![map(&a), map(&b)],
    )
    .unwrap();
    assert_eq!(view.tensor_data(view.tensor("x").unwrap()), &[5, 6, 7, 8]);
    assert_eq!(view.tensor_data(view.tensor("y").unwrap()), &[9u8; 16][..]);
    // A tensor running past its map, and a duplicate name, are refused.
    let e = GgufFile::from_parts(
        &tmp("view"),
        vec![],
        vec![part("z", 0, 4, 2)],
        vec![map(&a)],
    )
    .unwrap_err();
    assert!(e.to_string().contains("tensor `z`"), "{e}");
    let e = GgufFile::from_parts(
        &tmp("view"),
        vec![],
        vec![part("z", 0, 0, 1), part("z", 0, 4, 1)],
        vec![map(&a)],
    )
    .unwrap_err();
    assert!(e.to_string().contains("duplicate tensor name `z`"), "{e}");
}
