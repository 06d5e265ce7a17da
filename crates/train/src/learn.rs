//! Correcting a model with one message it got wrong (`chaff learn`, and the
//! service's `/learnspam` and `/learnham`): [`learn_message`] updates a model in
//! memory; [`ModelFile`] is the model file opened for that, under a lock, so
//! learners in several processes never lose each other's updates.

use chaff::Engine;
use chaff::classify::{Model, ModelError, format, trained_keywords};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What learning one message did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learned {
    /// The message's score (keywords + classifier) before.
    pub before: f64,
    /// Its score after.
    pub after: f64,
    /// Learning steps taken (0: the model already had it right with margin).
    pub steps: u32,
}

/// Score points of margin `learn` aims for beyond the quarantine threshold.
pub const LEARN_MARGIN: f64 = 1.0;
/// At most this many learning steps per message: enough to move a confidently wrong
/// message to the right side, few enough that one message cannot take over.
pub const LEARN_MAX_STEPS: u32 = 25;

/// Learns one message (what `chaff learn` does): online steps until the message's
/// whole score is on the right side of the quarantine threshold by
/// [`LEARN_MARGIN`] (spam at or above, ham below), at most [`LEARN_MAX_STEPS`];
/// at least one ordinary (TONE) step otherwise. `engine` reads the mail (its own
/// model, if any, is not used); its config gives thresholds, scoring and the
/// classifier's weight.
pub fn learn_message(engine: &Engine, model: &mut Model, raw: &[u8], spam: bool) -> Learned {
    let cfg = engine.config();
    let keywords = trained_keywords(model, engine.keywords());
    // The features of the model's own tokeniser version, so an older model is
    // updated the way it was trained.
    let x = engine.extract_version(raw, &model.meta.features, model.meta.features_version);
    let feats = x.buckets;
    let (kw, _) = chaff::score::score(&x.found, &keywords, &cfg.scoring);
    let weight = cfg.classifier.weight;
    let q = cfg.thresholds_for(false).quarantine;
    let total = |m: &Model| {
        let c = m.meta.calibration;
        kw + weight * (c.offset + c.scale * m.logit_buckets(&feats))
    };
    let right = |score: f64| {
        if spam {
            score >= q + LEARN_MARGIN
        } else {
            score < q - LEARN_MARGIN
        }
    };
    let before = total(model);
    let mut steps = 0;
    if weight > 0.0 && model.meta.calibration.scale > 0.0 {
        while !right(total(model)) && steps < LEARN_MAX_STEPS {
            model.step(&feats, spam);
            steps += 1;
        }
    }
    if steps == 0 && model.update(&feats, spam) {
        steps = 1;
    }
    Learned {
        before,
        after: total(model),
        steps,
    }
}

/// Why a model file could not be opened or saved for learning.
#[derive(Debug)]
pub enum ModelFileError {
    /// The lock file could not be opened or locked.
    Lock(PathBuf, std::io::Error),
    /// Another learner held the lock for longer than the wait allowed.
    Busy(PathBuf, Duration),
    /// The model could not be read or written.
    Model(PathBuf, ModelError),
}

impl std::fmt::Display for ModelFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelFileError::Lock(p, e) => write!(f, "{}: {e}", p.display()),
            ModelFileError::Busy(p, d) => write!(
                f,
                "{}: another learner has held the model for over {} ms",
                p.display(),
                d.as_millis()
            ),
            ModelFileError::Model(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ModelFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModelFileError::Lock(_, e) => Some(e),
            ModelFileError::Model(_, e) => Some(e),
            ModelFileError::Busy(..) => None,
        }
    }
}

/// A model file opened for learning: read after taking an exclusive lock on the
/// side file `PATH.lock`, updated in memory by [`ModelFile::learn`], and written
/// back atomically by [`ModelFile::save`], which releases the lock (so does
/// dropping it unsaved). The model file itself is replaced by rename, so it cannot
/// carry the lock; scanners read it without locking and see the old or the new
/// model, never a mix.
pub struct ModelFile {
    path: PathBuf,
    model: Model,
    learned: [u64; 2],
    _lock: File,
}

impl std::fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFile")
            .field("path", &self.path)
            .field("learned", &self.learned)
            .finish_non_exhaustive()
    }
}

/// How often [`ModelFile::open_within`] tries the lock again.
const LOCK_RETRY: Duration = Duration::from_millis(10);

impl ModelFile {
    /// Locks and reads `path`, waiting for the lock as long as it takes (the CLI).
    pub fn open(path: &Path) -> Result<ModelFile, ModelFileError> {
        Self::open_locked(path, None)
    }

    /// Locks and reads `path`, waiting at most `wait` for another learner to
    /// finish (a service, which must answer within a time limit).
    pub fn open_within(path: &Path, wait: Duration) -> Result<ModelFile, ModelFileError> {
        Self::open_locked(path, Some(wait))
    }

    fn open_locked(path: &Path, wait: Option<Duration>) -> Result<ModelFile, ModelFileError> {
        let lock_path = {
            let mut p = path.to_path_buf().into_os_string();
            p.push(".lock");
            PathBuf::from(p)
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ModelFileError::Lock(lock_path.clone(), e))?;
        match wait {
            None => lock
                .lock()
                .map_err(|e| ModelFileError::Lock(lock_path.clone(), e))?,
            Some(wait) => {
                let deadline = Instant::now() + wait;
                loop {
                    match lock.try_lock() {
                        Ok(()) => break,
                        Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                            std::thread::sleep(LOCK_RETRY);
                        }
                        Err(std::fs::TryLockError::WouldBlock) => {
                            return Err(ModelFileError::Busy(path.to_path_buf(), wait));
                        }
                        Err(std::fs::TryLockError::Error(e)) => {
                            return Err(ModelFileError::Lock(lock_path, e));
                        }
                    }
                }
            }
        }
        let model = format::load(path).map_err(|e| ModelFileError::Model(path.to_path_buf(), e))?;
        Ok(ModelFile {
            path: path.to_path_buf(),
            model,
            learned: [0, 0],
            _lock: lock,
        })
    }

    /// Learns one message ([`learn_message`]) and counts it in the model's
    /// statistics.
    pub fn learn(&mut self, engine: &Engine, raw: &[u8], spam: bool) -> Learned {
        self.learned[usize::from(spam)] += 1;
        learn_message(engine, &mut self.model, raw, spam)
    }

    /// The model as learned so far.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Writes the model back (atomically: temporary file, sync, rename) with its
    /// statistics updated, and releases the lock.
    pub fn save(mut self) -> Result<(), ModelFileError> {
        let stats = &mut self.model.meta.stats;
        stats.learned_ham += self.learned[0];
        stats.learned_spam += self.learned[1];
        stats.updated = crate::train::unix_now();
        format::save(&self.model, &self.path)
            .map_err(|e| ModelFileError::Model(self.path.clone(), e))
    }
}
