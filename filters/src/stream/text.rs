//! The text of an upstream text part, kept in the escaped form upstream sent when a machine can copy it.

use std::borrow::Cow;

use super::json;

/// A text part's text, borrowed from the event.
///
/// Text is most of a stream's bytes, and upstream sends it JSON-escaped. Whenever that escaped form is byte
/// for byte what the output escaper ([`json::write_escaped`]) would write — no escapes but `\" \\ \b \f \n
/// \r \t`, no raw U+2028/U+2029, as in nearly every event — the text is kept escaped, and a machine copies it
/// into its frame instead of unescaping and escaping it again. [`Text::to_str`] gives the text itself.
#[derive(Clone, Copy)]
pub struct Text<'a> {
    /// The text, or its escaped form when `escaped` is set.
    form: &'a str,
    escaped: bool,
}

impl<'a> Text<'a> {
    pub fn new(text: &'a str) -> Self {
        Text { form: text, escaped: false }
    }

    /// Text still in the escaped form the output escaper writes (see the type's documentation).
    pub(super) fn escaped(escaped: &'a str) -> Self {
        Text { form: escaped, escaped: true }
    }

    pub fn is_empty(&self) -> bool {
        self.form.is_empty()
    }

    /// The text itself (borrowed unless escapes had to be undone).
    pub fn to_str(&self) -> Cow<'a, str> {
        if !self.escaped || !self.form.contains('\\') {
            return Cow::Borrowed(self.form);
        }
        let mut text = String::with_capacity(self.form.len());
        self.push_to(&mut text);
        Cow::Owned(text)
    }

    /// Appends the text itself to `out`, undoing escapes on the way.
    pub fn push_to(&self, out: &mut String) {
        if !self.escaped {
            out.push_str(self.form);
            return;
        }
        let mut rest = self.form;
        while let Some(slash) = rest.find('\\') {
            let (run, escape) = rest.split_at(slash);
            out.push_str(run);
            out.push(match escape.chars().nth(1) {
                Some('b') => '\u{8}',
                Some('f') => '\u{c}',
                Some('n') => '\n',
                Some('r') => '\r',
                Some('t') => '\t',
                // `\"` and `\\`: the only other escapes an escaped form holds.
                Some(other) => other,
                None => break,
            });
            rest = escape.get(2..).unwrap_or_default();
        }
        out.push_str(rest);
    }

    /// Appends the text JSON-escaped, without quotes, as [`json::write_escaped`] writes it.
    pub(crate) fn write_escaped(&self, out: &mut Vec<u8>) {
        if self.escaped {
            out.extend_from_slice(self.form.as_bytes());
        } else {
            json::write_escaped(out, self.form);
        }
    }

    /// Appends the text as a quoted JSON string, as [`json::write_str`] writes it.
    pub(crate) fn write_str(&self, out: &mut Vec<u8>) {
        out.reserve(self.form.len() + 2);
        out.push(b'"');
        self.write_escaped(out);
        out.push(b'"');
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Self {
        Text::new(text)
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.to_str() == other.to_str()
    }
}

impl Eq for Text<'_> {}

impl std::fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_str().fmt(f)
    }
}
