//! A tiny test-only GGUF writer: raw little-endian pieces plus a builder for whole files.

#![allow(dead_code)]

use huarizo_formats::Value;

/// Raw little-endian byte writer.
#[derive(Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A GGUF string from raw bytes (need not be UTF-8).
    pub fn raw_str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.raw_str(s.as_bytes())
    }
    /// Type id then payload.
    pub fn value(&mut self, v: &Value) -> &mut Self {
        self.u32(type_id(v));
        self.payload(v)
    }
    /// Payload only (array elements).
    pub fn payload(&mut self, v: &Value) -> &mut Self {
        match v {
            Value::U8(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::I8(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::U16(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::I16(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::U32(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::I32(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::U64(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::I64(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::F32(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::F64(x) => self.0.extend_from_slice(&x.to_le_bytes()),
            Value::Bool(x) => self.0.push(u8::from(*x)),
            Value::String(s) => {
                self.str(s);
            }
            Value::Array(items) => {
                // An empty array's element type is not recoverable; write uint8.
                self.u32(items.first().map_or(0, type_id));
                self.u64(items.len() as u64);
                for item in items {
                    self.payload(item);
                }
            }
        }
        self
    }
}

/// GGUF's type id for a value.
pub fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

/// One tensor to write. `offset: None` places it after the previous one, aligned.
#[derive(Clone)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<u64>,
    pub type_id: u32,
    pub offset: Option<u64>,
    /// Bytes of data to reserve (filled with a per-tensor pattern).
    pub n_bytes: u64,
}

impl Tensor {
    pub fn new(name: &str, shape: &[u64], type_id: u32, n_bytes: u64) -> Tensor {
        Tensor {
            name: name.to_owned(),
            shape: shape.to_vec(),
            type_id,
            offset: None,
            n_bytes,
        }
    }
    pub fn at(mut self, offset: u64) -> Tensor {
        self.offset = Some(offset);
        self
    }
}

/// A whole GGUF file.
pub struct Gguf {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<Tensor>,
}

impl Gguf {
    pub fn new(version: u32) -> Gguf {
        Gguf {
            version,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    pub fn kv(mut self, key: &str, v: Value) -> Gguf {
        self.metadata.push((key.to_owned(), v));
        self
    }

    pub fn tensor(mut self, t: Tensor) -> Gguf {
        self.tensors.push(t);
        self
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| a.is_power_of_two() && *a <= 1 << 16)
            .unwrap_or(32)
    }

    /// Offsets actually written for each tensor.
    pub fn offsets(&self) -> Vec<u64> {
        let align = self.alignment();
        let mut next = 0u64;
        self.tensors
            .iter()
            .map(|t| {
                let off = t.offset.unwrap_or(next);
                next = off
                    .saturating_add(t.n_bytes)
                    .checked_next_multiple_of(align)
                    .unwrap_or(u64::MAX);
                off
            })
            .collect()
    }

    /// Data byte `i` of tensor `t`: the pattern `build` fills tensors with.
    pub fn pattern(t: usize, i: usize) -> u8 {
        (t * 31 + i * 7) as u8
    }

    pub fn build(&self) -> Vec<u8> {
        let mut b = Bytes::default();
        b.0.extend_from_slice(b"GGUF");
        b.u32(self.version);
        b.u64(self.tensors.len() as u64);
        b.u64(self.metadata.len() as u64);
        for (k, v) in &self.metadata {
            b.str(k).value(v);
        }
        let offsets = self.offsets();
        for (t, off) in self.tensors.iter().zip(&offsets) {
            b.str(&t.name).u32(t.shape.len() as u32);
            for &d in &t.shape {
                b.u64(d);
            }
            b.u32(t.type_id).u64(*off);
        }
        let data_start = (b.0.len() as u64).next_multiple_of(self.alignment()) as usize;
        b.0.resize(data_start, 0);
        for (ti, (t, off)) in self.tensors.iter().zip(&offsets).enumerate() {
            // Absurd offsets (for bad-input tests) get no data.
            if off.saturating_add(t.n_bytes) > 1 << 24 {
                continue;
            }
            let start = data_start + *off as usize;
            let end = start + t.n_bytes as usize;
            if b.0.len() < end {
                b.0.resize(end, 0);
            }
            for (i, byte) in b.0[start..end].iter_mut().enumerate() {
                *byte = Gguf::pattern(ti, i);
            }
        }
        b.0
    }
}

/// Writes `bytes` to a fresh temp file named after `name`; returns its path.
pub fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "huarizo-formats-test-{}-{name}.gguf",
        std::process::id()
    ));
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

fn string(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// One entry of every value type, arrays of several element types, nested arrays.
pub fn all_values() -> Vec<(String, Value)> {
    let kvs = [
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60_000)),
        ("t.i16", Value::I16(-30_000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f32", Value::F32(-1.5e-3)),
        ("t.f64", Value::F64(std::f64::consts::PI)),
        ("t.true", Value::Bool(true)),
        ("t.false", Value::Bool(false)),
        ("t.str", string("llama ñ 🦙")),
        ("t.empty_str", string("")),
        ("t.empty_arr", Value::Array(vec![])),
        ("t.arr_u8", Value::Array(vec![Value::U8(0), Value::U8(255)])),
        (
            "t.arr_i32",
            Value::Array(vec![Value::I32(-1), Value::I32(2)]),
        ),
        (
            "t.arr_f32",
            Value::Array(vec![Value::F32(0.5), Value::F32(-2.0)]),
        ),
        ("t.arr_u64", Value::Array(vec![Value::U64(1 << 40)])),
        (
            "t.arr_str",
            Value::Array(vec![string("a"), string(""), string("<|im_end|>")]),
        ),
        (
            "t.arr_bool",
            Value::Array(vec![Value::Bool(true), Value::Bool(false)]),
        ),
        ("t.arr_f64", Value::Array(vec![Value::F64(0.25)])),
        (
            "t.nested",
            Value::Array(vec![
                Value::Array(vec![string("x"), string("y")]),
                Value::Array(vec![]),
                Value::Array(vec![string("z")]),
            ]),
        ),
        (
            "t.nested_mixed_inner",
            Value::Array(vec![
                Value::Array(vec![Value::I16(-7)]),
                Value::Array(vec![Value::F64(1.0), Value::F64(2.0)]),
            ]),
        ),
        (
            "t.nested3",
            Value::Array(vec![Value::Array(vec![Value::Array(vec![Value::U16(7)])])]),
        ),
    ];
    kvs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
