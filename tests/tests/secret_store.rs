//! The secret store against both backends: the same behaviour checks run on
//! the embedded sled store and on a JetStream KV bucket of a real
//! nats-server (one server per test), then each backend's own behaviour
//! (directory mode, bucket settings, concurrent creation, purge on delete).
//!
//! `cargo nextest run -p powernode-tests --test secret_store`.

use anyhow::{ensure, Context as _};
use futures::future::BoxFuture;
use powernode_events::AccountId;
use powernode_server::secrets::embedded::EmbeddedSecrets;
use powernode_server::secrets::jetstream::{JetStreamSecrets, DEFAULT_BUCKET};
use powernode_server::secrets::{
    fingerprint, open_for, Created, SecretError, SecretKey, SecretStore, SharedSecrets,
};
use powernode_tests::jetstream_support::init_tracing;
use powernode_tests::nats::{NatsCluster, NatsServer};
use std::sync::Arc;

/// The key file every store of this test process seals with (outside
/// every store's directory).
fn test_key() -> std::path::PathBuf {
    static KEYS: std::sync::LazyLock<tempfile::TempDir> =
        std::sync::LazyLock::new(|| tempfile::tempdir().expect("a temp dir for the key file"));
    KEYS.path().join("secrets.key")
}

/// A kubeconfig-like value that must never show up in Debug or errors.
const SECRET: &[u8] = b"pn-test-secret-VALUE-8c1f0d2e";

/// Opens the backend under test again each time it is called.
type Opener = dyn Fn() -> BoxFuture<'static, anyhow::Result<SharedSecrets>> + Send + Sync;

/// A backend under test: what keeps it alive, and how to open it.
struct Backend {
    open: Box<Opener>,
    /// The temp dir or nats-server the store lives in.
    _keep: Box<dyn std::any::Any + Send>,
}

fn embedded() -> anyhow::Result<Backend> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("secrets");
    Ok(Backend {
        open: Box::new(move || {
            let path = path.clone();
            Box::pin(async move {
                Ok(Arc::new(EmbeddedSecrets::open(&path, &test_key())?) as SharedSecrets)
            })
        }),
        _keep: Box::new(dir),
    })
}

fn jetstream() -> anyhow::Result<Backend> {
    init_tracing();
    let server = NatsServer::start()?;
    let url = server.url();
    Ok(Backend {
        open: Box::new(move || {
            let url = url.clone();
            Box::pin(async move {
                let client = powernode_tests::nats::connect(url.as_str()).await?;
                Ok(
                    Arc::new(JetStreamSecrets::open(client, DEFAULT_BUCKET, 1, &test_key()).await?)
                        as SharedSecrets,
                )
            })
        }),
        _keep: Box::new(server),
    })
}

fn acme() -> AccountId {
    AccountId::new("acme").unwrap()
}

fn key(object: &str) -> SecretKey {
    SecretKey::join_token(&acme(), object).unwrap()
}

// ------------------------------------------------------------ the checks

async fn put_get_replace_delete(b: &Backend) -> anyhow::Result<()> {
    let store = (b.open)().await?;
    let k = key("cluster-0190a");
    store.put(&k, SECRET).await?;
    ensure!(
        store.get(&k).await?.as_deref() == Some(SECRET),
        "put then get"
    );
    store.put(&k, b"replaced").await?;
    ensure!(
        store.get(&k).await?.as_deref() == Some(&b"replaced"[..]),
        "replace"
    );
    // Other keys are untouched by writes to this one.
    let other = SecretKey::kubeconfig(&acme(), "cluster-0190a")?;
    store.put(&other, b"kubeconfig").await?;
    store.delete(&k).await?;
    ensure!(store.get(&k).await?.is_none(), "deleted key still answers");
    ensure!(
        store.get(&other).await?.as_deref() == Some(&b"kubeconfig"[..]),
        "delete touched another key"
    );
    // Deleting again (or a key that never existed) is fine, and a deleted
    // key can be written again.
    store.delete(&k).await?;
    store.delete(&key("never-stored")).await?;
    store.put(&k, b"again").await?;
    ensure!(
        store.get(&k).await?.as_deref() == Some(&b"again"[..]),
        "put after delete"
    );
    // Empty and binary values round-trip.
    store.put(&k, b"").await?;
    ensure!(
        store.get(&k).await?.as_deref() == Some(&b""[..]),
        "empty value"
    );
    let binary: Vec<u8> = (0..=255).collect();
    store.put(&k, &binary).await?;
    ensure!(store.get(&k).await? == Some(binary), "binary value");
    Ok(())
}

async fn missing_key_is_none(b: &Backend) -> anyhow::Result<()> {
    let store = (b.open)().await?;
    ensure!(store.get(&key("nothing-here")).await?.is_none());
    ensure!(store
        .get(&SecretKey::kubeconfig(&AccountId::new("other")?, "x")?)
        .await?
        .is_none());
    Ok(())
}

async fn invalid_keys_are_refused(b: &Backend) -> anyhow::Result<()> {
    let store = (b.open)().await?;
    for bad in ["", "a.b", "a b", "a/b", "a*", "a>", "ä", "../x", "x\n"] {
        for made in [
            SecretKey::join_token(&acme(), bad),
            SecretKey::kubeconfig(&acme(), bad),
        ] {
            ensure!(
                matches!(made, Err(SecretError::InvalidKey(_))),
                "object id {bad:?} was accepted: {made:?}"
            );
        }
    }
    for bad in [
        "", "x", "a.b", ".a.b", "a.b.", "a..b", "a.b.c.d", "a.b c.d", "a.b.*",
    ] {
        ensure!(
            matches!(SecretKey::parse(bad), Err(SecretError::InvalidKey(_))),
            "{bad:?} was parsed"
        );
    }
    // Every key the constructors accept is usable by the store.
    let k = SecretKey::parse("kubeconfig.acme.cluster_1-x=")?;
    store.put(&k, b"v").await?;
    ensure!(store.get(&k).await?.as_deref() == Some(&b"v"[..]));
    Ok(())
}

async fn survives_reopen(b: &Backend) -> anyhow::Result<()> {
    let k = key("cluster-reopen");
    let gone = key("cluster-gone");
    {
        let store = (b.open)().await?;
        store.put(&k, SECRET).await?;
        store.put(&gone, b"x").await?;
        store.delete(&gone).await?;
    }
    let store = (b.open)().await?;
    ensure!(
        store.get(&k).await?.as_deref() == Some(SECRET),
        "value lost"
    );
    ensure!(store.get(&gone).await?.is_none(), "delete lost");
    drop(store);
    // Opening an existing store a second time (idempotent create) works too.
    let store = (b.open)().await?;
    ensure!(store.get(&k).await?.as_deref() == Some(SECRET));
    Ok(())
}

async fn debug_and_errors_hide_values(b: &Backend) -> anyhow::Result<()> {
    let store = (b.open)().await?;
    let k = key("cluster-debug");
    store.put(&k, SECRET).await?;
    let secret = std::str::from_utf8(SECRET)?;
    let hex = hex::encode(SECRET);
    let bytes_debug = format!("{:?}", SECRET);
    let texts = [
        format!("{k:?}"),
        format!("{k}"),
        store.describe(),
        format!("{:?}", SecretError::InvalidKey(k.to_string())),
        format!("{}", SecretError::Unavailable(k.to_string())),
        format!("{:?}", SecretKey::join_token(&acme(), "a b").unwrap_err()),
    ];
    for text in &texts {
        ensure!(
            !text.contains(secret) && !text.contains(&hex) && !text.contains(&bytes_debug),
            "the value leaked into {text:?}"
        );
    }
    // The fingerprint is what events carry: stable, and not the value.
    let fp = fingerprint(SECRET);
    ensure!(fp.starts_with("sha256:") && fp == fingerprint(SECRET) && !fp.contains(secret));
    Ok(())
}

/// Write-once: `create` stores only where there is nothing, tells a retry
/// (same value) from a clash (another value), and of concurrent creates
/// exactly one stores.
async fn create_is_write_once(b: &Backend) -> anyhow::Result<()> {
    let store = (b.open)().await?;
    let k = key("cluster-once");
    ensure!(store.create(&k, b"first").await? == Created::Created);
    ensure!(store.create(&k, b"first").await? == Created::AlreadyEqual);
    ensure!(store.create(&k, b"other").await? == Created::ExistsDifferent);
    ensure!(
        store.get(&k).await?.as_deref() == Some(&b"first"[..]),
        "overwritten"
    );
    store.delete(&k).await?;
    ensure!(
        store.create(&k, b"again").await? == Created::Created,
        "create after delete"
    );

    let race = key("cluster-race");
    let outcomes = futures::future::join_all((0..20).map(|i| {
        let store = store.clone();
        let race = race.clone();
        async move { (i, store.create(&race, format!("v{i}").as_bytes()).await) }
    }))
    .await;
    let mut winners = Vec::new();
    for (i, o) in outcomes {
        match o? {
            Created::Created => winners.push(i),
            Created::ExistsDifferent => {}
            Created::AlreadyEqual => anyhow::bail!("create {i}: equal to a different value"),
        }
    }
    ensure!(winners.len() == 1, "winners {winners:?}");
    let stored = store.get(&race).await?;
    ensure!(
        stored == Some(format!("v{}", winners[0]).into_bytes()),
        "{stored:?}"
    );
    Ok(())
}

/// `update` writes only over the version it was given: a stale version is
/// a conflict that writes nothing, and of concurrent updates from one
/// version exactly one wins.
async fn update_needs_the_version_read(b: &Backend) -> anyhow::Result<()> {
    let store = (b.open)().await?;
    let k = key("cluster-cas");
    ensure!(store.get_versioned(&k).await?.is_none());
    store.put(&k, b"a").await?;
    let (value, v1) = store.get_versioned(&k).await?.context("no value")?;
    ensure!(value == b"a");
    let v2 = store.update(&k, b"b", &v1).await?;
    let stale = store.update(&k, b"c", &v1).await;
    ensure!(matches!(stale, Err(SecretError::Conflict(_))), "{stale:?}");
    ensure!(store.get(&k).await?.as_deref() == Some(&b"b"[..]));
    let (_, now) = store.get_versioned(&k).await?.context("no value")?;
    ensure!(now == v2, "the version read is the one update returned");

    let outcomes = futures::future::join_all((0..20).map(|i| {
        let (store, k, v2) = (store.clone(), k.clone(), v2.clone());
        async move { (i, store.update(&k, format!("u{i}").as_bytes(), &v2).await) }
    }))
    .await;
    let mut winners = Vec::new();
    for (i, o) in outcomes {
        match o {
            Ok(_) => winners.push(i),
            Err(SecretError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(winners.len() == 1, "winners {winners:?}");
    ensure!(store.get(&k).await? == Some(format!("u{}", winners[0]).into_bytes()));
    // A deleted key is at no version: an update over it is a conflict.
    let (_, last) = store.get_versioned(&k).await?.context("no value")?;
    store.delete(&k).await?;
    let gone = store.update(&k, b"back", &last).await;
    ensure!(matches!(gone, Err(SecretError::Conflict(_))), "{gone:?}");
    ensure!(
        store.get(&k).await?.is_none(),
        "an update brought a deleted key back"
    );
    Ok(())
}

/// Many writers at once all finish (sled's `flush_async` used to hang
/// every sled database of the process under 50 concurrent puts).
async fn concurrent_writes_complete(b: &Backend) -> anyhow::Result<()> {
    let store = (b.open)().await?;
    let writes = futures::future::join_all((0..64).map(|i| {
        let store = store.clone();
        async move {
            let k = key(&format!("cluster-many-{i}"));
            store.put(&k, format!("v{i}").as_bytes()).await?;
            store
                .create(&key(&format!("cluster-new-{i}")), b"n")
                .await?;
            Ok::<_, SecretError>(())
        }
    }));
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), writes)
        .await
        .context("64 concurrent writers did not finish within 30 s")?;
    for d in done {
        d?;
    }
    for i in 0..64 {
        let v = store.get(&key(&format!("cluster-many-{i}"))).await?;
        ensure!(v == Some(format!("v{i}").into_bytes()), "{i}: {v:?}");
    }
    Ok(())
}

macro_rules! checks {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let backend = super::$backend()?;
                    super::$name(&backend).await
                }
            )*
        }
    };
}

checks!(embedded:
    put_get_replace_delete,
    concurrent_writes_complete,
    create_is_write_once,
    update_needs_the_version_read,
    missing_key_is_none,
    invalid_keys_are_refused,
    survives_reopen,
    debug_and_errors_hide_values,
);

checks!(jetstream:
    put_get_replace_delete,
    concurrent_writes_complete,
    create_is_write_once,
    update_needs_the_version_read,
    missing_key_is_none,
    invalid_keys_are_refused,
    survives_reopen,
    debug_and_errors_hide_values,
);

// ------------------------------------------------------ backend-specific

#[cfg(unix)]
#[tokio::test]
async fn embedded_store_dir_is_private() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("node").join("secrets");
    let store = EmbeddedSecrets::open(&path, &test_key())?;
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    ensure!(mode == 0o700, "mode {mode:o}");
    ensure!(store.describe().contains(&path.display().to_string()));
    drop(store);
    // An existing, too open directory is tightened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    let _store = EmbeddedSecrets::open(&path, &test_key())?;
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    ensure!(mode == 0o700, "mode {mode:o} after reopening");
    Ok(())
}

#[tokio::test]
async fn embedded_debug_hides_values() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = EmbeddedSecrets::open(dir.path(), &test_key())?;
    store.put(&key("c"), SECRET).await?;
    let text = format!("{store:?}");
    ensure!(!text.contains(std::str::from_utf8(SECRET)?), "{text}");
    Ok(())
}

#[tokio::test]
async fn embedded_store_is_locked_by_its_process() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let _store = EmbeddedSecrets::open(dir.path(), &test_key())?;
    // A second open while the first is held fails (after the lock grace)
    // rather than sharing the database.
    let e = EmbeddedSecrets::open(dir.path(), &test_key()).unwrap_err();
    ensure!(matches!(e, SecretError::Storage(_)), "{e:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_bucket_settings_and_concurrent_create() -> anyhow::Result<()> {
    init_tracing();
    let server = NatsServer::start()?;
    let connect = || powernode_tests::nats::connect(server.url());
    // Two nodes starting at once both create-or-open the bucket.
    let (a, b) = tokio::join!(
        async {
            JetStreamSecrets::open(connect().await?, DEFAULT_BUCKET, 1, &test_key())
                .await
                .map_err(anyhow::Error::from)
        },
        async {
            JetStreamSecrets::open(connect().await?, DEFAULT_BUCKET, 1, &test_key())
                .await
                .map_err(anyhow::Error::from)
        },
    );
    let (a, b) = (a?, b?);
    a.put(&key("c1"), b"from a").await?;
    ensure!(b.get(&key("c1")).await?.as_deref() == Some(&b"from a"[..]));
    b.delete(&key("c1")).await?;
    ensure!(a.get(&key("c1")).await?.is_none());
    // A third open of the existing bucket, and its settings.
    let c = JetStreamSecrets::open(connect().await?, DEFAULT_BUCKET, 1, &test_key()).await?;
    let mut status = c.store().status().await?;
    ensure!(status.history() == 1, "history {}", status.history());
    ensure!(status.info.config.num_replicas == 1);
    ensure!(c.describe().contains(DEFAULT_BUCKET), "{}", c.describe());
    ensure!(!format!("{c:?}").contains("from a"));
    // Another bucket name is another store.
    let other =
        JetStreamSecrets::open(connect().await?, "pn_secrets_other", 1, &test_key()).await?;
    c.put(&key("c2"), b"x").await?;
    ensure!(other.get(&key("c2")).await?.is_none());
    status = c.store().status().await?;
    ensure!(status.bucket() == DEFAULT_BUCKET);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_delete_keeps_no_old_value() -> anyhow::Result<()> {
    init_tracing();
    let server = NatsServer::start()?;
    let store = JetStreamSecrets::open(
        powernode_tests::nats::connect(server.url()).await?,
        DEFAULT_BUCKET,
        1,
        &test_key(),
    )
    .await?;
    let k = key("cluster-purge");
    store.put(&k, b"first").await?;
    store.put(&k, SECRET).await?;
    store.delete(&k).await?;
    // Only the (empty) purge marker is left for the key in the stream.
    let stream = &store.store().stream;
    let last = stream
        .get_last_raw_message_by_subject(&store.subject(&k))
        .await
        .context("reading the marker")?;
    ensure!(last.payload.is_empty(), "the stream still holds a value");
    let info = stream.get_info().await?;
    ensure!(
        info.state.messages == 1,
        "{} messages left",
        info.state.messages
    );
    Ok(())
}

#[tokio::test]
async fn jetstream_bad_bucket_name_is_refused() -> anyhow::Result<()> {
    init_tracing();
    let server = NatsServer::start()?;
    let client = powernode_tests::nats::connect(server.url()).await?;
    let e = JetStreamSecrets::open(client, "bad.bucket name", 1, &test_key())
        .await
        .unwrap_err();
    ensure!(matches!(e, SecretError::Storage(_)), "{e:?}");
    ensure!(e.to_string().contains("bad.bucket name"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_for_matches_the_log_backend() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let embedded = open_for(None, dir.path(), 1, Some(&test_key())).await?;
    ensure!(
        embedded.describe().contains("sled"),
        "{}",
        embedded.describe()
    );
    ensure!(dir.path().join("secrets").is_dir());
    embedded.put(&key("c"), b"local").await?;
    drop(embedded);

    let server = NatsServer::start()?;
    let client = powernode_tests::nats::connect(server.url()).await?;
    let kv = open_for(Some(&client), dir.path(), 1, Some(&test_key())).await?;
    ensure!(kv.describe().contains(DEFAULT_BUCKET), "{}", kv.describe());
    ensure!(
        kv.get(&key("c")).await?.is_none(),
        "the KV store saw the sled one"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_server_down_is_unavailable_without_the_value() -> anyhow::Result<()> {
    init_tracing();
    let mut server = NatsServer::start()?;
    let store = JetStreamSecrets::open(
        powernode_tests::nats::connect(server.url()).await?,
        DEFAULT_BUCKET,
        1,
        &test_key(),
    )
    .await?;
    tokio::task::block_in_place(|| server.stop());
    let e = store.put(&key("cluster-down"), SECRET).await.unwrap_err();
    ensure!(e.is_retryable(), "{e:?}");
    let text = format!("{e} {e:?}");
    ensure!(text.contains("cluster-down"), "{text}");
    ensure!(!text.contains(std::str::from_utf8(SECRET)?), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_replicated_bucket_reads_what_was_just_put() -> anyhow::Result<()> {
    init_tracing();
    let cluster = NatsCluster::start()?;
    let urls = cluster.urls();
    // One store per node, each with its own client pinned to that node.
    let mut stores = Vec::new();
    for url in &urls {
        // (As the platform's user; the first connection goes to `url`.)
        let client = powernode_tests::nats::connect(url.as_str()).await?;
        stores.push(JetStreamSecrets::open(client, DEFAULT_BUCKET, 3, &test_key()).await?);
    }
    let status = stores[0].store().status().await?;
    ensure!(status.info.config.num_replicas == 3);
    // A put through one node is read at once through every other one.
    for round in 0..20 {
        let k = key(&format!("cluster-{round}"));
        let writer = &stores[round % stores.len()];
        writer.put(&k, SECRET).await?;
        for reader in &stores {
            ensure!(
                reader.get(&k).await?.as_deref() == Some(SECRET),
                "round {round}: a replica missed the put"
            );
        }
        writer.delete(&k).await?;
        for reader in &stores {
            ensure!(
                reader.get(&k).await?.is_none(),
                "round {round}: a replica missed the delete"
            );
        }
    }
    Ok(())
}
