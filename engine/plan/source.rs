//! The texts diagnostics point into: plan files, overlays and the pseudo-files
//! made for `--var` / `DBMAINT_VAR_*` overrides.
//!
//! Owns byte-offset → line/column mapping and password redaction. Every text is
//! redacted *once*, when it is added, with the password replaced by `*` of the
//! same length, so spans stay valid and no diagnostic can echo a password.
//! It must not parse YAML: that is `yaml.rs`.

use std::sync::Arc;

/// Index of a file in [`Sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// One text with the name diagnostics show for it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    /// The text with passwords masked; offsets are identical to the original.
    pub text: Arc<String>,
    /// The same text, named, for miette.
    pub named: miette::NamedSource<Arc<String>>,
    /// The text as written, password included: only the YAML parser reads
    /// it (a target's password must reach the connection). Offsets equal
    /// `text`'s, so spans found in one point into the other.
    pub(crate) original: Arc<String>,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
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

    /// The byte range of the whole line holding `offset`, without its newline.
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
        let text = redact_passwords(text);
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let name = name.into();
        let text = Arc::new(text);
        self.files.push(SourceFile {
            named: miette::NamedSource::new(name.clone(), Arc::clone(&text)),
            name,
            text,
            original,
            line_starts,
        });
        FileId(u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX))
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }
}

/// Masks the password of every `scheme://user:password@host` in `text` with
/// `*`, keeping the length so byte offsets into the text stay valid.
pub fn redact_passwords(text: &str) -> String {
    let mut out = text.as_bytes().to_vec();
    let bytes = text.as_bytes();
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
            for b in &mut out[authority_start + colon + 1..authority_start + at] {
                *b = b'*';
            }
        }
        from = authority_end.max(authority_start);
    }
    // Only ASCII bytes inside an authority were replaced by ASCII, but a
    // password may hold multi-byte characters: replacing each byte keeps the
    // text valid UTF-8 because every replaced byte becomes a whole character.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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
    fn redaction_keeps_offsets_and_hides_password() {
        let text = "target: postgres://app:s3cr3t@db.example:5432/app\nx: 1\n";
        let red = redact_passwords(text);
        assert_eq!(red.len(), text.len());
        assert!(!red.contains("s3cr3t"));
        assert!(red.contains("postgres://app:******@db.example"));
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
