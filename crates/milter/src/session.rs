//! One MTA connection's state machine: negotiation, envelope, message buffer.
//!
//! It is sans-I/O so every protocol path (negotiation, no-reply flags, macros,
//! oversize refusal, abort, reuse) can be tested without sockets. The server feeds it
//! decoded [`Command`]s and acts on each [`Step`]: send a reply, scan a message, or
//! close. The message is rebuilt from the header and body packets into the raw bytes
//! the engine scans, and is never buffered past `max_message_size`, nor past what
//! is left of the service's [`Budget`] (`max_buffered_bytes`).

use super::budget::{self, Budget, Reservation};
use super::protocol::{self, Command, ConnAddr, OptNeg, ProtocolError, Response, actions, proto};
use super::release::gate::MAX_TOKENS_PER_MESSAGE;
use super::release::token::{self, MAX_VALUE_LEN};
use super::settings::Settings;
use chaff::Envelope;
use std::net::IpAddr;
use std::sync::Arc;

/// Actions chaff asks the MTA for.
const WANT_ACTIONS: u32 =
    actions::ADDHDRS | actions::CHGHDRS | actions::QUARANTINE | actions::SETSYMLIST;

/// Steps chaff asks the MTA to skip or not to wait for: everything before end of
/// message is streamed without an answer, so a message costs one round trip.
/// HELO is sent (unanswered) for the records of the quarantine and the history.
/// (With `refuse_oversize_early`, end-of-header and body chunks are answered again,
/// so an oversize message is refused at the chunk that crosses the limit.)
const WANT_PROTOCOL: u32 = proto::NOUNKNOWN
    | proto::NR_CONN
    | proto::NR_HELO
    | proto::NR_MAIL
    | proto::NR_RCPT
    | proto::NR_DATA
    | proto::NR_UNKN
    | proto::NR_HDR
    | proto::NR_EOH
    | proto::NR_BODY
    | proto::HDR_LEADSPC;

/// Macros chaff asks for, by stage (sent when the MTA offers `SMFIF_SETSYMLIST`;
/// otherwise Postfix's and Sendmail's defaults already include them).
const WANT_MACROS: &[(u32, &str)] = &[
    (protocol::stage::CONNECT, "{client_addr}"),
    (protocol::stage::ENVFROM, "i {auth_authen} {auth_type}"),
    (protocol::stage::DATA, "i"),
    (protocol::stage::EOH, "i"),
    (protocol::stage::EOM, "i"),
];

/// Recipients kept per message (more are accepted but not passed to the engine).
const MAX_RECIPIENTS: usize = 1000;

/// Most capacity the message buffer keeps between messages (32 KiB): with the
/// connection's read buffer (`connection::IDLE_READ_CAPACITY`), an open connection
/// that is not receiving a message holds at most 64 KiB (README, "Memory").
pub const IDLE_MESSAGE_CAPACITY: usize = 32 * 1024;

/// What the server must do after a command.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing to send.
    Nothing,
    /// Send this response.
    Reply(Response),
    /// The message went over `max_message_size`: send the response (REPLYCODE with
    /// the oversize reply) and log the refusal once.
    Oversize {
        /// The oversize reply.
        response: Response,
        /// The message's size so far.
        size: usize,
        /// The envelope, for the log line.
        envelope: Envelope,
    },
    /// The message would have gone over the service's buffer budget
    /// (`max_buffered_bytes`): send the response (REPLYCODE with
    /// [`budget::BUSY_REPLY`], a 4xx: the MTA keeps the message and retries) and log
    /// it once.
    Busy {
        /// The TEMPFAIL reply.
        response: Response,
        /// The message's size so far.
        size: usize,
        /// The envelope, for the log line.
        envelope: Envelope,
    },
    /// End of message: decide (the policy's business, on a scan thread), then call
    /// [`Session::finish`] with the decision.
    Scan(Box<ScanJob>),
    /// Close the connection.
    Close,
}

/// A complete message to scan.
#[derive(Debug, PartialEq)]
pub struct ScanJob {
    /// The message as rebuilt from the header and body packets.
    pub raw: Vec<u8>,
    /// Sender, recipients, authenticated user, client address, queue id.
    pub envelope: Envelope,
    /// The message's bytes in the buffer budget: returned when the job is dropped,
    /// once it is scanned.
    pub reservation: Reservation,
    /// The values of its release token headers ([`token::HEADER`]), at most
    /// [`MAX_TOKENS_PER_MESSAGE`]; almost always none.
    pub release_tokens: Vec<String>,
}

/// Headers of a message named like those chaff writes or reads, counted so they
/// can be removed (CHGHEADER with an empty value, by index, last first): a
/// sender must not forge chaff's score or status, and a release token is not
/// delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnHeaders {
    /// Named like `milter.score_header`.
    pub score: u32,
    /// Named like `milter.status_header`.
    pub status: u32,
    /// Release tokens ([`token::HEADER`]).
    pub release: u32,
}

/// The SMTP client as the MTA described it (for the quarantine's and the
/// history's records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's host name (CONNECT), when the MTA resolved one.
    pub name: Option<String>,
    /// The HELO/EHLO name it gave.
    pub helo: Option<String>,
}

/// Longest HELO name kept, in bytes (a longer one is cut).
const MAX_HELO: usize = 255;

/// What was agreed at option negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Protocol version.
    pub version: u32,
    /// Actions granted (`SMFIF_*`).
    pub actions: u32,
    /// Protocol flags agreed (`SMFIP_*`).
    pub protocol: u32,
}

impl Negotiated {
    /// True when the protocol flag was agreed.
    fn has(&self, flag: u32) -> bool {
        self.protocol & flag != 0
    }

    /// True when the action was granted.
    pub fn can(&self, action: u32) -> bool {
        self.actions & action != 0
    }
}

/// A decided message, as the session needs it at [`Session::finish`]: the
/// responses it becomes on this connection. The session does not know how a
/// message is decided nor what a decision holds; the policy module implements this
/// for its `Decision`, so the dependency runs from policy to session only.
pub trait Decided {
    /// The milter responses, within what the MTA granted (`neg`). `own` counts the
    /// message's headers named like chaff's, to be removed.
    fn responses(&self, settings: &Settings, neg: Negotiated, own: OwnHeaders) -> Vec<Response>;
}

/// The message being received.
#[derive(Debug, Default)]
struct Message {
    active: bool,
    sender: Option<String>,
    recipients: Vec<String>,
    queue_id: Option<String>,
    auth_user: Option<String>,
    raw: Vec<u8>,
    /// What `raw` holds of the buffer budget.
    reservation: Reservation,
    size: usize,
    oversize: bool,
    /// The buffer budget ran out: the message is received but not buffered, and
    /// answered with the TEMPFAIL reply.
    busy: bool,
    refused: bool,
    /// Headers named like chaff's own, which it removes.
    own_headers: OwnHeaders,
    /// Release token header values (at most `MAX_TOKENS_PER_MESSAGE`).
    release_tokens: Vec<String>,
}

/// One MTA connection.
#[derive(Debug)]
pub struct Session {
    settings: Arc<Settings>,
    budget: Arc<Budget>,
    neg: Option<Negotiated>,
    hostname: String,
    helo: Option<String>,
    client_addr: Option<IpAddr>,
    msg: Message,
    /// Headers to remove at the pending `finish`.
    pending_own: OwnHeaders,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses an address as MTAs write it (`192.0.2.1`, `IPv6:2001:db8::1`, `[::1]`).
fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(b).ok()?.trim();
    let s = s.strip_prefix("IPv6:").unwrap_or(s);
    let s = s.trim_start_matches('[').trim_end_matches(']');
    s.parse().ok()
}

/// An envelope address without its angle brackets; `None` for the null sender.
fn bare_address(b: &[u8]) -> Option<String> {
    let s = text(b);
    let s = s.trim();
    let s = s.strip_prefix('<').unwrap_or(s);
    let s = s.strip_suffix('>').unwrap_or(s);
    (!s.is_empty()).then(|| s.to_string())
}

impl Session {
    /// A new connection under `settings`, with no limit on what it buffers beyond
    /// `max_message_size` (a session on its own: tests, tools).
    pub fn new(settings: Arc<Settings>) -> Session {
        Session::with_budget(settings, Budget::unlimited())
    }

    /// A new connection under `settings` that buffers messages within `budget`,
    /// shared with the service's other connections.
    pub fn with_budget(settings: Arc<Settings>, budget: Arc<Budget>) -> Session {
        let msg = Message {
            reservation: budget.reservation(),
            ..Message::default()
        };
        Session {
            settings,
            budget,
            neg: None,
            hostname: String::new(),
            helo: None,
            client_addr: None,
            msg,
            pending_own: OwnHeaders::default(),
        }
    }

    /// The settings in force for this connection.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// Takes new settings (after a reload); they apply from the next message.
    pub fn refresh(&mut self, settings: Arc<Settings>) {
        if !self.msg.active {
            self.settings = settings;
        }
    }

    /// What was negotiated, once it was.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.neg
    }

    /// True between messages: the connection can be closed without losing one.
    pub fn is_idle(&self) -> bool {
        !self.msg.active
    }

    /// The client of this connection, as far as the MTA said.
    pub fn client(&self) -> ClientInfo {
        ClientInfo {
            name: (!self.hostname.is_empty()).then(|| self.hostname.clone()),
            helo: self.helo.clone(),
        }
    }

    /// The envelope of the message in progress.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            sender: self.msg.sender.clone(),
            recipients: self.msg.recipients.clone(),
            auth_user: self.msg.auth_user.clone(),
            client_addr: self.client_addr,
            queue_id: self.msg.queue_id.clone(),
        }
    }

    /// Forgets the message in progress (its macros too).
    fn reset_message(&mut self) {
        let mut raw = std::mem::take(&mut self.msg.raw);
        raw.clear();
        // Keep a modest buffer for the next message, not a large one: an idle
        // connection holds at most this much (see `IDLE_MESSAGE_CAPACITY`).
        if raw.capacity() > IDLE_MESSAGE_CAPACITY {
            raw = Vec::new();
        }
        // The old message's reservation goes back to the budget here.
        self.msg = Message {
            raw,
            reservation: self.budget.reservation(),
            ..Message::default()
        };
    }

    fn continue_unless(&self, flag: u32) -> Step {
        match self.neg {
            Some(n) if n.has(flag) => Step::Nothing,
            _ => Step::Reply(Response::Continue),
        }
    }

    fn oversize_response(&self) -> Response {
        Response::reply_code(&self.settings.oversize_reply)
    }

    /// Adds `bytes` to the message, drawing them from the buffer budget, or only
    /// counts them once the message is over the size limit or the budget.
    fn append(&mut self, parts: &[&[u8]]) {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        self.msg.size = self.msg.size.saturating_add(n);
        // Over the size limit is final (5xx), and wins over a full budget (4xx)
        // unless the 4xx was already given.
        if self.msg.size > self.settings.max_message_size
            && !self.msg.oversize
            && !(self.msg.busy && self.msg.refused)
        {
            self.msg.oversize = true;
            self.msg.busy = false;
            self.drop_buffer();
            return;
        }
        if self.msg.oversize || self.msg.busy {
            return;
        }
        if !self.msg.reservation.grow(n) {
            self.msg.busy = true;
            self.drop_buffer();
            return;
        }
        for p in parts {
            self.msg.raw.extend_from_slice(p);
        }
    }

    /// Forgets what is buffered of a refused message and returns its budget.
    fn drop_buffer(&mut self) {
        self.msg.raw = Vec::new();
        self.msg.reservation.release();
    }

    /// True when the message is being refused (over the size limit or the budget).
    fn refusing(&self) -> bool {
        self.msg.oversize || self.msg.busy
    }

    /// The step for a refused message at a point where a reply is expected: the
    /// refusal once, then the same reply again.
    fn refuse(&mut self) -> Step {
        let response = if self.msg.oversize {
            self.oversize_response()
        } else {
            budget::busy_response()
        };
        if self.msg.refused {
            return Step::Reply(response);
        }
        self.msg.refused = true;
        let (size, envelope) = (self.msg.size, self.envelope());
        if self.msg.oversize {
            Step::Oversize {
                response,
                size,
                envelope,
            }
        } else {
            Step::Busy {
                response,
                size,
                envelope,
            }
        }
    }

    /// The answer to a command that may expect one (`no_reply` is its `SMFIP_NR_*`
    /// flag): the refusal of a message that is being refused, else CONTINUE. A
    /// command the MTA asked not to answer gets nothing, even when refused: Postfix
    /// does not read such an answer, and it would be taken as the answer to a later
    /// command. The refusal then goes with the next answered command (at the latest
    /// end of message).
    fn refuse_or_continue(&mut self, no_reply: u32) -> Step {
        let answered = !self.neg.is_some_and(|n| n.has(no_reply));
        if self.refusing() && answered {
            self.refuse()
        } else {
            self.continue_unless(no_reply)
        }
    }

    /// Handles one command from the MTA.
    pub fn handle(&mut self, cmd: Command<'_>) -> Result<Step, ProtocolError> {
        if self.neg.is_none() && !matches!(cmd, Command::OptNeg(_) | Command::Quit) {
            return Err(ProtocolError::Sequence {
                command: protocol::command_name(cmd.code()),
                what: "before option negotiation",
            });
        }
        Ok(match cmd {
            Command::OptNeg(theirs) => self.negotiate(theirs)?,
            Command::Macro { pairs, .. } => {
                for (name, value) in pairs {
                    match name {
                        b"i" if !value.is_empty() => self.msg.queue_id = Some(text(value)),
                        b"{auth_authen}" => {
                            let v = text(value);
                            self.msg.auth_user = (!v.trim().is_empty()).then(|| v.trim().into());
                        }
                        b"{client_addr}" => {
                            if let Some(ip) = parse_ip(value) {
                                self.client_addr = Some(ip);
                            }
                        }
                        _ => {}
                    }
                }
                Step::Nothing
            }
            Command::Connect { hostname, addr } => {
                self.hostname = text(hostname);
                if let ConnAddr::Inet { addr, .. } | ConnAddr::Inet6 { addr, .. } = addr
                    && let Some(ip) = parse_ip(addr)
                {
                    self.client_addr = Some(ip);
                }
                self.continue_unless(proto::NR_CONN)
            }
            Command::Helo(name) => {
                let name = &name[..name.len().min(MAX_HELO)];
                let name = text(name).trim().to_string();
                self.helo = (!name.is_empty()).then_some(name);
                self.continue_unless(proto::NR_HELO)
            }
            Command::Mail(args) => {
                // A new transaction: keep only the macros sent just before MAIL.
                let queue_id = self.msg.queue_id.take();
                let auth_user = self.msg.auth_user.take();
                self.reset_message();
                self.msg.queue_id = queue_id;
                self.msg.auth_user = auth_user;
                self.msg.active = true;
                self.msg.sender = args.first().and_then(|a| bare_address(a));
                self.continue_unless(proto::NR_MAIL)
            }
            Command::Rcpt(args) => {
                self.msg.active = true;
                if self.msg.recipients.len() < MAX_RECIPIENTS
                    && let Some(r) = args.first().and_then(|a| bare_address(a))
                {
                    self.msg.recipients.push(r);
                }
                self.continue_unless(proto::NR_RCPT)
            }
            Command::Data => {
                self.msg.active = true;
                self.continue_unless(proto::NR_DATA)
            }
            Command::Header { name, value } => self.header(name, value),
            Command::Eoh => {
                self.msg.active = true;
                self.append(&[b"\r\n"]);
                self.refuse_or_continue(proto::NR_EOH)
            }
            Command::Body(chunk) => {
                self.msg.active = true;
                self.append(&[chunk]);
                self.refuse_or_continue(proto::NR_BODY)
            }
            Command::Eob(chunk) => {
                self.append(&[chunk]);
                if self.refusing() {
                    let step = self.refuse();
                    self.reset_message();
                    step
                } else {
                    // The next message likely has a similar size: start its buffer
                    // there rather than growing it from nothing again, up to what
                    // an idle connection may keep.
                    let room = self.msg.raw.len().min(IDLE_MESSAGE_CAPACITY);
                    let job = ScanJob {
                        raw: std::mem::replace(&mut self.msg.raw, Vec::with_capacity(room)),
                        envelope: self.envelope(),
                        reservation: std::mem::take(&mut self.msg.reservation),
                        release_tokens: std::mem::take(&mut self.msg.release_tokens),
                    };
                    self.pending_own = self.msg.own_headers;
                    self.reset_message();
                    Step::Scan(Box::new(job))
                }
            }
            Command::Abort => {
                self.reset_message();
                Step::Nothing
            }
            Command::Quit => Step::Close,
            Command::QuitNc => {
                self.reset_message();
                self.hostname.clear();
                self.helo = None;
                self.client_addr = None;
                Step::Nothing
            }
            Command::Unknown(_) => self.continue_unless(proto::NR_UNKN),
        })
    }

    fn header(&mut self, name: &[u8], value: &[u8]) -> Step {
        self.msg.active = true;
        let s = &self.settings.milter;
        if name.eq_ignore_ascii_case(s.score_header.as_bytes()) {
            self.msg.own_headers.score += 1;
        } else if name.eq_ignore_ascii_case(s.status_header.as_bytes()) {
            self.msg.own_headers.status += 1;
        } else if name.eq_ignore_ascii_case(token::HEADER.as_bytes()) {
            self.msg.own_headers.release += 1;
            if self.msg.release_tokens.len() < MAX_TOKENS_PER_MESSAGE && !self.refusing() {
                // A value longer than any token is kept cut: it fails as malformed.
                let cut = &value[..value.len().min(MAX_VALUE_LEN + 1)];
                self.msg.release_tokens.push(text(cut));
            }
        }
        let leadspc = self.neg.is_some_and(|n| n.has(proto::HDR_LEADSPC));
        // Rebuild `Name: value\r\n`, continuation lines with CRLF as on the wire.
        let sep: &[u8] = if leadspc { b":" } else { b": " };
        if memchr::memchr(b'\n', value).is_none() {
            self.append(&[name, sep, value, b"\r\n"]);
        } else {
            let mut v = Vec::with_capacity(value.len() + 8);
            for (i, line) in value.split(|&b| b == b'\n').enumerate() {
                if i > 0 {
                    v.extend_from_slice(b"\r\n");
                }
                v.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            }
            self.append(&[name, sep, &v, b"\r\n"]);
        }
        self.refuse_or_continue(proto::NR_HDR)
    }

    fn negotiate(&mut self, theirs: OptNeg) -> Result<Step, ProtocolError> {
        if theirs.version < protocol::MIN_VERSION {
            return Err(ProtocolError::Version(theirs.version));
        }
        let version = theirs.version.min(protocol::VERSION);
        let actions = theirs.actions & WANT_ACTIONS;
        let mut want = WANT_PROTOCOL;
        if self.settings.milter.refuse_oversize_early {
            want &= !(proto::NR_EOH | proto::NR_BODY);
        }
        let mut protocol = theirs.protocol & want;
        if version < 6 {
            // The no-reply flags and leading-space headers came with version 6.
            protocol &= proto::NOHELO | proto::NOUNKNOWN;
        }
        let macros = if actions & actions::SETSYMLIST != 0 {
            WANT_MACROS
                .iter()
                .map(|(stage, names)| (*stage, (*names).to_string()))
                .collect()
        } else {
            Vec::new()
        };
        self.neg = Some(Negotiated {
            version,
            actions,
            protocol,
        });
        self.reset_message();
        Ok(Step::Reply(Response::OptNeg {
            opts: OptNeg {
                version,
                actions,
                protocol,
            },
            macros,
        }))
    }

    /// The answer to the MTA for a decided message (after [`Step::Scan`]).
    pub fn finish(&mut self, decision: &impl Decided) -> Vec<Response> {
        let neg = self.neg.unwrap_or(Negotiated {
            version: protocol::VERSION,
            actions: 0,
            protocol: 0,
        });
        let own = std::mem::take(&mut self.pending_own);
        decision.responses(&self.settings, neg, own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{cmd, stage};

    fn session(max: usize) -> Session {
        Session::new(Arc::new(Settings {
            max_message_size: max,
            ..Settings::default()
        }))
    }

    fn early_session(max: usize) -> Session {
        let mut s = Settings {
            max_message_size: max,
            ..Settings::default()
        };
        s.milter.refuse_oversize_early = true;
        Session::new(Arc::new(s))
    }

    fn postfix_optneg() -> OptNeg {
        OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        }
    }

    #[test]
    fn commands_before_negotiation_are_refused() {
        let mut s = session(1000);
        let e = s.handle(Command::Mail(vec![b"<a@b>"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected MAIL packet: before option negotiation"
        );
        assert_eq!(s.handle(Command::Quit), Ok(Step::Close));
    }

    #[test]
    fn negotiation_takes_what_is_offered_and_asks_for_macros() {
        let mut s = session(1000);
        let Ok(Step::Reply(Response::OptNeg { opts, macros })) =
            s.handle(Command::OptNeg(postfix_optneg()))
        else {
            panic!("no optneg reply");
        };
        assert_eq!(opts.version, 6);
        assert_eq!(opts.actions, WANT_ACTIONS);
        assert_eq!(opts.protocol, WANT_PROTOCOL);
        assert!(macros.contains(&(stage::ENVFROM, "i {auth_authen} {auth_type}".into())));

        // An MTA offering less gets less, and no macro list without SETSYMLIST.
        let Ok(Step::Reply(Response::OptNeg { opts, macros })) =
            s.handle(Command::OptNeg(OptNeg {
                version: 6,
                actions: actions::ADDHDRS,
                protocol: proto::NR_HDR,
            }))
        else {
            panic!("no optneg reply");
        };
        assert_eq!(
            (opts.actions, opts.protocol),
            (actions::ADDHDRS, proto::NR_HDR)
        );
        assert!(macros.is_empty());

        assert_eq!(
            s.handle(Command::OptNeg(OptNeg {
                version: 1,
                actions: 0,
                protocol: 0
            })),
            Err(ProtocolError::Version(1))
        );
    }

    fn feed_message(s: &mut Session, body: &[u8]) -> Vec<Step> {
        let mut steps = vec![
            s.handle(Command::Macro {
                stage: cmd::MAIL,
                pairs: vec![(b"i", b"QID1"), (b"{auth_authen}", b"alice")],
            })
            .unwrap(),
        ];
        steps.push(
            s.handle(Command::Mail(vec![b"<a@example.com>", b"SIZE=10"]))
                .unwrap(),
        );
        steps.push(s.handle(Command::Rcpt(vec![b"<b@example.org>"])).unwrap());
        steps.push(s.handle(Command::Data).unwrap());
        steps.push(
            s.handle(Command::Header {
                name: b"Subject",
                value: b" hello\n\tworld",
            })
            .unwrap(),
        );
        steps.push(
            s.handle(Command::Header {
                name: b"x-spam-score",
                value: b" 99",
            })
            .unwrap(),
        );
        steps.push(s.handle(Command::Eoh).unwrap());
        steps.push(s.handle(Command::Body(body)).unwrap());
        steps.push(s.handle(Command::Eob(b"")).unwrap());
        steps
    }

    #[test]
    fn a_message_is_rebuilt_with_its_envelope() {
        let mut s = session(10_000);
        s.handle(Command::OptNeg(postfix_optneg())).unwrap();
        s.handle(Command::Connect {
            hostname: b"client.test",
            addr: ConnAddr::Inet {
                port: 1,
                addr: b"192.0.2.7",
            },
        })
        .unwrap();
        let steps = feed_message(&mut s, b"line one\r\nline two\r\n");
        // With the no-reply flags nothing before end of message is answered.
        let replies = steps
            .iter()
            .filter(|st| matches!(st, Step::Reply(_)))
            .count();
        assert_eq!(replies, 0);
        let Some(Step::Scan(job)) = steps.last() else {
            panic!("no scan at end of message: {steps:?}");
        };
        assert_eq!(
            String::from_utf8_lossy(&job.raw),
            "Subject: hello\r\n\tworld\r\nx-spam-score: 99\r\n\r\nline one\r\nline two\r\n"
        );
        let env = &job.envelope;
        assert_eq!(env.sender.as_deref(), Some("a@example.com"));
        assert_eq!(env.recipients, vec!["b@example.org".to_string()]);
        assert_eq!(env.auth_user.as_deref(), Some("alice"));
        assert_eq!(env.queue_id.as_deref(), Some("QID1"));
        assert_eq!(env.client_addr, Some("192.0.2.7".parse().unwrap()));
        assert!(s.is_idle());
        assert_eq!(
            s.pending_own,
            OwnHeaders {
                score: 1,
                ..OwnHeaders::default()
            }
        );
    }

    #[test]
    fn release_token_headers_are_kept_for_the_policy_and_counted_for_removal() {
        let mut s = session(10_000);
        s.handle(Command::OptNeg(postfix_optneg())).unwrap();
        s.handle(Command::Mail(vec![b"<>"])).unwrap();
        s.handle(Command::Rcpt(vec![b"<b@example.org>"])).unwrap();
        // Folded as Postfix passes it (LF), with the leading space.
        s.handle(Command::Header {
            name: b"X-Chaff-Release",
            value: b" v1; id=Q1;\n exp=1; n=x;\n b=y;\n mac=z",
        })
        .unwrap();
        for i in 0..MAX_TOKENS_PER_MESSAGE + 2 {
            let long = vec![b'a'; if i == 0 { 5000 } else { 3 }];
            s.handle(Command::Header {
                name: b"x-chaff-release",
                value: &long,
            })
            .unwrap();
        }
        s.handle(Command::Eoh).unwrap();
        let Ok(Step::Scan(job)) = s.handle(Command::Eob(b"body\r\n")) else {
            panic!("no scan");
        };
        assert_eq!(job.release_tokens.len(), MAX_TOKENS_PER_MESSAGE);
        assert_eq!(
            job.release_tokens[0],
            " v1; id=Q1;\n exp=1; n=x;\n b=y;\n mac=z"
        );
        assert_eq!(job.release_tokens[1].len(), MAX_VALUE_LEN + 1);
        assert_eq!(s.pending_own.release, MAX_TOKENS_PER_MESSAGE as u32 + 3);
        // The next message starts without them.
        s.handle(Command::Mail(vec![b"<>"])).unwrap();
        s.handle(Command::Eoh).unwrap();
        let Ok(Step::Scan(job)) = s.handle(Command::Eob(b"x\r\n")) else {
            panic!("no scan");
        };
        assert!(job.release_tokens.is_empty());
    }

    #[test]
    fn without_leading_space_the_separator_is_restored() {
        let mut s = session(10_000);
        s.handle(Command::OptNeg(OptNeg {
            version: 6,
            actions: 0x3f,
            protocol: 0,
        }))
        .unwrap();
        s.handle(Command::Mail(vec![b"<>"])).unwrap();
        assert_eq!(
            s.handle(Command::Header {
                name: b"Subject",
                value: b"hi"
            }),
            Ok(Step::Reply(Response::Continue))
        );
        s.handle(Command::Eoh).unwrap();
        let Ok(Step::Scan(job)) = s.handle(Command::Eob(b"x\r\n")) else {
            panic!("no scan");
        };
        assert_eq!(job.raw, b"Subject: hi\r\n\r\nx\r\n");
        assert_eq!(job.envelope.sender, None);
    }

    #[test]
    fn oversize_is_refused_at_the_crossing_chunk_and_not_buffered() {
        let mut s = early_session(100);
        s.handle(Command::OptNeg(postfix_optneg())).unwrap();
        s.handle(Command::Mail(vec![b"<a@b>"])).unwrap();
        s.handle(Command::Header {
            name: b"Subject",
            value: b" x",
        })
        .unwrap();
        s.handle(Command::Eoh).unwrap();
        assert_eq!(
            s.handle(Command::Body(&[b'a'; 50])),
            Ok(Step::Reply(Response::Continue))
        );
        let step = s.handle(Command::Body(&[b'a'; 60])).unwrap();
        let Step::Oversize { response, size, .. } = step else {
            panic!("not refused: {step:?}");
        };
        assert_eq!(
            response,
            Response::ReplyCode("552 5.3.4 Message size exceeds fixed limit".into())
        );
        assert_eq!(size, 14 + 50 + 60);
        assert!(s.msg.raw.capacity() == 0, "buffer kept after the limit");
        // A peer that keeps sending gets the same reply, and EOM never scans.
        assert!(matches!(
            s.handle(Command::Body(&[b'a'; 10])),
            Ok(Step::Reply(Response::ReplyCode(_)))
        ));
        assert!(matches!(
            s.handle(Command::Eob(b"")),
            Ok(Step::Reply(Response::ReplyCode(_)))
        ));
        assert!(s.is_idle());
    }

    #[test]
    fn oversize_headers_are_refused_at_end_of_headers_when_answered_early() {
        let mut s = early_session(20);
        s.handle(Command::OptNeg(postfix_optneg())).unwrap();
        s.handle(Command::Mail(vec![b"<a@b>"])).unwrap();
        assert_eq!(
            s.handle(Command::Header {
                name: b"Subject",
                value: b" a long subject line",
            }),
            Ok(Step::Nothing)
        );
        assert!(matches!(s.handle(Command::Eoh), Ok(Step::Oversize { .. })));
    }

    #[test]
    fn oversize_headers_are_not_answered_when_the_mta_asked_for_no_reply() {
        // Postfix does not read an answer to EOH when SMFIP_NR_EOH was agreed: one
        // sent anyway would be read as the answer to end of message, and every
        // answer after it would be one late.
        let mut s = session(20);
        s.handle(Command::OptNeg(postfix_optneg())).unwrap();
        s.handle(Command::Mail(vec![b"<a@b>"])).unwrap();
        s.handle(Command::Header {
            name: b"Subject",
            value: b" a long subject line",
        })
        .unwrap();
        assert_eq!(s.handle(Command::Eoh), Ok(Step::Nothing));
        assert_eq!(s.handle(Command::Body(b"x")), Ok(Step::Nothing));
        assert!(matches!(
            s.handle(Command::Eob(b"")),
            Ok(Step::Oversize { .. })
        ));
    }

    #[test]
    fn by_default_oversize_is_refused_at_end_of_message_without_buffering() {
        let mut s = session(100);
        s.handle(Command::OptNeg(postfix_optneg())).unwrap();
        s.handle(Command::Mail(vec![b"<a@b>"])).unwrap();
        s.handle(Command::Eoh).unwrap();
        for _ in 0..10 {
            assert_eq!(s.handle(Command::Body(&[b'a'; 60])), Ok(Step::Nothing));
            assert!(s.msg.raw.len() <= 100);
        }
        let step = s.handle(Command::Eob(b"")).unwrap();
        assert!(matches!(step, Step::Oversize { size: 602, .. }), "{step:?}");
        assert!(s.is_idle());
    }

    fn budget_session(budget: &Arc<Budget>, early: bool) -> Session {
        let mut st = Settings {
            max_message_size: 1000,
            ..Settings::default()
        };
        st.milter.refuse_oversize_early = early;
        let mut s = Session::with_budget(Arc::new(st), Arc::clone(budget));
        s.handle(Command::OptNeg(postfix_optneg())).unwrap();
        s
    }

    /// MAIL, no headers, end of headers (2 bytes), then `body` in one chunk.
    fn start_message(s: &mut Session, body: &[u8]) -> Step {
        s.handle(Command::Mail(vec![b"<a@b>"])).unwrap();
        s.handle(Command::Eoh).unwrap();
        s.handle(Command::Body(body)).unwrap()
    }

    #[test]
    fn a_message_over_the_shared_budget_is_deferred_and_the_budget_comes_back() {
        let budget = Budget::new(100);
        let mut a = budget_session(&budget, false);
        let mut b = budget_session(&budget, false);
        assert_eq!(start_message(&mut a, &[b'a'; 58]), Step::Nothing);
        assert_eq!(budget.used(), 60);
        // b's body would take the total past 100: received, not buffered, 451 at
        // end of message (nothing before it is answered).
        assert_eq!(start_message(&mut b, &[b'b'; 30]), Step::Nothing);
        assert_eq!(b.handle(Command::Body(&[b'b'; 30])), Ok(Step::Nothing));
        assert_eq!(budget.used(), 60, "b holds nothing once refused");
        assert!(b.msg.raw.capacity() == 0, "b's buffer kept");
        let step = b.handle(Command::Eob(b"")).unwrap();
        let Step::Busy { response, size, .. } = step else {
            panic!("not deferred: {step:?}");
        };
        assert_eq!(
            response,
            Response::ReplyCode("451 4.3.2 chaff: too much mail in flight, try again later".into())
        );
        assert_eq!(size, 62);
        assert!(b.is_idle());
        // a's message is scanned: its bytes travel with the job and come back when
        // the job is dropped; then b's next message fits.
        let Ok(Step::Scan(job)) = a.handle(Command::Eob(b"")) else {
            panic!("a not scanned");
        };
        assert_eq!((job.reservation.held(), budget.used()), (60, 60));
        drop(job);
        assert_eq!(budget.used(), 0);
        assert_eq!(start_message(&mut b, &[b'b'; 60]), Step::Nothing);
        assert!(matches!(b.handle(Command::Eob(b"")), Ok(Step::Scan(_))));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn answered_early_a_message_over_the_budget_is_deferred_at_its_chunk() {
        let budget = Budget::new(100);
        let mut a = budget_session(&budget, true);
        let mut b = budget_session(&budget, true);
        assert_eq!(
            start_message(&mut a, &[b'a'; 58]),
            Step::Reply(Response::Continue)
        );
        assert!(matches!(
            start_message(&mut b, &[b'b'; 60]),
            Step::Busy { .. }
        ));
        // A peer that goes on gets the same reply, logged once.
        assert_eq!(
            b.handle(Command::Eob(b"")),
            Ok(Step::Reply(budget::busy_response()))
        );
        // Over the size limit as well, before the 4xx was given: the 552 wins.
        let mut c = budget_session(&budget, false);
        assert_eq!(start_message(&mut c, &[b'c'; 50]), Step::Nothing);
        assert_eq!(c.handle(Command::Body(&[b'c'; 1000])), Ok(Step::Nothing));
        assert!(matches!(
            c.handle(Command::Eob(b"")),
            Ok(Step::Oversize { .. })
        ));
        assert_eq!(budget.used(), 60);
    }

    #[test]
    fn abort_a_new_transaction_or_a_dropped_connection_return_the_budget() {
        let budget = Budget::new(1000);
        let mut a = budget_session(&budget, false);
        start_message(&mut a, &[b'a'; 98]);
        assert_eq!(budget.used(), 100);
        a.handle(Command::Abort).unwrap();
        assert_eq!(budget.used(), 0);
        start_message(&mut a, &[b'a'; 98]);
        // MAIL without ABORT before it: the unfinished message is forgotten.
        start_message(&mut a, &[b'a'; 8]);
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn abort_forgets_the_message_and_its_macros() {
        let mut s = session(1000);
        s.handle(Command::OptNeg(postfix_optneg())).unwrap();
        s.handle(Command::Macro {
            stage: cmd::MAIL,
            pairs: vec![(b"{auth_authen}", b"alice")],
        })
        .unwrap();
        s.handle(Command::Mail(vec![b"<a@b>"])).unwrap();
        assert!(!s.is_idle());
        s.handle(Command::Abort).unwrap();
        assert!(s.is_idle());
        s.handle(Command::Mail(vec![b"<c@d>"])).unwrap();
        assert_eq!(s.envelope().auth_user, None);
        assert_eq!(s.envelope().sender.as_deref(), Some("c@d"));
    }
}
