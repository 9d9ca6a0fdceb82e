//! Where a key is in a YAML text, so that errors found after parsing (a bad port, a secret
//! that is not defined) can still name the file and line. serde_yaml does not expose positions,
//! so this walks the same text with yaml-rust2's event parser, which does.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path such as `services.s3-dmd.ports[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.into()));
        p
    }

    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }

    /// Parses the display form back (`a.b[2].c`), as produced by serde_path_to_error.
    pub fn parse(text: &str) -> Self {
        let mut path = KeyPath::root();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                path.0.push(Segment::Key(key.to_string()));
            }
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    path.0.push(Segment::Index(i));
                }
                rest = &rest[close + 1..];
            }
        }
        path
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Line numbers (1-based) of every key and sequence item in a YAML text.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<KeyPath, usize>,
}

impl LineIndex {
    /// Indexes `text`. A text that does not parse gives an empty index: the parse error itself
    /// is reported by serde_yaml with its own position.
    pub fn new(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut builder, false);
        LineIndex {
            lines: builder.lines,
        }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let mut p = path.clone();
        loop {
            if let Some(line) = self.lines.get(&p) {
                return Some(*line);
            }
            p.0.pop()?;
        }
    }
}

enum Frame {
    Mapping { path: KeyPath, key: Option<String> },
    Sequence { path: KeyPath, next: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<KeyPath, usize>,
}

impl Builder {
    /// The path a value starting now would have, recording its line.
    fn enter_value(&mut self, mark: Marker) -> Option<KeyPath> {
        let path = match self.stack.last_mut()? {
            Frame::Mapping { path, key } => path.key(key.clone()?),
            Frame::Sequence { path, next } => {
                let p = path.index(*next);
                self.lines.entry(p.clone()).or_insert(mark.line());
                p
            }
        };
        Some(path)
    }

    /// A value is complete: the parent moves to its next key or item.
    fn finish_value(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Mapping { key, .. }) => *key = None,
            Some(Frame::Sequence { next, .. }) => *next += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Mapping {
                    path,
                    key: key @ None,
                }) = self.stack.last_mut()
                {
                    self.lines.insert(path.key(text.clone()), mark.line());
                    *key = Some(text);
                } else {
                    self.enter_value(mark);
                    self.finish_value();
                }
            }
            Event::Alias(_) => {
                self.enter_value(mark);
                self.finish_value();
            }
            Event::MappingStart(..) => {
                let path = self.enter_value(mark).unwrap_or_default();
                self.stack.push(Frame::Mapping { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.enter_value(mark).unwrap_or_default();
                self.stack.push(Frame::Sequence { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.finish_value();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text = "services:\n  a:\n    image: x\n    ports:\n      - 80:80\n      - target: 9\n        mode: host\nnetworks: {n: {}}\n";
        let idx = LineIndex::new(text);
        let p = KeyPath::parse;
        assert_eq!(idx.line_of(&p("services.a.image")), Some(3));
        assert_eq!(idx.line_of(&p("services.a.ports[0]")), Some(5));
        assert_eq!(idx.line_of(&p("services.a.ports[1].mode")), Some(7));
        assert_eq!(idx.line_of(&p("networks.n")), Some(8));
        // An unknown child falls back to its nearest ancestor.
        assert_eq!(idx.line_of(&p("services.a.nope")), Some(2));
    }

    #[test]
    fn path_display_round_trips() {
        let path = KeyPath::root()
            .key("services")
            .key("s")
            .key("ports")
            .index(2);
        assert_eq!(path.to_string(), "services.s.ports[2]");
        assert_eq!(KeyPath::parse(&path.to_string()), path);
    }
}
