//! The workload of a run put together: the admin client, the producers, the consumers and the
//! group's members on their client nodes; once the producers are done and the log stops
//! growing, the consumers finish; after the brokers settle, everything is read back.
//!
//! Invariant: the same in both worlds; a world says only where a client node's tasks run
//! ([`ClientNodes`]): a madsim node in simulation, a thread of its own (with its links'
//! proxies) in a twin run.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::history::{FinalCommitted, FinalRead, ReadGaps};
use crate::scenario::Scenario;
use crate::workload::{self, group, World};

/// Time the brokers get to settle after the workload, before the final read.
const SETTLE: Duration = Duration::from_secs(5);

/// The client nodes of a run, in the order of [`crate::scenario::CLIENT_NODES`], then the
/// checker's (which no fault strikes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Producers = 0,
    Consumers = 1,
    Admin = 2,
    Checker = 3,
}

/// Where a client node's tasks run.
pub trait ClientNodes {
    /// Run `f` on the node of `role`; its output, or `None` if the task died.
    fn spawn<F>(&self, role: Role, f: F) -> BoxFuture<'static, Option<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static;

    /// Run `f` on the node of `role`, on its own: nobody waits for it.
    fn detach<F>(&self, role: Role, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        // Dropping the handle leaves its task running.
        drop(self.spawn(role, f));
    }
}

/// The workload on the client nodes: the admin client, the producers, the consumers and the
/// group's members; once the producers are done and the log stops growing, the consumers
/// finish; after the node settles, everything is read back (and the group's committed
/// offsets).
pub async fn drive(
    sc: &Scenario,
    world: &Arc<World>,
    nodes: &impl ClientNodes,
    other_producers: Vec<BoxFuture<'static, ()>>,
) -> ((FinalRead, ReadGaps), FinalCommitted) {
    use Role::{Admin, Checker, Consumers, Producers};
    nodes.detach(Admin, workload::admin(world.clone()));
    if sc.workload.moves.is_some() {
        nodes.detach(Admin, workload::moves::mover(world.clone()));
        if sc.expect.writes_during_moves_s.is_some() {
            nodes.detach(Admin, workload::moves::watch(world.clone()));
        }
    }
    if sc.workload.configs.is_some() {
        nodes.detach(Admin, workload::configs::changer(world.clone()));
    }
    if !sc.workload.retire.is_empty() {
        nodes.detach(Admin, workload::retire::retirer(world.clone()));
    }
    if sc.auth.as_ref().is_some_and(|a| a.churn.is_some()) {
        use crate::workload::security;
        let passwords = Arc::new(security::Passwords::default());
        nodes.detach(Admin, security::churn(world.clone(), passwords.clone()));
        for who in 0..security::PROBE_USERS.len() {
            nodes.detach(
                Admin,
                security::probe(world.clone(), who, passwords.clone()),
            );
        }
    }
    if world
        .faults
        .iter()
        .any(|f| matches!(f, crate::scenario::Fault::Flood { .. }))
    {
        // The checker's node: no client of the workload shares its address meanwhile.
        nodes.detach(Checker, workload::flood::strangers(world.clone()));
    }
    let (txn_producers, txn_readers) = sc
        .workload
        .transactions
        .as_ref()
        .map_or((0, 0), |t| (t.producers, t.readers));
    let pipeline_workers = sc
        .workload
        .transactions
        .as_ref()
        .and_then(|t| t.pipeline.as_ref())
        .map_or(0, |p| p.workers);
    let producers: Vec<_> = (0..sc.workload.producers)
        .map(|p| nodes.spawn(Producers, workload::produce(world.clone(), p)))
        .chain(
            other_producers
                .into_iter()
                .map(|f| nodes.spawn(Producers, f)),
        )
        .chain(
            (0..txn_producers)
                .map(|p| nodes.spawn(Producers, workload::txn::produce(world.clone(), p))),
        )
        .chain(
            (0..pipeline_workers)
                .map(|w| nodes.spawn(Producers, workload::pipeline::work(world.clone(), w))),
        )
        .chain(
            sc.workload
                .tenant
                .as_ref()
                .map(|_| nodes.spawn(Producers, workload::tenant::run(world.clone()))),
        )
        .collect();
    let mut consumers: Vec<_> = (0..sc.workload.consumers)
        .map(|c| nodes.spawn(Consumers, workload::consume(world.clone(), c)))
        .collect();
    let far_behind = sc
        .workload
        .compacted
        .as_ref()
        .map_or(0, |c| c.far_behind_readers);
    consumers.extend((0..far_behind as usize).map(|r| {
        nodes.spawn(
            Consumers,
            workload::far_behind::read_from_start(world.clone(), r),
        )
    }));
    consumers.extend(
        (0..txn_readers).map(|r| nodes.spawn(Consumers, workload::txn::read(world.clone(), r))),
    );
    if let Some(g) = &sc.workload.group {
        consumers.extend(
            (0..g.members).map(|m| nodes.spawn(Consumers, group::member(world.clone(), m))),
        );
    }
    for p in producers {
        let _ = p.await;
    }
    // Produces without acknowledgement (acks=0) may still wait in the broker's append queue
    // when their producers are done: the end is where the log stops growing.
    let (topic, partitions) = (sc.workload.topic.clone(), sc.workload.partitions);
    nodes
        .spawn(
            Checker,
            workload::quiesce(world.directory.clone(), topic, partitions),
        )
        .await;
    world.producing_over();
    for c in consumers {
        let _ = c.await;
    }
    // Let the node settle, then read everything back.
    tokio::time::sleep(SETTLE).await;
    let (topic, partitions) = (sc.workload.topic.clone(), sc.workload.partitions);
    let group_id = sc.workload.group.as_ref().map(|g| g.group_id.clone());
    let directory = world.directory.clone();
    let reader = world.clone();
    nodes
        .spawn(Checker, async move {
            let read = workload::read_back(directory.clone(), &topic, partitions).await;
            if reader.scenario.clustered() && reader.scenario.workload.admin_interval_s > 0 {
                let listed = workload::read_topics(directory.clone(), reader.admin_topics()).await;
                *workload::lock(&reader.final_topics) = listed;
            }
            if reader.scenario.workload.configs.is_some() {
                let described = workload::configs::described(directory.clone()).await;
                *workload::lock(&reader.final_configs) = described;
            }
            let committed = match group_id {
                Some(g) => group::read_committed(&reader, &g, &topic, partitions).await,
                None => Default::default(),
            };
            (read, committed)
        })
        .await
        .unwrap_or_default()
}
