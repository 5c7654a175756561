//! The raw plan: a YAML tree in which every node and key keeps the file and
//! byte span it came from.
//!
//! Overlays merge on this tree (`overlay.rs`) and templates render on its
//! strings (`template.rs`) before `decode.rs` turns it into typed documents,
//! so every later diagnostic can still point at the exact token — the span
//! travels with the value through every stage. This module must not know
//! what a plan is.

use std::ops::Range;

use crate::plan::source::FileId;

/// Where a value came from: a file and a byte span in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Pos {
    pub file: FileId,
    pub start: usize,
    pub len: usize,
}

impl Pos {
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.len
    }
}

/// A map key and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// A string scalar: its value, how many bytes of quote precede the value in
/// the source (for positions inside templates), and whether it was produced
/// by rendering a template (then it may be parsed as a number or a boolean).
#[derive(Debug, Clone, PartialEq)]
pub struct Str {
    pub value: String,
    pub quote: u8,
    pub rendered: bool,
    /// Rendering failed and was reported; decoding stays silent about it.
    pub poisoned: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Map(Vec<(Key, Node)>),
    Seq(Vec<Node>),
    Str(Str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

impl Node {
    pub fn new(pos: Pos, kind: Kind) -> Self {
        Self { pos, kind }
    }

    /// The YAML type name, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Map(_) => "a map",
            Kind::Seq(_) => "a list",
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Bool(_) => "a boolean",
            Kind::Null => "nothing (null)",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(&s.value),
            _ => None,
        }
    }

    /// The entries of a map node; `None` for any other kind.
    pub fn entries(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.kind {
            Kind::Map(m) => m.iter_mut().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The same tree as plain JSON (for template contexts and `vars`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Map(m) => Value::Object(m.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect()),
            Kind::Seq(s) => Value::Array(s.iter().map(Node::to_json).collect()),
            Kind::Str(s) => Value::String(s.value.clone()),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Null => Value::Null,
        }
    }
}
