//! NOTIFICATION message (RFC 4271 §4.5) and the shutdown communication of
//! RFC 8203 / RFC 9003.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Decoding accepts any code, subcode and data (a NOTIFICATION is never
//! answered with another one). Cease/Administrative Shutdown and Reset data
//! is a 1-octet length and that many octets of UTF-8 (RFC 9003 raised the
//! limit from 128 to 255).

use bytes::{BufMut, BytesMut};

use super::error::{code, subcode};
use super::iana::{subcode_name, ErrorCode};

/// A NOTIFICATION message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Diagnostic data; its meaning depends on code and subcode.
    pub data: Vec<u8>,
}

/// Longest shutdown communication in octets (RFC 9003).
pub const MAX_SHUTDOWN_COMMUNICATION: usize = 255;

impl Notification {
    /// A notification without data.
    pub fn new(code: u8, subcode: u8) -> Notification {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// Cease / Administrative Shutdown, with a shutdown communication when
    /// one is given (cut at a character boundary to at most 255 octets);
    /// without one the data is empty.
    pub fn administrative_shutdown(message: Option<&str>) -> Notification {
        match message {
            Some(text) => Self::with_communication(subcode::cease::ADMINISTRATIVE_SHUTDOWN, text),
            None => Notification::new(code::CEASE, subcode::cease::ADMINISTRATIVE_SHUTDOWN),
        }
    }

    /// Cease / Administrative Reset with a shutdown communication.
    pub fn administrative_reset(message: &str) -> Notification {
        Self::with_communication(subcode::cease::ADMINISTRATIVE_RESET, message)
    }

    fn with_communication(cease_subcode: u8, message: &str) -> Notification {
        let mut end = message.len().min(MAX_SHUTDOWN_COMMUNICATION);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let text = &message.as_bytes()[..end];
        let mut data = Vec::with_capacity(1 + text.len());
        // `end` ≤ 255 by construction.
        data.push(end as u8);
        data.extend_from_slice(text);
        Notification {
            code: code::CEASE,
            subcode: cease_subcode,
            data,
        }
    }

    /// The shutdown communication of a Cease / Administrative Shutdown or
    /// Reset: `None` for other notifications or when the data carries none
    /// (empty data, or length 0); `Some(Err(..))` when it is present but
    /// malformed (length overrun or invalid UTF-8).
    pub fn shutdown_communication(&self) -> Option<Result<&str, ShutdownCommunicationError>> {
        if self.code != code::CEASE
            || !matches!(
                self.subcode,
                subcode::cease::ADMINISTRATIVE_SHUTDOWN | subcode::cease::ADMINISTRATIVE_RESET
            )
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        if len == 0 {
            return None;
        }
        let Some(text) = rest.get(..usize::from(len)) else {
            return Some(Err(ShutdownCommunicationError::Truncated));
        };
        Some(std::str::from_utf8(text).map_err(|_| ShutdownCommunicationError::InvalidUtf8))
    }

    /// Human-readable name of the code/subcode, for logs.
    pub fn description(&self) -> String {
        let Some(code) = ErrorCode::from_u8(self.code) else {
            return "unknown error code".into();
        };
        match subcode_name(code, self.subcode) {
            Some(subcode) => format!("{}: {subcode}", code.name()),
            None => code.name().to_owned(),
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(self.code);
        buf.put_u8(self.subcode);
        buf.put_slice(&self.data);
    }

    /// Body is at least 2 octets (the framing layer checks the length).
    pub(crate) fn decode_body(body: &[u8]) -> Option<Notification> {
        let (&code, rest) = body.split_first()?;
        let (&subcode, data) = rest.split_first()?;
        Some(Notification {
            code,
            subcode,
            data: data.to_vec(),
        })
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}/{})", self.description(), self.code, self.subcode)?;
        if let Some(Ok(text)) = self.shutdown_communication() {
            write!(f, ": \"{text}\"")?;
        }
        Ok(())
    }
}

/// A shutdown communication that is present but cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownCommunicationError {
    /// The length octet points past the end of the data.
    #[error("shutdown communication length overruns the data")]
    Truncated,
    /// The text is not UTF-8.
    #[error("shutdown communication is not valid UTF-8")]
    InvalidUtf8,
}

#[cfg(test)]
mod vectors {
    //! Byte vectors hand-built from the RFC layouts, both directions.

    use crate::packet::test_vectors::*;
    use crate::packet::{DecodeContext, EncodeContext, Message, Notification};

    #[test]
    fn notification_with_shutdown_communication() {
        let wire = message(3, "06 02 03 627965");
        let n = Notification::administrative_shutdown(Some("bye"));
        assert_both_ways(
            &wire,
            &Message::Notification(n.clone()),
            &DecodeContext::default(),
            &EncodeContext::default(),
        );
        assert_eq!(n.shutdown_communication(), Some(Ok("bye")));
        assert_eq!(
            n.to_string(),
            "cease: administrative shutdown (6/2): \"bye\""
        );

        // Cut at a character boundary to at most 255 octets.
        let long = "é".repeat(200);
        let n = Notification::administrative_reset(&long);
        assert_eq!(n.data[0], 254);
        assert_eq!(n.shutdown_communication().unwrap().unwrap().len(), 254);

        // Length past the data, and invalid UTF-8, are reported not panicked on.
        let bad = Notification {
            code: 6,
            subcode: 2,
            data: vec![5, b'a'],
        };
        assert!(bad.shutdown_communication().unwrap().is_err());
        let bad = Notification {
            code: 6,
            subcode: 4,
            data: vec![1, 0xff],
        };
        assert!(bad.shutdown_communication().unwrap().is_err());
        assert_eq!(Notification::new(4, 0).shutdown_communication(), None);
    }
}
