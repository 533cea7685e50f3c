//! A small positioned YAML tree built from `yaml-rust2` parser events, with the limits a
//! controller reading user input needs: no aliases, bounded nesting and size.

use std::fmt;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting accepted.
pub(crate) const MAX_DEPTH: usize = 32;
/// Most parser events accepted (nodes plus ends).
pub(crate) const MAX_EVENTS: usize = 100_000;
/// Largest text accepted (a ConfigMap is at most 1 MiB).
pub(crate) const MAX_BYTES: usize = 1024 * 1024;

/// A place in the YAML text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

impl From<Marker> for Position {
    fn from(m: Marker) -> Self {
        Self {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// A YAML node with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A scalar; `plain` when unquoted (so YAML may read it as a number, bool or null).
    Scalar {
        value: String,
        plain: bool,
        at: Position,
    },
    Seq {
        items: Vec<Node>,
        at: Position,
    },
    Map {
        entries: Vec<(Node, Node)>,
        at: Position,
    },
}

impl Node {
    pub(crate) fn at(&self) -> Position {
        match self {
            Node::Scalar { at, .. } | Node::Seq { at, .. } | Node::Map { at, .. } => *at,
        }
    }

    /// What kind of value this is, for error messages: `a list`, `the number 123`, ...
    pub(crate) fn describe(&self) -> String {
        match self {
            Node::Seq { .. } => "a list".to_owned(),
            Node::Map { .. } => "a mapping".to_owned(),
            Node::Scalar { value, plain, .. } => match (plain, plain_kind(value)) {
                (true, PlainKind::Null) => "an empty value (null)".to_owned(),
                (true, PlainKind::Bool) => format!("the boolean {value}"),
                (true, PlainKind::Number) => format!("the number {value}"),
                _ => format!("the string {value:?}"),
            },
        }
    }
}

/// How YAML 1.2 (core schema) reads an unquoted scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainKind {
    Null,
    Bool,
    Number,
    String,
}

pub(crate) fn plain_kind(v: &str) -> PlainKind {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return PlainKind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return PlainKind::Bool,
        ".inf" | ".Inf" | ".INF" | "-.inf" | "-.Inf" | "-.INF" | "+.inf" | ".nan" | ".NaN"
        | ".NAN" => return PlainKind::Number,
        _ => {}
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    let is_int = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let is_radix = |p: &str, ok: fn(u8) -> bool| {
        v.strip_prefix(p)
            .is_some_and(|r| !r.is_empty() && r.bytes().all(ok))
    };
    let is_float = {
        let (mantissa, exp) = match digits.split_once(['e', 'E']) {
            Some((m, e)) => (m, Some(e)),
            None => (digits, None),
        };
        let mantissa_ok = mantissa.bytes().filter(|b| *b == b'.').count() <= 1
            && mantissa.bytes().any(|b| b.is_ascii_digit())
            && mantissa.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let exp_ok = exp.is_none_or(|e| {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        });
        mantissa_ok && exp_ok && (mantissa.contains('.') || exp.is_some())
    };
    if is_int
        || is_float
        || is_radix("0x", |b| b.is_ascii_hexdigit())
        || is_radix("0o", |b| (b'0'..=b'7').contains(&b))
    {
        PlainKind::Number
    } else {
        PlainKind::String
    }
}

/// Why YAML text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub at: Option<Position>,
    pub message: String,
}

fn err(at: Option<Position>, message: impl Into<String>) -> YamlError {
    YamlError {
        at,
        message: message.into(),
    }
}

/// A collection being built.
enum Frame {
    Seq {
        items: Vec<Node>,
        at: Position,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        at: Position,
    },
}

impl Frame {
    fn add(&mut self, node: Node) {
        match self {
            Frame::Seq { items, .. } => items.push(node),
            Frame::Map { entries, key, .. } => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }

    fn finish(self) -> Node {
        match self {
            Frame::Seq { items, at } => Node::Seq { items, at },
            Frame::Map { entries, at, .. } => Node::Map { entries, at },
        }
    }
}

/// Parses one YAML document (JSON is YAML too). An empty document is `None`.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    if text.len() > MAX_BYTES {
        return Err(err(
            None,
            format!("the value is larger than {MAX_BYTES} bytes"),
        ));
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    for n in 0.. {
        if n > MAX_EVENTS {
            return Err(err(
                None,
                format!("the value has more than {MAX_EVENTS} YAML nodes"),
            ));
        }
        let (event, marker) = parser.next_token().map_err(|e| {
            let m = e.marker();
            // The scanner has its own, larger, limit on flow nesting; word it like ours.
            let info = if e.info().contains("recursion limit") {
                format!("nesting deeper than {MAX_DEPTH} levels")
            } else {
                e.info().to_owned()
            };
            err(Some((*m).into()), info)
        })?;
        let at: Position = marker.into();
        let node = match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(err(
                        Some(at),
                        "expected one YAML document, found several (---)",
                    ));
                }
                continue;
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => continue,
            Event::Alias(_) => {
                return Err(err(Some(at), "YAML aliases (*name) are not accepted here"));
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(
                        Some(at),
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        items: Vec::new(),
                        at,
                    }
                } else {
                    Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        at,
                    }
                });
                continue;
            }
            Event::Scalar(value, style, _, _) => Node::Scalar {
                value,
                plain: style == TScalarStyle::Plain,
                at,
            },
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop().expect("balanced by the parser").finish()
            }
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(frame) => frame.add(node),
        }
    }
    Ok(root)
}

/// `mapping` as key/value pairs with string keys; duplicate keys are an error.
pub(crate) fn map_entries(entries: &[(Node, Node)]) -> Result<Vec<(&str, &Node)>, YamlError> {
    let mut out: Vec<(&str, &Node)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let Node::Scalar { value: key, .. } = k else {
            return Err(err(Some(k.at()), "mapping keys must be plain strings"));
        };
        if out.iter().any(|(seen, _)| seen == key) {
            return Err(err(Some(k.at()), format!("key {key:?} appears twice")));
        }
        out.push((key.as_str(), v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(n: &Node) -> (&str, bool) {
        match n {
            Node::Scalar { value, plain, .. } => (value, *plain),
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn builds_a_positioned_tree() {
        let root = parse("a: 1\nb:\n  - x\n  - \"y\"\n").unwrap().unwrap();
        let Node::Map { entries, .. } = &root else {
            panic!()
        };
        let e = map_entries(entries).unwrap();
        assert_eq!(e[0].0, "a");
        assert_eq!(scalar(e[0].1), ("1", true));
        let Node::Seq { items, at } = e[1].1 else {
            panic!()
        };
        assert_eq!(at.line, 3);
        assert_eq!(scalar(&items[1]), ("y", false));
        assert_eq!(items[1].at(), Position { line: 4, column: 5 });
    }

    #[test]
    fn json_is_yaml() {
        let root = parse(r#"[{"instanceId": "cri-1", "n": 2}]"#)
            .unwrap()
            .unwrap();
        let Node::Seq { items, .. } = root else {
            panic!()
        };
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn rejects_aliases_depth_and_duplicates() {
        let e = parse("a: &x [1]\nb: *x\n").unwrap_err();
        assert!(e.message.contains("aliases"), "{e:?}");
        assert_eq!(e.at.unwrap().line, 2);
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(parse(&deep)
            .unwrap_err()
            .message
            .contains("nesting deeper than 32"));
        let Node::Map { entries, .. } = parse("a: 1\na: 2\n").unwrap().unwrap() else {
            panic!()
        };
        assert!(map_entries(&entries)
            .unwrap_err()
            .message
            .contains("appears twice"));
        assert!(parse("a: 1\n---\nb: 2\n")
            .unwrap_err()
            .message
            .contains("one YAML document"));
    }

    #[test]
    fn plain_kinds_follow_the_core_schema() {
        for (v, k) in [
            ("", PlainKind::Null),
            ("~", PlainKind::Null),
            ("null", PlainKind::Null),
            ("true", PlainKind::Bool),
            ("FALSE", PlainKind::Bool),
            ("123", PlainKind::Number),
            ("-4", PlainKind::Number),
            ("1.5", PlainKind::Number),
            ("1e3", PlainKind::Number),
            ("0x1F", PlainKind::Number),
            (".inf", PlainKind::Number),
            ("cri-123", PlainKind::String),
            ("yes", PlainKind::String),
            ("1.2.3", PlainKind::String),
            ("15m", PlainKind::String),
            ("e5", PlainKind::String),
            (".", PlainKind::String),
        ] {
            assert_eq!(plain_kind(v), k, "{v:?}");
        }
    }
}
