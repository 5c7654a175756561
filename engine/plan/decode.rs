//! From the raw [`Node`] tree to typed documents, collecting every problem.
//!
//! [`Decode`] turns one node into one typed value or reports why not and
//! returns `None`; decoding goes on with the siblings, so one pass reports
//! every wrong key and value of a plan. [`params!`] declares a map-shaped
//! struct once — its fields, their docs, which are required — and yields the
//! struct, its `Serialize`/`JsonSchema` and its decoder, so the keys the
//! decoder accepts and the keys the JSON Schema lists cannot drift apart.
//! [`keywords!`] does the same for string enums (`format: custom|plain`).
//!
//! This module knows value shapes, not plan rules: rules live in `ops/` and
//! `validate.rs`.

use std::borrow::Cow;
use std::ops::Deref;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use crate::plan::diag::{Diag, Diagnostics};
use crate::plan::node::{Kind, Node, Pos};

/// A decoded value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Sp<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Self { value, pos }
    }
}

impl<T> Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Serialize> Serialize for Sp<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// In the schema a value may also be a template string (`"{{ vars.n }}"`),
/// which renders to the value before it is parsed.
impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Spanned_{}", T::schema_name()).into()
    }
    /// Always inline: a named definition would sit beside `T`'s own.
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let inner = generator.subschema_for::<T>();
        if inner.get("type").and_then(|t| t.as_str()) == Some("string")
            && inner.get("pattern").is_none()
            && inner.get("enum").is_none()
        {
            return inner;
        }
        json_schema!({
            "anyOf": [inner, { "$ref": "#/definitions/Template" }]
        })
    }
}

/// The schema of a template string, referenced from every templatable value.
#[derive(Debug)]
pub struct Template;

impl JsonSchema for Template {
    fn schema_name() -> Cow<'static, str> {
        "Template".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "\\{[{%]",
            "description": "A minijinja template, rendered before the value is parsed"
        })
    }
}

/// Decoding context: where diagnostics go.
#[derive(Debug, Default)]
pub struct Cx {
    pub diags: Diagnostics,
}

impl Cx {
    pub fn error(&mut self, d: Diag) {
        self.diags.push(d);
    }

    /// "expected X, found Y" at `node`.
    pub fn wrong_type(&mut self, node: &Node, expected: &str) {
        self.error(
            Diag::error("wrong-type", format!("expected {expected}, found {}", node.type_name()))
                .at(node.pos, format!("expected {expected}")),
        );
    }

    /// A value of the right type whose content is wrong.
    pub fn invalid(&mut self, node: &Node, message: impl Into<String>, hint: Option<String>) {
        let mut d = Diag::error("invalid-value", message).at(node.pos, None);
        if let Some(h) = hint {
            d = d.hint(h);
        }
        self.error(d);
    }
}

/// A typed value that can be read from a node.
pub trait Decode: Sized {
    /// What the value looks like, for "expected …" messages.
    const EXPECTED: &'static str;
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self>;
}

impl<T: Decode> Decode for Sp<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        if matches!(&node.kind, Kind::Str(s) if s.poisoned) {
            return None;
        }
        T::decode(node, cx).map(|v| Sp::new(v, node.pos))
    }
}

/// The text of a string node; a rendered template may also stand for a
/// scalar of another type, so `scalar_text` gives its text for parsing.
pub fn scalar_text(node: &Node) -> Option<Cow<'_, str>> {
    match &node.kind {
        Kind::Str(s) => Some(Cow::Borrowed(&s.value)),
        Kind::Int(i) => Some(Cow::Owned(i.to_string())),
        Kind::Float(f) => Some(Cow::Owned(f.to_string())),
        Kind::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

/// A string rendered from a template, trimmed, for parsing as a number.
fn rendered_text(node: &Node) -> Option<&str> {
    match &node.kind {
        Kind::Str(s) if s.rendered => Some(s.value.trim()),
        _ => None,
    }
}

impl Decode for String {
    const EXPECTED: &'static str = "a string";
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match &node.kind {
            Kind::Str(s) => Some(s.value.clone()),
            _ => {
                cx.wrong_type(node, Self::EXPECTED);
                None
            }
        }
    }
}

impl Decode for bool {
    const EXPECTED: &'static str = "`true` or `false`";
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match (&node.kind, rendered_text(node)) {
            (Kind::Bool(b), _) => Some(*b),
            (_, Some("true")) => Some(true),
            (_, Some("false")) => Some(false),
            _ => {
                cx.wrong_type(node, Self::EXPECTED);
                None
            }
        }
    }
}

macro_rules! decode_int {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            const EXPECTED: &'static str = concat!("a whole number (", stringify!($t), ")");
            fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
                let parsed = match (&node.kind, rendered_text(node)) {
                    (Kind::Int(i), _) => <$t>::try_from(*i).ok(),
                    (_, Some(t)) => t.parse::<$t>().ok(),
                    _ => {
                        cx.wrong_type(node, "a whole number");
                        return None;
                    }
                };
                if parsed.is_none() {
                    let text = scalar_text(node).unwrap_or_default();
                    let is_number = text.trim().parse::<i128>().is_ok();
                    let message = if is_number {
                        format!("`{text}` is out of range (at most {})", <$t>::MAX)
                    } else {
                        format!("`{text}` is not a whole number")
                    };
                    let hint = rendered_text(node).map(|t| format!("the template rendered `{t}`; check the variable it uses"));
                    cx.invalid(node, message, hint);
                }
                parsed
            }
        }
    )*};
}
decode_int!(u8, u16, u32, u64, i64);

impl Decode for f64 {
    const EXPECTED: &'static str = "a number";
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        match (&node.kind, rendered_text(node)) {
            (Kind::Int(i), _) => Some(*i as f64),
            (Kind::Float(f), _) => Some(*f),
            (_, Some(t)) => match t.parse::<f64>() {
                Ok(f) if f.is_finite() => Some(f),
                _ => {
                    cx.invalid(node, format!("`{t}` is not a number"), None);
                    None
                }
            },
            _ => {
                cx.wrong_type(node, Self::EXPECTED);
                None
            }
        }
    }
}

impl<T: Decode> Decode for Vec<T> {
    const EXPECTED: &'static str = "a list";
    fn decode(node: &Node, cx: &mut Cx) -> Option<Self> {
        let Kind::Seq(items) = &node.kind else {
            cx.wrong_type(node, Self::EXPECTED);
            if let (Some(text), Some(d)) = (scalar_text(node), cx.diags.items.last_mut()) {
                d.hint = Some(format!("write a list: `[{text}]`"));
            }
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match T::decode(item, cx) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// Any YAML value kept as JSON (for `vars`).
impl Decode for serde_json::Value {
    const EXPECTED: &'static str = "any value";
    fn decode(node: &Node, _: &mut Cx) -> Option<Self> {
        Some(node.to_json())
    }
}

/// Suggests the closest of `candidates` to `name`, when close enough to be a typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Reads the keys of one map node, remembering which were used, and reports
/// the rest as unknown with a suggestion.
#[derive(Debug)]
pub struct MapReader<'a> {
    node: &'a Node,
    entries: &'a [(crate::plan::node::Key, Node)],
    used: Vec<bool>,
    /// False once any field failed; the struct is then not built.
    pub ok: bool,
}

impl<'a> MapReader<'a> {
    /// A map node (or null, read as an empty map: `vacuum:` means defaults).
    pub fn open(node: &'a Node, cx: &mut Cx, what: &str) -> Option<Self> {
        let entries: &[_] = match &node.kind {
            Kind::Map(m) => m,
            Kind::Null => &[],
            _ => {
                cx.wrong_type(node, &format!("a map ({what})"));
                return None;
            }
        };
        Some(Self {
            node,
            entries,
            used: vec![false; entries.len()],
            ok: true,
        })
    }

    /// The raw node under `key`, marked as used.
    pub fn raw(&mut self, key: &str) -> Option<&'a Node> {
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    /// An optional field. A wrong value is reported and gives `None`.
    pub fn opt<T: Decode>(&mut self, key: &str, cx: &mut Cx) -> Option<Sp<T>> {
        let node = self.raw(key)?;
        let v = Sp::<T>::decode(node, cx);
        self.ok &= v.is_some();
        v
    }

    /// A required field; its absence is reported at the map.
    pub fn req<T: Decode>(&mut self, key: &str, what: &str, cx: &mut Cx) -> Option<Sp<T>> {
        if self.entries.iter().any(|(k, _)| k.name == key) {
            return self.opt(key, cx);
        }
        self.ok = false;
        cx.error(
            Diag::error("missing-key", format!("missing required key `{key}` in {what}"))
                .at(self.node.pos, format!("`{key}` is required here"))
                .hint(format!("add `{key}: {}`", placeholder::<T>(key))),
        );
        None
    }

    /// Reports every key not read, suggesting the closest of `known`.
    pub fn finish(self, cx: &mut Cx, what: &str, known: &[&str]) -> bool {
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let mut d = Diag::error("unknown-key", format!("unknown key `{}` in {what}", key.name))
                .at(key.pos, "unknown key".to_string());
            d = match did_you_mean(&key.name, known.iter().copied()) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint(format!("known keys: {}", known.join(", "))),
            };
            cx.error(d);
        }
        self.ok && self.used.iter().all(|u| *u)
    }
}

/// What to suggest writing for a missing required key.
fn placeholder<T: Decode>(key: &str) -> &'static str {
    match (key, T::EXPECTED) {
        ("version", _) => "1",
        ("steps", _) => "{stats: {stats: {}}}",
        (_, "a duration") => "90 days",
        (_, "a name") => "<name>",
        _ => "<value>",
    }
}

/// Declares a map-shaped parameters struct: fields with docs, required ones
/// first, then optional ones. Generates the struct (`Serialize`, `JsonSchema`
/// with `additionalProperties: false`), `KEYS`, and its [`Decode`] impl.
#[macro_export]
macro_rules! params {
    (
        $(#[$meta:meta])*
        pub struct $name:ident ($what:literal) {
            required { $( $(#[$rmeta:meta])* $rfield:ident : $rty:ty ),* $(,)? }
            optional { $( $(#[$ometa:meta])* $ofield:ident : $oty:ty ),* $(,)? }
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$rmeta])* pub $rfield: $crate::plan::decode::Sp<$rty>, )*
            $( $(#[$ometa])* #[serde(skip_serializing_if = "Option::is_none")] pub $ofield: Option<$crate::plan::decode::Sp<$oty>>, )*
        }

        impl $name {
            /// Every key this map accepts, in declaration order.
            pub const KEYS: &'static [&'static str] = &[
                $( $crate::plan::decode::key_name(stringify!($rfield)), )*
                $( $crate::plan::decode::key_name(stringify!($ofield)), )*
            ];
            /// What diagnostics call this map.
            pub const WHAT: &'static str = $what;
        }

        impl $name {
            /// Reads this struct's keys from an open map, leaving other keys
            /// for the caller (a step mixes settings and its operation).
            pub fn read(r: &mut $crate::plan::decode::MapReader<'_>, cx: &mut $crate::plan::decode::Cx) -> Option<Self> {
                let was_ok = std::mem::replace(&mut r.ok, true);
                $( let $rfield = r.req::<$rty>($crate::plan::decode::key_name(stringify!($rfield)), $what, cx); )*
                $( let $ofield = r.opt::<$oty>($crate::plan::decode::key_name(stringify!($ofield)), cx); )*
                let ok = r.ok;
                r.ok &= was_ok;
                if !ok {
                    return None;
                }
                Some(Self { $( $rfield: $rfield?, )* $( $ofield, )* })
            }
        }

        impl $crate::plan::decode::Decode for $name {
            const EXPECTED: &'static str = concat!("a map (", $what, ")");
            fn decode(node: &$crate::plan::node::Node, cx: &mut $crate::plan::decode::Cx) -> Option<Self> {
                let mut r = $crate::plan::decode::MapReader::open(node, cx, $what)?;
                let v = Self::read(&mut r, cx);
                if !r.finish(cx, $what, Self::KEYS) {
                    return None;
                }
                v
            }
        }
    };
}

/// `r#where` → `where`: the YAML key of a field whose name is a keyword.
pub const fn key_name(ident: &'static str) -> &'static str {
    match ident.as_bytes() {
        [b'r', b'#', ..] => {
            let (_, rest) = ident.split_at(2);
            rest
        }
        _ => ident,
    }
}

/// Declares a string enum whose YAML spelling is the given literal.
#[macro_export]
macro_rules! keywords {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
        pub enum $name { $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+ }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($text),+];
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text ),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::plan::decode::Decode for $name {
            const EXPECTED: &'static str = $what;
            fn decode(node: &$crate::plan::node::Node, cx: &mut $crate::plan::decode::Cx) -> Option<Self> {
                let Some(text) = $crate::plan::decode::scalar_text(node) else {
                    cx.wrong_type(node, $what);
                    return None;
                };
                match text.as_ref() {
                    $( $text => Some(Self::$variant), )+
                    other => {
                        let hint = match $crate::plan::decode::did_you_mean(other, Self::ALL.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("one of: {}", Self::ALL.join(", ")),
                        };
                        cx.invalid(node, format!("`{other}` is not {}", $what), Some(hint));
                        None
                    }
                }
            }
        }
    };
}
