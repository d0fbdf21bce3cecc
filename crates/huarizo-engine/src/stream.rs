//! Turning generated tokens into streamed text: bytes are released once they are complete
//! UTF-8 and can no longer be the start of a stop string; a stop string ends the text
//! before it.

/// What one token added to the text.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Text that became final with this token (may be empty).
    Text(String),
    /// A stop string appeared: the last piece of text before it; generation ends.
    Stopped(String),
}

/// The text of one generation, built token by token.
#[derive(Debug, Default)]
pub struct TextStream {
    bytes: Vec<u8>,
    emitted: usize,
    stop: Vec<String>,
    max_stop: usize,
    final_text: Option<String>,
}

impl TextStream {
    /// A stream that ends before the first occurrence of any of `stop`.
    pub fn new(stop: Vec<String>) -> TextStream {
        let stop: Vec<String> = stop.into_iter().filter(|s| !s.is_empty()).collect();
        let max_stop = stop.iter().map(String::len).max().unwrap_or(0);
        TextStream {
            stop,
            max_stop,
            ..TextStream::default()
        }
    }

    /// Appends a token's bytes and returns what can be streamed now.
    pub fn push(&mut self, token_bytes: &[u8]) -> Pushed {
        self.bytes.extend_from_slice(token_bytes);
        if !self.stop.is_empty() {
            let text_now = String::from_utf8_lossy(&self.bytes);
            if let Some(cut) = self
                .stop
                .iter()
                .filter_map(|s| text_now.find(s.as_str()))
                .min()
            {
                let final_text = text_now[..cut].to_string();
                let tail = final_text.get(self.emitted..).unwrap_or("").to_string();
                self.emitted = self.bytes.len();
                self.final_text = Some(final_text);
                return Pushed::Stopped(tail);
            }
        }
        let valid = valid_utf8_prefix(&self.bytes);
        let safe = valid
            .saturating_sub(self.max_stop.saturating_sub(1))
            .max(self.emitted);
        let safe = floor_char_boundary(&self.bytes[..valid], safe).max(self.emitted);
        let chunk = String::from_utf8_lossy(&self.bytes[self.emitted..safe]).into_owned();
        self.emitted = safe;
        Pushed::Text(chunk)
    }

    /// The text not streamed yet (held back for a possible stop string or an incomplete
    /// character); marks it streamed.
    pub fn flush(&mut self) -> String {
        if self.final_text.is_some() || self.emitted >= self.bytes.len() {
            return String::new();
        }
        let rest = String::from_utf8_lossy(&self.bytes[self.emitted..]).into_owned();
        self.emitted = self.bytes.len();
        rest
    }

    /// The whole text so far (cut before a stop string once one was found).
    pub fn text(&self) -> String {
        match &self.final_text {
            Some(t) => t.clone(),
            None => String::from_utf8_lossy(&self.bytes).into_owned(),
        }
    }
}

/// Length of the longest prefix of `b` that is complete UTF-8 (invalid bytes count as
/// complete: they will print as U+FFFD anyway).
fn valid_utf8_prefix(b: &[u8]) -> usize {
    match std::str::from_utf8(b) {
        Ok(_) => b.len(),
        Err(e) => match e.error_len() {
            None => e.valid_up_to(),
            Some(_) => b.len(),
        },
    }
}

/// The largest char boundary of `b` (valid UTF-8) at or below `i`.
fn floor_char_boundary(b: &[u8], mut i: usize) -> usize {
    i = i.min(b.len());
    while i > 0 && i < b.len() && (b[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_prefix_waits_for_incomplete_sequences() {
        let euro = "€".as_bytes();
        assert_eq!(valid_utf8_prefix(&euro[..2]), 0);
        assert_eq!(valid_utf8_prefix(euro), 3);
        assert_eq!(floor_char_boundary("a€".as_bytes(), 2), 1);
    }

    #[test]
    fn multibyte_characters_stream_whole() {
        let mut s = TextStream::new(vec![]);
        let euro = "€".as_bytes();
        assert_eq!(s.push(b"a"), Pushed::Text("a".into()));
        assert_eq!(s.push(&euro[..1]), Pushed::Text(String::new()));
        assert_eq!(s.push(&euro[1..]), Pushed::Text("€".into()));
        assert_eq!(s.text(), "a€");
    }

    #[test]
    fn stop_strings_hold_back_and_cut() {
        let mut s = TextStream::new(vec!["END".into()]);
        assert_eq!(s.push(b"hello E"), Pushed::Text("hello".into()));
        // Only the last len("END") − 1 bytes are held back.
        assert_eq!(s.push(b"N"), Pushed::Text(" ".into()));
        assert_eq!(s.push(b"D more"), Pushed::Stopped(String::new()));
        assert_eq!(s.text(), "hello ");
        assert_eq!(s.flush(), "");
        let mut t = TextStream::new(vec!["END".into()]);
        t.push(b"abc E");
        assert_eq!(t.flush(), " E");
    }
}
