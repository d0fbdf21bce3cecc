//! Code point classification and the GPT-2 byte mapping, as llama.cpp's `unicode.cpp`
//! defines them (Unicode 15.1 general categories, its own white-space set).

use super::unicode_tables::CATEGORY_RUNS;

/// General-category flag of a code point (one bit set), same values as llama.cpp.
pub(super) mod cat {
    /// Unassigned (`Cn`).
    pub const UNDEFINED: u8 = 0x01;
    /// `\p{N}`.
    pub const NUMBER: u8 = 0x02;
    /// `\p{L}`.
    pub const LETTER: u8 = 0x04;
    /// `\p{M}`.
    pub const MARK: u8 = 0x10;
    /// `\p{P}`.
    pub const PUNCTUATION: u8 = 0x20;
    /// `\p{S}`.
    pub const SYMBOL: u8 = 0x40;
}

/// What the pre-tokenizers ask about one code point. `Flags::NONE` (all false, category
/// 0) stands for "outside the chunk", like llama.cpp's empty `unicode_cpt_flags{}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Flags {
    /// One of the [`cat`] bits; 0 only for `NONE`.
    pub category: u8,
    /// In llama.cpp's white-space set (`\s`).
    pub whitespace: bool,
}

impl Flags {
    /// No code point (past either end of the chunk).
    pub const NONE: Flags = Flags {
        category: 0,
        whitespace: false,
    };

    /// Any code point at all (llama.cpp's `flags.as_uint() != 0`).
    pub fn exists(self) -> bool {
        self.category != 0
    }
    pub fn is_letter(self) -> bool {
        self.category == cat::LETTER
    }
    pub fn is_number(self) -> bool {
        self.category == cat::NUMBER
    }
    pub fn is_mark(self) -> bool {
        self.category == cat::MARK
    }
}

/// llama.cpp's `\s`: ASCII `\t\n\v\f\r` and space plus Unicode White_Space.
pub(super) fn is_whitespace(cpt: u32) -> bool {
    matches!(
        cpt,
        0x09..=0x0D
            | 0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

/// The general-category flag of `cpt` (Unicode 15.1).
pub(super) fn category(cpt: u32) -> u8 {
    if cpt >= 0x11_0000 {
        return cat::UNDEFINED;
    }
    let i = CATEGORY_RUNS.partition_point(|&(start, _)| start <= cpt);
    // CATEGORY_RUNS[0] starts at 0, so i >= 1.
    CATEGORY_RUNS[i.saturating_sub(1)].1
}

/// Both flags of one code point.
pub(super) fn flags(cpt: u32) -> Flags {
    Flags {
        category: category(cpt),
        whitespace: is_whitespace(cpt),
    }
}

/// The code points of `text`. `&str` is valid UTF-8, so this is exact; llama.cpp maps
/// invalid bytes to U+FFFD, which cannot occur here.
pub(super) fn code_points(text: &str) -> Vec<u32> {
    text.chars().map(u32::from).collect()
}

/// GPT-2's byte-to-character table: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes map to U+0100.. in byte order, so every byte is a visible character.
pub(super) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        // All values are below 0x144, valid scalar values.
        table[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    table
}

/// Length of the UTF-8 sequence a lead byte announces (llama.cpp's `unicode_len_utf8`:
/// continuation bytes count as 1).
pub(super) fn utf8_len(lead: u8) -> usize {
    match lead >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_match_unicode() {
        assert_eq!(category('a' as u32), cat::LETTER);
        assert_eq!(category('7' as u32), cat::NUMBER);
        assert_eq!(category('$' as u32), cat::SYMBOL);
        assert_eq!(category('_' as u32), cat::PUNCTUATION);
        assert_eq!(category(0x20), 0x08);
        assert_eq!(category(0x0301), cat::MARK);
        assert_eq!(category('中' as u32), cat::LETTER);
        assert_eq!(category(0x0378), cat::UNDEFINED);
        assert_eq!(category(0x10FFFF), cat::UNDEFINED);
    }

    #[test]
    fn gpt2_byte_table() {
        let t = byte_to_char_table();
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0xAD], 'Ń');
    }
}
