//! Storage behind a narrow trait: [`LogStore`] and the batch it commits,
//! with one file per backend. RocksDB ([`rocks`]) is the embedded default;
//! the next backend is a new file beside it, implementing [`LogStore`] and
//! mapping its errors to [`StorageError`]'s kinds (unavailable: a retry
//! may help; corrupt: it will not).

pub mod rocks;

pub use rocks::{LEAF_GROUP, LeafRow, RESUME_FREE_SPACE, RocksStore, WRITE_BUFFER};

use tlog_core::Hash;
use tlog_core::merkle::store::{HashReader, StoreError, StoredHash};

/// A backend's own error, kept as the source of a [`StorageError`].
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// A storage failure, by kind: what the caller does next depends on it
/// (retry later, or stop serving damaged data), never on its text.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend cannot do it now (I/O error, full disk, busy, closed):
    /// a retry may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] BackendError),
    /// The backend's own checks found stored bytes damaged (RocksDB's
    /// block checksums): a retry will not help.
    #[error("the store found damaged data: {0}")]
    Damaged(#[source] BackendError),
    /// Stored bytes are not what this code wrote (a value of the wrong
    /// length or shape, a record missing that another one implies).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The backend found corruption while opening the store (a damaged
    /// write-ahead log, MANIFEST or table file). Nothing was recovered
    /// past it and nothing was deleted: the store refuses to open.
    #[error(
        "refusing to open the store at {dir}: RocksDB found corruption: {detail}. The \
         store's files were left untouched (write-ahead logs: {wals}; manifests: \
         {manifests}); do not delete them. Recover by restoring the latest backup into a \
         new data directory (`tlog-server restore`) and re-importing the entries it lacks \
         from a copy of the log (`tlog-server recover --data-dir <new> --from <copy>`)"
    )]
    CorruptAtOpen {
        /// The store's folder.
        dir: std::path::PathBuf,
        /// What RocksDB reported (it names the file where it can).
        detail: String,
        /// The write-ahead log files present, comma-separated.
        wals: String,
        /// The MANIFEST files present, comma-separated.
        manifests: String,
    },
}

impl StorageError {
    /// True if stored bytes were found damaged, as opposed to a failure a
    /// retry may cure.
    pub fn is_corruption(&self) -> bool {
        match self {
            StorageError::Unavailable(_) => false,
            StorageError::Damaged(_)
            | StorageError::Corrupt(_)
            | StorageError::CorruptAtOpen { .. } => true,
        }
    }
}

/// Across the proof boundary (core's [`HashReader`]): the kind is kept,
/// and so is the backend's error.
impl From<StorageError> for StoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(source) => StoreError::Unavailable(source),
            e @ (StorageError::Damaged(_) | StorageError::CorruptAtOpen { .. }) => {
                StoreError::Corrupt(e.to_string())
            }
            StorageError::Corrupt(what) => StoreError::Corrupt(what),
        }
    }
}

/// Back from core's proof code: a hash that must exist and does not is
/// corruption of the store, as is a write that would leave a gap.
impl From<StoreError> for StorageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(source) => StorageError::Unavailable(source),
            StoreError::Corrupt(what) => StorageError::Corrupt(what),
            e @ (StoreError::Missing { .. } | StoreError::Gap { .. }) => {
                StorageError::Corrupt(e.to_string())
            }
        }
    }
}

/// The log's identity, stored at `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMeta {
    /// Checkpoint origin line.
    pub origin: String,
    /// Verifier key of the log's signing key.
    pub vkey: String,
    /// Current tree size.
    pub size: u64,
}

/// One new entry of a commit.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Its index.
    pub index: u64,
    /// The leaf bytes.
    pub leaf: Vec<u8>,
    /// `SHA-256(0x00 || leaf)`.
    pub leaf_hash: Hash,
    /// For event leaves: the idempotency key and the event's digest.
    pub idempotency: Option<Idempotency>,
    /// For event leaves: the artifact name and what the query index keeps.
    pub artifact: Option<(String, ArtifactMeta)>,
}

/// An event's idempotency key and content digest.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The event's source.
    pub source: String,
    /// The event's id.
    pub event_id: String,
    /// SHA-256 of the event's encoding.
    pub content_digest: [u8; 32],
}

/// What the artifact index keeps per entry, so queries filter without
/// reading leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactMeta {
    /// Action code.
    pub action: u8,
    /// Integration time, seconds.
    pub seconds: i64,
    /// Integration time, nanoseconds.
    pub nanos: u32,
    /// Artifact version.
    pub version: String,
}

impl ArtifactMeta {
    /// Integration time in nanoseconds since the epoch.
    pub fn time_nanos(&self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
    }
}

/// Everything one sequencer batch writes, atomically.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    /// New entries, in index order.
    pub entries: Vec<NewEntry>,
    /// New stored tree hashes.
    pub hashes: Vec<StoredHash>,
    /// The new tree size.
    pub size: u64,
    /// The checkpoint signed at `size`.
    pub checkpoint: String,
    /// Checkpoints the log signed at sizes inside this batch, written
    /// with it (a re-import from a copy of the log keeps every signed
    /// size servable); empty for the sequencer's own batches.
    pub earlier_checkpoints: Vec<(u64, String)>,
}

/// The storage a log needs. Implementations must make [`LogStore::commit`]
/// atomic and durable (synced) before returning.
pub trait LogStore: HashReader + Send + Sync + 'static {
    /// The stored identity and size, or `None` for an uninitialized store.
    fn meta(&self) -> Result<Option<LogMeta>, StorageError>;
    /// Writes identity and the first checkpoint (size 0) of a new log.
    fn init(&self, origin: &str, vkey: &str, checkpoint: &str) -> Result<(), StorageError>;
    /// Writes one batch atomically and durably.
    fn commit(&self, batch: &CommitBatch) -> Result<(), StorageError>;
    /// The leaf at `index`.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError>;
    /// Leaves with indexes in `[start, end)`, in order.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError>;
    /// The index of the leaf with this leaf hash.
    fn index_of(&self, leaf_hash: &Hash) -> Result<Option<u64>, StorageError>;
    /// The entry recorded for (source, event id): index and content digest.
    fn idempotency(
        &self,
        source: &str,
        event_id: &str,
    ) -> Result<Option<(u64, [u8; 32])>, StorageError>;
    /// The checkpoint signed at exactly `size`.
    fn checkpoint(&self, size: u64) -> Result<Option<String>, StorageError>;
    /// Up to `limit` entries about artifact `name` with index above `after`
    /// (or from the start), oldest first, with their index metadata.
    fn artifact_entries(
        &self,
        name: &str,
        after: Option<u64>,
        limit: usize,
        filter: &dyn Fn(&ArtifactMeta) -> bool,
    ) -> Result<Vec<(u64, ArtifactMeta)>, StorageError>;
}
