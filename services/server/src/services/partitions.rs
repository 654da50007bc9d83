//! `--partitions`: replicas of one service splitting the accounts between
//! them ([`powernode_runtime::partition`]). Each replica keeps leases on
//! its partitions in JetStream KV and its consumer folds and decides only
//! for their accounts; without the flag a replica decides for every
//! account (what `powernode up` and a lone replica do).

use super::{ServiceContext, ServiceName};
use powernode_runtime::partition::lease::{LeaseError, LeaseKeeper};
use powernode_runtime::partition::{Ownership, PartitionConfig};
use powernode_runtime::{ConsumerConfig, RuntimeError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How a service's replicas split the accounts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PartitionArgs {
    /// Split the accounts among this service's replicas: the number of
    /// partitions (the same for every replica of the service; 16 is a good
    /// start). Each replica folds and decides for the partitions it holds a
    /// lease on (leases are held by cursor name, `<service>[-<replica>]`).
    /// Needs the JetStream log. Not for the API, which serves every account.
    #[arg(long, env = "POWERNODE_PARTITIONS")]
    pub partitions: Option<u32>,
    /// How long a partition's lease outlives its holder (milliseconds): a
    /// killed replica's partitions move after about this long.
    #[arg(long, env = "POWERNODE_PARTITION_LEASE_MS", default_value_t = 5000)]
    pub partition_lease_ms: u64,
}

/// Without partitions: nothing to keep, only the shutdown to wait for.
pub(crate) type Keeper = Option<LeaseKeeper>;

/// When `ctx` asks for partitions: the lease keeper, opened, and the
/// consumer told which partitions it owns.
pub(crate) async fn prepare(
    name: ServiceName,
    ctx: &ServiceContext,
    config: &mut ConsumerConfig,
) -> Result<Keeper, RuntimeError> {
    let Some(partitions) = ctx.partitions.partitions else {
        return Ok(None);
    };
    let refuse = |reason: String| RuntimeError::Fatal {
        name: config.name.clone(),
        reason,
    };
    if name == ServiceName::Api {
        return Err(refuse(
            "--partitions: the API serves every account and does not partition".into(),
        ));
    }
    if partitions == 0 {
        return Err(refuse("--partitions must be at least 1".into()));
    }
    let partition = PartitionConfig {
        service: name.as_str().to_string(),
        // The consumer's name (`<service>[-<replica>]`) is unique per replica.
        replica: config.name.clone(),
        partitions,
        lease_ttl: Duration::from_millis(ctx.partitions.partition_lease_ms.max(400)),
    };
    let ownership = Ownership::new(partition.partitions);
    let keeper = LeaseKeeper::open(ctx.log.clone(), partition, ownership.clone())
        .await
        .map_err(|e: LeaseError| refuse(e.to_string()))?;
    config.partitions = Some(ownership);
    Ok(Some(keeper))
}

/// Runs the keeper until `local` is cancelled (then it releases its leases).
pub(crate) async fn keep(keeper: Keeper, local: CancellationToken) {
    match keeper {
        Some(k) => k.run(local).await,
        None => local.cancelled().await,
    }
}
