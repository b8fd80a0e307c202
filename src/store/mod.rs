//! The SQL store: the system of record (invariant I3).
//!
//! Why it exists: grants, requests and the audit log must survive any crash, and Redis is only an
//! index rebuilt from here. One interface serves both backends through sqlx's `Any` driver:
//! SQLite (an embedded file, WAL, one replica) and PostgreSQL (several replicas). Queries are
//! written once with `$1` placeholders, which both engines accept, and use only types both share
//! (BIGINT, TEXT, BLOB): times are Unix milliseconds, JSON is canonical text.
//!
//! On SQLite the writer pool has one connection (one writer at a time, made explicit instead of
//! surfacing as SQLITE_BUSY), and plain reads go to a separate pool of read-only connections
//! ([`Store::reads`]): WAL lets them run beside the writer, so a burst's reads never queue behind
//! its commits. Such a read sees everything committed before it starts. On PostgreSQL both are
//! the one configured pool.
//!
//! What it must never do: hold a transaction across a network call to Okta or Slack (on SQLite
//! that would stall every other writer), or take a second writer connection while holding a
//! transaction (on SQLite that deadlocks).

use std::str::FromStr;
use std::time::Duration;

use axum::http::StatusCode;
use secrecy::ExposeSecret;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions};

pub mod purge;

use crate::config::DatabaseConfig;
use crate::error::ErrorCode;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database exists but lacks migrations this build needs (or was never migrated).
    #[error(
        "the database {url} is not migrated ({missing} of {known} migrations not applied): \
         run `jit-broker migrate` with the same configuration first \
         (or `jit-broker serve` with database.migrate_on_start = true)"
    )]
    NotMigrated {
        url: String,
        missing: usize,
        known: usize,
    },
}

impl ErrorCode for StoreError {
    fn status(&self) -> StatusCode {
        match self {
            StoreError::Connect(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            StoreError::Connect(_) => "database_unavailable",
            StoreError::NotMigrated { .. } => "database_not_migrated",
            _ => "database_error",
        }
    }
}

/// A pool on either backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Read-only connections on a SQLite file; the same pool as `pool` otherwise.
    reads: AnyPool,
    backend: Backend,
    /// A SQLite file (WAL) rather than PostgreSQL or an in-memory database.
    sqlite_file: bool,
}

/// Read connections beside SQLite's one writer: a few suffice (reads are short), and each is an
/// OS thread in sqlx's SQLite driver.
const SQLITE_READERS: u32 = 4;

/// How many WAL pages (4 KiB) the writer lets accumulate before it copies them into the database
/// file: 16,384 (64 MiB) instead of SQLite's 1,000. The copy runs on the committing connection,
/// stalling every writer behind it, and costs a sync of the WAL and of the database file. Random
/// keys (event uuids, user ids) dirty a different index page per row, so at the default a burst
/// of event hook deliveries paid for a checkpoint every few hundred events; a bigger WAL copies
/// each page once however often it changed. Measured: 1-event deliveries 14.5k → 19.6k/s, 50-event
/// 34k → 58k events/s (docs/events.md). The price is one longer stall (tens of milliseconds) per
/// 64 MiB written, and a WAL file of that size beside the database. How long a commit may wait
/// for its sync is bounded by time instead, by [`spawn_checkpointer`].
const WAL_AUTOCHECKPOINT: &str = "PRAGMA wal_autocheckpoint = 16384";
/// How often [`spawn_checkpointer`] syncs the WAL. With `synchronous = NORMAL` a commit is
/// written to the WAL but synced only at a checkpoint: a process crash loses nothing, and this
/// bounds what a power cut or an OS crash can take back to about this long, however little was
/// written (the 64 MiB threshold alone would leave a quiet broker's commits unsynced for hours).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// After a checkpoint resets the WAL, a file grown past this by one large transaction is
/// truncated back to it instead of keeping its high-water mark on disk.
const JOURNAL_SIZE_LIMIT: &str = "PRAGMA journal_size_limit = 67108864";

/// A transaction that knows its backend, so code that needs engine-specific locking (the audit
/// chain's `FOR UPDATE`) can choose it.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
}

impl Tx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
    pub fn backend(&self) -> Backend {
        self.backend
    }
    pub async fn commit(self) -> Result<(), StoreError> {
        self.inner.commit().await.map_err(StoreError::Query)
    }
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.inner.rollback().await.map_err(StoreError::Query)
    }
}

impl Store {
    /// Connects; for SQLite creates the file if missing and turns on WAL.
    pub async fn connect(cfg: &DatabaseConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if cfg.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match (backend, &cfg.password) {
            (Backend::Postgres, Some(pw)) => with_password(&cfg.url, pw.expose_secret())?,
            (Backend::Sqlite, _) => sqlite_url(&cfg.url),
            _ => cfg.url.clone(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(StoreError::Connect)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        // SQLite allows one writer at a time; a single connection makes that explicit instead of
        // surfacing as SQLITE_BUSY under load. PostgreSQL gets the configured pool.
        let max = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => cfg.max_connections,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            // A ping before every acquire is a round trip per transaction; a SQLite file has no
            // connection to lose, so only PostgreSQL pays it.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA synchronous = NORMAL",
                            WAL_AUTOCHECKPOINT,
                            JOURNAL_SIZE_LIMIT,
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(opts.clone())
            .await
            .map_err(StoreError::Connect)?;
        // An in-memory database exists once per connection: it cannot have separate readers.
        let separate_reads = backend == Backend::Sqlite && !url.contains("memory");
        let reads = if separate_reads {
            AnyPoolOptions::new()
                .max_connections(SQLITE_READERS.min(cfg.max_connections.max(1)))
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // `query_only`: a write through the read pool is a bug; make it fail.
                        for pragma in ["PRAGMA busy_timeout = 5000", "PRAGMA query_only = ON"] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                })
                .connect_lazy_with(opts)
        } else {
            pool.clone()
        };
        Ok(Store {
            pool,
            reads,
            backend,
            sqlite_file: separate_reads,
        })
    }

    /// Connects to a database that must already be migrated: what every command but `migrate`
    /// and `serve` uses. A SQLite file that does not exist is not created, and a database
    /// without this build's migrations gets [`StoreError::NotMigrated`], which says to run
    /// `jit-broker migrate`, instead of the first query's "no such table".
    pub async fn open(cfg: &DatabaseConfig) -> Result<Store, StoreError> {
        if let Some(path) = sqlite_file_path(&cfg.url) {
            if !std::path::Path::new(&path).exists() {
                return Err(StoreError::NotMigrated {
                    url: redact_url(&cfg.url),
                    missing: SQLITE_MIGRATIONS.iter().count(),
                    known: SQLITE_MIGRATIONS.iter().count(),
                });
            }
        }
        let store = Store::connect(cfg).await?;
        store.check_migrated(&cfg.url).await?;
        Ok(store)
    }

    /// Whether every migration this build knows is applied; `url` only names the database in
    /// the error. A database migrated by a newer build (more migrations) passes.
    pub async fn check_migrated(&self, url: &str) -> Result<(), StoreError> {
        let migrator = self.migrator();
        let known: Vec<i64> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .collect();
        let exists_sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
                 AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let exists: i64 = sqlx::query_scalar(exists_sql).fetch_one(&self.pool).await?;
        let applied: Vec<i64> = if exists > 0 {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        let missing = known.iter().filter(|v| !applied.contains(v)).count();
        if missing == 0 {
            Ok(())
        } else {
            Err(StoreError::NotMigrated {
                url: redact_url(url),
                missing,
                known: known.len(),
            })
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies pending migrations. On PostgreSQL sqlx holds an advisory lock for the duration,
    /// so replicas starting together apply each migration once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator()
            .run(&self.pool)
            .await
            .map_err(StoreError::Migrate)
    }

    /// Opens a transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken up front
    /// (waiting up to `busy_timeout` for another process, such as a second pool or a CLI verb),
    /// because a deferred transaction that reads first and writes later fails at once with
    /// "database is locked" when another writer got in between, and no wait helps it.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let inner = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Tx {
            inner,
            backend: self.backend,
        })
    }

    /// The writer pool (on SQLite: its one connection). Transactions and anything that must
    /// be ordered with them go here.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// For plain reads outside a transaction: on a SQLite file, read-only connections beside
    /// the writer; otherwise the same pool as [`Store::pool`].
    pub fn reads(&self) -> &AnyPool {
        &self.reads
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// On a SQLite file: syncs the WAL and copies what it can into the database file
    /// (`PRAGMA wal_checkpoint(PASSIVE)`) on a read connection, beside the writer and without
    /// waiting for it; nothing on PostgreSQL or an in-memory database. The writer's own
    /// checkpoint at [`WAL_AUTOCHECKPOINT`] still resets the WAL: a passive checkpoint cannot
    /// while commits keep coming.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.sqlite_file {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.reads)
                .await?;
        }
        Ok(())
    }

    /// Readiness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.reads.close().await;
        self.pool.close().await;
    }
}

/// Starts `store.checkpoint`: [`Store::checkpoint`] every [`CHECKPOINT_EVERY`] on a SQLite file,
/// and once more on shutdown; nothing otherwise.
pub fn spawn_checkpointer(store: &Store, tasks: &crate::tasks::Tasks) {
    if !store.sqlite_file {
        return;
    }
    let (store, cancel) = (store.clone(), tasks.cancel_token());
    tasks.spawn("store.checkpoint", async move {
        loop {
            let stop = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(CHECKPOINT_EVERY) => false,
            };
            if let Err(e) = store.checkpoint().await {
                tracing::warn!(error = %crate::error::chain(&e), "SQLite checkpoint failed");
            }
            if stop {
                return;
            }
        }
    });
}

/// The file of a `sqlite:` URL; `None` for PostgreSQL and in-memory databases.
fn sqlite_file_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite:")?;
    if rest.contains(":memory:") || rest.contains("mode=memory") {
        return None;
    }
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| path.to_string())
}

/// `sqlite://file` → create the file when missing; in-memory URLs pass through.
fn sqlite_url(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

fn with_password(url: &str, password: &str) -> Result<String, StoreError> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| StoreError::Connect(sqlx::Error::Configuration(Box::new(e))))?;
    parsed
        .set_password(Some(password))
        .map_err(|_| StoreError::Corrupt("database.url cannot carry a password".into()))?;
    Ok(parsed.to_string())
}

/// A URL safe to log: any password replaced.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `FOR UPDATE` where the engine has it (SQLite's `BEGIN IMMEDIATE` already serializes).
pub fn for_update(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}
