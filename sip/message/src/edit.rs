//! Header edits a relay makes to a message it forwards ([`Editor`]): insert or remove the top
//! `Via`, set a parameter on the top `Via`, decrement `Max-Forwards`, insert a
//! `Record-Route`, remove `Route` values that name the relay.
//!
//! Edits are recorded as byte ranges of the original message to replace, and
//! [`Editor::finish`] copies the untouched slices around them into one new `Vec<u8>`: no
//! header is re-serialised, so whatever the sender wrote (compact names, folding, odd
//! spacing) passes through unchanged. The body is never touched, so `Content-Length` stays
//! right. No I/O.

use core::ops::Range;

use crate::{
    cursor::is_token,
    error::{Field, ParseError},
    header::{Header, HeaderName},
    message::Message,
    split::Values,
    via::Via,
};

/// An edit could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The header to edit is absent (or has fewer values than asked for).
    #[error("no {0} to edit")]
    Missing(Field),
    /// The header to edit does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The edit touches bytes an earlier edit already changes.
    #[error("edit at offset {0} overlaps an earlier edit")]
    Overlap(usize),
    /// Text to insert contains a control character, or a character the grammar does not
    /// allow where it goes (a parameter value with `;`, a tag with a space, ...).
    #[error("text to insert is not valid where it goes")]
    InvalidText,
    /// `Max-Forwards` is already 0; the request must not be forwarded.
    #[error("Max-Forwards is already 0")]
    MaxForwardsExhausted,
    /// A response can only be built for a request.
    #[error("not a request")]
    NotARequest,
    /// A status code outside 100..=699.
    #[error("status code {0} is outside 100..=699")]
    InvalidStatus(u16),
}

/// One replacement: bytes `start..end` of the message become `data` of the editor's buffer.
#[derive(Debug, Clone)]
struct Op {
    start: usize,
    end: usize,
    data: Range<usize>,
}

impl Op {
    const fn conflicts(&self, start: usize, end: usize) -> bool {
        if start < self.end && self.start < end {
            return true;
        }
        // An insertion strictly inside a removal (or the other way round).
        (start == end && self.start < start && start < self.end)
            || (self.start == self.end && start < self.start && self.start < end)
    }
}

/// Text that may go into a header value: no control characters.
fn check_text(s: &str) -> Result<(), EditError> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        Err(EditError::InvalidText)
    } else {
        Ok(())
    }
}

/// A parameter name and value the editor can insert without quoting.
fn check_param(name: &str, value: Option<&str>) -> Result<(), EditError> {
    let value_ok = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| is_token(b) || matches!(b, b'[' | b']' | b':'))
    };
    if name.is_empty() || !name.bytes().all(is_token) || !value.is_none_or(value_ok) {
        Err(EditError::InvalidText)
    } else {
        Ok(())
    }
}

/// Builds a copy of a message with some header edits applied.
///
/// Each method records one edit and fails without recording anything; edits may not overlap
/// (removing the top `Via` and setting a parameter on it is an [`EditError::Overlap`]).
/// Insertions at the same place keep the order they were made in.
#[derive(Debug)]
pub struct Editor<'m, 'a> {
    msg: &'m Message<'a>,
    /// Sorted by `start`; equal starts in insertion order.
    ops: Vec<Op>,
    data: Vec<u8>,
}

impl<'m, 'a> Editor<'m, 'a> {
    /// An editor with no edits yet.
    pub fn new(msg: &'m Message<'a>) -> Self {
        Self {
            msg,
            ops: Vec::new(),
            data: Vec::new(),
        }
    }

    /// The message being edited.
    pub const fn message(&self) -> &'m Message<'a> {
        self.msg
    }

    fn check(&self, start: usize, end: usize) -> Result<(), EditError> {
        if self.ops.iter().any(|op| op.conflicts(start, end)) {
            Err(EditError::Overlap(start))
        } else {
            Ok(())
        }
    }

    /// Records "replace `start..end` with the concatenation of `parts`", after [`check`].
    fn push_unchecked(&mut self, start: usize, end: usize, parts: &[&[u8]]) {
        let from = self.data.len();
        for p in parts {
            self.data.extend_from_slice(p);
        }
        let op = Op {
            start,
            end,
            data: from..self.data.len(),
        };
        let at = self.ops.partition_point(|o| o.start <= start);
        self.ops.insert(at, op);
    }

    fn push(&mut self, start: usize, end: usize, parts: &[&[u8]]) -> Result<(), EditError> {
        self.check(start, end)?;
        self.push_unchecked(start, end, parts);
        Ok(())
    }

    /// Inserts `Name: value` above the first header called `name`, or at the top of the
    /// headers when there is none.
    ///
    /// # Errors
    ///
    /// [`EditError::InvalidText`] when `value` has a control character.
    pub fn insert_top(&mut self, name: HeaderName<'_>, value: &str) -> Result<(), EditError> {
        check_text(value)?;
        check_text(name.as_str())?;
        let at = self
            .msg
            .headers_named(self.msg_name(name))
            .next()
            .map_or(self.msg.headers_start(), |h| h.line.start);
        self.push(
            at,
            at,
            &[name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"],
        )
    }

    /// `name` re-borrowed with the message's lifetime (only `Other` carries one).
    fn msg_name(&self, name: HeaderName<'_>) -> HeaderName<'a> {
        match name {
            HeaderName::Other(s) => self
                .msg
                .headers()
                .iter()
                .map(|h| h.name)
                .find(|n| matches!(n, HeaderName::Other(o) if o.eq_ignore_ascii_case(s)))
                .unwrap_or(HeaderName::Other("")),
            HeaderName::Via => HeaderName::Via,
            HeaderName::CallId => HeaderName::CallId,
            HeaderName::From => HeaderName::From,
            HeaderName::To => HeaderName::To,
            HeaderName::CSeq => HeaderName::CSeq,
            HeaderName::MaxForwards => HeaderName::MaxForwards,
            HeaderName::ContentLength => HeaderName::ContentLength,
            HeaderName::Contact => HeaderName::Contact,
            HeaderName::ContentType => HeaderName::ContentType,
            HeaderName::Supported => HeaderName::Supported,
            HeaderName::Subject => HeaderName::Subject,
            HeaderName::ContentEncoding => HeaderName::ContentEncoding,
            HeaderName::Route => HeaderName::Route,
            HeaderName::RecordRoute => HeaderName::RecordRoute,
        }
    }

    /// Inserts a new top `Via` (`value` is everything after `Via: `).
    ///
    /// # Errors
    ///
    /// [`EditError::InvalidText`] when `value` has a control character.
    pub fn insert_top_via(&mut self, value: &str) -> Result<(), EditError> {
        self.insert_top(HeaderName::Via, value)
    }

    /// Inserts a `Record-Route` above the existing ones (`value` is `<sip:...;lr>`).
    ///
    /// # Errors
    ///
    /// [`EditError::InvalidText`] when `value` has a control character.
    pub fn insert_record_route(&mut self, value: &str) -> Result<(), EditError> {
        self.insert_top(HeaderName::RecordRoute, value)
    }

    /// Removes the top `Via` value: the whole header line when it holds one value, else only
    /// the first value and its comma.
    ///
    /// # Errors
    ///
    /// [`EditError::Missing`] without a `Via`; a parse error when a value is malformed.
    pub fn remove_top_via(&mut self) -> Result<(), EditError> {
        self.remove_leading_values(HeaderName::Via, Field::Via, 1)
    }

    /// Removes the first `count` values of the multi-value header `name` (`Via`, `Route`,
    /// ...), across header lines: lines left empty go entirely, a partly kept line loses its
    /// leading values and their commas.
    ///
    /// # Errors
    ///
    /// [`EditError::Missing`] when there are fewer than `count` values, a parse error (naming
    /// `field`) when a value is malformed, or [`EditError::Overlap`].
    pub fn remove_leading_values(
        &mut self,
        name: HeaderName<'_>,
        field: Field,
        count: usize,
    ) -> Result<(), EditError> {
        let mut planned: Vec<Range<usize>> = Vec::new();
        let mut remaining = count;
        for h in self.msg.headers_named(self.msg_name(name)) {
            if remaining == 0 {
                break;
            }
            let mut first = None;
            let mut keep = None;
            let mut n = 0usize;
            for v in Values::new(h.value, h.value_offset, field) {
                let v = v?;
                if n == remaining {
                    keep = Some(v.offset);
                    break;
                }
                first.get_or_insert(v.offset);
                n += 1;
            }
            match keep {
                None => {
                    planned.push(h.line());
                    remaining -= n;
                }
                Some(k) => {
                    planned.push(first.unwrap_or(k)..k);
                    remaining = 0;
                }
            }
        }
        if remaining > 0 {
            return Err(EditError::Missing(field));
        }
        for r in &planned {
            self.check(r.start, r.end)?;
        }
        for r in planned {
            self.push_unchecked(r.start, r.end, &[]);
        }
        Ok(())
    }

    /// Sets parameter `name` on the top `Via` value: replaces it where it already is (so
    /// `;rport` becomes `;rport=5060`), else appends `;name[=value]` to the value.
    ///
    /// # Errors
    ///
    /// [`EditError::Missing`] without a `Via`, the `Via` parse error, [`EditError::InvalidText`]
    /// when `name` is not a token or `value` needs quoting, or [`EditError::Overlap`].
    pub fn set_top_via_param(&mut self, name: &str, value: Option<&str>) -> Result<(), EditError> {
        check_param(name, value)?;
        let via = self.top_via()?;
        let mut existing = None;
        for p in via.params() {
            let p = p?;
            if p.is(name) {
                existing = Some(p.span);
                break;
            }
        }
        let (start, end, sep): (usize, usize, &[u8]) = match existing {
            Some(span) => (span.start, span.end, b""),
            None => (via.span().end, via.span().end, b";"),
        };
        match value {
            Some(v) => self.push(start, end, &[sep, name.as_bytes(), b"=", v.as_bytes()]),
            None => self.push(start, end, &[sep, name.as_bytes()]),
        }
    }

    fn top_via(&self) -> Result<Via<'a>, EditError> {
        match self.msg.vias().next() {
            None => Err(EditError::Missing(Field::Via)),
            Some(v) => Ok(v?),
        }
    }

    /// Decrements `Max-Forwards` in place, or inserts `Max-Forwards: 69` when it is absent
    /// (RFC 3261 section 16.6 step 3); returns the new value.
    ///
    /// # Errors
    ///
    /// [`EditError::MaxForwardsExhausted`] when it is 0 (answer 483 instead), a parse error
    /// when it is duplicated or not a number, or [`EditError::Overlap`].
    pub fn decrement_max_forwards(&mut self) -> Result<u32, EditError> {
        match self.msg.max_forwards()? {
            None => {
                let at = self.msg.headers_start();
                self.push(at, at, &[b"Max-Forwards: 69\r\n"])?;
                Ok(69)
            }
            Some(0) => Err(EditError::MaxForwardsExhausted),
            Some(n) => {
                let h = self
                    .msg
                    .headers_named(HeaderName::MaxForwards)
                    .next()
                    .ok_or(EditError::Missing(Field::MaxForwards))?;
                let new = n - 1;
                let text = new.to_string();
                self.push(
                    h.value_offset,
                    h.value_offset + h.value.len(),
                    &[text.as_bytes()],
                )?;
                Ok(new)
            }
        }
    }

    /// Appends `text` to the end of header `h`'s value (before its CRLF).
    pub(crate) fn append_to_value(&mut self, h: &Header<'_>, text: &str) -> Result<(), EditError> {
        check_text(text)?;
        let at = h.value_offset + h.value.len();
        self.push(at, at, &[text.as_bytes()])
    }

    /// Writes message bytes `range` with the edits that start inside it applied (plus
    /// insertions at its end when it is the end of the message).
    pub(crate) fn write_range(&self, range: Range<usize>, out: &mut Vec<u8>) {
        let src = self.msg.as_bytes();
        let total = src.len();
        let mut pos = range.start;
        for op in &self.ops {
            let inside = (op.start >= range.start && op.start < range.end)
                || (op.start == range.end && range.end == total);
            if !inside {
                continue;
            }
            if op.start > pos {
                out.extend_from_slice(src.get(pos..op.start).unwrap_or_default());
            }
            out.extend_from_slice(self.data.get(op.data.clone()).unwrap_or_default());
            pos = pos.max(op.end);
        }
        if pos < range.end {
            out.extend_from_slice(src.get(pos..range.end).unwrap_or_default());
        }
    }

    /// The edited message.
    pub fn finish(self) -> Vec<u8> {
        let len = self.msg.as_bytes().len();
        let mut out = Vec::with_capacity(len + self.data.len());
        self.write_range(0..len, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "INVITE sip:b@h SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n\
v: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKc\r\n\
Route: <sip:relay;lr>, <sip:next;lr>\r\n\
Max-Forwards: 70\r\n\
Record-Route: <sip:old;lr>\r\n\
Content-Length: 2\r\n\r\nhi";

    fn edit(
        raw: &str,
        f: impl FnOnce(&mut Editor<'_, '_>) -> Result<(), EditError>,
    ) -> Result<String, EditError> {
        let m = Message::parse(raw.as_bytes()).unwrap();
        let mut e = Editor::new(&m);
        f(&mut e)?;
        let out = e.finish();
        // Every edited message still parses.
        Message::parse(&out).unwrap();
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn no_edits_is_identity() {
        assert_eq!(edit(REQ, |_| Ok(())).unwrap(), REQ);
    }

    #[test]
    fn via_edits() {
        let out = edit(REQ, |e| {
            e.insert_top_via("SIP/2.0/SCTP 10.9.9.9:5060;branch=z9hG4bKnew")
        })
        .unwrap();
        assert!(out.starts_with("INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/SCTP 10.9.9.9:5060;branch=z9hG4bKnew\r\nVia: SIP/2.0/UDP 10.0.0.1"), "{out}");

        let out = edit(REQ, |e| e.remove_top_via()).unwrap();
        assert!(
            out.contains("\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\nv: "),
            "{out}"
        );

        let out = edit(REQ, |e| {
            e.remove_top_via()?;
            e.remove_top_via()
        })
        .unwrap_err();
        assert_eq!(out, EditError::Overlap(29));

        let out = edit(REQ, |e| {
            e.remove_leading_values(HeaderName::Via, Field::Via, 2)
        })
        .unwrap();
        assert!(
            out.starts_with("INVITE sip:b@h SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.3"),
            "{out}"
        );
        let out = edit(REQ, |e| {
            e.remove_leading_values(HeaderName::Via, Field::Via, 3)
        })
        .unwrap();
        assert!(!out.contains("SIP/2.0/UDP"), "{out}");
        assert_eq!(
            edit(REQ, |e| e.remove_leading_values(
                HeaderName::Via,
                Field::Via,
                4
            )),
            Err(EditError::Missing(Field::Via))
        );

        let out = edit(REQ, |e| {
            e.set_top_via_param("received", Some("192.0.2.7"))?;
            e.set_top_via_param("rport", Some("5062"))
        })
        .unwrap();
        assert!(
            out.contains("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport=5062;received=192.0.2.7, SIP/2.0/UDP 10.0.0.2"),
            "{out}"
        );
        // Replacing an existing value.
        let raw = "OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h ; received=1.1.1.1 ;branch=z9hG4bK1\r\n\r\n";
        let out = edit(raw, |e| {
            e.set_top_via_param("Received", Some("2001:db8::1"))
        })
        .unwrap();
        assert!(
            out.contains("Via: SIP/2.0/UDP h ; Received=2001:db8::1 ;branch=z9hG4bK1\r\n"),
            "{out}"
        );
        assert_eq!(
            edit(raw, |e| e.set_top_via_param("x", Some("a;b"))),
            Err(EditError::InvalidText)
        );
        assert_eq!(
            edit(raw, |e| e.set_top_via_param("bad name", None)),
            Err(EditError::InvalidText)
        );
        assert_eq!(
            edit(raw, |e| {
                e.remove_top_via()?;
                e.set_top_via_param("rport", Some("1"))
            }),
            Err(EditError::Overlap(77))
        );
        let none = "OPTIONS sip:h SIP/2.0\r\nTo: <sip:h>\r\n\r\n";
        assert_eq!(
            edit(none, |e| e.remove_top_via()),
            Err(EditError::Missing(Field::Via))
        );
        assert_eq!(
            edit(none, |e| e.set_top_via_param("rport", None)),
            Err(EditError::Missing(Field::Via))
        );
    }

    #[test]
    fn folded_multi_value_via() {
        let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1 ,\r\n SIP/2.0/UDP b;branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n";
        let out = edit(raw, |e| e.remove_top_via()).unwrap();
        assert_eq!(
            out,
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn route_and_record_route() {
        let out = edit(REQ, |e| {
            e.remove_leading_values(HeaderName::Route, Field::Route, 1)
        })
        .unwrap();
        assert!(out.contains("\r\nRoute: <sip:next;lr>\r\n"), "{out}");
        let out = edit(REQ, |e| {
            e.remove_leading_values(HeaderName::Route, Field::Route, 2)
        })
        .unwrap();
        assert!(!out.contains("\r\nRoute:"), "{out}");
        let out = edit(REQ, |e| {
            e.insert_record_route("<sip:10.9.9.9;transport=sctp;lr>")
        })
        .unwrap();
        assert!(out.contains("\r\nRecord-Route: <sip:10.9.9.9;transport=sctp;lr>\r\nRecord-Route: <sip:old;lr>\r\n"), "{out}");
        let raw = "OPTIONS sip:h SIP/2.0\r\nTo: <sip:h>\r\n\r\n";
        let out = edit(raw, |e| e.insert_record_route("<sip:r;lr>")).unwrap();
        assert_eq!(
            out,
            "OPTIONS sip:h SIP/2.0\r\nRecord-Route: <sip:r;lr>\r\nTo: <sip:h>\r\n\r\n"
        );
        assert_eq!(
            edit(raw, |e| e.insert_record_route("<sip:r>\r\nX: y")),
            Err(EditError::InvalidText)
        );
        let out = edit(raw, |e| e.insert_top(HeaderName::Other("X-Relay"), "1")).unwrap();
        assert_eq!(
            out,
            "OPTIONS sip:h SIP/2.0\r\nX-Relay: 1\r\nTo: <sip:h>\r\n\r\n"
        );
    }

    #[test]
    fn max_forwards() {
        let mut got = 0;
        let out = edit(REQ, |e| {
            got = e.decrement_max_forwards()?;
            Ok(())
        })
        .unwrap();
        assert_eq!(got, 69);
        assert!(out.contains("\r\nMax-Forwards: 69\r\n"), "{out}");
        let raw = "OPTIONS sip:h SIP/2.0\r\nMax-Forwards:   10  \r\n\r\n";
        assert_eq!(
            edit(raw, |e| e.decrement_max_forwards().map(drop)).unwrap(),
            "OPTIONS sip:h SIP/2.0\r\nMax-Forwards:   9  \r\n\r\n"
        );
        let raw = "OPTIONS sip:h SIP/2.0\r\nTo: <sip:h>\r\n\r\n";
        assert_eq!(
            edit(raw, |e| e.decrement_max_forwards().map(drop)).unwrap(),
            "OPTIONS sip:h SIP/2.0\r\nMax-Forwards: 69\r\nTo: <sip:h>\r\n\r\n"
        );
        let raw = "OPTIONS sip:h SIP/2.0\r\nMax-Forwards: 0\r\n\r\n";
        assert_eq!(
            edit(raw, |e| e.decrement_max_forwards().map(drop)),
            Err(EditError::MaxForwardsExhausted)
        );
        let raw = "OPTIONS sip:h SIP/2.0\r\nMax-Forwards: x\r\n\r\n";
        assert!(matches!(
            edit(raw, |e| e.decrement_max_forwards().map(drop)),
            Err(EditError::Parse(_))
        ));
    }

    #[test]
    fn all_relay_edits_together() {
        let out = edit(REQ, |e| {
            e.set_top_via_param("received", Some("192.0.2.7"))?;
            e.remove_leading_values(HeaderName::Route, Field::Route, 1)?;
            e.decrement_max_forwards()?;
            e.insert_record_route("<sip:10.9.9.9;transport=sctp;lr>")?;
            e.insert_top_via("SIP/2.0/SCTP 10.9.9.9;branch=z9hG4bKnew")
        })
        .unwrap();
        let m = Message::parse(out.as_bytes()).unwrap();
        let vias: Vec<_> = m.vias().map(|v| v.unwrap().branch.unwrap()).collect();
        assert_eq!(vias, vec!["z9hG4bKnew", "z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]);
        assert_eq!(m.max_forwards(), Ok(Some(69)));
        assert_eq!(m.routes().count(), 1);
        assert_eq!(m.record_routes().count(), 2);
        assert_eq!(m.body(), b"hi");
        assert_eq!(
            m.vias().nth(1).unwrap().unwrap().received,
            Some([192, 0, 2, 7].into())
        );
    }
}
