//! SIP messages (RFC 3261 section 7): parsing what arrives, writing what we send.
//!
//! The parser is strict where a wrong guess would hurt (start line, Content-Length, the
//! headers every request must carry) and lenient where real clients differ (compact header
//! names, folded lines, empty values such as baresip's `Supported:`). A message is bounded in
//! size and header count. A request that is malformed but still carries well-formed Via, From,
//! To, Call-ID and CSeq can be answered with 400; anything less is dropped (and counted by the
//! caller), since no response to it could be matched.
//!
//! Cutting a TCP stream into messages is beside it, in `stream_framer`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Largest SIP message accepted (UDP datagram or TCP frame).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Most header lines in a message.
const MAX_HEADERS: usize = 128;

#[path = "stream_framer.rs"]
mod stream_framer;
pub use stream_framer::StreamFramer;

/// A SIP method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Register,
    Subscribe,
    Notify,
    Refer,
    Message,
    Update,
    Prack,
    Publish,
    Other(String),
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

/// The first line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: String },
    Response { code: u16, reason: String },
}

/// A parsed SIP message. Header names are kept in their long form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a message could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("not UTF-8 in the header section")]
    Encoding,
    #[error("bad start line")]
    StartLine,
    #[error("bad header line")]
    HeaderLine,
    #[error("bad Content-Length")]
    ContentLength,
    #[error("body shorter than Content-Length")]
    Truncated,
    #[error("missing or bad mandatory header {0}")]
    Mandatory(&'static str),
}

/// A malformed message, with enough of it to answer 400 when that is possible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    pub error: ParseError,
    /// The request's headers when the start line was a request and the headers parsed.
    pub partial: Option<Message>,
}

fn long_name(name: &str) -> String {
    let long = match name.to_ascii_lowercase().as_str() {
        "v" | "via" => "Via",
        "f" | "from" => "From",
        "t" | "to" => "To",
        "i" | "call-id" => "Call-ID",
        "m" | "contact" => "Contact",
        "l" | "content-length" => "Content-Length",
        "c" | "content-type" => "Content-Type",
        "k" | "supported" => "Supported",
        "x" | "session-expires" => "Session-Expires",
        "cseq" => "CSeq",
        "min-se" => "Min-SE",
        "max-forwards" => "Max-Forwards",
        "require" => "Require",
        "user-agent" => "User-Agent",
        "allow" => "Allow",
        "route" => "Route",
        "record-route" => "Record-Route",
        _ => return name.to_owned(),
    };
    long.to_owned()
}

impl Message {
    /// Stamps a request's top Via with where it came from (RFC 3261 18.2.1, RFC 3581):
    /// `received` when its sent-by host is not `source`'s address, and `rport` filled in (with
    /// `received` always) when the client asked for it, so that our responses say where it
    /// was seen and it can keep a NAT binding. Any `received` or `rport` value it sent itself is
    /// replaced. Responses copy the Via, so stamp before answering.
    pub fn stamp_received(&mut self, source: SocketAddr) {
        let Some((_, value)) = self.headers.iter_mut().find(|(n, _)| n == "Via") else {
            return;
        };
        let (top, rest) = match value.find(',') {
            Some(i) => value.split_at(i),
            None => (value.as_str(), ""),
        };
        let mut parts = top.split(';');
        let Some(sent) = parts.next() else {
            return;
        };
        let ip = source.ip().to_canonical();
        let mut rport = false;
        let mut params = Vec::new();
        for p in parts {
            let key = p.split('=').next().unwrap_or_default().trim();
            if key.eq_ignore_ascii_case("rport") {
                rport = true;
            } else if !key.eq_ignore_ascii_case("received") {
                params.push(p);
            }
        }
        let mut stamped = sent.to_owned();
        for p in params {
            stamped.push(';');
            stamped.push_str(p);
        }
        if rport {
            let _ = write!(stamped, ";rport={}", source.port());
        }
        if rport || sent_by_host(sent) != Some(ip) {
            let _ = write!(stamped, ";received={ip}");
        }
        stamped.push_str(rest);
        *value = stamped;
    }

    /// Parses one message. `datagram`: the body runs to the end when Content-Length is
    /// absent (UDP); a stream framer passes exactly one frame.
    pub fn parse(bytes: &[u8]) -> Result<Message, Malformed> {
        let bad = |error| Malformed {
            error,
            partial: None,
        };
        if bytes.len() > MAX_MESSAGE {
            return Err(bad(ParseError::TooLarge));
        }
        let (head, rest) = match find(bytes, b"\r\n\r\n") {
            Some(i) => (&bytes[..i], &bytes[i + 4..]),
            None => (bytes, &[][..]),
        };
        let head = std::str::from_utf8(head).map_err(|_| bad(ParseError::Encoding))?;
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let start = parse_start(first).ok_or(bad(ParseError::StartLine))?;
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut header_error = None;
        for line in lines {
            if headers.len() >= MAX_HEADERS {
                return Err(bad(ParseError::TooManyHeaders));
            }
            if line.starts_with([' ', '\t']) {
                // A folded continuation of the previous header.
                match headers.last_mut() {
                    Some((_, v)) => {
                        // Folded onto an empty value (`Supported:` then ` x`), no space first:
                        // the value reads the same once written back and parsed again.
                        let more = line.trim();
                        if !v.is_empty() && !more.is_empty() {
                            v.push(' ');
                        }
                        v.push_str(more);
                    }
                    None => header_error = Some(ParseError::HeaderLine),
                }
                continue;
            }
            match line.split_once(':') {
                Some((name, value)) if is_token(name.trim_end()) => {
                    headers.push((long_name(name.trim_end()), value.trim().to_owned()));
                }
                _ => header_error = Some(ParseError::HeaderLine),
            }
        }
        let mut msg = Message {
            start,
            headers,
            body: Vec::new(),
        };
        // Answerable only when a response could carry the dialog headers back.
        let fail = |msg: Message, error| {
            let partial = (msg.is_request() && msg.check_mandatory().is_ok()).then_some(msg);
            Err(Malformed { error, partial })
        };
        if let Some(e) = header_error {
            return fail(msg, e);
        }
        // Written out, a message always carries a Content-Length (`to_bytes`): one without it
        // may have one header line fewer, so that whatever parses can be written and parsed
        // again.
        if msg.header("Content-Length").is_none() && msg.headers.len() >= MAX_HEADERS {
            return Err(bad(ParseError::TooManyHeaders));
        }
        let length = match msg.header("Content-Length") {
            None => rest.len(),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= MAX_MESSAGE => n,
                _ => return fail(msg, ParseError::ContentLength),
            },
        };
        if rest.len() < length {
            return fail(msg, ParseError::Truncated);
        }
        msg.body = rest[..length].to_vec();
        if let Err(error) = msg.check_mandatory() {
            return Err(Malformed {
                error,
                partial: None,
            });
        }
        Ok(msg)
    }

    fn check_mandatory(&self) -> Result<(), ParseError> {
        for name in ["Via", "From", "To", "Call-ID"] {
            if self.header(name).is_none_or(str::is_empty) {
                return Err(ParseError::Mandatory(name));
            }
        }
        let (_, method) = self.cseq().ok_or(ParseError::Mandatory("CSeq"))?;
        if let StartLine::Request { method: m, .. } = &self.start
            && *m != method
        {
            return Err(ParseError::Mandatory("CSeq"));
        }
        Ok(())
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The first value of a header (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, comma-separated values split (not inside `<>` or quotes).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_list(v))
    }

    /// Whether every hop the request's Vias name was secure (TLS, or WSS): the path an SDES
    /// key in our answer travels back along. False without a Via.
    pub fn every_via_secure(&self) -> bool {
        let mut vias = self.header_values("Via").peekable();
        vias.peek().is_some()
            && vias.all(|via| {
                let protocol = via.split_whitespace().next().unwrap_or_default();
                let transport = protocol.rsplit('/').next().unwrap_or_default();
                transport.eq_ignore_ascii_case("TLS") || transport.eq_ignore_ascii_case("WSS")
            })
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or_default()
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, Method)> {
        let v = self.header("CSeq")?;
        let (n, m) = v.split_once(char::is_whitespace)?;
        let m = m.trim();
        if m.is_empty() || !is_token(m) {
            return None;
        }
        Some((n.trim().parse().ok()?, Method::parse(m)))
    }

    /// The branch of the top Via.
    pub fn branch(&self) -> Option<&str> {
        param(self.header_values("Via").next()?, "branch")
    }

    pub fn from_tag(&self) -> Option<&str> {
        param(self.header("From")?, "tag")
    }

    pub fn to_tag(&self) -> Option<&str> {
        param(self.header("To")?, "tag")
    }

    /// The user part of the Request-URI (`sip:1234@host` -> `1234`).
    pub fn request_user(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => uri_user(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// A `;name=value` parameter of the Request-URI.
    pub fn request_uri_param(&self, name: &str) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => param(uri, name),
            StartLine::Response { .. } => None,
        }
    }

    /// Whether a request is for a `sips:` URI (TLS to the end, RFC 5630).
    pub fn is_sips(&self) -> bool {
        matches!(&self.start, StartLine::Request { uri, .. }
            if uri.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:")))
    }

    /// Writes the message with a Content-Length that matches its body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(s, "{} {} SIP/2.0\r\n", method.as_str(), uri);
            }
            StartLine::Response { code, reason } => {
                let _ = write!(s, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// A response to this request: Via, From, To, Call-ID and CSeq copied (RFC 3261 8.2.6.2),
    /// with `to_tag` added to To when it has none.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut headers = Vec::new();
        for (n, v) in &self.headers {
            match n.as_str() {
                "Via" | "From" | "Call-ID" | "CSeq" | "Record-Route" => {
                    headers.push((n.clone(), v.clone()))
                }
                "To" => {
                    let mut to = v.clone();
                    if let Some(tag) = to_tag
                        && param(v, "tag").is_none()
                        && code != 100
                    {
                        let _ = write!(to, ";tag={tag}");
                    }
                    headers.push((n.clone(), to));
                }
                _ => {}
            }
        }
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_owned(),
            },
            headers,
            body: Vec::new(),
        }
    }

    pub fn push_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push((name.to_owned(), value.into()));
    }
}

fn parse_start(line: &str) -> Option<StartLine> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().ok()?;
        if !(100..=699).contains(&code) {
            return None;
        }
        return Some(StartLine::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let uri = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some() || version != "SIP/2.0" || !is_token(method) || uri.is_empty() {
        return None;
    }
    if !(uri.starts_with("sip:") || uri.starts_with("sips:") || uri.starts_with("tel:")) {
        return None;
    }
    Some(StartLine::Request {
        method: Method::parse(method),
        uri: uri.to_owned(),
    })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits a header value at commas outside `<...>` and quotes.
fn split_list(v: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in v.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(v[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty())
}

/// A `;name=value` parameter of a header value (outside its `<uri>`).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after_uri = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after_uri.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The host of a Via's `SIP/2.0/UDP host[:port]`, if it is an IP address.
pub(crate) fn sent_by_host(sent: &str) -> Option<IpAddr> {
    let hostport = sent.split_whitespace().nth(1)?;
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => hostport.split(':').next()?,
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Where a name-addr's `<` is: the first one outside the quoted display name. A quoted
/// string may hold `<` and `>` (RFC 3261 25.1), so `"<sip:ceo@corp>" <sip:eve@corp>` names
/// eve, not the caller-chosen text in quotes.
fn addr_open(value: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in value.bytes().enumerate() {
        if quoted {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b'<' {
            return Some(i);
        }
    }
    None
}

/// The URI inside a name-addr (`"Bob" <sip:bob@host>;tag=x` -> `sip:bob@host`).
pub fn addr_uri(value: &str) -> &str {
    let inside = addr_open(value).and_then(|a| {
        let rest = value.get(a + 1..)?;
        rest.find('>').and_then(|b| rest.get(..b))
    });
    match inside {
        Some(uri) => uri,
        None => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// The display name of a name-addr, if any.
pub fn display_name(value: &str) -> Option<&str> {
    let before = value.get(..addr_open(value)?)?;
    let name = before.trim().trim_matches('"').trim();
    (!name.is_empty()).then_some(name)
}

/// The user part of a SIP URI.
pub fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    let user = user.split([';', ':']).next()?;
    (!user.is_empty()).then_some(user)
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
