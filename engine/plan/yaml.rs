//! The one module that talks to serde-saphyr (its API moved fast: 0.x → 1 → 2).
//!
//! Parses one YAML text into a spanned [`Node`] tree with hard limits, so a
//! hostile or broken file gives a clear diagnostic — never a panic or a hang:
//! files over [`MAX_FILE_BYTES`], nesting deeper than [`MAX_DEPTH`], alias
//! bombs (bounded alias count and replayed events) and duplicate keys.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::plan::diag::Diag;
use crate::plan::node::{Key, Kind, Node, Pos, Str};
use crate::plan::source::{FileId, Sources};

/// Plans are small; anything bigger is a mistake (or an attack).
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
/// A plan nests about six levels; 32 leaves room and stops stack abuse.
pub const MAX_DEPTH: usize = 32;
/// Aliases are rare in plans; a few hundred is plenty, thousands is a bomb.
pub const MAX_ALIASES: usize = 256;
/// Total nodes after alias expansion.
pub const MAX_NODES: usize = 200_000;

/// Parses `file` (already added to `sources`). An empty document is `Null`.
pub fn parse(sources: &Sources, file: FileId) -> Result<Node, Diag> {
    let text = sources.get(file).original.as_str();
    if text.len() > MAX_FILE_BYTES {
        return Err(Diag::error(
            "file-too-large",
            format!(
                "`{}` is {} bytes, over the {} MiB limit for a plan",
                sources.get(file).name,
                text.len(),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        )
        .hint("a plan is a short file of steps; split data out of it"));
    }
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = MAX_ALIASES;
    budget.max_nodes = MAX_NODES;
    budget.max_documents = 1;
    budget.max_inclusion_depth = 0;
    options.budget = Some(budget);
    let mut limits = serde_saphyr::options::AliasLimits::default();
    limits.max_total_replayed_events = MAX_NODES;
    options.alias_limits = limits;

    let parsed: Result<Option<Spanned<Raw>>, _> = serde_saphyr::from_str_with_options(text, options);
    match parsed {
        Ok(Some(raw)) => Ok(convert(raw, file, text)),
        Ok(None) => Ok(Node::new(Pos { file, start: 0, len: 0 }, Kind::Null)),
        Err(e) => Err(translate_error(&e, file, text)),
    }
}

/// serde-saphyr's messages end with " at line L, column C" and sometimes a
/// policy hint meant for programmers; we keep the location separately.
fn translate_error(e: &serde_saphyr::Error, file: FileId, text: &str) -> Diag {
    let full = e.to_string();
    let message = full.find(" at line ").map_or(full.as_str(), |i| &full[..i]).to_string();
    let (code, message, hint) = if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
        let key = key.split(',').next().unwrap_or(key).trim();
        (
            "duplicate-key",
            format!("duplicate key `{key}`"),
            Some("a key may appear once per map; remove or rename one of them".to_string()),
        )
    } else if matches!(e, serde_saphyr::Error::MultipleDocuments { .. }) || message.contains("Documents") {
        (
            "yaml-documents",
            "a plan file holds one YAML document; this one has a second after `---`".to_string(),
            Some("remove the `---` and what follows, or move it into a file of its own".to_string()),
        )
    } else if message.contains("budget breached") || message.contains("replay limit") {
        let what = if message.contains("Depth") {
            format!("nesting is deeper than {MAX_DEPTH} levels")
        } else if message.contains("Alias") && !message.contains("replay") {
            format!("more than {MAX_ALIASES} aliases")
        } else {
            "the document expands to too many nodes (an alias bomb?)".to_string()
        };
        (
            "yaml-limit",
            format!("plan exceeds a safety limit: {what}"),
            Some("plans need no deep nesting or alias expansion; write the values out".to_string()),
        )
    } else {
        ("yaml-syntax", format!("invalid YAML: {message}"), None)
    };
    let mut d = Diag::error(code, message);
    if let Some(loc) = e.location() {
        let start = byte_offset(&loc, text);
        d = d.at(
            Pos {
                file,
                start,
                len: 1.min(text.len() - start),
            },
            None,
        );
    }
    if let Some(h) = hint {
        d = d.hint(h);
    }
    d
}

fn byte_offset(loc: &serde_saphyr::Location, text: &str) -> usize {
    let span = loc.span();
    match span.byte_offset() {
        Some(b) if (b as usize) <= text.len() => b as usize,
        _ => {
            // Fall back to line/column (1-based, in characters).
            let line = loc.line().max(1) as usize;
            let col = loc.column().max(1) as usize;
            let line_start = text.split_inclusive('\n').take(line - 1).map(str::len).sum::<usize>();
            let rest = &text[line_start.min(text.len())..];
            line_start + rest.chars().take(col - 1).map(char::len_utf8).sum::<usize>()
        }
    }
}

fn pos_of(loc: &serde_saphyr::Location, file: FileId, text: &str) -> Pos {
    let start = byte_offset(loc, text).min(text.len());
    let len = loc.span().byte_len().map_or(0, |l| l as usize).min(text.len() - start);
    Pos { file, start, len }
}

fn convert(raw: Spanned<Raw>, file: FileId, text: &str) -> Node {
    let pos = pos_of(&raw.referenced, file, text);
    let kind = match raw.value {
        Raw::Map(entries) => Kind::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = Key {
                        pos: pos_of(&k.referenced, file, text),
                        name: k.value,
                    };
                    (key, convert(v, file, text))
                })
                .collect(),
        ),
        Raw::Seq(items) => Kind::Seq(items.into_iter().map(|i| convert(i, file, text)).collect()),
        Raw::Str(value) => {
            let quote = match text.as_bytes().get(pos.start) {
                Some(b'"' | b'\'') => 1,
                _ => 0,
            };
            Kind::Str(Str {
                value,
                quote,
                rendered: false,
                poisoned: false,
            })
        }
        Raw::Int(i) => Kind::Int(i),
        Raw::Float(f) => Kind::Float(f),
        Raw::Bool(b) => Kind::Bool(b),
        Raw::Null => Kind::Null,
    };
    Node::new(pos, kind)
}

/// The shape serde-saphyr fills; each child is `Spanned` so it gets a place.
enum Raw {
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
    Seq(Vec<Spanned<Raw>>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Raw, E> {
                i64::try_from(v).map(Raw::Int).or(Ok(Raw::Float(v as f64)))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
                Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Raw, E> {
                Err(E::custom("binary values are not allowed in a plan"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    v.push((k, m.next_value::<Spanned<Raw>>()?));
                }
                Ok(Raw::Map(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element::<Spanned<Raw>>()? {
                    v.push(x);
                }
                Ok(Raw::Seq(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Node, Diag> {
        let mut s = Sources::new();
        let id = s.add("t.yaml", text);
        parse(&s, id)
    }

    #[test]
    fn spans_point_at_values_and_keys() {
        let n = load("a: 1\nb:\n  c: \"x\"\n").expect("parses");
        let (k, v) = &n.entries().expect("map")[1];
        assert_eq!((k.name.as_str(), k.pos.start), ("b", 5));
        let c = v.get("c").expect("c");
        assert_eq!(c.pos.start, 13);
        assert!(matches!(&c.kind, Kind::Str(s) if s.quote == 1 && s.value == "x"));
    }

    #[test]
    fn duplicate_keys_are_rejected_at_the_second() {
        let d = load("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(d.code, "duplicate-key");
        assert_eq!(d.primary.expect("place").span.start, 5);
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_limits_not_hangs() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(load(&deep).expect_err("deep").code, "yaml-limit");
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h"])
        {
            bomb.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 10].join(",")
            ));
        }
        assert_eq!(load(&bomb).expect_err("bomb").code, "yaml-limit");
    }

    #[test]
    fn a_second_document_is_named_as_such() {
        let d = load("version: 1\nname: a\n---\nversion: 1\n").expect_err("two documents");
        assert_eq!(d.code, "yaml-documents", "{}", d.message);
    }

    #[test]
    fn oversized_file_is_refused_before_parsing() {
        let big = "#".repeat(MAX_FILE_BYTES + 1);
        assert_eq!(load(&big).expect_err("big").code, "file-too-large");
    }
}
