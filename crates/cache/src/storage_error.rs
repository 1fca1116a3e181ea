//! The error document S3-compatible storage answers with (`<Error><Code>…</Code><Message>…</Message>`,
//! the same shape on AWS, MinIO, Ceph and GCS's XML API), read so its words reach the job log.

use std::fmt;

/// The `Code` and `Message` of a storage error document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageError {
    pub code: Option<String>,
    pub message: Option<String>,
}

/// The longest code or message kept.
const MAX_FIELD: usize = 500;

impl StorageError {
    /// Reads an error document; `None` when the body is not one.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(body);
        let error = element(&text, "Error")?;
        let found = Self {
            code: element(error, "Code").map(clean),
            message: element(error, "Message").map(clean),
        };
        (found.code.is_some() || found.message.is_some()).then_some(found)
    }
}

/// `code: <Code>, message: <Message>`, as gitlab-runner prints it.
impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, "code: {code}, message: {message}"),
            (Some(code), None) => write!(f, "code: {code}"),
            (None, Some(message)) => write!(f, "message: {message}"),
            (None, None) => Ok(()),
        }
    }
}

/// The text between `<name>` (or `<name …>`) and `</name>`.
fn element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut from = 0;
    while let Some(at) = text[from..].find(&open) {
        let start = from + at + open.len();
        let rest = &text[start..];
        // `<Code>` or `<Code attr="…">`, not `<CodeX>`.
        match rest.chars().next() {
            Some('>') | Some(' ') => {
                let body_start = start + rest.find('>')? + 1;
                let end = text[body_start..].find(&close)?;
                return Some(&text[body_start..body_start + end]);
            }
            _ => from = start,
        }
    }
    None
}

/// Unescapes XML's five entities, drops control characters and cuts the text short.
fn clean(raw: &str) -> String {
    let unescaped = raw
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    unescaped
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_FIELD)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_s3_error_documents() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key &amp; signing method.</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"#;
        let e = StorageError::parse(body).expect("error document");
        assert_eq!(e.code.as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(
            e.to_string(),
            "code: SignatureDoesNotMatch, message: The request signature we calculated does not match \
             the signature you provided. Check your key & signing method."
        );
    }

    #[test]
    fn other_bodies_are_not_error_documents() {
        assert_eq!(StorageError::parse(b""), None);
        assert_eq!(StorageError::parse(b"<html>502 Bad Gateway</html>"), None);
        assert_eq!(StorageError::parse(b"<Error></Error>"), None);
        let only_code =
            StorageError::parse(b"<Error ><Codes>x</Codes><Code>NoSuchKey</Code></Error>")
                .expect("code");
        assert_eq!(only_code.to_string(), "code: NoSuchKey");
    }
}
