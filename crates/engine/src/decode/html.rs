//! HTML to the text a reader sees.
//!
//! Spam is mostly HTML, and the tricks that hide words from a keyword filter live in
//! the markup: comments and empty inline tags inside words (`发<!-- x -->票`,
//! `免<b></b>费`), entities (`&#20813;`), and text that the reader never sees but
//! that dilutes the message (`display:none`, `font-size:0`). This module turns an
//! HTML body into the visible text with a hand-written single-pass scanner: no DOM,
//! linear time, lenient with broken markup and never panicking, fast enough for tens
//! of thousands of messages a second.
//!
//! What it keeps and drops:
//! - text nodes are kept, with entities decoded (named, decimal and hex; `&nbsp;`
//!   becomes a plain space; invalid code points become U+FFFD);
//! - comments, `<!DOCTYPE>`, `<?..>` and other bogus markup insert nothing;
//! - `<script>`, `<style>`, `<title>` (mail clients do not show it), `<xmp>`,
//!   `<iframe>`, `<noembed>` and `<noframes>` are dropped with their raw content;
//! - `<template>` and any element hidden inline (`display:none`,
//!   `visibility:hidden`, a zero `font-size` or `font` size, `opacity:0`,
//!   `mso-hide:all`, the `hidden` attribute) are dropped with their whole content,
//!   up to the matching end tag (nesting of the same tag name is tracked; a missing
//!   end tag hides the rest of the document, as it does in a browser);
//! - block-level tags insert one newline (repeats collapse); inline and unknown tags
//!   insert nothing, so `免<b></b>费` stays `免费`;
//! - attribute values (`alt`, `title`, `href`) are not text and are dropped.
//!
//! `<head>` needs no rule of its own: its `<title>`, `<style>` and `<script>` are
//! dropped above, `<meta>` and `<link>` carry no text, and stray text there is shown
//! by browsers, so it is kept here too.

use memchr::memchr;

/// The text a reader of `html` sees; see the module documentation for the rules.
pub fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    visible_text_into(html, &mut out);
    out
}

/// Like [`visible_text`], writing into `out` (cleared first) so that its buffer can
/// be reused across messages.
pub fn visible_text_into(html: &str, out: &mut String) {
    out.clear();
    let mut scanner = Scanner {
        html,
        src: html.as_bytes(),
        out,
        hidden: None,
    };
    scanner.run();
}

/// Tag names are compared by their first 16 lowercased bytes packed into an integer
/// (every known name is shorter) plus their full length.
const NAME_CAP: usize = 16;

/// A lowercased tag name.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Name {
    key: u128,
    len: usize,
}

/// The key of a known tag name (at most [`NAME_CAP`] bytes).
const fn key(s: &[u8]) -> u128 {
    let mut k = 0u128;
    let mut i = 0;
    while i < s.len() && i < NAME_CAP {
        k |= (s[i] as u128) << (8 * i);
        i += 1;
    }
    k
}

/// What a tag does to the text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Inline or unknown: inserts nothing.
    Inline,
    /// Block-level: inserts a newline.
    Block,
    /// Void block (`br`, `hr`): inserts a newline, has no content.
    VoidBlock,
    /// Void inline (`img`, `input`, ...): no content.
    Void,
    /// Raw-text element dropped with its content (`script`, `style`, `title`, ...).
    RawDropped,
    /// `template`: content dropped.
    Template,
}

impl Name {
    fn role(&self) -> Role {
        if self.len > NAME_CAP {
            return Role::Inline;
        }
        const BR: u128 = key(b"br");
        const HR: u128 = key(b"hr");
        const AREA: u128 = key(b"area");
        const BASE: u128 = key(b"base");
        const COL: u128 = key(b"col");
        const EMBED: u128 = key(b"embed");
        const IMG: u128 = key(b"img");
        const INPUT: u128 = key(b"input");
        const KEYGEN: u128 = key(b"keygen");
        const LINK: u128 = key(b"link");
        const META: u128 = key(b"meta");
        const PARAM: u128 = key(b"param");
        const SOURCE: u128 = key(b"source");
        const TRACK: u128 = key(b"track");
        const WBR: u128 = key(b"wbr");
        const SCRIPT: u128 = key(b"script");
        const STYLE: u128 = key(b"style");
        const TITLE: u128 = key(b"title");
        const XMP: u128 = key(b"xmp");
        const IFRAME: u128 = key(b"iframe");
        const NOEMBED: u128 = key(b"noembed");
        const NOFRAMES: u128 = key(b"noframes");
        const TEMPLATE: u128 = key(b"template");
        const P: u128 = key(b"p");
        const DIV: u128 = key(b"div");
        const TR: u128 = key(b"tr");
        const TD: u128 = key(b"td");
        const TH: u128 = key(b"th");
        const LI: u128 = key(b"li");
        const UL: u128 = key(b"ul");
        const OL: u128 = key(b"ol");
        const TABLE: u128 = key(b"table");
        const H1: u128 = key(b"h1");
        const H2: u128 = key(b"h2");
        const H3: u128 = key(b"h3");
        const H4: u128 = key(b"h4");
        const H5: u128 = key(b"h5");
        const H6: u128 = key(b"h6");
        const BLOCKQUOTE: u128 = key(b"blockquote");
        const PRE: u128 = key(b"pre");
        const CENTER: u128 = key(b"center");
        const DD: u128 = key(b"dd");
        const DT: u128 = key(b"dt");
        const DL: u128 = key(b"dl");
        const FORM: u128 = key(b"form");
        const BODY: u128 = key(b"body");
        const HTML: u128 = key(b"html");
        const ADDRESS: u128 = key(b"address");
        const ARTICLE: u128 = key(b"article");
        const ASIDE: u128 = key(b"aside");
        const CAPTION: u128 = key(b"caption");
        const DETAILS: u128 = key(b"details");
        const DIALOG: u128 = key(b"dialog");
        const DIR: u128 = key(b"dir");
        const FIELDSET: u128 = key(b"fieldset");
        const FIGCAPTION: u128 = key(b"figcaption");
        const FIGURE: u128 = key(b"figure");
        const FOOTER: u128 = key(b"footer");
        const HEADER: u128 = key(b"header");
        const HGROUP: u128 = key(b"hgroup");
        const LEGEND: u128 = key(b"legend");
        const MAIN: u128 = key(b"main");
        const MENU: u128 = key(b"menu");
        const NAV: u128 = key(b"nav");
        const OPTION: u128 = key(b"option");
        const SECTION: u128 = key(b"section");
        const SUMMARY: u128 = key(b"summary");
        const TBODY: u128 = key(b"tbody");
        const THEAD: u128 = key(b"thead");
        const TFOOT: u128 = key(b"tfoot");
        match self.key {
            BR | HR => Role::VoidBlock,
            AREA | BASE | COL | EMBED | IMG | INPUT | KEYGEN | LINK | META | PARAM | SOURCE
            | TRACK | WBR => Role::Void,
            SCRIPT | STYLE | TITLE | XMP | IFRAME | NOEMBED | NOFRAMES => Role::RawDropped,
            TEMPLATE => Role::Template,
            P | DIV | TR | TD | TH | LI | UL | OL | TABLE | H1 | H2 | H3 | H4 | H5 | H6
            | BLOCKQUOTE | PRE | CENTER | DD | DT | DL | FORM | BODY | HTML | ADDRESS | ARTICLE
            | ASIDE | CAPTION | DETAILS | DIALOG | DIR | FIELDSET | FIGCAPTION | FIGURE
            | FOOTER | HEADER | HGROUP | LEGEND | MAIN | MENU | NAV | OPTION | SECTION
            | SUMMARY | TBODY | THEAD | TFOOT => Role::Block,
            _ => Role::Inline,
        }
    }

    /// The name's bytes (for names of at most [`NAME_CAP`] bytes).
    fn bytes(&self) -> ([u8; NAME_CAP], usize) {
        (self.key.to_le_bytes(), self.len.min(NAME_CAP))
    }
}

/// What the attributes of a start tag say.
#[derive(Default)]
struct Attrs {
    hidden: bool,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0C)
}

struct Scanner<'a, 'o> {
    html: &'a str,
    src: &'a [u8],
    out: &'o mut String,
    /// The element hiding everything, and how many of its kind are open.
    hidden: Option<(Name, u32)>,
}

impl Scanner<'_, '_> {
    fn run(&mut self) {
        let n = self.src.len();
        let mut i = 0;
        while i < n {
            let lt = memchr(b'<', &self.src[i..]).map_or(n, |k| i + k);
            if lt > i {
                self.text(i, lt);
            }
            if lt >= n {
                break;
            }
            i = self.markup(lt).max(lt + 1);
        }
    }

    /// Output the text `html[a..b]` (no `<` inside), decoding entities.
    fn text(&mut self, a: usize, b: usize) {
        if self.hidden.is_some() {
            return;
        }
        let src = &self.src[..b];
        let mut k = a;
        while k < b {
            match memchr(b'&', &src[k..]) {
                None => {
                    self.push(k, b);
                    break;
                }
                Some(off) => {
                    let amp = k + off;
                    self.push(k, amp);
                    match entity(src, amp) {
                        Some((c, next)) => {
                            self.out.push(c);
                            k = next;
                        }
                        None => {
                            self.out.push('&');
                            k = amp + 1;
                        }
                    }
                }
            }
        }
    }

    fn push(&mut self, a: usize, b: usize) {
        if let Some(t) = self.html.get(a..b) {
            self.out.push_str(t);
        }
    }

    fn newline(&mut self) {
        if self.hidden.is_none() && !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    /// Handle the markup starting with the `<` at `i`; returns where scanning goes on.
    fn markup(&mut self, i: usize) -> usize {
        let n = self.src.len();
        match self.src.get(i + 1) {
            Some(b'!') => {
                if self.src.get(i + 2..i + 4) == Some(b"--") {
                    self.comment(i + 4)
                } else {
                    self.bogus(i + 2)
                }
            }
            Some(b'?') => self.bogus(i + 1),
            Some(b'/') => match self.src.get(i + 2) {
                Some(c) if c.is_ascii_alphabetic() => self.end_tag(i + 2),
                Some(b'>') => i + 3,
                Some(_) => self.bogus(i + 2),
                None => {
                    self.text(i, n);
                    n
                }
            },
            Some(c) if c.is_ascii_alphabetic() => self.start_tag(i + 1),
            _ => {
                self.text(i, i + 1);
                i + 1
            }
        }
    }

    /// A comment whose body starts at `s`: ends at `-->` or `--!>` (or right away at
    /// `>` / `->`), else at the end of the input.
    fn comment(&self, s: usize) -> usize {
        let src = self.src;
        let n = src.len();
        if src.get(s) == Some(&b'>') {
            return s + 1;
        }
        if src.get(s..s + 2) == Some(b"->") {
            return s + 2;
        }
        let mut k = s;
        while let Some(off) = memchr(b'-', &src[k..]) {
            let p = k + off;
            if src.get(p + 1) == Some(&b'-') {
                if src.get(p + 2) == Some(&b'>') {
                    return p + 3;
                }
                if src.get(p + 2..p + 4) == Some(b"!>") {
                    return p + 4;
                }
            }
            k = p + 1;
        }
        n
    }

    /// Bogus markup (`<!DOCTYPE ..>`, `<?xml ..>`, `</ ..>`): up to the next `>`.
    fn bogus(&self, s: usize) -> usize {
        let n = self.src.len();
        match self.src.get(s..).and_then(|t| memchr(b'>', t)) {
            Some(k) => s + k + 1,
            None => n,
        }
    }

    /// Read a tag name starting at `s`; returns it lowercased and where it ends.
    fn name(&self, s: usize) -> (Name, usize) {
        let src = self.src;
        let mut name = Name { key: 0, len: 0 };
        let mut j = s;
        while let Some(&b) = src.get(j) {
            if is_space(b) || b == b'/' || b == b'>' {
                break;
            }
            if name.len < NAME_CAP {
                name.key |= (b.to_ascii_lowercase() as u128) << (8 * name.len);
            }
            name.len += 1;
            j += 1;
        }
        (name, j)
    }

    /// Read attributes from `j` up to and including the closing `>`; returns what
    /// they say and the position after `>`, or `None` when the input ends first.
    fn attrs(&self, mut j: usize) -> Option<(Attrs, usize)> {
        let src = self.src;
        let n = src.len();
        let mut attrs = Attrs::default();
        loop {
            while j < n && is_space(src[j]) {
                j += 1;
            }
            match src.get(j)? {
                b'>' => return Some((attrs, j + 1)),
                b'/' => {
                    j += 1;
                    continue;
                }
                _ => {}
            }
            let ns = j;
            j += 1;
            while j < n && !(is_space(src[j]) || matches!(src[j], b'/' | b'>' | b'=')) {
                j += 1;
            }
            let name = &src[ns..j];
            while j < n && is_space(src[j]) {
                j += 1;
            }
            let mut value = None;
            if src.get(j) == Some(&b'=') {
                j += 1;
                while j < n && is_space(src[j]) {
                    j += 1;
                }
                match *src.get(j)? {
                    q @ (b'"' | b'\'') => {
                        let vs = j + 1;
                        let k = memchr(q, src.get(vs..)?)?;
                        value = Some((vs, vs + k));
                        j = vs + k + 1;
                    }
                    b'>' => {}
                    _ => {
                        let vs = j;
                        while j < n && !(is_space(src[j]) || src[j] == b'>') {
                            j += 1;
                        }
                        value = Some((vs, j));
                    }
                }
            }
            if name.eq_ignore_ascii_case(b"hidden") {
                attrs.hidden = true;
            } else if name.eq_ignore_ascii_case(b"style")
                && let Some(v) = value.and_then(|(a, b)| self.html.get(a..b))
                && style_hides(v)
            {
                attrs.hidden = true;
            }
        }
    }

    /// A start tag whose name starts at `s`.
    fn start_tag(&mut self, s: usize) -> usize {
        let n = self.src.len();
        let (name, j) = self.name(s);
        let Some((attrs, end)) = self.attrs(j) else {
            return n;
        };
        let role = name.role();
        if role == Role::RawDropped {
            return self.skip_raw(&name, end);
        }
        let void = matches!(role, Role::Void | Role::VoidBlock);
        if let Some((open, depth)) = &mut self.hidden {
            if name == *open && !void {
                *depth += 1;
            }
            return end;
        }
        if void {
            if !attrs.hidden && role == Role::VoidBlock {
                self.newline();
            }
            return end;
        }
        if attrs.hidden || role == Role::Template {
            self.hidden = Some((name, 1));
            return end;
        }
        if role == Role::Block {
            self.newline();
        }
        end
    }

    /// An end tag whose name starts at `s`.
    fn end_tag(&mut self, s: usize) -> usize {
        let n = self.src.len();
        let (name, j) = self.name(s);
        let Some((_, end)) = self.attrs(j) else {
            return n;
        };
        if let Some((open, depth)) = &mut self.hidden {
            if name == *open {
                *depth -= 1;
                if *depth == 0 {
                    self.hidden = None;
                }
            }
            return end;
        }
        if matches!(name.role(), Role::Block | Role::VoidBlock) {
            self.newline();
        }
        end
    }

    /// Skip raw text from `from` to after the matching `</name ...>` (or the end).
    fn skip_raw(&self, name: &Name, from: usize) -> usize {
        let src = self.src;
        let n = src.len();
        let (buf, len) = name.bytes();
        let want = &buf[..len];
        let mut k = from;
        while let Some(off) = src.get(k..).and_then(|t| memchr(b'<', t)) {
            let p = k + off;
            if src.get(p + 1) == Some(&b'/') {
                let ns = p + 2;
                let ne = ns + want.len();
                if src
                    .get(ns..ne)
                    .is_some_and(|c| c.eq_ignore_ascii_case(want))
                {
                    match src.get(ne) {
                        None => return n,
                        Some(&b) if is_space(b) || b == b'/' || b == b'>' => {
                            return self.attrs(ne).map_or(n, |(_, e)| e);
                        }
                        Some(_) => {}
                    }
                }
            }
            k = p + 1;
        }
        n
    }
}

/// Whether an inline `style` value hides the element.
fn style_hides(style: &str) -> bool {
    let cleaned;
    let mut style = style.as_bytes();
    if memchr::memchr2(b'&', b'/', style).is_some() {
        cleaned = clean_style(String::from_utf8_lossy(style).as_ref());
        style = cleaned.as_bytes();
    }
    for decl in style.split(|&b| b == b';') {
        let Some(colon) = memchr(b':', decl) else {
            continue;
        };
        let prop = decl[..colon].trim_ascii();
        // Only `display`, `visibility`, `font*`, `opacity` and `mso-hide` matter.
        if !matches!(
            prop.first().map(u8::to_ascii_lowercase),
            Some(b'd' | b'v' | b'f' | b'o' | b'm')
        ) {
            continue;
        }
        let mut value = &decl[colon + 1..];
        if let Some(bang) = memchr(b'!', value) {
            value = &value[..bang];
        }
        let value = value.trim_ascii();
        let is = |p: &[u8]| prop.eq_ignore_ascii_case(p);
        let hides = if is(b"display") {
            value.eq_ignore_ascii_case(b"none")
        } else if is(b"visibility") {
            value.eq_ignore_ascii_case(b"hidden") || value.eq_ignore_ascii_case(b"collapse")
        } else if is(b"font-size") || is(b"opacity") {
            is_zero(value)
        } else if is(b"font") {
            // `font: [style] [weight] size[/line-height] family`: the first numeric
            // token is the size unless it is a weight.
            value
                .split(u8::is_ascii_whitespace)
                .find(|t| t.first().is_some_and(|&c| c.is_ascii_digit() || c == b'.'))
                .is_some_and(|t| is_zero(t.split(|&b| b == b'/').next().unwrap_or(t)))
        } else if is(b"mso-hide") {
            value.eq_ignore_ascii_case(b"all")
        } else {
            false
        };
        if hides {
            return true;
        }
    }
    false
}

/// A style value with entities decoded and CSS comments removed.
fn clean_style(style: &str) -> String {
    let mut decoded = String::with_capacity(style.len());
    let src = style.as_bytes();
    let mut k = 0;
    while k < src.len() {
        match memchr(b'&', &src[k..]) {
            None => {
                decoded.push_str(style.get(k..).unwrap_or(""));
                break;
            }
            Some(off) => {
                let amp = k + off;
                decoded.push_str(style.get(k..amp).unwrap_or(""));
                match entity(src, amp) {
                    Some((c, next)) => {
                        decoded.push(c);
                        k = next;
                    }
                    None => {
                        decoded.push('&');
                        k = amp + 1;
                    }
                }
            }
        }
    }
    let mut clean = String::with_capacity(decoded.len());
    let mut rest = decoded.as_str();
    while let Some(open) = rest.find("/*") {
        clean.push_str(&rest[..open]);
        rest = match rest[open + 2..].find("*/") {
            Some(close) => &rest[open + 2 + close + 2..],
            None => "",
        };
    }
    clean.push_str(rest);
    clean
}

/// Whether a CSS number or length is zero: `0`, `0px`, `0.0em`, `-0`, `.0`, `0%`.
fn is_zero(value: &[u8]) -> bool {
    let v = value.trim_ascii();
    let v = v
        .strip_prefix(b"+")
        .or_else(|| v.strip_prefix(b"-"))
        .unwrap_or(v);
    let num_len = v
        .iter()
        .position(|&c| !(c.is_ascii_digit() || c == b'.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(num_len);
    num.contains(&b'0')
        && num.iter().all(|&b| b == b'0' || b == b'.')
        && num.iter().filter(|&&b| b == b'.').count() <= 1
        && (unit == b"%" || unit.iter().all(u8::is_ascii_alphabetic))
}

/// Longest entity name looked at.
const MAX_ENTITY_NAME: usize = 32;

/// Decode the character reference starting with the `&` at `amp` in `s`; returns
/// the char and the position after the reference, or `None` when it is not one
/// (the `&` is then literal text).
fn entity(s: &[u8], amp: usize) -> Option<(char, usize)> {
    let first = *s.get(amp + 1)?;
    if first == b'#' {
        let (radix, start) = match s.get(amp + 2) {
            Some(b'x' | b'X') => (16, amp + 3),
            _ => (10, amp + 2),
        };
        let mut j = start;
        let mut v: u32 = 0;
        while let Some(d) = s.get(j).and_then(|&b| (b as char).to_digit(radix)) {
            v = v.saturating_mul(radix).saturating_add(d).min(0x11_0000);
            j += 1;
        }
        if j == start {
            return None;
        }
        if s.get(j) == Some(&b';') {
            j += 1;
        }
        return Some((numeric_char(v), j));
    }
    if !first.is_ascii_alphanumeric() {
        return None;
    }
    let start = amp + 1;
    let mut j = start;
    while j < s.len() && j - start < MAX_ENTITY_NAME && s[j].is_ascii_alphanumeric() {
        j += 1;
    }
    let name = &s[start..j];
    if s.get(j) == Some(&b';')
        && let Some(&(_, c, _)) = lookup(name)
    {
        return Some((c, j + 1));
    }
    // Legacy references may omit the `;` (`&amp`, `&nbsp`, `&copy`): take the
    // longest such prefix.
    (2..=name.len().min(6))
        .rev()
        .find_map(|len| match lookup(&name[..len]) {
            Some(&(_, c, true)) => Some((c, start + len)),
            _ => None,
        })
}

/// The table entry named `name`.
fn lookup(name: &[u8]) -> Option<&'static (&'static [u8], char, bool)> {
    // Search the integer keys, then confirm the full name among equal keys.
    let key = entity_key(name);
    let first = ENTITY_KEYS.partition_point(|&k| k < key);
    ENTITY_KEYS
        .get(first..)?
        .iter()
        .take_while(|&&k| k == key)
        .zip(ENTITIES.get(first..)?)
        .map(|(_, e)| e)
        .find(|e| e.0 == name)
}

/// The first 8 bytes of an entity name, big-endian and zero-padded: ordered like the
/// names themselves, so the keys of the sorted table are sorted too.
const fn entity_key(name: &[u8]) -> u64 {
    let mut k = 0u64;
    let mut i = 0;
    while i < 8 {
        k <<= 8;
        if i < name.len() {
            k |= name[i] as u64;
        }
        i += 1;
    }
    k
}

/// [`entity_key`] of every [`ENTITIES`] entry, in the same order.
static ENTITY_KEYS: [u64; ENTITIES.len()] = {
    let mut keys = [0u64; ENTITIES.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = entity_key(ENTITIES[i].0);
        i += 1;
    }
    keys
};

/// The char a numeric reference stands for, as browsers decode it: C1 code points
/// through windows-1252, invalid ones (0, surrogates, beyond U+10FFFF) as U+FFFD.
fn numeric_char(v: u32) -> char {
    const CP1252: [u32; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    let v = match v {
        0x80..=0x9F => CP1252[(v - 0x80) as usize],
        v => v,
    };
    match v {
        0 => '\u{FFFD}',
        v => char::from_u32(v).unwrap_or('\u{FFFD}'),
    }
}

/// Named character references: the HTML 4 set, `apos`, and the HTML5 names for ASCII
/// punctuation, spaces and zero-width chars. Sorted by name for binary search; the
/// flag marks legacy names that may appear without `;`. `nbsp` maps to a plain space.
const ENTITIES: &[(&[u8], char, bool)] = &[
    (b"AElig", '\u{c6}', true),
    (b"AMP", '&', true),
    (b"Aacute", '\u{c1}', true),
    (b"Acirc", '\u{c2}', true),
    (b"Agrave", '\u{c0}', true),
    (b"Alpha", '\u{391}', false),
    (b"Aring", '\u{c5}', true),
    (b"Atilde", '\u{c3}', true),
    (b"Auml", '\u{c4}', true),
    (b"Beta", '\u{392}', false),
    (b"COPY", '\u{a9}', true),
    (b"Ccedil", '\u{c7}', true),
    (b"CenterDot", '\u{b7}', false),
    (b"Chi", '\u{3a7}', false),
    (b"Dagger", '\u{2021}', false),
    (b"Delta", '\u{394}', false),
    (b"DiacriticalGrave", '`', false),
    (b"ETH", '\u{d0}', true),
    (b"Eacute", '\u{c9}', true),
    (b"Ecirc", '\u{ca}', true),
    (b"Egrave", '\u{c8}', true),
    (b"Epsilon", '\u{395}', false),
    (b"Eta", '\u{397}', false),
    (b"Euml", '\u{cb}', true),
    (b"GT", '>', true),
    (b"Gamma", '\u{393}', false),
    (b"Hat", '^', false),
    (b"Iacute", '\u{cd}', true),
    (b"Icirc", '\u{ce}', true),
    (b"Igrave", '\u{cc}', true),
    (b"Iota", '\u{399}', false),
    (b"Iuml", '\u{cf}', true),
    (b"Kappa", '\u{39a}', false),
    (b"LT", '<', true),
    (b"Lambda", '\u{39b}', false),
    (b"MediumSpace", '\u{205f}', false),
    (b"Mu", '\u{39c}', false),
    (b"NegativeMediumSpace", '\u{200b}', false),
    (b"NegativeThickSpace", '\u{200b}', false),
    (b"NegativeThinSpace", '\u{200b}', false),
    (b"NegativeVeryThinSpace", '\u{200b}', false),
    (b"NewLine", '\u{a}', false),
    (b"NoBreak", '\u{2060}', false),
    (b"Ntilde", '\u{d1}', true),
    (b"Nu", '\u{39d}', false),
    (b"OElig", '\u{152}', false),
    (b"Oacute", '\u{d3}', true),
    (b"Ocirc", '\u{d4}', true),
    (b"Ograve", '\u{d2}', true),
    (b"Omega", '\u{3a9}', false),
    (b"Omicron", '\u{39f}', false),
    (b"Oslash", '\u{d8}', true),
    (b"Otilde", '\u{d5}', true),
    (b"Ouml", '\u{d6}', true),
    (b"Phi", '\u{3a6}', false),
    (b"Pi", '\u{3a0}', false),
    (b"Prime", '\u{2033}', false),
    (b"Psi", '\u{3a8}', false),
    (b"QUOT", '"', true),
    (b"REG", '\u{ae}', true),
    (b"Rho", '\u{3a1}', false),
    (b"Scaron", '\u{160}', false),
    (b"Sigma", '\u{3a3}', false),
    (b"THORN", '\u{de}', true),
    (b"Tab", '\u{9}', false),
    (b"Tau", '\u{3a4}', false),
    (b"Theta", '\u{398}', false),
    (b"ThinSpace", '\u{2009}', false),
    (b"Uacute", '\u{da}', true),
    (b"Ucirc", '\u{db}', true),
    (b"Ugrave", '\u{d9}', true),
    (b"UnderBar", '_', false),
    (b"Upsilon", '\u{3a5}', false),
    (b"Uuml", '\u{dc}', true),
    (b"VerticalLine", '|', false),
    (b"VeryThinSpace", '\u{200a}', false),
    (b"Xi", '\u{39e}', false),
    (b"Yacute", '\u{dd}', true),
    (b"Yuml", '\u{178}', false),
    (b"ZeroWidthSpace", '\u{200b}', false),
    (b"Zeta", '\u{396}', false),
    (b"aacute", '\u{e1}', true),
    (b"acirc", '\u{e2}', true),
    (b"acute", '\u{b4}', true),
    (b"aelig", '\u{e6}', true),
    (b"agrave", '\u{e0}', true),
    (b"alefsym", '\u{2135}', false),
    (b"alpha", '\u{3b1}', false),
    (b"amp", '&', true),
    (b"and", '\u{2227}', false),
    (b"ang", '\u{2220}', false),
    (b"apos", '\'', false),
    (b"aring", '\u{e5}', true),
    (b"ast", '*', false),
    (b"asymp", '\u{2248}', false),
    (b"atilde", '\u{e3}', true),
    (b"auml", '\u{e4}', true),
    (b"bdquo", '\u{201e}', false),
    (b"beta", '\u{3b2}', false),
    (b"brvbar", '\u{a6}', true),
    (b"bsol", '\\', false),
    (b"bull", '\u{2022}', false),
    (b"bullet", '\u{2022}', false),
    (b"cap", '\u{2229}', false),
    (b"ccedil", '\u{e7}', true),
    (b"cedil", '\u{b8}', true),
    (b"cent", '\u{a2}', true),
    (b"centerdot", '\u{b7}', false),
    (b"chi", '\u{3c7}', false),
    (b"circ", '\u{2c6}', false),
    (b"clubs", '\u{2663}', false),
    (b"colon", ':', false),
    (b"comma", ',', false),
    (b"commat", '@', false),
    (b"cong", '\u{2245}', false),
    (b"copy", '\u{a9}', true),
    (b"crarr", '\u{21b5}', false),
    (b"cup", '\u{222a}', false),
    (b"curren", '\u{a4}', true),
    (b"dArr", '\u{21d3}', false),
    (b"dagger", '\u{2020}', false),
    (b"darr", '\u{2193}', false),
    (b"dash", '\u{2010}', false),
    (b"deg", '\u{b0}', true),
    (b"delta", '\u{3b4}', false),
    (b"diams", '\u{2666}', false),
    (b"divide", '\u{f7}', true),
    (b"dollar", '$', false),
    (b"eacute", '\u{e9}', true),
    (b"ecirc", '\u{ea}', true),
    (b"egrave", '\u{e8}', true),
    (b"empty", '\u{2205}', false),
    (b"emsp", '\u{2003}', false),
    (b"emsp13", '\u{2004}', false),
    (b"emsp14", '\u{2005}', false),
    (b"ensp", '\u{2002}', false),
    (b"epsilon", '\u{3b5}', false),
    (b"equals", '=', false),
    (b"equiv", '\u{2261}', false),
    (b"eta", '\u{3b7}', false),
    (b"eth", '\u{f0}', true),
    (b"euml", '\u{eb}', true),
    (b"euro", '\u{20ac}', false),
    (b"excl", '!', false),
    (b"exist", '\u{2203}', false),
    (b"fnof", '\u{192}', false),
    (b"forall", '\u{2200}', false),
    (b"frac12", '\u{bd}', true),
    (b"frac14", '\u{bc}', true),
    (b"frac34", '\u{be}', true),
    (b"frasl", '\u{2044}', false),
    (b"gamma", '\u{3b3}', false),
    (b"ge", '\u{2265}', false),
    (b"grave", '`', false),
    (b"gt", '>', true),
    (b"hArr", '\u{21d4}', false),
    (b"hairsp", '\u{200a}', false),
    (b"harr", '\u{2194}', false),
    (b"hearts", '\u{2665}', false),
    (b"hellip", '\u{2026}', false),
    (b"hyphen", '\u{2010}', false),
    (b"iacute", '\u{ed}', true),
    (b"icirc", '\u{ee}', true),
    (b"iexcl", '\u{a1}', true),
    (b"igrave", '\u{ec}', true),
    (b"image", '\u{2111}', false),
    (b"infin", '\u{221e}', false),
    (b"int", '\u{222b}', false),
    (b"iota", '\u{3b9}', false),
    (b"iquest", '\u{bf}', true),
    (b"isin", '\u{2208}', false),
    (b"iuml", '\u{ef}', true),
    (b"kappa", '\u{3ba}', false),
    (b"lArr", '\u{21d0}', false),
    (b"lambda", '\u{3bb}', false),
    (b"lang", '\u{2329}', false),
    (b"laquo", '\u{ab}', true),
    (b"larr", '\u{2190}', false),
    (b"lbrace", '{', false),
    (b"lbrack", '[', false),
    (b"lceil", '\u{2308}', false),
    (b"lcub", '{', false),
    (b"ldquo", '\u{201c}', false),
    (b"le", '\u{2264}', false),
    (b"lfloor", '\u{230a}', false),
    (b"lowast", '\u{2217}', false),
    (b"lowbar", '_', false),
    (b"loz", '\u{25ca}', false),
    (b"lpar", '(', false),
    (b"lrm", '\u{200e}', false),
    (b"lsaquo", '\u{2039}', false),
    (b"lsqb", '[', false),
    (b"lsquo", '\u{2018}', false),
    (b"lt", '<', true),
    (b"macr", '\u{af}', true),
    (b"mdash", '\u{2014}', false),
    (b"micro", '\u{b5}', true),
    (b"midast", '*', false),
    (b"middot", '\u{b7}', true),
    (b"minus", '\u{2212}', false),
    (b"mldr", '\u{2026}', false),
    (b"mu", '\u{3bc}', false),
    (b"nabla", '\u{2207}', false),
    (b"nbsp", ' ', true),
    (b"ndash", '\u{2013}', false),
    (b"ne", '\u{2260}', false),
    (b"ni", '\u{220b}', false),
    (b"not", '\u{ac}', true),
    (b"notin", '\u{2209}', false),
    (b"nsub", '\u{2284}', false),
    (b"ntilde", '\u{f1}', true),
    (b"nu", '\u{3bd}', false),
    (b"num", '#', false),
    (b"numsp", '\u{2007}', false),
    (b"oacute", '\u{f3}', true),
    (b"ocirc", '\u{f4}', true),
    (b"oelig", '\u{153}', false),
    (b"ograve", '\u{f2}', true),
    (b"oline", '\u{203e}', false),
    (b"omega", '\u{3c9}', false),
    (b"omicron", '\u{3bf}', false),
    (b"oplus", '\u{2295}', false),
    (b"or", '\u{2228}', false),
    (b"ordf", '\u{aa}', true),
    (b"ordm", '\u{ba}', true),
    (b"oslash", '\u{f8}', true),
    (b"otilde", '\u{f5}', true),
    (b"otimes", '\u{2297}', false),
    (b"ouml", '\u{f6}', true),
    (b"para", '\u{b6}', true),
    (b"part", '\u{2202}', false),
    (b"percnt", '%', false),
    (b"period", '.', false),
    (b"permil", '\u{2030}', false),
    (b"perp", '\u{22a5}', false),
    (b"phi", '\u{3c6}', false),
    (b"pi", '\u{3c0}', false),
    (b"piv", '\u{3d6}', false),
    (b"plus", '+', false),
    (b"plusmn", '\u{b1}', true),
    (b"pound", '\u{a3}', true),
    (b"prime", '\u{2032}', false),
    (b"prod", '\u{220f}', false),
    (b"prop", '\u{221d}', false),
    (b"psi", '\u{3c8}', false),
    (b"puncsp", '\u{2008}', false),
    (b"quest", '?', false),
    (b"quot", '"', true),
    (b"rArr", '\u{21d2}', false),
    (b"radic", '\u{221a}', false),
    (b"rang", '\u{232a}', false),
    (b"raquo", '\u{bb}', true),
    (b"rarr", '\u{2192}', false),
    (b"rbrace", '}', false),
    (b"rbrack", ']', false),
    (b"rceil", '\u{2309}', false),
    (b"rcub", '}', false),
    (b"rdquo", '\u{201d}', false),
    (b"real", '\u{211c}', false),
    (b"reg", '\u{ae}', true),
    (b"rfloor", '\u{230b}', false),
    (b"rho", '\u{3c1}', false),
    (b"rlm", '\u{200f}', false),
    (b"rpar", ')', false),
    (b"rsaquo", '\u{203a}', false),
    (b"rsqb", ']', false),
    (b"rsquo", '\u{2019}', false),
    (b"sbquo", '\u{201a}', false),
    (b"scaron", '\u{161}', false),
    (b"sdot", '\u{22c5}', false),
    (b"sect", '\u{a7}', true),
    (b"semi", ';', false),
    (b"shy", '\u{ad}', true),
    (b"sigma", '\u{3c3}', false),
    (b"sigmaf", '\u{3c2}', false),
    (b"sim", '\u{223c}', false),
    (b"sol", '/', false),
    (b"spades", '\u{2660}', false),
    (b"sub", '\u{2282}', false),
    (b"sube", '\u{2286}', false),
    (b"sum", '\u{2211}', false),
    (b"sup", '\u{2283}', false),
    (b"sup1", '\u{b9}', true),
    (b"sup2", '\u{b2}', true),
    (b"sup3", '\u{b3}', true),
    (b"supe", '\u{2287}', false),
    (b"szlig", '\u{df}', true),
    (b"tau", '\u{3c4}', false),
    (b"there4", '\u{2234}', false),
    (b"theta", '\u{3b8}', false),
    (b"thetasym", '\u{3d1}', false),
    (b"thinsp", '\u{2009}', false),
    (b"thorn", '\u{fe}', true),
    (b"tilde", '\u{2dc}', false),
    (b"times", '\u{d7}', true),
    (b"trade", '\u{2122}', false),
    (b"uArr", '\u{21d1}', false),
    (b"uacute", '\u{fa}', true),
    (b"uarr", '\u{2191}', false),
    (b"ucirc", '\u{fb}', true),
    (b"ugrave", '\u{f9}', true),
    (b"uml", '\u{a8}', true),
    (b"upsih", '\u{3d2}', false),
    (b"upsilon", '\u{3c5}', false),
    (b"uuml", '\u{fc}', true),
    (b"verbar", '|', false),
    (b"vert", '|', false),
    (b"weierp", '\u{2118}', false),
    (b"xi", '\u{3be}', false),
    (b"yacute", '\u{fd}', true),
    (b"yen", '\u{a5}', true),
    (b"yuml", '\u{ff}', true),
    (b"zeta", '\u{3b6}', false),
    (b"zwj", '\u{200d}', false),
    (b"zwnj", '\u{200c}', false),
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> String {
        visible_text(s)
    }

    #[test]
    fn comments_insert_nothing() {
        assert_eq!(v("发<!-- x -->票"), "发票");
        assert_eq!(v("发<!---->票"), "发票");
        assert_eq!(v("发<!-->票"), "发票");
        assert_eq!(v("发<!--->票"), "发票");
        assert_eq!(v("发<!-- a -- b --!>票"), "发票");
        assert_eq!(v("发<!-- never closed 票"), "发");
        assert_eq!(v("<!DOCTYPE html>免费"), "免费");
        assert_eq!(v("<?xml version=\"1.0\"?>免费"), "免费");
        assert_eq!(v("免</ x>费"), "免费");
        assert_eq!(v("免</>费"), "免费");
    }

    #[test]
    fn scripts_styles_and_title_are_dropped() {
        assert_eq!(v("免<script>var a = '<b>x</b>';</script>费"), "免费");
        assert_eq!(v("免<SCRIPT type=x>alert(1)</ScRiPt >费"), "免费");
        assert_eq!(v("免<style>p{color:red}</style>费"), "免费");
        assert_eq!(
            v("<html><head><title>标题</title><style>x</style></head><body>正文</body></html>"),
            "正文\n"
        );
        assert_eq!(v("免<script>never closed 费"), "免");
        assert_eq!(v("免<script>a</scriptx>b</script>费"), "免费");
        assert_eq!(v("免<template><p>模板</p></template>费"), "免费");
    }

    #[test]
    fn hidden_elements_are_dropped() {
        assert_eq!(v("免<span style=\"display:none\">垃圾</span>费"), "免费");
        assert_eq!(
            v("免<span style='DISPLAY : None !important'>垃圾</span>费"),
            "免费"
        );
        assert_eq!(v("免<div style=\"visibility:hidden\">垃圾</div>费"), "免费");
        assert_eq!(v("免<font style=\"font-size:0\">垃圾</font>费"), "免费");
        assert_eq!(v("免<font style=\"font-size: 0px\">垃圾</font>费"), "免费");
        assert_eq!(v("免<font style=\"font-size:0pt\">垃圾</font>费"), "免费");
        assert_eq!(v("免<span style=\"opacity:0\">垃圾</span>费"), "免费");
        assert_eq!(v("免<span style=\"opacity:0.0\">垃圾</span>费"), "免费");
        assert_eq!(v("免<span style=\"font:0/0 a\">垃圾</span>费"), "免费");
        assert_eq!(v("免<span style=\"mso-hide:all\">垃圾</span>费"), "免费");
        assert_eq!(v("免<span hidden>垃圾</span>费"), "免费");
        assert_eq!(
            v("免<span style=\"display&#58;none\">垃圾</span>费"),
            "免费"
        );
        assert_eq!(
            v("免<span style=\"display:/**/none\">垃圾</span>费"),
            "免费"
        );
        // Visible styles stay.
        assert_eq!(
            v("免<span style=\"font-size:10px;opacity:0.5\">真</span>费"),
            "免真费"
        );
        assert_eq!(v("免<span style=\"display:block\">真</span>费"), "免真费");
    }

    #[test]
    fn hidden_nesting_is_tracked() {
        assert_eq!(
            v("a<div hidden>b<div>c</div>d<div>e<div>f</div></div>g</div>h"),
            "ah"
        );
        assert_eq!(v("a<span hidden>b<span>c</span>d</span>e"), "ae");
        assert_eq!(v("a<span hidden>b<!-- </span> -->c</span>d"), "ad");
        assert_eq!(
            v("a<span hidden>b<script>'</span>'</script>c</span>d"),
            "ad"
        );
        assert_eq!(v("a<span hidden>never closed"), "a");
        // Void elements have no content.
        assert_eq!(v("a<img hidden src=x>b"), "ab");
        assert_eq!(v("a<br hidden>b"), "ab");
    }

    #[test]
    fn inline_tags_insert_nothing() {
        assert_eq!(v("免<b></b>费"), "免费");
        assert_eq!(v("代<span>开</span>"), "代开");
        assert_eq!(
            v(
                "<i>1</i><u>2</u><font color=red>3</font><a href='x'>4</a><em>5</em><strong>6</strong><small>7</small><big>8</big><sup>9</sup><sub>0</sub><s>a</s><strike>b</strike><code>c</code><tt>d</tt><unknown>e</unknown>"
            ),
            "1234567890abcde"
        );
    }

    #[test]
    fn block_tags_insert_one_newline() {
        assert_eq!(v("a<br>b<br/>c"), "a\nb\nc");
        assert_eq!(v("<p>a</p><p>b</p>"), "a\nb\n");
        assert_eq!(v("<table><tr><td>a</td><td>b</td></tr></table>"), "a\nb\n");
        assert_eq!(v("<div><div><div>a</div></div></div>"), "a\n");
        assert_eq!(v("<ul><li>a<li>b</ul><h1>c</h1><hr>d"), "a\nb\nc\nd");
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(v("&#20813;&#x8D39;"), "免费");
        assert_eq!(v("&#20813&#X8d39"), "免费");
        assert_eq!(v("a&nbsp;b&nbspc"), "a b c");
        assert_eq!(v("&amp;&lt;&gt;&quot;&apos;&copy;&reg;"), "&<>\"'©®");
        assert_eq!(v("&amp &ampx &notit; &notin;"), "& &x ¬it; ∉");
        assert_eq!(v("&euro;&hellip;&mdash;&zwnj;"), "€…—\u{200C}");
        assert_eq!(v("免&period;费&ZeroWidthSpace;"), "免.费\u{200B}");
        assert_eq!(
            v("&#0;&#xD800;&#x110000;&#99999999999;"),
            "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}"
        );
        assert_eq!(v("&#150;&#x80;"), "–€");
        assert_eq!(v("& &; &# &#x &bogus; &#;"), "& &; &# &#x &bogus; &#;");
        assert_eq!(v("a &amp b"), "a & b");
    }

    #[test]
    fn broken_html_is_lenient() {
        assert_eq!(v("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2");
        assert_eq!(v("a <= b <3"), "a <= b <3");
        assert_eq!(v("end <"), "end <");
        assert_eq!(v("end </"), "end </");
        assert_eq!(v("免<b>费"), "免费");
        assert_eq!(v("免</b>费"), "免费");
        assert_eq!(v("a<a href=\"never closed>b"), "a");
        assert_eq!(v("a<b class=x"), "a");
        assert_eq!(v("a<a href=x title='y'>b</a >c"), "abc");
        assert_eq!(v("a<p/>b"), "a\nb");
        assert_eq!(v(""), "");
    }

    #[test]
    fn attribute_text_is_dropped() {
        assert_eq!(v("a<img alt=\"免费\" src=x>b"), "ab");
        assert_eq!(
            v("<a title='免费' href=\"http://x/?a=1&b=2\">链接</a>"),
            "链接"
        );
    }

    #[test]
    fn entity_table_is_sorted_and_searchable() {
        assert!(ENTITIES.windows(2).all(|w| w[0].0 < w[1].0));
        for (name, c, _) in ENTITIES {
            assert_eq!(lookup(name).map(|e| e.1), Some(*c));
        }
        assert!(lookup(b"Negative").is_none());
        assert!(lookup(b"").is_none());
    }

    #[test]
    fn reuses_buffer() {
        let mut out = String::from("old");
        visible_text_into("<b>new</b>", &mut out);
        assert_eq!(out, "new");
    }

    #[test]
    fn pathological_inputs_finish() {
        for unit in [
            "<!--",
            "<a ",
            "&#",
            "&amp",
            "<script>",
            "</",
            "<",
            "<!",
            "<a b='",
            "-->",
            "<span hidden>",
        ] {
            let s = unit.repeat(50_000);
            let _ = visible_text(&s);
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = visible_text(&s);
        }

        #[test]
        fn never_panics_on_markup_soup(s in "[<>&;#xX!/a-zA-Z0-9 \"'=\\-免费\u{200B}:]{0,300}") {
            let _ = visible_text(&s);
        }

        #[test]
        fn script_content_never_shows(
            pre in "[^<]{0,40}",
            tags in prop::collection::vec(prop_oneof![
                Just("<b>"), Just("</b>"), Just("<p>"), Just("<div style='display:none'>"),
                Just("</div>"), Just("<!-- c -->"), Just("<br/>"), Just("&amp;"),
            ], 0..6),
            body in "[^<]{0,40}",
            post in "[^<]{0,40}",
        ) {
            let html = format!("{pre}{}<script>{body}SCRIPTMARK{body}</script>{post}", tags.concat());
            prop_assume!(!pre.contains("SCRIPTMARK") && !post.contains("SCRIPTMARK"));
            prop_assert!(!visible_text(&html).contains("SCRIPTMARK"));
        }
    }
}
