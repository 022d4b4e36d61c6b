//! What the validator answers: `GRAPH_OK` or `ERRORS_FOUND`, with diagnostics that each carry
//! a code, a JSON pointer into the graph, a message and a fix hint (docs/GEONODES.md §Errors).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    GraphOk,
    ErrorsFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// Every diagnostic code (docs/GEONODES.md §Errors lists what each means and its fix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    // The document.
    InvalidJson,
    InvalidShape,
    LimitExceeded,
    // Nodes and their properties.
    DuplicateNodeId,
    UnknownNodeType,
    UnsupportedNode,
    UnknownProperty,
    InvalidPropertyValue,
    // node_settings (input defaults).
    UnknownSettingNode,
    SettingIsProperty,
    InvalidSetting,
    // Links.
    InvalidLink,
    UnknownLinkNode,
    UnknownSocket,
    AmbiguousSocket,
    SocketDisabled,
    WrongDirection,
    IncompatibleSockets,
    FieldIntoSingleValue,
    DuplicateLink,
    MultipleLinksToInput,
    Cycle,
    ZoneUnpaired,
    RequiredInputUnlinked,
    // Group interface and IO nodes.
    InvalidInterface,
    RequiredGroupIo,
    MissingGroupOutput,
    GroupOutputUnlinked,
    // Frames.
    InvalidFrame,
    // Warnings.
    DuplicateSocketKey,
    VariantApproximate,
    ConversionInserted,
}

impl Code {
    pub fn severity(self) -> Severity {
        match self {
            Code::DuplicateSocketKey | Code::VariantApproximate | Code::ConversionInserted => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// The wire name (equal to the serde name; a unit test keeps them together).
    pub fn as_str(self) -> &'static str {
        CODE_NAMES.iter().find(|(c, _)| *c == self).map(|(_, n)| *n).unwrap_or("UNKNOWN")
    }
}

pub(crate) const CODE_NAMES: &[(Code, &str)] = &[
    (Code::InvalidJson, "INVALID_JSON"),
    (Code::InvalidShape, "INVALID_SHAPE"),
    (Code::LimitExceeded, "LIMIT_EXCEEDED"),
    (Code::DuplicateNodeId, "DUPLICATE_NODE_ID"),
    (Code::UnknownNodeType, "UNKNOWN_NODE_TYPE"),
    (Code::UnsupportedNode, "UNSUPPORTED_NODE"),
    (Code::UnknownProperty, "UNKNOWN_PROPERTY"),
    (Code::InvalidPropertyValue, "INVALID_PROPERTY_VALUE"),
    (Code::UnknownSettingNode, "UNKNOWN_SETTING_NODE"),
    (Code::SettingIsProperty, "SETTING_IS_PROPERTY"),
    (Code::InvalidSetting, "INVALID_SETTING"),
    (Code::InvalidLink, "INVALID_LINK"),
    (Code::UnknownLinkNode, "UNKNOWN_LINK_NODE"),
    (Code::UnknownSocket, "UNKNOWN_SOCKET"),
    (Code::AmbiguousSocket, "AMBIGUOUS_SOCKET"),
    (Code::SocketDisabled, "SOCKET_DISABLED"),
    (Code::WrongDirection, "WRONG_DIRECTION"),
    (Code::IncompatibleSockets, "INCOMPATIBLE_SOCKETS"),
    (Code::FieldIntoSingleValue, "FIELD_INTO_SINGLE_VALUE"),
    (Code::DuplicateLink, "DUPLICATE_LINK"),
    (Code::MultipleLinksToInput, "MULTIPLE_LINKS_TO_INPUT"),
    (Code::Cycle, "CYCLE"),
    (Code::ZoneUnpaired, "ZONE_UNPAIRED"),
    (Code::RequiredInputUnlinked, "REQUIRED_INPUT_UNLINKED"),
    (Code::InvalidInterface, "INVALID_INTERFACE"),
    (Code::RequiredGroupIo, "REQUIRED_GROUP_IO"),
    (Code::MissingGroupOutput, "MISSING_GROUP_OUTPUT"),
    (Code::GroupOutputUnlinked, "GROUP_OUTPUT_UNLINKED"),
    (Code::InvalidFrame, "INVALID_FRAME"),
    (Code::DuplicateSocketKey, "DUPLICATE_SOCKET_KEY"),
    (Code::VariantApproximate, "VARIANT_APPROXIMATE"),
    (Code::ConversionInserted, "CONVERSION_INSERTED"),
];

/// One finding. `pointer` is an RFC 6901 JSON pointer into the submitted graph
/// (`/links/2/to_socket`); `path` is the same place written for people (`links[2].to_socket`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub pointer: String,
    pub path: String,
    pub message: String,
    pub hint: String,
}

impl Diagnostic {
    pub fn new(code: Code, pointer: Pointer, message: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            path: pointer.display(),
            pointer: pointer.json(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = if self.path.is_empty() { "(graph)" } else { &self.path };
        write!(f, "{place}: {} [{}]", self.message, self.code.as_str())?;
        if !self.hint.is_empty() {
            write!(f, "\n    fix: {}", self.hint)?;
        }
        Ok(())
    }
}

/// A place in the graph document, built segment by segment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pointer(Vec<Segment>);

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl Pointer {
    pub fn root() -> Pointer {
        Pointer(Vec::new())
    }
    pub fn key(&self, k: &str) -> Pointer {
        let mut p = self.clone();
        p.0.push(Segment::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> Pointer {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }
    /// RFC 6901: `~` → `~0`, `/` → `~1`.
    pub fn json(&self) -> String {
        self.0
            .iter()
            .map(|s| match s {
                Segment::Key(k) => format!("/{}", k.replace('~', "~0").replace('/', "~1")),
                Segment::Index(i) => format!("/{i}"),
            })
            .collect()
    }
    /// `links[2].to_socket`, `node_settings["n1"].Vertices` when a key is not an identifier.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Key(k) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Segment::Key(k) => out.push_str(&format!("[{}]", serde_json::Value::String(k.clone()))),
            }
        }
        out
    }
}

/// The validator's answer (the shape an agent replies with: `status`, `errors`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub status: Status,
    pub blender: String,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// The graph to build, when it differs from the one submitted: the validator inserted
    /// conversion nodes (`CONVERSION_INSERTED` warnings, docs/GEONODES.md §Conversions).
    /// Absent when the submitted graph is built as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<crate::graph::Graph>,
}

impl Report {
    pub fn from_diagnostics(blender: &str, diagnostics: Vec<Diagnostic>) -> Report {
        let (errors, warnings): (Vec<_>, Vec<_>) = diagnostics.into_iter().partition(|d| d.severity == Severity::Error);
        Report {
            status: if errors.is_empty() { Status::GraphOk } else { Status::ErrorsFound },
            blender: blender.to_string(),
            errors,
            warnings,
            graph: None,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == Status::GraphOk
    }

    pub fn has(&self, code: Code) -> bool {
        self.errors.iter().chain(&self.warnings).any(|d| d.code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_equal_serde_names() {
        for (code, name) in CODE_NAMES {
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::Value::String(name.to_string()));
        }
    }

    #[test]
    fn pointers_escape_and_display() {
        let p = Pointer::root().key("node_settings").key("a/b").key("Vertices");
        assert_eq!(p.json(), "/node_settings/a~1b/Vertices");
        assert_eq!(p.display(), "node_settings[\"a/b\"].Vertices");
        assert_eq!(Pointer::root().key("links").index(2).key("to_socket").display(), "links[2].to_socket");
    }
}
