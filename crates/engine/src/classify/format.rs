//! The model file: versioned, checksummed, written atomically.
//!
//! A model is data the scanner trusts, replaced while scanners run and updated by
//! `chaff learn` while mail flows, so the file format has to make three mistakes
//! impossible: reading a file that is not a model (or a model of another format or
//! tokeniser version), reading a half-written or damaged file, and leaving a
//! half-written file behind when a writer is killed. Hence:
//!
//! ```text
//! offset  size  field
//! 0       8     magic "CHAFFMDL"
//! 8       4     format version, u32 LE (1)
//! 12      4     flags, u32 LE (0)
//! 16      8     total file length, u64 LE
//! 24      4     metadata length M, u32 LE
//! 28      M     metadata, JSON (settings, calibration, keywords, thresholds, stats)
//! 28+M    4     weight count N (2^bits), u32 LE
//! 32+M    4*N   weights, f32 LE
//! end-4   4     CRC-32 of every byte before it, u32 LE
//! ```
//!
//! Saving writes a temporary file in the model's directory, syncs it, renames it over
//! the old file and syncs the directory: a reader sees the old model or the new one,
//! never a mix, whenever the writer dies. A writer killed outright leaves its
//! temporary file (`.NAME.tmp.PID`); the next save removes those of writers no
//! longer running once they are older than a minute.

use super::features::{FEATURES_VERSION, OLDEST_FEATURES_VERSION};
use super::model::{Model, ModelMeta};
pub use crate::error::ModelError;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The first bytes of every model file.
pub const MAGIC: &[u8; 8] = b"CHAFFMDL";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Largest weight table accepted (2^26 weights, 256 MB): refuses absurd headers
/// before allocating.
const MAX_WEIGHTS: u64 = 1 << 26;
/// Largest metadata accepted.
const MAX_META: u64 = 64 << 20;
const HEADER: usize = 28;

/// Encodes a model as the bytes of a model file.
pub fn to_bytes(model: &Model) -> Result<Vec<u8>, ModelError> {
    let meta = serde_json::to_vec(&model.meta).map_err(|e| ModelError::Invalid(e.to_string()))?;
    let n = model.weights.len();
    let total = HEADER + meta.len() + 4 + 4 * n + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(total as u64).to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(meta.len())
            .map_err(|_| too_big())?
            .to_le_bytes(),
    );
    out.extend_from_slice(&meta);
    out.extend_from_slice(&u32::try_from(n).map_err(|_| too_big())?.to_le_bytes());
    for w in &model.weights {
        out.extend_from_slice(&w.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

fn too_big() -> ModelError {
    ModelError::Invalid("model too large".into())
}

/// Decodes the bytes of a model file, checking magic, version, length, checksum and
/// tokeniser version.
pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
    let have = bytes.len() as u64;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // A prefix of the magic is a truncated model, anything else is foreign.
        if !bytes.is_empty() && MAGIC.starts_with(bytes) {
            return Err(ModelError::Truncated {
                have,
                want: HEADER as u64,
            });
        }
        return Err(ModelError::Foreign);
    }
    if bytes.len() < HEADER {
        return Err(ModelError::Truncated {
            have,
            want: HEADER as u64,
        });
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(ModelError::Version {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let want = u64_at(bytes, 16);
    if have < want {
        return Err(ModelError::Truncated { have, want });
    }
    if have > want {
        return Err(ModelError::TrailingBytes { have, want });
    }
    let body = &bytes[..bytes.len() - 4];
    if crc32fast::hash(body) != u32_at(bytes, bytes.len() - 4) {
        return Err(ModelError::Checksum);
    }
    let meta_len = u64::from(u32_at(bytes, 24));
    if meta_len > MAX_META || HEADER as u64 + meta_len + 8 > have {
        return Err(ModelError::Invalid("metadata length out of range".into()));
    }
    let meta_end = HEADER + meta_len as usize;
    let meta: ModelMeta = serde_json::from_slice(&bytes[HEADER..meta_end])
        .map_err(|e| ModelError::Invalid(format!("metadata: {e}")))?;
    if !(OLDEST_FEATURES_VERSION..=FEATURES_VERSION).contains(&meta.features_version) {
        return Err(ModelError::FeaturesVersion {
            found: meta.features_version,
            supported: FEATURES_VERSION,
        });
    }
    let n = u64::from(u32_at(bytes, meta_end));
    if n > MAX_WEIGHTS || n != 1u64 << meta.features.bits.min(63) {
        return Err(ModelError::Invalid(format!(
            "{n} weights for 2^{} buckets",
            meta.features.bits
        )));
    }
    let start = meta_end + 4;
    if (start as u64) + 4 * n + 4 != want {
        return Err(ModelError::Invalid("section lengths do not add up".into()));
    }
    let weights: Vec<f32> = bytes[start..start + 4 * n as usize]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if weights.iter().any(|w| !w.is_finite()) || !meta.bias.is_finite() {
        return Err(ModelError::Invalid("non-finite weight".into()));
    }
    Ok(Model { meta, weights })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The largest model file the format allows: header, the largest metadata, the
/// largest weight table and the checksum.
pub const MAX_FILE_LEN: u64 = HEADER as u64 + MAX_META + 4 + 4 * MAX_WEIGHTS + 4;

/// Reads a model file: its header first, then no more than the length the header
/// announces (and one byte, to see trailing bytes), refusing a length over
/// [`MAX_FILE_LEN`] unread. So a huge file, or a device that never ends, costs at
/// most the format's own maximum.
pub fn load(path: &Path) -> Result<Model, ModelError> {
    let io = |e| ModelError::Io {
        action: "read",
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(HEADER);
    (&file)
        .take(HEADER as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return from_bytes(&bytes);
    }
    let want = u64_at(&bytes, 16);
    if u32_at(&bytes, 8) == FORMAT_VERSION && !(HEADER as u64..=MAX_FILE_LEN).contains(&want) {
        return Err(ModelError::Invalid(format!(
            "announced length {want} out of range (at most {MAX_FILE_LEN})"
        )));
    }
    let rest = want.saturating_sub(HEADER as u64).min(MAX_FILE_LEN) + 1;
    bytes.reserve(usize::try_from(rest).unwrap_or(0));
    (&file).take(rest).read_to_end(&mut bytes).map_err(io)?;
    from_bytes(&bytes)
}

/// Writes a model file atomically: a temporary file in the same directory, synced,
/// then renamed over `path`, then the directory synced.
pub fn save(model: &Model, path: &Path) -> Result<(), ModelError> {
    let bytes = to_bytes(model)?;
    write_atomic(path, &bytes).map_err(|e| ModelError::Io {
        action: "write",
        source: e,
    })
}

/// Age beyond which a temporary file of a writer that is no longer running is
/// removed by the next save (a writer killed with SIGKILL cannot remove its own).
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes `.NAME.tmp.PID` files in `dir` whose writer (PID) is not running and
/// that are older than [`STALE_TEMP_AGE`]. Best effort: what cannot be read or
/// removed is left.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // A process is running while /proc has its directory (Linux).
        let running =
            pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if !running && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Replaces `path` with `bytes` so that readers see either the old or the new
/// content, whenever the process dies.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    remove_stale_temps(&dir, &name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saving_removes_temp_files_of_dead_writers_older_than_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let make = |name: &str, mtime: Option<std::time::SystemTime>| {
            let p = dir.path().join(name);
            let f = std::fs::File::create(&p).unwrap();
            if let Some(t) = mtime {
                f.set_modified(t).unwrap();
            }
            p
        };
        // Killed writers: a pid above the kernel's largest, one that is running
        // (pid 1), one still fresh; and another model's file.
        let dead = make(".m.bin.tmp.999999999", Some(old));
        let running = make(".m.bin.tmp.1", Some(old));
        let fresh = make(".m.bin.tmp.999999998", None);
        let other = make(".n.bin.tmp.999999999", Some(old));
        let not_pid = make(".m.bin.tmp.x", Some(old));
        write_atomic(&path, b"model").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"model");
        assert!(!dead.exists(), "a dead writer's old temp file stays");
        for kept in [running, fresh, other, not_pid] {
            assert!(kept.exists(), "{} removed", kept.display());
        }
    }
    use crate::classify::features::FeatureConfig;
    use crate::classify::model::LearnParams;

    fn model() -> Model {
        let mut m = Model::new(
            FeatureConfig {
                bits: 16,
                ..FeatureConfig::default()
            },
            LearnParams::default(),
        );
        m.weights[7] = 1.5;
        m.weights[65535] = -0.25;
        m.meta.bias = 0.125;
        m
    }

    #[test]
    fn round_trip() {
        let m = model();
        let b = to_bytes(&m).unwrap();
        assert_eq!(from_bytes(&b).unwrap(), m);
    }

    /// Issue 13: a model of an older tokeniser version this build still reads
    /// loads (and says it should be retrained); one of a version it does not know
    /// is refused with a message that says to retrain.
    #[test]
    fn older_tokeniser_versions_load_unknown_ones_are_refused() {
        let mut m = model();
        m.meta.features_version = OLDEST_FEATURES_VERSION;
        let loaded = from_bytes(&to_bytes(&m).unwrap()).unwrap();
        assert_eq!(loaded.meta.features_version, OLDEST_FEATURES_VERSION);
        assert!(loaded.outdated().is_some_and(|n| n.contains("retrain")));
        assert_eq!(model().outdated(), None);
        for version in [0, FEATURES_VERSION + 1] {
            m.meta.features_version = version;
            let err = from_bytes(&to_bytes(&m).unwrap()).unwrap_err();
            assert!(matches!(err, ModelError::FeaturesVersion { .. }), "{err:?}");
            assert!(err.to_string().contains("retrain"), "{err}");
        }
    }

    /// Issue 14 (6): a model file is read only as far as its header announces, and
    /// a header announcing more than the format allows is refused unread.
    #[test]
    fn load_reads_at_most_the_announced_length() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        save(&model(), &good).unwrap();
        assert_eq!(load(&good).unwrap(), model());
        // A 4 GiB sparse file that starts like a model: refused without reading it.
        let bytes = to_bytes(&model()).unwrap();
        let huge = dir.path().join("huge");
        let f = std::fs::File::create(&huge).unwrap();
        (&f).write_all(&bytes).unwrap();
        f.set_len(4 << 30).unwrap();
        let e = load(&huge).unwrap_err();
        assert!(matches!(e, ModelError::TrailingBytes { .. }), "{e}");
        // A header announcing an absurd length: refused from the header alone.
        let mut absurd = bytes[..HEADER].to_vec();
        absurd[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let path = dir.path().join("absurd");
        let f = std::fs::File::create(&path).unwrap();
        (&f).write_all(&absurd).unwrap();
        f.set_len(1 << 40)
            .unwrap_or_else(|_| f.set_len(4 << 30).unwrap());
        let e = load(&path).unwrap_err();
        assert!(matches!(e, ModelError::Invalid(_)), "{e}");
        // A device that never ends.
        let e = load(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(e, ModelError::Foreign), "{e}");
    }

    #[test]
    fn refuses_truncated_foreign_damaged() {
        let b = to_bytes(&model()).unwrap();
        for cut in [0, 3, 8, 27, 100, b.len() - 1] {
            let e = from_bytes(&b[..cut]).unwrap_err();
            assert!(
                matches!(e, ModelError::Truncated { .. } | ModelError::Foreign),
                "cut {cut}: {e}"
            );
        }
        assert!(matches!(
            from_bytes(b"hello world, not a model").unwrap_err(),
            ModelError::Foreign
        ));
        let mut d = b.clone();
        d[HEADER + 3] ^= 1;
        assert!(matches!(from_bytes(&d).unwrap_err(), ModelError::Checksum));
        let mut v = b.clone();
        v[8] = 9;
        assert!(matches!(
            from_bytes(&v).unwrap_err(),
            ModelError::Version { found: 9, .. }
        ));
        let mut t = b;
        t.push(0);
        assert!(matches!(
            from_bytes(&t).unwrap_err(),
            ModelError::TrailingBytes { .. }
        ));
    }
}
