//! Container logs in the CRI format the runtime writes (`<RFC3339Nano> <stream> <P|F> <text>`,
//! `P` for a partial line), read back as `kubectl logs` shows them.

use std::path::Path;

/// One log line: its time, stream, and text (partial lines end without a newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a str,
}

pub fn parse(line: &str) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default();
    Some(Entry {
        timestamp,
        stream,
        partial: tag.split(':').next() == Some("P"),
        text,
    })
}

/// The container's output as written, partial lines joined.
pub fn render(content: &str, timestamps: bool) -> String {
    let mut out = String::with_capacity(content.len());
    let mut at_line_start = true;
    for line in content.lines() {
        let Some(entry) = parse(line) else { continue };
        if timestamps && at_line_start {
            out.push_str(entry.timestamp);
            out.push(' ');
        }
        out.push_str(entry.text);
        at_line_start = !entry.partial;
        if !entry.partial {
            out.push('\n');
        }
    }
    out
}

/// The last `lines` lines of a log, at most `bytes` long (for termination messages that fall
/// back to the log).
pub fn tail_text(path: &Path, lines: usize, bytes: usize) -> String {
    let content = std::fs::read_to_string(path).unwrap_or_default();
    let text = render(&content, false);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut tail = all[start..].join("\n");
    if tail.len() > bytes {
        let cut = tail.len() - bytes;
        let cut = (cut..tail.len())
            .find(|&i| tail.is_char_boundary(i))
            .unwrap_or(tail.len());
        tail = tail[cut..].to_string();
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_lines_are_joined() {
        let content = "2026-01-01T00:00:00.1Z stdout P hel\n2026-01-01T00:00:00.2Z stdout F lo\n2026-01-01T00:00:01Z stderr F oops\n";
        assert_eq!(render(content, false), "hello\noops\n");
        assert_eq!(
            render(content, true),
            "2026-01-01T00:00:00.1Z hello\n2026-01-01T00:00:01Z oops\n"
        );
        assert_eq!(parse("t stdout F").unwrap().text, "");
    }
}
