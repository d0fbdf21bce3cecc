//! The ggml tensor type table: ids, names and block geometry.

use std::fmt;

/// A ggml tensor element type, as stored in a GGUF tensor info.
///
/// Quantized types store `block_size` elements in `type_size` bytes; unquantized types
/// have a block of one element. The layouts themselves belong to `huarizo-kernels`.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// 32 weights, one f16 scale, 4-bit quants (4.5 bits per weight).
    Q4_0,
    /// 32 weights, f16 scale and min, 4-bit quants (5 bits per weight).
    Q4_1,
    /// 32 weights, f16 scale, 5-bit quants (5.5 bits per weight).
    Q5_0,
    /// 32 weights, f16 scale and min, 5-bit quants (6 bits per weight).
    Q5_1,
    /// 32 weights, f16 scale, 8-bit quants (8.5 bits per weight).
    Q8_0,
    /// 32 weights, f16 scale and sum, 8-bit quants (9 bits per weight).
    Q8_1,
    /// 256-weight super-block, 2-bit quants (2.625 bits per weight).
    Q2_K,
    /// 256-weight super-block, 3-bit quants (3.4375 bits per weight).
    Q3_K,
    /// 256-weight super-block, 4-bit quants (4.5 bits per weight).
    Q4_K,
    /// 256-weight super-block, 5-bit quants (5.5 bits per weight).
    Q5_K,
    /// 256-weight super-block, 6-bit quants (6.5625 bits per weight).
    Q6_K,
    /// 256-weight super-block, f32 scale, 8-bit quants; an activation format (9.125 bits per weight).
    Q8_K,
    /// bfloat16.
    BF16,
}

/// One row of the type table: (type, ggml id, name, elements per block, bytes per block).
type Row = (GgmlType, u32, &'static str, usize, usize);

/// The table every `GgmlType` method reads. Ids are ggml's `enum ggml_type`.
const TABLE: [Row; 15] = [
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "Q8_K", 256, 292),
    (GgmlType::BF16, 30, "BF16", 1, 2),
];

impl GgmlType {
    /// Every supported type, in table order.
    pub const ALL: [GgmlType; 15] = {
        let mut all = [GgmlType::F32; 15];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static Row {
        // The discriminants follow table order, so this index is always in range.
        &TABLE[self as usize]
    }

    /// The type with ggml's numeric id `id`, or `None` if huarizo does not support it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|row| row.1 == id).map(|row| row.0)
    }

    /// ggml's numeric id for this type.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// ggml's name for this type (`"Q4_K"`, `"F32"`, …).
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Elements per block (1 for F32, F16 and BF16).
    pub fn block_size(self) -> usize {
        self.row().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.row().4
    }

    /// Bytes taken by a row of `n` elements, or `None` unless `n` is a multiple of
    /// [`block_size`](Self::block_size) (or the byte count overflows).
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_size()) {
            return None;
        }
        (n / self.block_size()).checked_mul(self.type_size())
    }

    /// `"F32=0, F16=1, …"`: the supported types with their ids, for error messages.
    pub fn supported_list() -> String {
        let items: Vec<String> = TABLE
            .iter()
            .map(|row| format!("{}={}", row.2, row.1))
            .collect();
        items.join(", ")
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_discriminant_order_and_round_trips() {
        for (i, t) in GgmlType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
            assert_eq!(GgmlType::from_id(t.id()), Some(*t));
        }
        for id in [4, 5, 16, 29, 31, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), None, "id {id}");
        }
    }

    #[test]
    fn row_bytes() {
        assert_eq!(GgmlType::Q8_0.row_bytes(576), Some(18 * 34));
        assert_eq!(GgmlType::Q8_0.row_bytes(33), None);
        assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::F16.row_bytes(3), Some(6));
        assert_eq!(GgmlType::F32.row_bytes(usize::MAX), None);
    }
}
