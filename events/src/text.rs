//! Which characters text from elsewhere (an operator's argument, an agent's
//! report, a server's answer) may hold, and how to show the rest: one rule
//! for the server that refuses them and the clients that print them.

/// True for a character no name or argument may hold: C0 and C1 controls,
/// DEL, and the bidirectional overrides, embeddings and isolates (U+202A–
/// U+202E, U+2066–U+2069) that make text display differently from what it
/// is; also the implicit direction marks and the line and paragraph
/// separators, which do the same in a terminal.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every [`is_unsafe_char`] written as `\u{..}`, for printing text
/// from elsewhere (a server, an agent) on a terminal.
pub fn escape_unsafe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
