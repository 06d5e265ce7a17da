//! The keep log: where a kept message becomes durable before the MTA is
//! answered, ahead of the store's own file.
//!
//! **Why.** A commit to the redb file in multi-writer mode (which the
//! `chaff quarantine` command's sharing of the file requires) costs two syncs,
//! the allocator state's record and copies of every touched table's pages:
//! `cargo bench -p chaff-milter --bench state_write` measured 0.4–0.7 ms of CPU
//! for a commit of one 2.5 KB message, and 35–42 µs more for each further
//! message in a commit of 64, against 0.07–0.13 ms for an append and one
//! `fdatasync` here. Under `cargo bench --bench milter_load` (about 2,700 kept
//! messages a second) commits of 1–3 messages took most of a core and put the
//! time to keep a message at p50 5.4 ms, p99 13 ms. So the keeper appends each
//! group of messages to this log with one `fdatasync` and answers; a second
//! thread moves them into the store in large transactions, off the answer path,
//! and the log is emptied once they are there.
//!
//! **Format.** A file starts with [`MAGIC`]; then records, each `[length: u32
//! LE][CRC-32 of the payload: u32 LE][payload]`; a payload is `[entry id: u64
//! LE][length of the JSON head: u32 LE][JSON head][compressed message]`. A
//! record is written whole and synced before its message is answered, so after
//! a crash the file holds whole, answered records, then at most one torn record
//! that was never answered: reading stops at the first record that does not
//! check out. Writes go at the end of the last good record, so a failed write
//! is overwritten by the next one.
//!
//! **Two files.** The writer appends to one (`<store>.keep-a` or `-b`) while
//! the other's records are moved into the store; a file is emptied once every
//! record in it is in the store, and the writer changes files when the other is
//! empty and its own has grown past [`ROTATE_BYTES`]. Moving a record is
//! idempotent (an id already in the store with the same message is skipped), so
//! replaying a file twice after a crash changes nothing.
//!
//! **Ownership.** The service's keeper holds an exclusive `flock` on both files
//! for its life. Whoever opens the store (the service at start, `chaff
//! quarantine` after a crash) moves what a log holds into the store when it can
//! take the lock, that is when no service owns it.

use super::entry::{NewEntry, StoredEnvelope, StoredVerdict, Told};
use super::id::EntryId;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The first bytes of a keep log.
pub const MAGIC: &[u8; 8] = b"chaffKL1";
/// A record's header: length and checksum.
const RECORD_HEAD: usize = 8;
/// The writer changes files once its file is this large and the other is empty.
pub const ROTATE_BYTES: u64 = 4 << 20;
/// Largest payload read back (a message is bounded by the milter's size limit,
/// far below this; a larger length is damage).
const MAX_PAYLOAD: usize = 1 << 30;

/// The two files of the keep log beside the store at `store`.
pub fn log_paths(store: &Path) -> [PathBuf; 2] {
    let name = |tail: &str| {
        let mut s = store.as_os_str().to_os_string();
        s.push(tail);
        PathBuf::from(s)
    };
    [name(".keep-a"), name(".keep-b")]
}

/// The JSON head of a record: the entry without its message.
#[derive(Serialize, Deserialize)]
struct Head {
    time_ms: u64,
    host: String,
    envelope: StoredEnvelope,
    subject: String,
    verdict: StoredVerdict,
    told: Told,
    size: u64,
}

/// Encodes one record (head and payload) for `entry` under `id`, appended to `out`.
pub fn encode(id: EntryId, entry: &NewEntry, out: &mut Vec<u8>) -> Result<(), String> {
    let head = serde_json::to_vec(&Head {
        time_ms: entry.time_ms,
        host: entry.host.clone(),
        envelope: entry.envelope.clone(),
        subject: entry.subject.clone(),
        verdict: entry.verdict.clone(),
        told: entry.told,
        size: entry.size,
    })
    .map_err(|e| format!("cannot encode a kept message: {e}"))?;
    let payload_len = 8 + 4 + head.len() + entry.compressed.len();
    let too_large = || format!("a kept message of {payload_len} bytes is too large to log");
    let len = u32::try_from(payload_len).map_err(|_| too_large())?;
    let head_len = u32::try_from(head.len()).map_err(|_| too_large())?;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.as_u64().to_le_bytes());
    out.extend_from_slice(&head_len.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&entry.compressed);
    let crc = crc32fast::hash(&out[start + RECORD_HEAD..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes a record's payload.
pub fn decode(payload: &[u8]) -> Result<(EntryId, NewEntry), String> {
    let id = payload
        .get(..8)
        .ok_or("short record")?
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| "short record")?;
    let head_len = payload
        .get(8..12)
        .ok_or("short record")?
        .try_into()
        .map(u32::from_le_bytes)
        .map_err(|_| "short record")? as usize;
    let head_end = 12usize
        .checked_add(head_len)
        .filter(|&e| e <= payload.len())
        .ok_or("record head longer than the record")?;
    let head: Head = serde_json::from_slice(&payload[12..head_end])
        .map_err(|e| format!("bad record head: {e}"))?;
    Ok((
        EntryId::from_u64(id),
        NewEntry {
            time_ms: head.time_ms,
            host: head.host,
            envelope: head.envelope,
            subject: head.subject,
            verdict: head.verdict,
            told: head.told,
            size: head.size,
            compressed: payload[head_end..].to_vec(),
        },
    ))
}

/// Reads the records of a log's bytes (after [`MAGIC`]) up to the first that
/// does not check out: the records, and where the good part ends.
pub fn parse(bytes: &[u8]) -> (Vec<(EntryId, NewEntry)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + RECORD_HEAD) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_PAYLOAD {
            break;
        }
        let Some(payload) = bytes.get(at + RECORD_HEAD..at + RECORD_HEAD + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match decode(payload) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        at += RECORD_HEAD + len;
    }
    (out, at)
}

/// The whole records of the log file at `path`, read without taking it (its
/// owner may be appending: a record being written does not check out yet and
/// ends the reading).
pub fn read(path: &Path) -> std::io::Result<Vec<(EntryId, NewEntry)>> {
    let bytes = std::fs::read(path)?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Ok(Vec::new());
    }
    Ok(parse(&bytes[MAGIC.len()..]).0)
}

/// One file of the keep log, locked by this process.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    path: PathBuf,
    /// End of the last good record.
    len: u64,
}

/// Why a log file could not be taken.
#[derive(Debug)]
pub enum TakeError {
    /// Another process (a running service) holds it.
    Held,
    /// It could not be opened, read or locked.
    Io(std::io::Error),
}

impl LogFile {
    /// Opens (creating) the log file at `path` and locks it for this process;
    /// returns it with the whole records it holds.
    pub fn take(path: &Path) -> Result<(LogFile, Vec<(EntryId, NewEntry)>), TakeError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(TakeError::Io)?;
        // SAFETY: `flock` on a descriptor this function owns; no memory is passed.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                TakeError::Held
            } else {
                TakeError::Io(e)
            });
        }
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).map_err(TakeError::Io)?;
        file.read_to_end(&mut bytes).map_err(TakeError::Io)?;
        let mut log = LogFile {
            file,
            path: path.to_path_buf(),
            len: MAGIC.len() as u64,
        };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            // New, or never got its first bytes: start it.
            if bytes.iter().any(|&b| b != 0) && bytes.len() >= MAGIC.len() {
                return Err(TakeError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a chaff keep log", path.display()),
                )));
            }
            log.clear().map_err(TakeError::Io)?;
            return Ok((log, Vec::new()));
        }
        let (records, good) = parse(&bytes[MAGIC.len()..]);
        log.len = (MAGIC.len() + good) as u64;
        Ok((log, records))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of records held.
    pub fn records_len(&self) -> u64 {
        self.len - MAGIC.len() as u64
    }

    /// Appends encoded records and syncs them: once this returns `Ok` they
    /// survive a crash. On an error nothing counts as written and the next
    /// append overwrites what may have reached the file.
    pub fn append(&mut self, records: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(records, self.len)?;
        self.file.sync_data()?;
        self.len += records.len() as u64;
        Ok(())
    }

    /// Empties the file (its records are in the store). Not synced: should the
    /// emptying be lost in a crash, the records are moved again, which changes
    /// nothing; the next append's sync makes the new length durable with it.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(MAGIC.len() as u64)?;
        self.file.write_all_at(MAGIC, 0)?;
        self.len = MAGIC.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(i: u64) -> NewEntry {
        NewEntry {
            time_ms: 1_700_000_000_000 + i,
            host: "mx".into(),
            envelope: StoredEnvelope {
                sender: format!("s{i}@x.test"),
                recipients: vec!["r@y.test".into()],
                queue_id: Some(format!("Q{i}")),
                ..StoredEnvelope::default()
            },
            subject: "优惠 offer".into(),
            verdict: StoredVerdict {
                action: "quarantine".into(),
                score: 9.5,
                reply: None,
                reason: "score".into(),
                reason_data: serde_json::json!({"kind": "score"}),
                hits: Vec::new(),
                tokens: Vec::new(),
                truncated: false,
            },
            told: Told::Hold,
            size: 100 + i,
            compressed: vec![i as u8; (i % 7) as usize * 3],
        }
    }

    #[test]
    fn records_round_trip_and_reading_stops_at_a_torn_tail() {
        let mut bytes = Vec::new();
        for i in 0..5 {
            encode(EntryId::from_u64(i + 1), &entry(i), &mut bytes).unwrap();
        }
        let (got, good) = parse(&bytes);
        assert_eq!(good, bytes.len());
        assert_eq!(got.len(), 5);
        for (i, (id, e)) in got.iter().enumerate() {
            assert_eq!(id.as_u64(), i as u64 + 1);
            assert_eq!(*e, entry(i as u64));
        }
        // A record cut short, or with a flipped bit, ends the good part there.
        let whole = bytes.len();
        let mut torn = bytes.clone();
        torn.truncate(whole - 3);
        let (got, good) = parse(&torn);
        assert_eq!(got.len(), 4);
        assert!(good < whole - 3);
        let mut flipped = bytes.clone();
        flipped[good + 20] ^= 1;
        assert_eq!(parse(&flipped).0.len(), 4);
    }

    #[test]
    fn a_file_is_taken_by_one_holder_and_keeps_what_was_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb.keep-a");
        let (mut log, old) = LogFile::take(&path).unwrap();
        assert!(old.is_empty());
        assert!(matches!(LogFile::take(&path), Err(TakeError::Held)));
        let mut rec = Vec::new();
        encode(EntryId::from_u64(7), &entry(1), &mut rec).unwrap();
        log.append(&rec).unwrap();
        // Garbage after the last good record (a write that failed half-way).
        log.file.write_all_at(b"\x05\0\0\0junk", log.len).unwrap();
        drop(log);
        let (mut log, held) = LogFile::take(&path).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].0.as_u64(), 7);
        // The next append overwrites the garbage.
        let mut rec2 = Vec::new();
        encode(EntryId::from_u64(8), &entry(2), &mut rec2).unwrap();
        log.append(&rec2).unwrap();
        drop(log);
        let (mut log, held) = LogFile::take(&path).unwrap();
        assert_eq!(
            held.iter().map(|r| r.0.as_u64()).collect::<Vec<_>>(),
            [7, 8]
        );
        log.clear().unwrap();
        drop(log);
        let (_log, held) = LogFile::take(&path).unwrap();
        assert!(held.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MAGIC.len() as u64);
    }

    #[test]
    fn another_file_is_not_taken_for_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"not a keep log at all").unwrap();
        assert!(matches!(LogFile::take(&path), Err(TakeError::Io(_))));
    }

    proptest! {
        #[test]
        fn reading_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let (records, good) = parse(&bytes);
            prop_assert!(good <= bytes.len());
            prop_assert!(records.len() <= bytes.len() / RECORD_HEAD);
            let _ = decode(&bytes);
        }

        #[test]
        fn any_entry_round_trips(i in 0u64..1000, id in any::<u64>(), subject in ".{0,40}") {
            let mut e = entry(i);
            e.subject = subject;
            let mut bytes = Vec::new();
            encode(EntryId::from_u64(id), &e, &mut bytes).unwrap();
            let (got, good) = parse(&bytes);
            prop_assert_eq!(good, bytes.len());
            prop_assert_eq!(got, vec![(EntryId::from_u64(id), e)]);
        }
    }
}
