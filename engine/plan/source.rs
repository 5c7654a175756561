//! The texts diagnostics point into: plan files, overlays and the pseudo-files
//! made for `--var` / `DBMAINT_VAR_*` overrides.
//!
//! Owns byte-offset → line/column mapping and password redaction. Every text is
//! redacted *once*, when it is added, with the password replaced by a fixed
//! `****` (its length is a hint too), so no diagnostic can echo a password.
//! Spans are offsets into the text as written; [`SourceFile::shown`] maps
//! them into the masked text. It must not parse YAML: that is `yaml.rs`.

use std::sync::Arc;

/// Index of a file in [`Sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// One text with the name diagnostics show for it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    /// The text with passwords masked (`****`, whatever their length): what
    /// diagnostics show. Offsets from the parser map into it by `shown`.
    pub text: Arc<String>,
    /// The same text, named, for miette.
    pub named: miette::NamedSource<Arc<String>>,
    /// The text as written, password included: only the YAML parser reads
    /// it (a target's password must reach the connection). Spans are
    /// offsets into this text.
    pub(crate) original: Arc<String>,
    /// The masked passwords: their byte range in `original`, in order.
    masks: Vec<std::ops::Range<usize>>,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// The offset in `text` of an offset in the text as written: after a
    /// masked password it moves by the difference in length; inside one it
    /// lands on the mask.
    pub fn shown(&self, offset: usize) -> usize {
        let mut shift: isize = 0;
        for m in &self.masks {
            if offset >= m.end {
                shift += MASK.len() as isize - m.len() as isize;
            } else if offset > m.start {
                let inside = (offset - m.start).min(MASK.len());
                return (m.start as isize + shift) as usize + inside;
            } else {
                break;
            }
        }
        ((offset as isize + shift).max(0) as usize).min(self.text.len())
    }

    /// 1-based line and 1-based column (in characters) of a byte offset
    /// into the text as written.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.shown(offset);
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// The byte range in `text` of the whole line holding `offset` (into the
    /// text as written), without its newline.
    pub fn line_range(&self, offset: usize) -> std::ops::Range<usize> {
        let (line, _) = self.line_col(offset);
        let start = self.line_starts[line - 1];
        let end = self.line_starts.get(line).map_or(self.text.len(), |next| next - 1);
        let end = if end > start && self.text.as_bytes().get(end - 1) == Some(&b'\r') {
            end - 1
        } else {
            end
        };
        start..end.max(start)
    }
}

/// All texts of one load.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a text; its passwords are masked before anything else sees it.
    pub fn add(&mut self, name: impl Into<String>, text: &str) -> FileId {
        let original = Arc::new(text.to_string());
        let masks = password_ranges(text);
        let text = mask(text, &masks);
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let name = name.into();
        let text = Arc::new(text);
        self.files.push(SourceFile {
            named: miette::NamedSource::new(name.clone(), Arc::clone(&text)),
            name,
            text,
            original,
            masks,
            line_starts,
        });
        FileId(u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX))
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }
}

/// What a password is shown as: the same width whatever its length.
pub const MASK: &str = "****";

/// The byte range of the password of every `scheme://user:password@host`
/// in `text`, in order.
fn password_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut found_ranges = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let authority_start = from + found + 3;
        let authority_end = bytes[authority_start..]
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#' | b'"' | b'\'' | b'\n' | b' ' | b'\t'))
            .map_or(bytes.len(), |p| authority_start + p);
        let authority = &bytes[authority_start..authority_end];
        if let Some(at) = authority.iter().rposition(|b| *b == b'@')
            && let Some(colon) = authority[..at].iter().position(|b| *b == b':')
        {
            found_ranges.push(authority_start + colon + 1..authority_start + at);
        }
        from = authority_end.max(authority_start);
    }
    found_ranges
}

/// `text` with each range replaced by [`MASK`]. The ranges are bounded by
/// ASCII bytes (`:` and `@`), so every cut falls between characters.
fn mask(text: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        out.push_str(&text[at..r.start]);
        out.push_str(MASK);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Masks the password of every `scheme://user:password@host` in `text`
/// with [`MASK`] (a fixed width: the length would tell how long it is).
pub fn redact_passwords(text: &str) -> String {
    mask(text, &password_ranges(text))
}

/// A URL for display: the password (if any) replaced by `****`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        _ => redact_passwords(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_with_a_fixed_width_and_maps_offsets() {
        let text = "target: postgres://app:s3cr3t@db.example:5432/app\nx: 1\n";
        let red = redact_passwords(text);
        assert!(!red.contains("s3cr3t"));
        assert!(red.contains("postgres://app:****@db.example"), "{red}");
        assert_eq!(red.len(), text.len() - 2);
        // A one-character and a long password show the same.
        assert_eq!(redact_passwords("postgres://a:x@h/d"), "postgres://a:****@h/d");
        assert_eq!(
            redact_passwords("postgres://a:0123456789abcdef@h/d"),
            "postgres://a:****@h/d"
        );
        // Offsets into the text as written land on the same place shown.
        let mut s = Sources::new();
        let id = s.add("f", text);
        let f = s.get(id);
        let x = text.find("x: 1").expect("x");
        assert_eq!(&f.text[f.shown(x)..f.shown(x) + 4], "x: 1");
        assert_eq!(f.line_col(x), (2, 1));
        let host = text.find("db.example").expect("host");
        assert_eq!(&f.text[f.shown(host)..f.shown(host) + 10], "db.example");
        assert_eq!(
            f.shown(text.find("s3cr3t").expect("pw") + 3),
            f.text.find("****").expect("mask") + 3
        );
        assert_eq!(f.shown(0), 0);
    }

    #[test]
    fn url_without_password_is_unchanged() {
        assert_eq!(redact_passwords("sqlite:app.db"), "sqlite:app.db");
        assert_eq!(redact_url("postgres://app@h/db"), "postgres://app@h/db");
        assert_eq!(redact_url("postgres://app:pw@h/db"), "postgres://app:****@h/db");
    }

    #[test]
    fn line_col_counts_characters() {
        let mut s = Sources::new();
        let id = s.add("f", "ab\nçd: x\n");
        let f = s.get(id);
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(6), (2, 3)); // after `ç` (2 bytes) and `d`
        assert_eq!(&f.text[f.line_range(4)], "çd: x");
    }
}
