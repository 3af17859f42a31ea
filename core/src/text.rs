//! Text that is safe to record and to show.
//!
//! Some characters make text display as something other than what is
//! stored: the Unicode bidirectional controls (Unicode Standard Annex #9,
//! section 2: embeddings, overrides and isolates, and the implicit marks),
//! zero-width characters and the byte-order mark, and the line and
//! paragraph separators. `evil\u{202E}gpj.exe` shows as `evilexe.jpg`. The
//! log refuses them in everything it records ([`spoofing_char`]), and
//! [`escaped`] renders any text with them (or other control characters)
//! visible, for records written before the rule.

use std::fmt::Write as _;

/// True for a character that changes how surrounding text displays
/// without being visible itself: bidirectional controls (U+061C,
/// U+200E-U+200F, U+202A-U+202E, U+2066-U+2069), zero-width characters
/// (U+200B-U+200D, U+2060, U+FEFF) and the line and paragraph separators
/// (U+2028, U+2029).
pub fn is_spoofing(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// The first character of `s` that is a control character or
/// [`is_spoofing`], if any.
pub fn spoofing_char(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control() || is_spoofing(*c))
}

/// `s` with every control and [`is_spoofing`] character written as
/// `\u{XXXX}`, and backslashes doubled, so what is shown is what is stored.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || is_spoofing(c) {
            let _ = write!(out, "\\u{{{:04X}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// An error and its causes as one line, `outer: cause: …`, leaving out
/// every cause whose text the line already holds (an error that prints
/// its source, as many do, would otherwise show it twice).
pub fn join_causes(causes: impl IntoIterator<Item = String>) -> String {
    let mut line = String::new();
    let mut last = String::new();
    for c in causes {
        if c.is_empty() || line.contains(&c) {
            continue;
        }
        // A cause that restates the one before and adds to it ("tcp
        // connect error" then "tcp connect error: connection refused")
        // adds only what is new.
        let new = match c.strip_prefix(last.as_str()) {
            Some(rest) if !last.is_empty() => rest.trim_start_matches([':', ' ']).to_owned(),
            _ => c.clone(),
        };
        if new.is_empty() {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&new);
        last = c;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_that_restates_the_last_adds_only_what_is_new() {
        let chain = [
            "cannot reach the log at http://127.0.0.1:9: transport error",
            "tcp connect error",
            "tcp connect error: Connection refused (os error 111)",
            "Connection refused (os error 111)",
        ];
        assert_eq!(
            join_causes(chain.map(String::from)),
            "cannot reach the log at http://127.0.0.1:9: transport error: tcp connect error: \
             Connection refused (os error 111)"
        );
    }

    #[test]
    fn causes_already_said_are_not_repeated() {
        let chain = [
            "cannot read signing key /d/log.key: No such file or directory (os error 2)",
            "No such file or directory (os error 2)",
        ];
        assert_eq!(
            join_causes(chain.map(String::from)),
            "cannot read signing key /d/log.key: No such file or directory (os error 2)"
        );
        assert_eq!(
            join_causes(["open x".into(), "denied".into()]),
            "open x: denied"
        );
    }

    #[test]
    fn override_and_isolates_are_found_and_escaped() {
        assert_eq!(spoofing_char("evil\u{202E}gpj.exe"), Some('\u{202E}'));
        assert_eq!(spoofing_char("a\u{2067}b"), Some('\u{2067}'));
        assert_eq!(spoofing_char("zero\u{200B}width"), Some('\u{200B}'));
        assert_eq!(spoofing_char("line\u{2028}sep"), Some('\u{2028}'));
        assert_eq!(spoofing_char("tab\t"), Some('\t'));
        assert_eq!(spoofing_char("team-a/fraud-détecteur 模型"), None);
        assert_eq!(escaped("evil\u{202E}gpj.exe"), "evil\\u{202E}gpj.exe");
        assert_eq!(escaped("a\\u{202E}"), "a\\\\u{202E}");
        assert_eq!(escaped("plain"), "plain");
    }

    proptest::proptest! {
        /// What `escaped` returns never holds a character it escapes, and
        /// text without such characters comes back unchanged but for `\`.
        #[test]
        fn escaped_is_always_visible(s in "\\PC*|[\\u{0}-\\u{3000}]*") {
            let e = escaped(&s);
            proptest::prop_assert!(spoofing_char(&e).is_none());
            if spoofing_char(&s).is_none() {
                proptest::prop_assert_eq!(e, s.replace('\\', "\\\\"));
            }
        }
    }
}
