//! Where in an object an error is, built only when one happens: `Deployment.spec.template`.

use std::fmt;

use super::ProtobufError;

#[derive(Clone, Copy)]
pub(super) enum Path<'a> {
    /// The kind (or envelope) being read or written.
    Root(&'a str),
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
    Key(&'a Path<'a>, &'a str),
}

impl Path<'_> {
    pub fn malformed(&self, reason: impl fmt::Display) -> ProtobufError {
        ProtobufError::Malformed {
            path: self.to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn unencodable(&self, reason: impl fmt::Display) -> ProtobufError {
        ProtobufError::Unencodable {
            path: self.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
            Path::Key(parent, key) => write!(f, "{parent}[{key:?}]"),
        }
    }
}
