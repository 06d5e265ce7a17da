//! The Sendmail milter wire protocol (version 6) as a small, sans-I/O codec.
//!
//! Why chaff has its own codec rather than a crate: `miltr-server` 0.2 (MIT) was
//! evaluated first. It parses every command, offers QUARANTINE, REPLYCODE and
//! ADDHEADER and passes macros through, but it answers *every* command whatever the
//! negotiated protocol flags say, so the "no reply" flags (`SMFIP_NR_*`) that let an
//! MTA stream a whole message with one round trip cannot be used; it cannot request
//! macros (`SMFIF_SETSYMLIST` is not modelled, so `{auth_authen}` depends on the MTA's
//! defaults); its option negotiation rejects any packet that is not exactly 12 bytes;
//! and it has no per-read timeout or early size refusal. What chaff needs is a few
//! hundred lines, so it lives here, borrowed from the read buffer without copies,
//! with a hard packet-size limit, precise errors, property tests and a fuzz target
//! (`fuzz/fuzz_targets/milter_codec.rs`).
//!
//! On the wire every packet is a 4-byte big-endian length, then one command byte,
//! then `length - 1` bytes of payload. Strings are NUL-terminated. The MTA sends
//! commands ([`Command`]); the milter answers with responses ([`Response`]). Both
//! directions can be decoded and encoded, so the same module serves the service, the
//! test client and the load benchmark.

use std::fmt;

/// Largest packet accepted by default (256 KiB): Postfix sends body chunks of at
/// most 64 KiB, but a single header may be up to `header_size_limit` (100 KiB).
pub const DEFAULT_MAX_PACKET: usize = 256 * 1024;

/// The smallest packet limit that still lets Postfix and Sendmail send a full body
/// chunk (65,535 bytes of data plus the command byte).
pub const MIN_MAX_PACKET: usize = 65_536;

/// The protocol version chaff speaks (Postfix ≥ 2.6, Sendmail ≥ 8.14).
pub const VERSION: u32 = 6;

/// The oldest MTA protocol version chaff accepts.
pub const MIN_VERSION: u32 = 2;

/// Command codes sent by the MTA (`SMFIC_*`).
pub mod cmd {
    /// Abort the current message; the connection stays (`SMFIC_ABORT`).
    pub const ABORT: u8 = b'A';
    /// A chunk of the message body (`SMFIC_BODY`).
    pub const BODY: u8 = b'B';
    /// The SMTP client connected (`SMFIC_CONNECT`).
    pub const CONNECT: u8 = b'C';
    /// Macro definitions for the next command (`SMFIC_MACRO`).
    pub const MACRO: u8 = b'D';
    /// End of the body: decide now (`SMFIC_BODYEOB`).
    pub const BODYEOB: u8 = b'E';
    /// HELO/EHLO (`SMFIC_HELO`).
    pub const HELO: u8 = b'H';
    /// Quit, but keep the connection for a new SMTP session (`SMFIC_QUIT_NC`).
    pub const QUIT_NC: u8 = b'K';
    /// One header (`SMFIC_HEADER`).
    pub const HEADER: u8 = b'L';
    /// MAIL FROM (`SMFIC_MAIL`).
    pub const MAIL: u8 = b'M';
    /// End of headers (`SMFIC_EOH`).
    pub const EOH: u8 = b'N';
    /// Option negotiation (`SMFIC_OPTNEG`).
    pub const OPTNEG: u8 = b'O';
    /// Close the connection (`SMFIC_QUIT`).
    pub const QUIT: u8 = b'Q';
    /// RCPT TO (`SMFIC_RCPT`).
    pub const RCPT: u8 = b'R';
    /// DATA (`SMFIC_DATA`).
    pub const DATA: u8 = b'T';
    /// An SMTP command the MTA did not recognise (`SMFIC_UNKNOWN`).
    pub const UNKNOWN: u8 = b'U';
}

/// Response codes sent by the milter (`SMFIR_*`).
pub mod reply {
    /// Accept the message (`SMFIR_ACCEPT`).
    pub const ACCEPT: u8 = b'a';
    /// Go on to the next step (`SMFIR_CONTINUE`).
    pub const CONTINUE: u8 = b'c';
    /// Drop the message silently (`SMFIR_DISCARD`).
    pub const DISCARD: u8 = b'd';
    /// Append a header (`SMFIR_ADDHEADER`).
    pub const ADDHEADER: u8 = b'h';
    /// Insert a header at a position (`SMFIR_INSHEADER`).
    pub const INSHEADER: u8 = b'i';
    /// Change or delete the n-th header of a name (`SMFIR_CHGHEADER`).
    pub const CHGHEADER: u8 = b'm';
    /// Still working: reset the MTA's timeout (`SMFIR_PROGRESS`).
    pub const PROGRESS: u8 = b'p';
    /// Put the message on hold (`SMFIR_QUARANTINE`).
    pub const QUARANTINE: u8 = b'q';
    /// Reject with the MTA's default 5xx text (`SMFIR_REJECT`).
    pub const REJECT: u8 = b'r';
    /// Skip further events of this kind (`SMFIR_SKIP`).
    pub const SKIP: u8 = b's';
    /// Temporary failure with the MTA's default 4xx text (`SMFIR_TEMPFAIL`).
    pub const TEMPFAIL: u8 = b't';
    /// Reply with a given SMTP code and text (`SMFIR_REPLYCODE`).
    pub const REPLYCODE: u8 = b'y';
    /// Option negotiation answer (same code as the command).
    pub const OPTNEG: u8 = b'O';
}

/// Actions the milter may take, negotiated at start (`SMFIF_*`).
pub mod actions {
    /// Add headers.
    pub const ADDHDRS: u32 = 0x01;
    /// Replace the body.
    pub const CHGBODY: u32 = 0x02;
    /// Add recipients.
    pub const ADDRCPT: u32 = 0x04;
    /// Remove recipients.
    pub const DELRCPT: u32 = 0x08;
    /// Change or delete headers.
    pub const CHGHDRS: u32 = 0x10;
    /// Quarantine the message.
    pub const QUARANTINE: u32 = 0x20;
    /// Change the envelope sender.
    pub const CHGFROM: u32 = 0x40;
    /// Add recipients with ESMTP arguments.
    pub const ADDRCPT_PAR: u32 = 0x80;
    /// Request the macros sent at each stage.
    pub const SETSYMLIST: u32 = 0x100;
}

/// Protocol flags: steps the MTA may skip or not wait for (`SMFIP_*`).
pub mod proto {
    /// Do not send CONNECT.
    pub const NOCONNECT: u32 = 0x01;
    /// Do not send HELO.
    pub const NOHELO: u32 = 0x02;
    /// Do not send MAIL.
    pub const NOMAIL: u32 = 0x04;
    /// Do not send RCPT.
    pub const NORCPT: u32 = 0x08;
    /// Do not send the body.
    pub const NOBODY: u32 = 0x10;
    /// Do not send headers.
    pub const NOHDRS: u32 = 0x20;
    /// Do not send end-of-headers.
    pub const NOEOH: u32 = 0x40;
    /// No reply to headers.
    pub const NR_HDR: u32 = 0x80;
    /// Do not send unknown SMTP commands.
    pub const NOUNKNOWN: u32 = 0x100;
    /// Do not send DATA.
    pub const NODATA: u32 = 0x200;
    /// The MTA understands SKIP.
    pub const SKIP: u32 = 0x400;
    /// Also send rejected recipients.
    pub const RCPT_REJ: u32 = 0x800;
    /// No reply to CONNECT.
    pub const NR_CONN: u32 = 0x1000;
    /// No reply to HELO.
    pub const NR_HELO: u32 = 0x2000;
    /// No reply to MAIL.
    pub const NR_MAIL: u32 = 0x4000;
    /// No reply to RCPT.
    pub const NR_RCPT: u32 = 0x8000;
    /// No reply to DATA.
    pub const NR_DATA: u32 = 0x1_0000;
    /// No reply to unknown commands.
    pub const NR_UNKN: u32 = 0x2_0000;
    /// No reply to end-of-headers.
    pub const NR_EOH: u32 = 0x4_0000;
    /// No reply to body chunks.
    pub const NR_BODY: u32 = 0x8_0000;
    /// Header values keep their leading space.
    pub const HDR_LEADSPC: u32 = 0x10_0000;
}

/// Macro stages, for requesting macros at negotiation (`SMFIM_*`).
pub mod stage {
    /// At CONNECT.
    pub const CONNECT: u32 = 0;
    /// At HELO.
    pub const HELO: u32 = 1;
    /// At MAIL FROM.
    pub const ENVFROM: u32 = 2;
    /// At RCPT TO.
    pub const ENVRCPT: u32 = 3;
    /// At DATA.
    pub const DATA: u32 = 4;
    /// At end of message.
    pub const EOM: u32 = 5;
    /// At end of headers.
    pub const EOH: u32 = 6;
}

/// A packet that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The announced length is over the limit; nothing of it was buffered.
    #[error("packet of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The length the peer announced.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A packet of length 0 has no command byte.
    #[error("empty packet (length 0, no command byte)")]
    Empty,
    /// The command byte is not one this side understands.
    #[error("unknown command byte 0x{0:02x}")]
    UnknownCode(u8),
    /// The packet's payload does not have the shape its command requires.
    #[error("malformed {command} packet: {what}")]
    Malformed {
        /// The command's name.
        command: &'static str,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A valid packet at the wrong moment (e.g. a header before negotiation).
    #[error("unexpected {command} packet: {what}")]
    Sequence {
        /// The command's name.
        command: &'static str,
        /// Why it was not expected.
        what: &'static str,
    },
    /// The MTA speaks a protocol version chaff does not.
    #[error("unsupported milter protocol version {0} (need {MIN_VERSION} to {VERSION})")]
    Version(u32),
}

/// One packet: its command byte and payload, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The command or response byte.
    pub code: u8,
    /// The bytes after it.
    pub payload: &'a [u8],
}

/// Finds the first complete packet in `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or the frame and how many bytes
/// it used. The length is checked against `max` as soon as its four bytes are in,
/// so an oversized packet is refused before any of it is buffered.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<(Frame<'_>, usize)>, ProtocolError> {
    let Some(len) = announced_len(buf, max)? else {
        return Ok(None);
    };
    let total = 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((
        Frame {
            code: buf[4],
            payload: &buf[5..total],
        },
        total,
    )))
}

/// The payload length (command byte included) announced at the start of `buf`, once
/// its 4 bytes are there; checked against `max`.
pub fn announced_len(buf: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 {
        return Err(ProtocolError::Empty);
    }
    if len > max {
        return Err(ProtocolError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// Appends one packet (`code` + `payload`) to `out`.
fn put_packet(out: &mut Vec<u8>, code: u8, payload: &[&[u8]]) {
    let len: usize = 1 + payload.iter().map(|p| p.len()).sum::<usize>();
    // Packets chaff builds are small; a length over u32 would be a bug, not input.
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len32.to_be_bytes());
    out.push(code);
    for p in payload {
        out.extend_from_slice(p);
    }
}

/// Splits a NUL-terminated string off the front of `p`.
fn cstr(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = memchr::memchr(0, p)?;
    Some((&p[..nul], &p[nul + 1..]))
}

/// A string as it goes on the wire: its bytes without NULs, then a NUL.
fn wire_str(s: &[u8], out: &mut Vec<u8>) {
    out.extend(s.iter().copied().filter(|&b| b != 0));
    out.push(0);
}

fn be32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

/// The first three words of option negotiation, in either direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptNeg {
    /// Protocol version.
    pub version: u32,
    /// Actions (`SMFIF_*`): offered by the MTA, requested by the milter.
    pub actions: u32,
    /// Protocol flags (`SMFIP_*`): offered by the MTA, requested by the milter.
    pub protocol: u32,
}

/// The connecting SMTP client's address, as the MTA reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnAddr<'a> {
    /// The MTA does not know (`SMFIA_UNKNOWN`).
    Unknown,
    /// A Unix-domain socket path (`SMFIA_UNIX`).
    Unix(&'a [u8]),
    /// IPv4 (`SMFIA_INET`).
    Inet {
        /// Client port.
        port: u16,
        /// Address text, e.g. `192.0.2.1`.
        addr: &'a [u8],
    },
    /// IPv6 (`SMFIA_INET6`).
    Inet6 {
        /// Client port.
        port: u16,
        /// Address text, e.g. `2001:db8::1` (Sendmail prefixes `IPv6:`).
        addr: &'a [u8],
    },
}

/// A command from the MTA, borrowing its strings from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Option negotiation.
    OptNeg(OptNeg),
    /// Macros for the command whose code is `stage`: name/value pairs.
    Macro {
        /// The command these macros belong to (e.g. `b'M'`).
        stage: u8,
        /// `(name, value)` pairs, names as sent (`i`, `{auth_authen}`).
        pairs: Vec<(&'a [u8], &'a [u8])>,
    },
    /// A client connected.
    Connect {
        /// The client's host name as the MTA resolved it.
        hostname: &'a [u8],
        /// Its address.
        addr: ConnAddr<'a>,
    },
    /// HELO/EHLO with the client's greeting name.
    Helo(&'a [u8]),
    /// MAIL FROM: the sender (`<a@b>`) then any ESMTP arguments.
    Mail(Vec<&'a [u8]>),
    /// RCPT TO: the recipient then any ESMTP arguments.
    Rcpt(Vec<&'a [u8]>),
    /// DATA.
    Data,
    /// One header.
    Header {
        /// Header name.
        name: &'a [u8],
        /// Header value (continuation lines joined by `\n`).
        value: &'a [u8],
    },
    /// End of headers.
    Eoh,
    /// A body chunk.
    Body(&'a [u8]),
    /// End of body, possibly with a last chunk.
    Eob(&'a [u8]),
    /// Abort the current message.
    Abort,
    /// Close the connection.
    Quit,
    /// End this SMTP session but keep the connection.
    QuitNc,
    /// An unrecognised SMTP command line.
    Unknown(&'a [u8]),
}

/// Short names of command bytes, for errors and logs.
pub fn command_name(code: u8) -> &'static str {
    match code {
        cmd::ABORT => "ABORT",
        cmd::BODY => "BODY",
        cmd::CONNECT => "CONNECT",
        cmd::MACRO => "MACRO",
        cmd::BODYEOB => "BODYEOB",
        cmd::HELO => "HELO",
        cmd::QUIT_NC => "QUIT_NC",
        cmd::HEADER => "HEADER",
        cmd::MAIL => "MAIL",
        cmd::EOH => "EOH",
        cmd::OPTNEG => "OPTNEG",
        cmd::QUIT => "QUIT",
        cmd::RCPT => "RCPT",
        cmd::DATA => "DATA",
        cmd::UNKNOWN => "UNKNOWN",
        _ => "?",
    }
}

fn malformed(code: u8, what: &'static str) -> ProtocolError {
    ProtocolError::Malformed {
        command: command_name(code),
        what,
    }
}

/// Reads a payload that must be exactly one NUL-terminated string.
fn one_str(code: u8, p: &[u8]) -> Result<&[u8], ProtocolError> {
    let (s, rest) = cstr(p).ok_or_else(|| malformed(code, "string is not NUL-terminated"))?;
    if !rest.is_empty() {
        return Err(malformed(code, "trailing bytes after the string"));
    }
    Ok(s)
}

/// Reads a payload of one or more NUL-terminated strings.
fn str_list(code: u8, mut p: &[u8]) -> Result<Vec<&[u8]>, ProtocolError> {
    if p.is_empty() {
        return Err(malformed(code, "no argument"));
    }
    let mut out = Vec::with_capacity(2);
    while !p.is_empty() {
        let (s, rest) = cstr(p).ok_or_else(|| malformed(code, "argument is not NUL-terminated"))?;
        out.push(s);
        p = rest;
    }
    Ok(out)
}

impl<'a> Command<'a> {
    /// Decodes one command packet.
    pub fn parse(frame: Frame<'a>) -> Result<Command<'a>, ProtocolError> {
        let Frame { code, payload: p } = frame;
        let empty = |c: Command<'a>| {
            if p.is_empty() {
                Ok(c)
            } else {
                Err(malformed(code, "unexpected payload"))
            }
        };
        match code {
            cmd::OPTNEG => {
                // Three words; anything after them is ignored, as libmilter does.
                let (Some(version), Some(actions), Some(protocol)) = (
                    be32(p),
                    p.get(4..).and_then(be32),
                    p.get(8..).and_then(be32),
                ) else {
                    return Err(malformed(code, "shorter than 12 bytes"));
                };
                Ok(Command::OptNeg(OptNeg {
                    version,
                    actions,
                    protocol,
                }))
            }
            cmd::MACRO => {
                let (&stage, mut rest) = p
                    .split_first()
                    .ok_or_else(|| malformed(code, "missing the stage byte"))?;
                let mut pairs = Vec::new();
                while !rest.is_empty() {
                    let (name, r) =
                        cstr(rest).ok_or_else(|| malformed(code, "name is not NUL-terminated"))?;
                    let (value, r) =
                        cstr(r).ok_or_else(|| malformed(code, "name without a value"))?;
                    pairs.push((name, value));
                    rest = r;
                }
                Ok(Command::Macro { stage, pairs })
            }
            cmd::CONNECT => {
                let (hostname, rest) =
                    cstr(p).ok_or_else(|| malformed(code, "host name is not NUL-terminated"))?;
                let (&family, rest) = rest
                    .split_first()
                    .ok_or_else(|| malformed(code, "missing the address family"))?;
                let addr = match family {
                    b'U' => ConnAddr::Unknown,
                    b'L' | b'4' | b'6' => {
                        let port = rest
                            .get(..2)
                            .map(|b| u16::from_be_bytes([b[0], b[1]]))
                            .ok_or_else(|| malformed(code, "missing the port"))?;
                        let addr = one_str(code, &rest[2..])?;
                        match family {
                            b'L' => ConnAddr::Unix(addr),
                            b'4' => ConnAddr::Inet { port, addr },
                            _ => ConnAddr::Inet6 { port, addr },
                        }
                    }
                    _ => return Err(malformed(code, "unknown address family")),
                };
                Ok(Command::Connect { hostname, addr })
            }
            cmd::HELO => Ok(Command::Helo(one_str(code, p)?)),
            cmd::MAIL => Ok(Command::Mail(str_list(code, p)?)),
            cmd::RCPT => Ok(Command::Rcpt(str_list(code, p)?)),
            cmd::DATA => empty(Command::Data),
            cmd::HEADER => {
                let (name, rest) =
                    cstr(p).ok_or_else(|| malformed(code, "name is not NUL-terminated"))?;
                let value = one_str(code, rest)?;
                if name.is_empty() {
                    return Err(malformed(code, "empty header name"));
                }
                Ok(Command::Header { name, value })
            }
            cmd::EOH => empty(Command::Eoh),
            cmd::BODY => Ok(Command::Body(p)),
            cmd::BODYEOB => Ok(Command::Eob(p)),
            cmd::ABORT => empty(Command::Abort),
            cmd::QUIT => empty(Command::Quit),
            cmd::QUIT_NC => empty(Command::QuitNc),
            cmd::UNKNOWN => Ok(Command::Unknown(one_str(code, p)?)),
            other => Err(ProtocolError::UnknownCode(other)),
        }
    }

    /// The command byte.
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg(_) => cmd::OPTNEG,
            Command::Macro { .. } => cmd::MACRO,
            Command::Connect { .. } => cmd::CONNECT,
            Command::Helo(_) => cmd::HELO,
            Command::Mail(_) => cmd::MAIL,
            Command::Rcpt(_) => cmd::RCPT,
            Command::Data => cmd::DATA,
            Command::Header { .. } => cmd::HEADER,
            Command::Eoh => cmd::EOH,
            Command::Body(_) => cmd::BODY,
            Command::Eob(_) => cmd::BODYEOB,
            Command::Abort => cmd::ABORT,
            Command::Quit => cmd::QUIT,
            Command::QuitNc => cmd::QUIT_NC,
            Command::Unknown(_) => cmd::UNKNOWN,
        }
    }

    /// Encodes the command as one packet (the MTA side: tests and benchmarks).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut p = Vec::new();
        match self {
            Command::OptNeg(o) => {
                p.extend_from_slice(&o.version.to_be_bytes());
                p.extend_from_slice(&o.actions.to_be_bytes());
                p.extend_from_slice(&o.protocol.to_be_bytes());
            }
            Command::Macro { stage, pairs } => {
                p.push(*stage);
                for (n, v) in pairs {
                    wire_str(n, &mut p);
                    wire_str(v, &mut p);
                }
            }
            Command::Connect { hostname, addr } => {
                wire_str(hostname, &mut p);
                match addr {
                    ConnAddr::Unknown => p.push(b'U'),
                    ConnAddr::Unix(a) => {
                        p.push(b'L');
                        p.extend_from_slice(&0u16.to_be_bytes());
                        wire_str(a, &mut p);
                    }
                    ConnAddr::Inet { port, addr } => {
                        p.push(b'4');
                        p.extend_from_slice(&port.to_be_bytes());
                        wire_str(addr, &mut p);
                    }
                    ConnAddr::Inet6 { port, addr } => {
                        p.push(b'6');
                        p.extend_from_slice(&port.to_be_bytes());
                        wire_str(addr, &mut p);
                    }
                }
            }
            Command::Helo(s) | Command::Unknown(s) => wire_str(s, &mut p),
            Command::Mail(args) | Command::Rcpt(args) => {
                for a in args {
                    wire_str(a, &mut p);
                }
            }
            Command::Header { name, value } => {
                wire_str(name, &mut p);
                wire_str(value, &mut p);
            }
            Command::Body(b) | Command::Eob(b) => p.extend_from_slice(b),
            Command::Data | Command::Eoh | Command::Abort | Command::Quit | Command::QuitNc => {}
        }
        put_packet(out, self.code(), &[&p]);
    }
}

/// A response from the milter to the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Option negotiation answer, with the macros requested per stage.
    OptNeg {
        /// Version, actions and protocol flags chosen.
        opts: OptNeg,
        /// `(stage, "space separated macro names")`, sent only when the MTA offered
        /// `SMFIF_SETSYMLIST`.
        macros: Vec<(u32, String)>,
    },
    /// Go on.
    Continue,
    /// Accept the message.
    Accept,
    /// Reject with the MTA's own 5xx text.
    Reject,
    /// Temporary failure with the MTA's own 4xx text.
    Tempfail,
    /// Drop the message silently.
    Discard,
    /// Skip further events of this kind.
    Skip,
    /// Still working.
    Progress,
    /// Reply with this text, exactly as it goes on the wire (already checked and
    /// `%`-escaped: build it with [`Response::reply_code`]).
    ReplyCode(String),
    /// Append a header.
    AddHeader {
        /// Name.
        name: String,
        /// Value.
        value: String,
    },
    /// Insert a header at a 0-based position.
    InsertHeader {
        /// Position.
        index: u32,
        /// Name.
        name: String,
        /// Value.
        value: String,
    },
    /// Change the `index`-th (1-based) header called `name`; an empty value deletes it.
    ChangeHeader {
        /// Which occurrence, 1-based.
        index: u32,
        /// Name.
        name: String,
        /// New value, or empty to delete.
        value: String,
    },
    /// Put the message on hold with a reason.
    Quarantine(String),
}

impl Response {
    /// A REPLYCODE response for an SMTP reply such as `557 5.7.1 forbid to send spam mail`.
    ///
    /// The reply was checked when it was parsed ([`chaff::Reply`]); `%` is doubled, as the milter
    /// protocol requires.
    pub fn reply_code(reply: &chaff::Reply) -> Response {
        Response::ReplyCode(reply.as_str().replace('%', "%%"))
    }

    /// The response byte.
    pub fn code(&self) -> u8 {
        match self {
            Response::OptNeg { .. } => reply::OPTNEG,
            Response::Continue => reply::CONTINUE,
            Response::Accept => reply::ACCEPT,
            Response::Reject => reply::REJECT,
            Response::Tempfail => reply::TEMPFAIL,
            Response::Discard => reply::DISCARD,
            Response::Skip => reply::SKIP,
            Response::Progress => reply::PROGRESS,
            Response::ReplyCode(_) => reply::REPLYCODE,
            Response::AddHeader { .. } => reply::ADDHEADER,
            Response::InsertHeader { .. } => reply::INSHEADER,
            Response::ChangeHeader { .. } => reply::CHGHEADER,
            Response::Quarantine(_) => reply::QUARANTINE,
        }
    }

    /// True for the responses that end the MTA's wait for the current command
    /// (everything but header changes and quarantine, which precede one).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Response::AddHeader { .. }
                | Response::InsertHeader { .. }
                | Response::ChangeHeader { .. }
                | Response::Quarantine(_)
                | Response::Progress
        )
    }

    /// Appends the response as one packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut p = Vec::new();
        match self {
            Response::OptNeg { opts, macros } => {
                p.extend_from_slice(&opts.version.to_be_bytes());
                p.extend_from_slice(&opts.actions.to_be_bytes());
                p.extend_from_slice(&opts.protocol.to_be_bytes());
                for (stage, names) in macros {
                    p.extend_from_slice(&stage.to_be_bytes());
                    wire_str(names.as_bytes(), &mut p);
                }
            }
            Response::Continue
            | Response::Accept
            | Response::Reject
            | Response::Tempfail
            | Response::Discard
            | Response::Skip
            | Response::Progress => {}
            Response::ReplyCode(text) | Response::Quarantine(text) => {
                wire_str(text.as_bytes(), &mut p)
            }
            Response::AddHeader { name, value } => {
                wire_str(name.as_bytes(), &mut p);
                wire_str(value.as_bytes(), &mut p);
            }
            Response::InsertHeader { index, name, value }
            | Response::ChangeHeader { index, name, value } => {
                p.extend_from_slice(&index.to_be_bytes());
                wire_str(name.as_bytes(), &mut p);
                wire_str(value.as_bytes(), &mut p);
            }
        }
        put_packet(out, self.code(), &[&p]);
    }

    /// Decodes one response packet (the MTA side: tests and benchmarks).
    pub fn parse(frame: Frame<'_>) -> Result<Response, ProtocolError> {
        let Frame { code, payload: p } = frame;
        let bad = |what: &'static str| ProtocolError::Malformed {
            command: "response",
            what,
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let one = |p: &[u8]| -> Result<String, ProtocolError> {
            match cstr(p) {
                Some((s, [])) => Ok(text(s)),
                _ => Err(bad("string is not NUL-terminated or has trailing bytes")),
            }
        };
        let two = |p: &[u8]| -> Result<(String, String), ProtocolError> {
            let (a, rest) = cstr(p).ok_or_else(|| bad("name is not NUL-terminated"))?;
            Ok((text(a), one(rest)?))
        };
        let none = |r: Response| {
            if p.is_empty() {
                Ok(r)
            } else {
                Err(bad("unexpected payload"))
            }
        };
        match code {
            reply::OPTNEG => {
                let (Some(version), Some(actions), Some(protocol)) = (
                    be32(p),
                    p.get(4..).and_then(be32),
                    p.get(8..).and_then(be32),
                ) else {
                    return Err(bad("option negotiation shorter than 12 bytes"));
                };
                let mut macros = Vec::new();
                let mut rest = &p[12..];
                while !rest.is_empty() {
                    let stage = be32(rest).ok_or_else(|| bad("truncated macro stage"))?;
                    let (names, r) =
                        cstr(&rest[4..]).ok_or_else(|| bad("macro list is not NUL-terminated"))?;
                    macros.push((stage, text(names)));
                    rest = r;
                }
                Ok(Response::OptNeg {
                    opts: OptNeg {
                        version,
                        actions,
                        protocol,
                    },
                    macros,
                })
            }
            reply::CONTINUE => none(Response::Continue),
            reply::ACCEPT => none(Response::Accept),
            reply::REJECT => none(Response::Reject),
            reply::TEMPFAIL => none(Response::Tempfail),
            reply::DISCARD => none(Response::Discard),
            reply::SKIP => none(Response::Skip),
            reply::PROGRESS => none(Response::Progress),
            reply::REPLYCODE => Ok(Response::ReplyCode(one(p)?)),
            reply::QUARANTINE => Ok(Response::Quarantine(one(p)?)),
            reply::ADDHEADER => {
                let (name, value) = two(p)?;
                Ok(Response::AddHeader { name, value })
            }
            reply::INSHEADER | reply::CHGHEADER => {
                let index = be32(p).ok_or_else(|| bad("missing header index"))?;
                let (name, value) = two(&p[4..])?;
                Ok(if code == reply::INSHEADER {
                    Response::InsertHeader { index, name, value }
                } else {
                    Response::ChangeHeader { index, name, value }
                })
            }
            other => Err(ProtocolError::UnknownCode(other)),
        }
    }
}

impl fmt::Display for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(command_name(self.code()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(code: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_packet(&mut v, code, &[payload]);
        v
    }

    fn parse(bytes: &[u8]) -> Result<Command<'_>, ProtocolError> {
        let (frame, used) = split_frame(bytes, DEFAULT_MAX_PACKET)?.expect("complete packet");
        assert_eq!(used, bytes.len());
        Command::parse(frame)
    }

    #[test]
    fn framing_waits_for_the_whole_packet() {
        let p = packet(b'B', b"hello");
        for cut in 0..p.len() {
            assert_eq!(split_frame(&p[..cut], 100), Ok(None), "cut at {cut}");
        }
        let (f, used) = split_frame(&p, 100).unwrap().unwrap();
        assert_eq!((f.code, f.payload, used), (b'B', &b"hello"[..], p.len()));
    }

    #[test]
    fn oversized_length_is_refused_from_the_header_alone() {
        let head = 1_000_000u32.to_be_bytes();
        assert_eq!(
            split_frame(&head, 65_536),
            Err(ProtocolError::TooLarge {
                len: 1_000_000,
                max: 65_536
            })
        );
        assert_eq!(split_frame(&[0, 0, 0, 0], 10), Err(ProtocolError::Empty));
    }

    #[test]
    fn decodes_what_postfix_sends() {
        let mut o = Vec::new();
        o.extend_from_slice(&6u32.to_be_bytes());
        o.extend_from_slice(&0x1ffu32.to_be_bytes());
        o.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
        assert_eq!(
            parse(&packet(b'O', &o)),
            Ok(Command::OptNeg(OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff
            }))
        );
        assert_eq!(
            parse(&packet(b'D', b"Mi\0ABC123\0{auth_authen}\0alice\0")),
            Ok(Command::Macro {
                stage: b'M',
                pairs: vec![(&b"i"[..], &b"ABC123"[..]), (b"{auth_authen}", b"alice")]
            })
        );
        assert_eq!(
            parse(&packet(b'C', b"client.test\x004\x30\x39127.0.0.1\0")),
            Ok(Command::Connect {
                hostname: b"client.test",
                addr: ConnAddr::Inet {
                    port: 0x3039,
                    addr: b"127.0.0.1"
                }
            })
        );
        assert_eq!(
            parse(&packet(b'C', b"unknown\0U")),
            Ok(Command::Connect {
                hostname: b"unknown",
                addr: ConnAddr::Unknown
            })
        );
        assert_eq!(
            parse(&packet(b'M', b"<a@example.com>\0SIZE=100\0")),
            Ok(Command::Mail(vec![b"<a@example.com>", b"SIZE=100"]))
        );
        assert_eq!(
            parse(&packet(b'L', b"Subject\0hi\n\tthere\0")),
            Ok(Command::Header {
                name: b"Subject",
                value: b"hi\n\tthere"
            })
        );
        assert_eq!(parse(&packet(b'E', b"")), Ok(Command::Eob(b"")));
        assert_eq!(parse(&packet(b'K', b"")), Ok(Command::QuitNc));
    }

    #[test]
    fn malformed_packets_get_precise_errors() {
        let cases: &[(u8, &[u8], &str)] = &[
            (
                b'O',
                b"\0\0\0\x06",
                "malformed OPTNEG packet: shorter than 12 bytes",
            ),
            (b'D', b"", "malformed MACRO packet: missing the stage byte"),
            (
                b'D',
                b"Mi\0",
                "malformed MACRO packet: name without a value",
            ),
            (
                b'C',
                b"host",
                "malformed CONNECT packet: host name is not NUL-terminated",
            ),
            (
                b'C',
                b"host\0",
                "malformed CONNECT packet: missing the address family",
            ),
            (
                b'C',
                b"host\x004\x01",
                "malformed CONNECT packet: missing the port",
            ),
            (
                b'C',
                b"host\0X",
                "malformed CONNECT packet: unknown address family",
            ),
            (b'M', b"", "malformed MAIL packet: no argument"),
            (
                b'M',
                b"<a@b>",
                "malformed MAIL packet: argument is not NUL-terminated",
            ),
            (
                b'L',
                b"Subject\0hi",
                "malformed HEADER packet: string is not NUL-terminated",
            ),
            (
                b'L',
                b"\0hi\0",
                "malformed HEADER packet: empty header name",
            ),
            (b'T', b"x", "malformed DATA packet: unexpected payload"),
            (
                b'H',
                b"a\0b\0",
                "malformed HELO packet: trailing bytes after the string",
            ),
            (b'Z', b"", "unknown command byte 0x5a"),
        ];
        for (code, payload, want) in cases {
            let err = parse(&packet(*code, payload)).unwrap_err();
            assert_eq!(err.to_string(), *want);
        }
    }

    #[test]
    fn replies_are_checked_and_escaped() {
        let reply = |s: &str| Response::reply_code(&s.parse::<chaff::Reply>().unwrap());
        assert_eq!(
            reply("557 5.7.1 forbid to send spam mail"),
            Response::ReplyCode("557 5.7.1 forbid to send spam mail".into())
        );
        assert_eq!(
            reply("550 5.7.1 100% spam"),
            Response::ReplyCode("550 5.7.1 100%% spam".into())
        );
    }

    #[test]
    fn responses_encode_as_libmilter_does() {
        let mut out = Vec::new();
        Response::AddHeader {
            name: "X-Spam-Score".into(),
            value: "1.5".into(),
        }
        .encode(&mut out);
        assert_eq!(out, b"\0\0\0\x12hX-Spam-Score\x001.5\0");
        out.clear();
        Response::Continue.encode(&mut out);
        assert_eq!(out, b"\0\0\0\x01c");
        out.clear();
        Response::OptNeg {
            opts: OptNeg {
                version: 6,
                actions: 0x21,
                protocol: 0,
            },
            macros: vec![(2, "i {auth_authen}".into())],
        }
        .encode(&mut out);
        assert_eq!(
            out,
            b"\0\0\0\x21O\0\0\0\x06\0\0\0\x21\0\0\0\0\0\0\0\x02i {auth_authen}\0"
        );
    }

    fn text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 0..40)
    }

    fn any_command() -> impl Strategy<Value = (u8, Vec<Vec<u8>>, u16, u32)> {
        (
            prop::sample::select(b"ODCHMRTLNBEAQKU".to_vec()),
            proptest::collection::vec(text(), 1..4),
            any::<u16>(),
            any::<u32>(),
        )
    }

    fn build<'a>(code: u8, s: &'a [Vec<u8>], port: u16, word: u32) -> Command<'a> {
        match code {
            b'O' => Command::OptNeg(OptNeg {
                version: word,
                actions: word.rotate_left(7),
                protocol: !word,
            }),
            b'D' => Command::Macro {
                stage: s[0].first().copied().unwrap_or(b'C'),
                pairs: s.iter().map(|x| (&x[..], &x[..])).collect(),
            },
            b'C' => Command::Connect {
                hostname: &s[0],
                addr: match port % 4 {
                    0 => ConnAddr::Unknown,
                    1 => ConnAddr::Unix(&s[0]),
                    2 => ConnAddr::Inet { port, addr: &s[0] },
                    _ => ConnAddr::Inet6 { port, addr: &s[0] },
                },
            },
            b'H' => Command::Helo(&s[0]),
            b'M' => Command::Mail(s.iter().map(|x| &x[..]).collect()),
            b'R' => Command::Rcpt(s.iter().map(|x| &x[..]).collect()),
            b'T' => Command::Data,
            b'L' if !s[0].is_empty() => Command::Header {
                name: &s[0],
                value: &s[s.len() - 1],
            },
            b'L' => Command::Eoh,
            b'N' => Command::Eoh,
            b'B' => Command::Body(&s[0]),
            b'E' => Command::Eob(&s[0]),
            b'A' => Command::Abort,
            b'Q' => Command::Quit,
            b'K' => Command::QuitNc,
            _ => Command::Unknown(&s[0]),
        }
    }

    proptest! {
        #[test]
        fn commands_round_trip(c in any_command()) {
            let cmd = build(c.0, &c.1, c.2, c.3);
            let mut wire = Vec::new();
            cmd.encode(&mut wire);
            let (frame, used) = split_frame(&wire, usize::MAX).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(Command::parse(frame), Ok(cmd));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                       max in 1usize..400) {
            let mut rest = &bytes[..];
            // Whatever the input, framing either needs more, fails, or consumes.
            while let Ok(Some((frame, used))) = split_frame(rest, max) {
                prop_assert!(used >= 5 && used <= rest.len() && used - 4 <= max);
                let _ = Command::parse(frame);
                let _ = Response::parse(frame);
                rest = &rest[used..];
            }
        }

        #[test]
        fn replies_round_trip(name in "[A-Za-z-]{1,20}", value in "[^\\x00]{0,60}", idx in any::<u32>()) {
            for r in [
                Response::AddHeader { name: name.clone(), value: value.clone() },
                Response::ChangeHeader { index: idx, name: name.clone(), value: value.clone() },
                Response::Quarantine(value.clone()),
                Response::Continue,
            ] {
                let mut wire = Vec::new();
                r.encode(&mut wire);
                let (frame, _) = split_frame(&wire, usize::MAX).unwrap().unwrap();
                prop_assert_eq!(Response::parse(frame), Ok(r));
            }
        }
    }
}
