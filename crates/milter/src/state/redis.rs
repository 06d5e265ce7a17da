//! The Redis state backend (`[state] backend = "redis://…"`): account locks,
//! their reject history and the sending-rate counters, shared by every host.
//!
//! Keys (every one has a TTL or is bounded by the number of accounts; nothing
//! scans the keyspace):
//!
//! | key | what | bound |
//! |---|---|---|
//! | `chaff:{a:USER}:lock` | JSON lock record | one per locked account |
//! | `chaff:{a:USER}:changed` | ms of the last lock or unlock | TTL 30 days |
//! | `chaff:{a:USER}:rej` | recent rejects (list of JSON [`LockEvidence`]: time, queue id, score, quarantine entry id; a bare number is a time stored by an older version) | `lock_after` entries, TTL the window |
//! | `chaff:{a:USER}:over` | recent rate refusals (list) | `lock_after` entries, TTL `lock_window` |
//! | `chaff:{K:SUBJECT}:r:W:M:I` | rate counter of window `W` ms, measure `M`, window number `I` | TTL 2 W |
//! | `chaff:locks` | set of locked accounts (for the list) | one member per locked account |
//! | `chaff:limited` | accounts refused by a rate limit (sorted by time) | 1,000 members, TTL 1 day |
//!
//! The `{…}` hash tag puts every key of one subject in one Redis Cluster slot, so
//! one script can read and change them atomically. On the path that answers the
//! MTA a message costs one script call: the account's lock and every limit of the
//! message's subjects are checked and counted in it (one call per subject in
//! cluster mode, where subjects live in different slots; sent concurrently).
//! Rejects are counted after the answer is decided, off the unauthenticated path.
//!
//! Failure: every call is bounded by `[state] timeout_ms`. A failed or late call
//! marks Redis away (logged once, counted); from then on no call is made on the
//! mail path: locks known in memory stay enforced and limits are counted in
//! memory (`fail = "open"`), or mail that needs state is deferred (`fail =
//! "tempfail"`). A task pings Redis with backoff (100 ms doubling to 30 s) and,
//! when it answers, writes back the journal of lock changes made meanwhile
//! ([`super::journal`]) and reloads the locks into memory.

use super::journal::{Change, Journal};
use super::ratelimit::{Counter, Exceeded, Measure, MemLimiter, RateLimitConfig, Subject};
use crate::accounts::{self, Evidence, LockEvidence, LockRecord};
use crate::config::{AccountsConfig, StateFail};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{error, info, warn};

/// First wait before pinging Redis again after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two pings while Redis is away.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often, while Redis is up, the locks are read into memory (what `fail =
/// "open"` enforces when Redis goes away) and the journal is checked.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// The set of locked accounts.
const LOCK_INDEX: &str = "chaff:locks";
/// Accounts refused by a rate limit recently (sorted set, score the time in ms),
/// for `chaff accounts list`: the newest [`MAX_LIMITED`], kept a day.
const LIMITED: &str = "chaff:limited";
/// Most accounts the `chaff:limited` sorted set keeps.
pub const MAX_LIMITED: usize = 1000;
/// Most accounts whose rejects are counted in memory while Redis is away.
const MAX_MEMORY_USERS: usize = 100_000;

/// Checks and counts a message: KEYS are the subjects' key bases; ARGV: message
/// cost, recipient cost, `lock_after`, `lock_window` ms, the lock record a rate
/// lock writes, then per subject: 1 if it is the account (its lock is checked,
/// and its refusals counted), the number of windows, and per window its length
/// in ms and its message and recipient limits (0: none). Returns `{0}` admitted
/// (counted under every subject), `{1, lock}` locked, `{2, subject, window,
/// measure, limit}` over a limit (nothing counted), `{3, …, lock}` over a limit
/// and now locked. Time is Redis's own (`TIME`), the same for every host.
const ADMIT: &str = r"
local cost = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local over_after = tonumber(ARGV[3])
local over_window = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pos = 6
local todo = {}
for s = 1, #KEYS do
  local base = KEYS[s]
  local account = tonumber(ARGV[pos])
  local n = tonumber(ARGV[pos + 1])
  pos = pos + 2
  if account == 1 then
    local lock = redis.call('GET', base .. ':lock')
    if lock then return {1, lock} end
  end
  for i = 1, n do
    local w = tonumber(ARGV[pos])
    local lim = {tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])}
    pos = pos + 3
    local idx = math.floor(now / w)
    local elapsed = now - idx * w
    for m = 1, 2 do
      if lim[m] > 0 and cost[m] > 0 then
        local k = base .. ':r:' .. w .. ':' .. m .. ':'
        local cur = tonumber(redis.call('GET', k .. idx) or '0')
        local prev = tonumber(redis.call('GET', k .. (idx - 1)) or '0')
        if prev * (w - elapsed) + (cur + cost[m]) * w > lim[m] * w then
          if account == 1 and over_after > 0 then
            local ok = base .. ':over'
            redis.call('RPUSH', ok, now)
            redis.call('LTRIM', ok, -over_after, -1)
            redis.call('PEXPIRE', ok, over_window)
            local recent = 0
            for _, x in ipairs(redis.call('LRANGE', ok, 0, -1)) do
              if tonumber(x) > now - over_window then recent = recent + 1 end
            end
            if recent >= over_after then
              redis.call('SET', base .. ':lock', ARGV[5])
              redis.call('SET', base .. ':changed', now, 'PX', 2592000000)
              redis.call('DEL', ok, base .. ':rej')
              return {3, s, w, m, lim[m], ARGV[5]}
            end
          end
          return {2, s, w, m, lim[m]}
        end
        todo[#todo + 1] = k .. idx
        todo[#todo + 1] = cost[m]
        todo[#todo + 1] = w * 2
      end
    end
  end
end
for j = 1, #todo, 3 do
  redis.call('INCRBY', todo[j], todo[j + 1])
  redis.call('PEXPIRE', todo[j], todo[j + 2])
end
return {0}
";

/// Counts a reject of an account that is not locked: KEYS[1] the account's base;
/// ARGV: this reject's evidence (JSON [`LockEvidence`]), window (s), lock_after.
/// Returns the recent rejects (oldest first, this one last), or `{'-1'}` when
/// the account is locked already.
const REJECT: &str = r"
if redis.call('EXISTS', KEYS[1] .. ':lock') == 1 then return {'-1'} end
local k = KEYS[1] .. ':rej'
redis.call('RPUSH', k, ARGV[1])
redis.call('LTRIM', k, -tonumber(ARGV[3]), -1)
redis.call('EXPIRE', k, ARGV[2])
return redis.call('LRANGE', k, 0, -1)
";

/// One entry of an account's reject list: JSON evidence, or a bare time as an
/// older version stored it (kept readable while such lists live, at most the
/// window).
fn parse_reject(text: &str) -> Option<LockEvidence> {
    match text.trim().parse::<u64>() {
        Ok(at) => Some(LockEvidence::at(at)),
        Err(_) => serde_json::from_str(text).ok(),
    }
}

/// Locks (ARGV[1] the record) or unlocks (ARGV[1] empty) an account at ARGV[2]
/// ms, unless a later change is recorded (then -1); ARGV[3] = 1 keeps an
/// existing lock. Returns 1 when the lock state changed, 0 when it was so already.
const CHANGE: &str = r"
local base = KEYS[1]
local changed = tonumber(redis.call('GET', base .. ':changed') or '0')
if tonumber(ARGV[2]) < changed then return -1 end
local had = redis.call('EXISTS', base .. ':lock')
if ARGV[1] == '' then
  redis.call('DEL', base .. ':lock', base .. ':rej', base .. ':over')
  redis.call('SET', base .. ':changed', ARGV[2], 'PX', 2592000000)
  return had
end
if had == 1 and ARGV[3] == '1' then return 0 end
redis.call('SET', base .. ':lock', ARGV[1])
redis.call('SET', base .. ':changed', ARGV[2], 'PX', 2592000000)
redis.call('DEL', base .. ':rej', base .. ':over')
return 1 - had
";

/// One subject of a message as the admission script sees it: its key base,
/// whether it is the account (its lock is checked), its windows, and itself.
type Group<'a> = (String, bool, &'a [super::ratelimit::Window], Subject);

/// A connection to one Redis or to a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where Redis is: one server, or the seed nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://…` or `rediss://…`.
    Single(String),
    /// `redis+cluster://H1:P1,H2:P2,…` (or `rediss+cluster://`): the nodes.
    Cluster(Vec<String>),
}

impl Target {
    /// Reads a `[state] backend` URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = url.trim();
        for (scheme, plain) in [
            ("redis+cluster://", "redis://"),
            ("rediss+cluster://", "rediss://"),
        ] {
            if let Some(rest) = url.strip_prefix(scheme) {
                // Credentials, if any, go with every node.
                let (auth, hosts) = match rest.rsplit_once('@') {
                    Some((a, h)) => (format!("{a}@"), h),
                    None => (String::new(), rest),
                };
                let nodes: Vec<String> = hosts
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(|h| format!("{plain}{auth}{}", h.trim_end_matches('/')))
                    .collect();
                if nodes.is_empty() {
                    return Err("a cluster URL needs at least one HOST:PORT".into());
                }
                for n in &nodes {
                    redis::parse_redis_url(n).ok_or_else(|| format!("`{n}` is not a Redis URL"))?;
                }
                return Ok(Target::Cluster(nodes));
            }
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            redis::parse_redis_url(url).ok_or_else(|| format!("`{url}` is not a Redis URL"))?;
            return Ok(Target::Single(url.to_string()));
        }
        Err("must be `embedded` or a Redis URL (redis://, rediss://, redis+cluster://)".into())
    }

    /// The URL without its password, for logs.
    pub fn display(&self) -> String {
        let hide = |u: &str| match (u.find("://"), u.rfind('@')) {
            (Some(s), Some(a)) if a > s => format!("{}***{}", &u[..s + 3], &u[a..]),
            _ => u.to_string(),
        };
        match self {
            Target::Single(u) => hide(u),
            Target::Cluster(n) => n.iter().map(|u| hide(u)).collect::<Vec<_>>().join(","),
        }
    }
}

/// What the state says about a message before it is scanned.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Go on and scan it (counted under its limits).
    Go,
    /// The account is locked.
    Locked(LockRecord),
    /// Over a limit; `Some` lock when this refusal locked the account.
    Limited(Exceeded, Option<LockRecord>),
    /// The state is unavailable and `fail = "tempfail"`: defer it.
    Tempfail,
}

/// The state was unusable for an operation.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Redis failed or did not answer in time.
    #[error("redis {target}: {message}")]
    Redis {
        /// Where (without password).
        target: String,
        /// What happened.
        message: String,
    },
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] super::journal::JournalError),
}

/// Counts of the backend's health, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// True while Redis answers.
    pub up: bool,
    /// Times Redis went away.
    pub failures: u64,
    /// Times it came back.
    pub recoveries: u64,
    /// Lock changes journalled while it was away.
    pub journalled: u64,
    /// Journalled changes written back.
    pub replayed: u64,
}

/// What this host knows without Redis.
#[derive(Default)]
struct Memory {
    locks: HashMap<String, LockRecord>,
    rejects: HashMap<String, Vec<LockEvidence>>,
}

/// The Redis backend.
pub struct RedisState {
    target: Target,
    /// Runs the connection's tasks and the health task; callers on other
    /// runtimes await its futures through channels. `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    conn: Arc<Mutex<Option<Conn>>>,
    up: Arc<AtomicBool>,
    fail: StateFail,
    timeout: Duration,
    realm: Option<String>,
    memory: Arc<Mutex<Memory>>,
    limiter: MemLimiter,
    journal: Arc<Journal>,
    admit: Script,
    reject: Script,
    change: Script,
    failures: AtomicU64,
    recoveries: Arc<AtomicU64>,
    journalled: AtomicU64,
    replayed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("target", &self.target.display())
            .field("up", &self.is_up())
            .finish()
    }
}

fn lock_base(user: &str) -> String {
    format!("chaff:{{a:{user}}}")
}

fn subject_base(s: &Subject) -> String {
    match s {
        Subject::Account(u) => lock_base(u),
        Subject::Domain(d) => format!("chaff:{{d:{d}}}"),
        Subject::Client(c) => format!("chaff:{{c:{c}}}"),
    }
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Connects, bounded by `timeout`, and checks Redis keeps what chaff stores.
async fn connect(target: &Target, timeout: Duration) -> Result<Conn, String> {
    let t = timeout.max(Duration::from_millis(50));
    let conn = match target {
        Target::Single(url) => {
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(t)
                .set_response_timeout(t)
                .set_number_of_retries(1)
                .set_max_delay(MAX_BACKOFF.as_millis() as u64);
            let m = tokio::time::timeout(t * 2, ConnectionManager::new_with_config(client, cfg))
                .await
                .map_err(|_| "connection timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Conn::Single(m)
        }
        Target::Cluster(nodes) => {
            let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(t)
                .response_timeout(t)
                .retries(1)
                .build()
                .map_err(|e| e.to_string())?;
            let c = tokio::time::timeout(t * 4, client.get_async_connection())
                .await
                .map_err(|_| "connection timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Conn::Cluster(c)
        }
    };
    Ok(conn)
}

/// Redis's `maxmemory-policy`, and whether it would evict kept data (locks have
/// no TTL: an `allkeys-*` policy may evict them). `Ok(None)` when Redis does not
/// say (CONFIG is refused, as managed services do).
async fn eviction_policy(conn: &mut Conn) -> Result<Option<String>, String> {
    let got: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    match got {
        Ok(v) => Ok(v.get(1).cloned()),
        Err(e) if e.kind() == redis::ErrorKind::IoError => Err(e.to_string()),
        Err(_) => Ok(None),
    }
}

/// True for a policy that may evict keys without a TTL.
pub fn evicts_kept_data(policy: &str) -> bool {
    policy.starts_with("allkeys-")
}

impl RedisState {
    /// Connects to `url` (waiting at most a few `timeout`s) and starts the health
    /// task. Refuses a Redis whose `maxmemory-policy` may evict locks. When Redis
    /// does not answer, the service starts anyway with Redis away (logged), and
    /// connects when it can.
    pub fn start(
        url: &str,
        fail: StateFail,
        timeout: Duration,
        journal_path: &std::path::Path,
        realm: Option<&str>,
    ) -> Result<Arc<RedisState>, String> {
        let target = Target::parse(url)?;
        let journal = Arc::new(Journal::open(journal_path).map_err(|e| e.to_string())?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("chaff-redis")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the Redis runtime: {e}"))?;
        let first = rt.block_on(async {
            match connect(&target, timeout).await {
                Ok(mut c) => match eviction_policy(&mut c).await {
                    Ok(Some(p)) if evicts_kept_data(&p) => Err(format!(
                        "Redis maxmemory-policy is `{p}`: it may evict account locks; set \
                         `noeviction` or a `volatile-*` policy"
                    )),
                    Ok(Some(_)) => Ok(Some(c)),
                    Ok(None) => {
                        warn!(
                            "cannot read Redis maxmemory-policy (CONFIG refused): make sure it \
                             is `noeviction` or `volatile-*`, or locks may be evicted"
                        );
                        Ok(Some(c))
                    }
                    Err(e) => {
                        warn!(error = %e, "Redis did not answer at start");
                        Ok(None)
                    }
                },
                Err(e) => {
                    warn!(error = %e, "Redis unreachable at start");
                    Ok(None)
                }
            }
        })?;
        let up = first.is_some();
        let state = Arc::new(RedisState {
            target,
            rt: Some(rt),
            conn: Arc::new(Mutex::new(first)),
            up: Arc::new(AtomicBool::new(up)),
            fail,
            timeout,
            realm: realm.map(str::to_string),
            memory: Arc::default(),
            limiter: MemLimiter::default(),
            journal,
            admit: Script::new(ADMIT),
            reject: Script::new(REJECT),
            change: Script::new(CHANGE),
            failures: AtomicU64::new(u64::from(!up)),
            recoveries: Arc::default(),
            journalled: AtomicU64::new(0),
            replayed: Arc::default(),
            stop: Arc::default(),
        });
        if up {
            info!(redis = %state.target.display(), "state backend: Redis");
            let _ = state.replay_journal_blocking();
            let _ = state.refresh_memory_blocking();
        } else {
            error!(
                redis = %state.target.display(),
                fail = fail.as_str(),
                "state backend: Redis is away; locks and limits {}",
                fail.effect()
            );
        }
        let weak = Arc::downgrade(&state);
        state.spawn(health_task(weak));
        Ok(state)
    }

    /// Opens the backend for a command (`chaff accounts`): like [`Self::start`]
    /// but an unreachable Redis is an error unless the command can journal.
    pub fn open_for_command(
        url: &str,
        timeout: Duration,
        journal_path: &std::path::Path,
        realm: Option<&str>,
    ) -> Result<Arc<RedisState>, String> {
        RedisState::start(url, StateFail::Open, timeout, journal_path, realm)
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.rt {
            rt.spawn(fut);
        }
    }

    /// True while Redis answers.
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// The health counts.
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            up: self.is_up(),
            failures: self.failures.load(Relaxed),
            recoveries: self.recoveries.load(Relaxed),
            journalled: self.journalled.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
        }
    }

    /// Where, without password.
    pub fn target(&self) -> String {
        self.target.display()
    }

    /// The configured failure policy.
    pub fn fail_policy(&self) -> StateFail {
        self.fail
    }

    fn key(&self, user: &str) -> String {
        accounts::normalise_user(user, self.realm.as_deref())
    }

    fn redis_err(&self, message: impl Into<String>) -> StateError {
        StateError::Redis {
            target: self.target.display(),
            message: message.into(),
        }
    }

    /// Marks Redis away after a failed call (logged once per outage).
    fn went_away(&self, why: &str) {
        if self.up.swap(false, Relaxed) {
            self.failures.fetch_add(1, Relaxed);
            error!(
                redis = %self.target.display(),
                error = why,
                fail = self.fail.as_str(),
                "state backend: Redis went away; locks and limits {}",
                self.fail.effect()
            );
        }
    }

    /// Runs `f` on a connection within the timeout; a failure marks Redis away.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, StateError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let Some(conn) = guard(&self.conn).clone() else {
            return Err(self.redis_err("not connected"));
        };
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let msg = e.to_string();
                // An error answer (a script's) is ours, not Redis being away.
                if !matches!(
                    e.kind(),
                    redis::ErrorKind::ResponseError | redis::ErrorKind::TypeError
                ) {
                    self.went_away(&msg);
                }
                Err(self.redis_err(msg))
            }
            Err(_) => {
                let msg = format!("no answer within {} ms", self.timeout.as_millis());
                self.went_away(&msg);
                Err(self.redis_err(msg))
            }
        }
    }

    /// Runs a future on the backend's runtime and waits for it (for commands,
    /// the admin API and tests: callers that are not on a runtime).
    pub fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv_timeout(self.timeout * 4 + Duration::from_secs(2))
            .ok()
    }

    /// Checks a message before it is scanned: the account's lock (`user`,
    /// normalised here) and the limits of `subjects`, counted when admitted. One
    /// Redis call (one per subject in cluster mode), none while Redis is away.
    pub async fn admit(
        &self,
        user: Option<&str>,
        subjects: &[Subject],
        rcpts: u64,
        cfg: &RateLimitConfig,
        now_ms: u64,
    ) -> Admission {
        let user = user.map(|u| self.key(u));
        if user.is_none() && subjects.is_empty() {
            return Admission::Go;
        }
        if self.is_up() {
            match self
                .admit_redis(user.as_deref(), subjects, rcpts, cfg, now_ms)
                .await
            {
                Ok(a) => {
                    if let (Some(u), Admission::Locked(rec) | Admission::Limited(_, Some(rec))) =
                        (&user, &a)
                    {
                        guard(&self.memory).locks.insert(u.clone(), rec.clone());
                    }
                    return a;
                }
                Err(e) => warn!(error = %e, "state check failed; answered from memory"),
            }
        }
        self.admit_memory(user.as_deref(), subjects, rcpts, cfg, now_ms)
    }

    async fn admit_redis(
        &self,
        user: Option<&str>,
        subjects: &[Subject],
        rcpts: u64,
        cfg: &RateLimitConfig,
        now_ms: u64,
    ) -> Result<Admission, StateError> {
        // The account goes first (its lock is checked), with its limits if it
        // has any.
        let mut groups: Vec<Group<'_>> = Vec::new();
        if let Some(u) = user {
            let s = Subject::Account(u.to_string());
            let ws: &[_] = if subjects.contains(&s) {
                &cfg.account
            } else {
                &[]
            };
            groups.push((lock_base(u), true, ws, s));
        }
        for s in subjects {
            if !matches!(s, Subject::Account(_)) {
                groups.push((subject_base(s), false, s.windows(cfg), s.clone()));
            }
        }
        let lock_json = serde_json::to_string(&cfg.lock_record(now_ms))
            .map_err(|e| self.redis_err(e.to_string()))?;
        let invocation = |gs: &[Group<'_>]| {
            let mut inv = self.admit.prepare_invoke();
            inv.arg(1u64)
                .arg(rcpts)
                .arg(cfg.lock_after)
                .arg(cfg.lock_window.as_millis() as u64)
                .arg(&lock_json);
            for (base, account, ws, _) in gs {
                inv.key(base);
                inv.arg(u8::from(*account)).arg(ws.len());
                for w in ws.iter() {
                    inv.arg(w.window_ms()).arg(w.messages).arg(w.recipients);
                }
            }
            inv
        };
        let cluster = matches!(self.target, Target::Cluster(_));
        let batches: Vec<&[Group<'_>]> = if cluster {
            groups.chunks(1).collect()
        } else {
            vec![&groups[..]]
        };
        let mut answers = Vec::with_capacity(batches.len());
        {
            let futs = batches.iter().map(|b| {
                let inv = invocation(b);
                async move {
                    self.call(|mut c| async move { inv.invoke_async::<Vec<Value>>(&mut c).await })
                        .await
                }
            });
            for r in futures_util::future::join_all(futs).await {
                answers.push(r?);
            }
        }
        // In cluster mode the first refusal (in subject order) is the answer.
        for (batch, answer) in batches.iter().zip(answers) {
            let int = |v: Option<&Value>| -> u64 {
                match v {
                    Some(Value::Int(i)) => *i as u64,
                    _ => 0,
                }
            };
            let text = |v: Option<&Value>| -> Option<String> {
                match v {
                    Some(Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
                    Some(Value::SimpleString(s)) => Some(s.clone()),
                    _ => None,
                }
            };
            match int(answer.first()) {
                0 => continue,
                1 => {
                    let rec = text(answer.get(1))
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .ok_or_else(|| self.redis_err("unreadable lock record"))?;
                    return Ok(Admission::Locked(rec));
                }
                code @ (2 | 3) => {
                    let idx = int(answer.get(1)) as usize;
                    let subject = batch
                        .get(idx.saturating_sub(1))
                        .map(|g| g.3.clone())
                        .ok_or_else(|| self.redis_err("bad script answer"))?;
                    let ex = Exceeded {
                        subject,
                        window: Duration::from_millis(int(answer.get(2))),
                        measure: if int(answer.get(3)) == 2 {
                            Measure::Recipients
                        } else {
                            Measure::Messages
                        },
                        limit: int(answer.get(4)),
                    };
                    let lock = if code == 3 {
                        let rec: Option<LockRecord> =
                            text(answer.get(5)).and_then(|t| serde_json::from_str(&t).ok());
                        if let Some(u) = user {
                            let u = u.to_string();
                            let _ = self
                                .call(|mut c| async move {
                                    redis::cmd("SADD")
                                        .arg(LOCK_INDEX)
                                        .arg(u)
                                        .query_async::<()>(&mut c)
                                        .await
                                })
                                .await;
                        }
                        rec
                    } else {
                        None
                    };
                    if let Subject::Account(u) = &ex.subject {
                        self.note_limited(u.clone(), now_ms);
                    }
                    return Ok(Admission::Limited(ex, lock));
                }
                other => return Err(self.redis_err(format!("bad script answer {other}"))),
            }
        }
        Ok(Admission::Go)
    }

    /// Adds `user` to the recently limited accounts, off the answer's path (on
    /// this backend's runtime; a failure only loses the note).
    fn note_limited(&self, user: String, now_ms: u64) {
        let Some(mut conn) = guard(&self.conn).clone() else {
            return;
        };
        let timeout = self.timeout;
        self.spawn(async move {
            let mut p = redis::pipe();
            p.cmd("ZADD").arg(LIMITED).arg(now_ms).arg(user).ignore();
            p.cmd("ZREMRANGEBYRANK")
                .arg(LIMITED)
                .arg(0)
                .arg(-(MAX_LIMITED as i64) - 1)
                .ignore();
            p.cmd("PEXPIRE").arg(LIMITED).arg(86_400_000u64).ignore();
            let _ = tokio::time::timeout(timeout, p.query_async::<()>(&mut conn)).await;
        });
    }

    /// The accounts refused by a rate limit within the last day, newest first
    /// (at most [`MAX_LIMITED`]).
    pub async fn limited(&self) -> Result<Vec<String>, StateError> {
        self.call(|mut c| async move {
            redis::cmd("ZREVRANGE")
                .arg(LIMITED)
                .arg(0)
                .arg(MAX_LIMITED - 1)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// [`Self::admit`] while Redis is away.
    fn admit_memory(
        &self,
        user: Option<&str>,
        subjects: &[Subject],
        rcpts: u64,
        cfg: &RateLimitConfig,
        now_ms: u64,
    ) -> Admission {
        if let Some(u) = user
            && let Some(rec) = guard(&self.memory).locks.get(u)
        {
            return Admission::Locked(rec.clone());
        }
        if self.fail == StateFail::Tempfail {
            return Admission::Tempfail;
        }
        match self.limiter.check(cfg, subjects, rcpts, now_ms) {
            super::ratelimit::Check::Over(ex) => {
                let lock = match (&ex.subject, cfg.lock_after) {
                    (Subject::Account(u), n) if n > 0 => self.count_over_memory(u, cfg, now_ms),
                    _ => None,
                };
                Admission::Limited(ex, lock)
            }
            _ => Admission::Go,
        }
    }

    /// Counts a rate refusal in memory; locks (journalled) at `lock_after`.
    fn count_over_memory(
        &self,
        user: &str,
        cfg: &RateLimitConfig,
        now_ms: u64,
    ) -> Option<LockRecord> {
        if !self.limiter.count_over(cfg, user, now_ms) {
            return None;
        }
        let rec = cfg.lock_record(now_ms);
        guard(&self.memory)
            .locks
            .insert(user.to_string(), rec.clone());
        self.journal_change(user, now_ms, Some(rec.clone()));
        Some(rec)
    }

    fn journal_change(&self, user: &str, at_ms: u64, lock: Option<LockRecord>) {
        let change = Change {
            user: user.to_string(),
            at_ms,
            lock,
        };
        match self.journal.push(&change) {
            Ok(dropped) => {
                self.journalled.fetch_add(1, Relaxed);
                if dropped > 0 {
                    error!(dropped, "state journal full: oldest lock changes dropped");
                }
            }
            Err(e) => error!(error = %e, user, "lock change not journalled"),
        }
    }

    /// Counts a rejected message of `user` (after its answer is decided): locks
    /// the account at `cfg.lock_after` rejects within the window. While Redis is
    /// away the count is kept in memory and a lock it makes is journalled.
    pub async fn record_reject(
        &self,
        user: &str,
        now: u64,
        cfg: &AccountsConfig,
        evidence: &Evidence,
    ) -> Result<Option<LockRecord>, StateError> {
        if cfg.lock_after == 0 {
            return Ok(None);
        }
        let user = self.key(user);
        if self.is_up() {
            let stored = serde_json::to_string(&evidence.stored(now))
                .map_err(|e| self.redis_err(e.to_string()))?;
            let inv = {
                let mut inv = self.reject.prepare_invoke();
                inv.key(lock_base(&user))
                    .arg(stored)
                    .arg(cfg.window_secs)
                    .arg(cfg.lock_after);
                inv
            };
            match self
                .call(|mut c| async move { inv.invoke_async::<Vec<String>>(&mut c).await })
                .await
            {
                Ok(list) if list.first().map(String::as_str) == Some("-1") => return Ok(None),
                Ok(list) => {
                    let mut times: Vec<LockEvidence> =
                        list.iter().filter_map(|t| parse_reject(t)).collect();
                    // Counted already: apply the rule without adding this one again.
                    let last = times.pop().map_or(now, |e| e.at);
                    let Some(rec) = accounts::count_reject(&mut times, last, cfg, evidence) else {
                        return Ok(None);
                    };
                    let made = self.apply(&user, now * 1000, Some(&rec), true).await?;
                    guard(&self.memory).locks.insert(user.clone(), rec.clone());
                    return Ok((made == 1).then_some(rec));
                }
                Err(e) => warn!(error = %e, "reject counted in memory"),
            }
        }
        let mut m = guard(&self.memory);
        if m.locks.contains_key(&user) {
            return Ok(None);
        }
        if m.rejects.len() >= MAX_MEMORY_USERS {
            m.rejects.clear();
        }
        let times = m.rejects.entry(user.clone()).or_default();
        let made = accounts::count_reject(times, now, cfg, evidence);
        if let Some(rec) = &made {
            m.rejects.remove(&user);
            m.locks.insert(user.clone(), rec.clone());
            drop(m);
            self.journal_change(&user, now * 1000, Some(rec.clone()));
        }
        Ok(made)
    }

    /// Applies one lock change in Redis: -1 when a later change is recorded, 0 when
    /// nothing changed, 1 when it did. Keeps the set of locked accounts.
    async fn apply(
        &self,
        user: &str,
        at_ms: u64,
        lock: Option<&LockRecord>,
        keep_existing: bool,
    ) -> Result<i64, StateError> {
        let json = match lock {
            Some(r) => serde_json::to_string(r).map_err(|e| self.redis_err(e.to_string()))?,
            None => String::new(),
        };
        let inv = {
            let mut inv = self.change.prepare_invoke();
            inv.key(lock_base(user))
                .arg(json)
                .arg(at_ms)
                .arg(u8::from(keep_existing));
            inv
        };
        let r = self
            .call(|mut c| async move { inv.invoke_async::<i64>(&mut c).await })
            .await?;
        if r >= 0 {
            let (u, add) = (user.to_string(), lock.is_some());
            self.call(|mut c| async move {
                redis::cmd(if add { "SADD" } else { "SREM" })
                    .arg(LOCK_INDEX)
                    .arg(u)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        }
        Ok(r)
    }

    /// Locks or unlocks `user` (an admin's change, `lock` None to unlock) at
    /// `at_ms`. While Redis is away the change is journalled (and applied to this
    /// host's memory); it is written back when Redis returns. Returns whether the
    /// lock state changed (as far as known).
    pub async fn set_lock(
        &self,
        user: &str,
        at_ms: u64,
        lock: Option<LockRecord>,
    ) -> Result<bool, StateError> {
        let user = self.key(user);
        if self.is_up() {
            match self.apply(&user, at_ms, lock.as_ref(), true).await {
                Ok(r) => {
                    let mut m = guard(&self.memory);
                    match &lock {
                        Some(rec) => {
                            m.locks.entry(user.clone()).or_insert_with(|| rec.clone());
                        }
                        None => {
                            m.locks.remove(&user);
                            m.rejects.remove(&user);
                        }
                    }
                    return Ok(r == 1);
                }
                Err(e) if !self.is_up() => warn!(error = %e, "lock change journalled"),
                Err(e) => return Err(e),
            }
        }
        let mut m = guard(&self.memory);
        let was = m.locks.contains_key(&user);
        match &lock {
            Some(rec) => {
                m.locks.entry(user.clone()).or_insert_with(|| rec.clone());
            }
            None => {
                m.locks.remove(&user);
                m.rejects.remove(&user);
            }
        }
        drop(m);
        let change = Change {
            user: user.clone(),
            at_ms,
            lock: lock.clone(),
        };
        self.journal.push(&change)?;
        self.journalled.fetch_add(1, Relaxed);
        Ok(lock.is_some() != was || lock.is_none())
    }

    /// The lock on `user`: from Redis, or from memory while it is away.
    pub async fn lock_of(&self, user: &str) -> Result<Option<LockRecord>, StateError> {
        let user = self.key(user);
        if self.is_up() {
            let k = format!("{}:lock", lock_base(&user));
            if let Ok(v) = self
                .call(|mut c| async move {
                    redis::cmd("GET")
                        .arg(k)
                        .query_async::<Option<String>>(&mut c)
                        .await
                })
                .await
            {
                return Ok(v.and_then(|t| serde_json::from_str(&t).ok()));
            }
        }
        Ok(guard(&self.memory).locks.get(&user).cloned())
    }

    /// Every locked account, by name, from Redis (an error while it is away).
    pub async fn list(&self) -> Result<Vec<(String, LockRecord)>, StateError> {
        let users: Vec<String> = self
            .call(|mut c| async move {
                redis::cmd("SMEMBERS")
                    .arg(LOCK_INDEX)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut out = Vec::with_capacity(users.len());
        let mut stale = Vec::new();
        for chunk in users.chunks(500) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|u| format!("{}:lock", lock_base(u)))
                .collect();
            // One GET per key in a pipeline: MGET would cross slots in a cluster.
            let got: Vec<Option<String>> = self
                .call(|mut c| async move {
                    let mut p = redis::pipe();
                    for k in &keys {
                        p.cmd("GET").arg(k);
                    }
                    p.query_async(&mut c).await
                })
                .await?;
            for (u, v) in chunk.iter().zip(got) {
                match v.and_then(|t| serde_json::from_str::<LockRecord>(&t).ok()) {
                    Some(rec) => out.push((u.clone(), rec)),
                    None => stale.push(u.clone()),
                }
            }
        }
        if !stale.is_empty() {
            let _ = self
                .call(|mut c| async move {
                    redis::cmd("SREM")
                        .arg(LOCK_INDEX)
                        .arg(stale)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// A subject's use against each of its limits:
    /// `(window, measure, used, limit)`, from Redis or, while it is away, memory.
    pub async fn usage(
        &self,
        cfg: &RateLimitConfig,
        subject: &Subject,
        now_ms: u64,
    ) -> Result<Vec<(Duration, Measure, u64, u64)>, StateError> {
        let subject = self.normalised(subject);
        if !self.is_up() {
            return Ok(self.limiter.usage(cfg, &subject, now_ms));
        }
        let ws = subject.windows(cfg).to_vec();
        let base = subject_base(&subject);
        let mut keys = Vec::new();
        for w in &ws {
            let idx = now_ms / w.window_ms();
            for m in 1..=2 {
                let k = format!("{base}:r:{}:{m}:", w.window_ms());
                keys.push(format!("{k}{idx}"));
                keys.push(format!("{k}{}", idx.saturating_sub(1)));
            }
        }
        let got: Vec<Option<u64>> = self
            .call(|mut c| async move {
                let mut p = redis::pipe();
                for k in &keys {
                    p.cmd("GET").arg(k);
                }
                p.query_async(&mut c).await
            })
            .await?;
        let counters: Vec<[Counter; 2]> = ws
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let idx = now_ms / w.window_ms();
                let c = |j: usize| Counter {
                    index: idx,
                    cur: got.get(i * 4 + j * 2).copied().flatten().unwrap_or(0),
                    prev: got.get(i * 4 + j * 2 + 1).copied().flatten().unwrap_or(0),
                };
                [c(0), c(1)]
            })
            .collect();
        Ok(super::ratelimit::usage_of(&ws, &counters, now_ms))
    }

    /// Clears a subject's counters (and an account's count of refusals).
    pub async fn reset(
        &self,
        cfg: &RateLimitConfig,
        subject: &Subject,
        now_ms: u64,
    ) -> Result<(), StateError> {
        let subject = self.normalised(subject);
        self.limiter.reset(&subject);
        let base = subject_base(&subject);
        let mut keys = Vec::new();
        for w in subject.windows(cfg) {
            let idx = now_ms / w.window_ms();
            for m in 1..=2 {
                for i in [idx.saturating_sub(1), idx, idx + 1] {
                    keys.push(format!("{base}:r:{}:{m}:{i}", w.window_ms()));
                }
            }
        }
        if matches!(subject, Subject::Account(_)) {
            keys.push(format!("{base}:over"));
        }
        self.call(|mut c| async move {
            let mut p = redis::pipe();
            // One DEL per key: keys of one subject share a slot, but keeping them
            // apart costs nothing here.
            for k in &keys {
                p.cmd("DEL").arg(k).ignore();
            }
            p.query_async::<()>(&mut c).await
        })
        .await
    }

    fn normalised(&self, s: &Subject) -> Subject {
        match s {
            Subject::Account(u) => Subject::Account(self.key(u)),
            Subject::Domain(d) => Subject::Domain(d.trim().to_lowercase()),
            other => other.clone(),
        }
    }

    /// Writes the journal back (later change wins); returns how many were written.
    async fn replay_journal(&self) -> Result<u64, StateError> {
        let changes = self.journal.changes()?;
        let mut done = Vec::new();
        for (seq, c) in changes {
            let r = self.apply(&c.user, c.at_ms, c.lock.as_ref(), false).await?;
            if r < 0 {
                info!(user = %c.user, "journalled lock change older than Redis's: dropped");
            }
            done.push(seq);
        }
        self.journal.remove(&done)?;
        let n = done.len() as u64;
        if n > 0 {
            self.replayed.fetch_add(n, Relaxed);
            info!(changes = n, "journalled lock changes written back to Redis");
        }
        Ok(n)
    }

    fn replay_journal_blocking(self: &Arc<Self>) -> Option<Result<u64, StateError>> {
        let me = Arc::clone(self);
        self.block(async move { me.replay_journal().await })
    }

    /// Reads every lock into memory (what is enforced while Redis is away).
    async fn refresh_memory(&self) -> Result<(), StateError> {
        let locks = self.list().await?;
        let mut m = guard(&self.memory);
        m.locks = locks.into_iter().collect();
        Ok(())
    }

    fn refresh_memory_blocking(self: &Arc<Self>) -> Option<Result<(), StateError>> {
        let me = Arc::clone(self);
        self.block(async move { me.refresh_memory().await })
    }

    /// Journalled changes waiting.
    pub fn journal_len(&self) -> u64 {
        self.journal.len().unwrap_or(0)
    }
}

impl Drop for RedisState {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        // The last reference may go on a runtime thread (a connection's task, or
        // one of this runtime's own futures), where dropping a runtime would
        // block and panics: let its threads end by themselves.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Pings Redis while it is away (with backoff), reconnecting if needed; when it
/// answers, writes the journal back, reloads the locks and marks it up. While it
/// is up, refreshes the locks in memory and writes back what commands
/// journalled, every [`REFRESH_INTERVAL`].
async fn health_task(state: std::sync::Weak<RedisState>) {
    let mut backoff = MIN_BACKOFF;
    let mut since_refresh = Duration::ZERO;
    loop {
        let Some(s) = state.upgrade() else { return };
        if s.stop.load(Relaxed) {
            return;
        }
        if s.is_up() {
            drop(s);
            tokio::time::sleep(Duration::from_secs(1)).await;
            since_refresh += Duration::from_secs(1);
            if since_refresh >= REFRESH_INTERVAL {
                since_refresh = Duration::ZERO;
                let Some(s) = state.upgrade() else { return };
                if s.is_up() {
                    if !s.journal.is_empty().unwrap_or(true) {
                        let _ = s.replay_journal().await;
                    }
                    let _ = s.refresh_memory().await;
                }
            }
            backoff = MIN_BACKOFF;
            continue;
        }
        let wait = backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        let conn = guard(&s.conn).clone();
        let ok = match conn {
            Some(mut c) => {
                tokio::time::timeout(s.timeout, redis::cmd("PING").query_async::<String>(&mut c))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            None => match connect(&s.target, s.timeout).await {
                Ok(mut c) => match eviction_policy(&mut c).await {
                    Ok(Some(p)) if evicts_kept_data(&p) => {
                        error!(
                            policy = %p,
                            "Redis maxmemory-policy may evict account locks; staying on this \
                             host's memory until it is `noeviction` or `volatile-*`"
                        );
                        false
                    }
                    Ok(_) => {
                        *guard(&s.conn) = Some(c);
                        true
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            },
        };
        if ok {
            // Up for the journal's writes, which go through `call`.
            s.up.store(true, Relaxed);
            let replay = s.replay_journal().await;
            let refresh = s.refresh_memory().await;
            if replay.is_ok() && refresh.is_ok() && s.is_up() {
                s.recoveries.fetch_add(1, Relaxed);
                info!(redis = %s.target.display(), "state backend: Redis is back");
                backoff = MIN_BACKOFF;
                continue;
            }
            s.up.store(false, Relaxed);
        }
        drop(s);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_and_shown_without_passwords() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/0").unwrap(),
            Target::Single("redis://127.0.0.1:6379/0".into())
        );
        assert_eq!(
            Target::parse("redis+cluster://:pw@h1:7000,h2:7001").unwrap(),
            Target::Cluster(vec![
                "redis://:pw@h1:7000".into(),
                "redis://:pw@h2:7001".into()
            ])
        );
        assert_eq!(
            Target::parse("rediss://u:secret@host:6380")
                .unwrap()
                .display(),
            "rediss://***@host:6380"
        );
        assert!(Target::parse("http://x").is_err());
        assert!(Target::parse("redis+cluster://").is_err());
        assert!(evicts_kept_data("allkeys-lru"));
        assert!(!evicts_kept_data("volatile-lru"));
        assert!(!evicts_kept_data("noeviction"));
    }
}
