//! A small, blocking MTA side of the milter protocol, speaking as Postfix does.
//!
//! chaff is a milter, not an MTA; this client exists so the protocol tests, the
//! load benchmark and admins checking a deployment can drive a milter (chaff or any
//! other) exactly the way Postfix would: the same option offer, the same macros, the
//! header/body split Postfix makes, commands pipelined when the milter asked for no
//! replies, and ABORT after each message.

use super::protocol::{
    self, Command, ConnAddr, OptNeg, ProtocolError, Response, cmd, proto, split_frame,
};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// What Postfix 3.7 offers at negotiation: every action, every protocol flag.
pub const POSTFIX_OFFER: OptNeg = OptNeg {
    version: 6,
    actions: 0x1ff,
    protocol: 0x1f_ffff,
};

/// Largest body chunk, as Postfix and Sendmail send them.
pub const CHUNK: usize = 65_535;

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn proto_err(e: ProtocolError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Takes the first whole response off the front of `buf`, the bytes read so far
/// from a milter; `None` until one has arrived whole.
pub fn take_response(buf: &mut Vec<u8>) -> io::Result<Option<Response>> {
    let Some((frame, used)) = split_frame(buf, protocol::DEFAULT_MAX_PACKET).map_err(proto_err)?
    else {
        return Ok(None);
    };
    let r = Response::parse(frame).map_err(proto_err)?;
    buf.drain(..used);
    Ok(Some(r))
}

/// One message as an MTA knows it: envelope and raw bytes.
#[derive(Debug, Clone, Default)]
pub struct Submission<'a> {
    /// MAIL FROM address (without brackets); empty for the null sender.
    pub sender: &'a str,
    /// RCPT TO addresses.
    pub recipients: Vec<&'a str>,
    /// The SMTP AUTH user, sent as `{auth_authen}`.
    pub auth_user: Option<&'a str>,
    /// The queue id, sent as `i`.
    pub queue_id: Option<&'a str>,
}

/// The milter's answer to one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Everything the milter sent for it, in order, ending with the final response.
    pub responses: Vec<Response>,
    /// The command that got the final response (`BODYEOB` normally).
    pub stage: &'static str,
}

impl Answer {
    /// The final response.
    pub fn last(&self) -> Option<&Response> {
        self.responses.last()
    }

    /// What the MTA would do: `deliver`, `quarantine`, `reject` (REPLYCODE or
    /// REJECT), `tempfail` or `discard`.
    pub fn action(&self) -> &'static str {
        let quarantined = self
            .responses
            .iter()
            .any(|r| matches!(r, Response::Quarantine(_)));
        match self.last() {
            Some(Response::ReplyCode(t)) if t.starts_with('4') => "tempfail",
            Some(Response::ReplyCode(_) | Response::Reject) => "reject",
            Some(Response::Tempfail) => "tempfail",
            Some(Response::Discard) => "discard",
            _ if quarantined => "quarantine",
            _ => "deliver",
        }
    }

    /// The value of a header the milter added, leading space trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.responses.iter().find_map(|r| match r {
            Response::AddHeader { name: n, value } if n.eq_ignore_ascii_case(name) => {
                Some(value.trim_start())
            }
            _ => None,
        })
    }

    /// The SMTP reply the client would see, as text (`%%` undone).
    pub fn reply(&self) -> Option<String> {
        match self.last() {
            Some(Response::ReplyCode(t)) => Some(t.replace("%%", "%")),
            _ => None,
        }
    }
}

/// Header fields as `(name, value)` byte strings, in message order.
pub type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// Splits a raw message the way Postfix presents it to a milter: headers as
/// `(name, value)` with continuation lines joined by `\n` and the value's leading
/// whitespace kept, then the body with every line ending in CRLF. A line in the
/// header block that is not a header starts the body, as in Postfix.
pub fn split_message(raw: &[u8]) -> (Headers, Vec<u8>) {
    let mut headers: Headers = Vec::new();
    let mut lines = raw.split_inclusive(|&b| b == b'\n');
    let strip = |l: &[u8]| -> Vec<u8> {
        let l = l.strip_suffix(b"\n").unwrap_or(l);
        l.strip_suffix(b"\r").unwrap_or(l).to_vec()
    };
    let mut body_start: Option<&[u8]> = None;
    for line in lines.by_ref() {
        let text = strip(line);
        if text.is_empty() {
            break;
        }
        if matches!(text[0], b' ' | b'\t')
            && let Some((_, v)) = headers.last_mut()
        {
            v.push(b'\n');
            v.extend_from_slice(&text);
            continue;
        }
        // A header label is printable ASCII without spaces, then optional
        // whitespace, then a colon (Postfix's is_header()).
        let label = text
            .iter()
            .position(|&b| b == b':')
            .map(|i| (text[..i].trim_ascii_end(), i));
        match label {
            Some((name, i))
                if !name.is_empty() && name.iter().all(|&b| (0x21..0x7f).contains(&b)) =>
            {
                headers.push((name.to_vec(), text[i + 1..].to_vec()));
            }
            _ => {
                body_start = Some(line);
                break;
            }
        }
    }
    let mut body = Vec::with_capacity(raw.len());
    for line in body_start.into_iter().chain(lines) {
        body.extend_from_slice(&strip(line));
        body.extend_from_slice(b"\r\n");
    }
    (headers, body)
}

/// The bytes chaff scans when Postfix hands it `raw`: the message is split as
/// Postfix splits it ([`split_message`]), sent through a [`Session`] negotiated as
/// with Postfix, and rebuilt. It differs from `raw` in line endings (CRLF) and where
/// Postfix itself changes the message: a line in the header block that is neither a
/// header nor a continuation ends the headers there.
///
/// [`Session`]: super::session::Session
pub fn as_milter_sees(raw: &[u8]) -> Vec<u8> {
    use super::session::{Session, Step};
    let settings = super::settings::Settings {
        max_message_size: usize::MAX,
        ..super::settings::Settings::default()
    };
    let mut s = Session::new(std::sync::Arc::new(settings));
    let leadspc = match s.handle(Command::OptNeg(POSTFIX_OFFER)) {
        Ok(Step::Reply(Response::OptNeg { opts, .. })) => opts.protocol & proto::HDR_LEADSPC != 0,
        _ => false,
    };
    let (headers, body) = split_message(raw);
    let _ = s.handle(Command::Mail(vec![b"<>"]));
    for (name, value) in &headers {
        let value: &[u8] = if leadspc {
            value
        } else {
            value.strip_prefix(b" ").unwrap_or(value)
        };
        let _ = s.handle(Command::Header { name, value });
    }
    let _ = s.handle(Command::Eoh);
    for chunk in body.chunks(CHUNK) {
        let _ = s.handle(Command::Body(chunk));
    }
    match s.handle(Command::Eob(b"")) {
        Ok(Step::Scan(job)) => job.raw,
        _ => Vec::new(),
    }
}

/// A connection to a milter.
pub struct Client {
    stream: Stream,
    buf: Vec<u8>,
    out: Vec<u8>,
    neg: OptNeg,
    macros: Vec<(u32, String)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("neg", &self.neg).finish()
    }
}

impl Client {
    /// Connects to `addr` (`inet:HOST:PORT` or `unix:PATH`) and negotiates as
    /// Postfix does.
    pub fn connect(addr: &str) -> io::Result<Client> {
        Client::connect_with(addr, POSTFIX_OFFER, Duration::from_secs(30))
    }

    /// Connects without negotiating (for tests that send raw bytes).
    pub fn connect_raw(addr: &str, timeout: Duration) -> io::Result<Client> {
        let stream = if let Some(path) = addr.strip_prefix("unix:") {
            let s = UnixStream::connect(path)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Stream::Unix(s)
        } else {
            let hostport = addr.strip_prefix("inet:").unwrap_or(addr);
            let s = TcpStream::connect(hostport)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Stream::Tcp(s)
        };
        Ok(Client {
            stream,
            buf: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            neg: OptNeg {
                version: 0,
                actions: 0,
                protocol: 0,
            },
            macros: Vec::new(),
        })
    }

    /// Connects with a chosen option offer and I/O timeout.
    pub fn connect_with(addr: &str, offer: OptNeg, timeout: Duration) -> io::Result<Client> {
        let mut c = Client::connect_raw(addr, timeout)?;
        c.send(&Command::OptNeg(offer))?;
        match c.read_response()? {
            Response::OptNeg { opts, macros } => {
                if opts.version > offer.version || opts.actions & !offer.actions != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("milter asked for more than offered: {opts:?}"),
                    ));
                }
                c.neg = opts;
                c.macros = macros;
                Ok(c)
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected an option negotiation answer, got {other:?}"),
            )),
        }
    }

    /// What was negotiated.
    pub fn negotiated(&self) -> OptNeg {
        self.neg
    }

    /// The macros the milter asked for, by stage.
    pub fn requested_macros(&self) -> &[(u32, String)] {
        &self.macros
    }

    /// Queues a command (sent at the next read or [`Client::flush`]).
    pub fn queue(&mut self, c: &Command<'_>) {
        c.encode(&mut self.out);
    }

    /// Sends everything queued.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends one command now.
    pub fn send(&mut self, c: &Command<'_>) -> io::Result<()> {
        self.queue(c);
        self.flush()
    }

    /// Sends raw bytes (malformed-packet tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.stream.write_all(bytes)
    }

    /// Reads one response (flushing queued commands first).
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.flush()?;
        loop {
            if let Some(r) = take_response(&mut self.buf)? {
                return Ok(r);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "milter closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// True when the milter will answer `code` (it did not ask for no reply).
    pub fn expects_reply(&self, code: u8) -> bool {
        let nr = match code {
            cmd::CONNECT => proto::NR_CONN,
            cmd::HELO => proto::NR_HELO,
            cmd::MAIL => proto::NR_MAIL,
            cmd::RCPT => proto::NR_RCPT,
            cmd::DATA => proto::NR_DATA,
            cmd::HEADER => proto::NR_HDR,
            cmd::EOH => proto::NR_EOH,
            cmd::BODY => proto::NR_BODY,
            cmd::UNKNOWN => proto::NR_UNKN,
            cmd::MACRO | cmd::ABORT | cmd::QUIT | cmd::QUIT_NC => return false,
            _ => 0,
        };
        self.neg.protocol & nr == 0
    }

    fn skipped(&self, code: u8) -> bool {
        let flag = match code {
            cmd::CONNECT => proto::NOCONNECT,
            cmd::HELO => proto::NOHELO,
            cmd::MAIL => proto::NOMAIL,
            cmd::RCPT => proto::NORCPT,
            cmd::DATA => proto::NODATA,
            cmd::HEADER => proto::NOHDRS,
            cmd::EOH => proto::NOEOH,
            cmd::BODY => proto::NOBODY,
            cmd::UNKNOWN => proto::NOUNKNOWN,
            _ => 0,
        };
        self.neg.protocol & flag != 0
    }

    /// Sends a command as Postfix would (not at all if the milter asked to skip it)
    /// and returns the reply if one is expected.
    pub fn command(&mut self, c: &Command<'_>) -> io::Result<Option<Response>> {
        if self.skipped(c.code()) {
            return Ok(None);
        }
        self.queue(c);
        if self.expects_reply(c.code()) {
            self.read_response().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Sends the connection information (`{client_addr}` macro and CONNECT) and
    /// HELO, as at the start of an SMTP session.
    pub fn smtp_connect(&mut self, hostname: &str, ip: &str) -> io::Result<Option<Response>> {
        self.queue(&Command::Macro {
            stage: cmd::CONNECT,
            pairs: vec![(b"{client_addr}", ip.as_bytes())],
        });
        let addr = if ip.contains(':') {
            ConnAddr::Inet6 {
                port: 40_000,
                addr: ip.as_bytes(),
            }
        } else {
            ConnAddr::Inet {
                port: 40_000,
                addr: ip.as_bytes(),
            }
        };
        if let Some(r) = self.command(&Command::Connect {
            hostname: hostname.as_bytes(),
            addr,
        })? && r != Response::Continue
        {
            return Ok(Some(r));
        }
        if let Some(r) = self.command(&Command::Helo(hostname.as_bytes()))?
            && r != Response::Continue
        {
            return Ok(Some(r));
        }
        Ok(None)
    }

    /// Sends one whole message and collects the milter's answer, then ABORT as
    /// Postfix does at the end of each transaction.
    pub fn message(&mut self, env: &Submission<'_>, raw: &[u8]) -> io::Result<Answer> {
        let answer = self.transaction(env, raw)?;
        self.queue(&Command::Abort);
        Ok(answer)
    }

    fn transaction(&mut self, env: &Submission<'_>, raw: &[u8]) -> io::Result<Answer> {
        let qid = env.queue_id.unwrap_or("").as_bytes();
        let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
        if !qid.is_empty() {
            pairs.push((b"i", qid));
        }
        if let Some(u) = env.auth_user {
            pairs.push((b"{auth_type}", b"PLAIN"));
            pairs.push((b"{auth_authen}", u.as_bytes()));
        }
        self.queue(&Command::Macro {
            stage: cmd::MAIL,
            pairs,
        });
        let sender = format!("<{}>", env.sender);
        let mut steps: Vec<(Command<'_>, &'static str)> =
            vec![(Command::Mail(vec![sender.as_bytes()]), "MAIL")];
        let rcpts: Vec<String> = env.recipients.iter().map(|r| format!("<{r}>")).collect();
        for r in &rcpts {
            steps.push((Command::Rcpt(vec![r.as_bytes()]), "RCPT"));
        }
        steps.push((Command::Data, "DATA"));
        for (c, stage) in steps {
            if let Some(r) = self.command(&c)?
                && r != Response::Continue
            {
                return Ok(Answer {
                    responses: vec![r],
                    stage,
                });
            }
        }
        let leadspc = self.neg.protocol & proto::HDR_LEADSPC != 0;
        let (headers, body) = split_message(raw);
        for (name, value) in &headers {
            let v: &[u8] = if leadspc {
                value
            } else {
                value.strip_prefix(b" ").unwrap_or(value)
            };
            if let Some(r) = self.command(&Command::Header { name, value: v })?
                && r != Response::Continue
            {
                return Ok(Answer {
                    responses: vec![r],
                    stage: "HEADER",
                });
            }
        }
        if let Some(r) = self.command(&Command::Eoh)?
            && r != Response::Continue
        {
            return Ok(Answer {
                responses: vec![r],
                stage: "EOH",
            });
        }
        for chunk in body.chunks(CHUNK) {
            if let Some(r) = self.command(&Command::Body(chunk))?
                && r != Response::Continue
            {
                return Ok(Answer {
                    responses: vec![r],
                    stage: "BODY",
                });
            }
        }
        self.queue(&Command::Eob(b""));
        let mut responses = Vec::new();
        loop {
            let r = self.read_response()?;
            let fin = r.is_final();
            responses.push(r);
            if fin {
                return Ok(Answer {
                    responses,
                    stage: "BODYEOB",
                });
            }
        }
    }

    /// The TCP connection itself, once negotiated, for a driver that serves many
    /// connections from one thread (the load benchmark). Commands still queued are
    /// sent first. Err gives the client back when it is on a Unix socket, cannot
    /// send, or holds bytes it has read but not parsed.
    pub fn into_tcp(mut self) -> Result<TcpStream, Client> {
        if self.flush().is_err() {
            return Err(self);
        }
        match self.stream {
            Stream::Tcp(s) if self.buf.is_empty() => Ok(s),
            stream => Err(Client { stream, ..self }),
        }
    }

    /// Says goodbye.
    pub fn quit(mut self) -> io::Result<()> {
        self.send(&Command::Quit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_as_postfix_presents_them() {
        let raw = b"Subject: hi\n there\nFrom:a@b\r\nX-Empty:\n\nbody 1\nbody 2";
        let (h, b) = split_message(raw);
        assert_eq!(
            h,
            vec![
                (b"Subject".to_vec(), b" hi\n there".to_vec()),
                (b"From".to_vec(), b"a@b".to_vec()),
                (b"X-Empty".to_vec(), b"".to_vec()),
            ]
        );
        assert_eq!(b, b"body 1\r\nbody 2\r\n");
        // A non-header line ends the headers and starts the body.
        let (h, b) = split_message(b"A: 1\nnot a header\nB: 2\n");
        assert_eq!(h.len(), 1);
        assert_eq!(b, b"not a header\r\nB: 2\r\n");
        assert_eq!(split_message(b""), (vec![], vec![]));
    }

    #[test]
    fn the_milter_sees_crlf_and_postfix_header_splits() {
        assert_eq!(
            as_milter_sees(b"Subject: hi\n there\n\nbody\n"),
            b"Subject: hi\r\n there\r\n\r\nbody\r\n"
        );
        assert_eq!(
            as_milter_sees(b"Subject: =?gb2312?B?abc\ndef?=\nDate: x\n\nbody\n"),
            b"Subject: =?gb2312?B?abc\r\n\r\ndef?=\r\nDate: x\r\n\r\nbody\r\n"
        );
    }
}
