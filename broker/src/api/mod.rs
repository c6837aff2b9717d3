//! What the broker does for each Kafka request: one file per request family ([`produce`],
//! [`fetch`], [`list_offsets`], [`leader_epochs`], [`metadata`], [`admin`] for topics and
//! partitions, [`elections`], [`configs`],
//! [`cluster`], [`group`], [`producers`]), and here the dispatch table.
//!
//! [`Broker::dispatch`] runs in a connection's arrival order the part of a request that must be
//! ordered (validating produce data and queueing it for the commit pipeline) and returns a future
//! for the rest; the connection writes responses in request order.
//!
//! Architecture invariant: no storage logic here — handlers read through the
//! [`Store`](crate::storage::Store) and queue work for its pipeline.

mod acls;
mod admin;
mod authorize;
mod cluster;
mod codes;
mod configs;
mod consumer_group;
mod elections;
mod features;
mod fetch;
mod group;
mod leader_epochs;
mod list_offsets;
mod metadata;
mod produce;
mod producers;
mod quotas;
mod reassign;
mod telemetry;
mod throttling;
mod topic_ids;
mod topic_partitions;
mod txn;
mod users;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_backend::Clock;
use kafka_protocol::messages::{ApiVersionsResponse, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::config::Config;
use crate::group::Coordinator;
use crate::memory::{MemoryBudget, Reservation};
use crate::metrics::Metrics;
use crate::protocol::{self, error, Request};
use crate::storage::catalog::{check_topic_name, Topic, TopicError};
use crate::storage::Store;
use crate::throttle::Throttles;
use admin::topic_error_code;
pub use authorize::Session;
use authorize::{Access, Gate};
use codes::{append_code, append_refusal, storage_code, storage_refusal};

/// What a connection does once a request is handled.
pub enum Reply {
    /// Write this response; the memory it holds is given back once it is written. Then,
    /// for the throttle time (a client over its quota), read nothing more from the client.
    Send(Bytes, Reservation, Duration),
    /// Write this response, then close the connection (a refused authentication).
    Last(Bytes, Reservation),
    /// Nothing to send (acks=0); read nothing more for the throttle time.
    Silent(Duration),
    /// The response could not be encoded: close rather than leave the client waiting.
    Close,
}

/// A response being computed.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// The request handlers' view of the node.
pub struct Broker {
    pub config: Config,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Request and response bytes held, broker-wide.
    pub memory: Arc<MemoryBudget>,
    /// Limits on log lines a peer can cause.
    pub throttles: Throttles,
    /// The consumer-group coordinator.
    pub groups: Arc<Coordinator>,
    /// The transaction coordinator (always there while the broker serves; an `Option` for
    /// tests that build a broker without one).
    pub txns: Option<Arc<crate::txn::TxnCoordinator>>,
    /// In a cluster: the controller (cluster metadata) and, through it, replication.
    pub cluster: Option<Arc<crate::controller::Controller>>,
    /// Client telemetry (KIP-714): the clients that push metrics, and what they pushed.
    pub telemetry: Arc<crate::telemetry::ClientTelemetry>,
    /// The authorizer's settings, when requests are checked against the ACLs.
    pub authorizer: Option<Arc<crate::config::AuthorizerSettings>>,
    /// What clients used, measured against their quotas.
    pub quota_meters: Arc<crate::quota::Meters>,
}

/// Why this broker does not serve a partition as its leader: the error code, and the leader
/// and epoch it knows of (for the clients that take them from the response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotServing {
    pub code: i16,
    pub leader: i32,
    pub epoch: i32,
}

fn name_of(t: &TopicName) -> &str {
    t.0.as_str()
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl Broker {
    /// Handle a request: ordered part now, the rest in the returned future. `frame` is the
    /// memory the request's frame holds; produced batches keep it until they are in the log.
    /// With the future, whether the request's client is over a quota already (a produce's
    /// bytes are counted as it arrives): the connection then serves it one request at a time,
    /// as Kafka serves every connection, rather than the pipelined ones behind it too.
    pub async fn dispatch(
        self: &Arc<Self>,
        req: Request,
        frame: Arc<Reservation>,
        session: &Session,
    ) -> (ResponseFuture, bool) {
        let quotas = self.client_quotas();
        if quotas.is_empty() {
            return (self.handle(req, frame, session, None).await, false);
        }
        // A client quota is set: the request's handling is timed, in both parts.
        let cost = Arc::new(crate::quota::cost::Cost::default());
        let client_id = req.client_id.clone().unwrap_or_default();
        let metering = Arc::new(throttling::Metering::new(
            self, quotas, session, client_id, &frame, &cost,
        ));
        let over = req.api == kafka_protocol::messages::ApiKey::Produce
            && !metering.record_produce().is_zero();
        use crate::quota::cost::Timed;
        let handled = self.handle(req, frame, session, Some(metering));
        let rest = Timed::new(handled, cost.clone(), self.clock.clone()).await;
        (Box::pin(Timed::new(rest, cost, self.clock.clone())), over)
    }

    /// [`Broker::dispatch`], with the request's account with the client quotas, if any is set.
    async fn handle(
        self: &Arc<Self>,
        req: Request,
        frame: Arc<Reservation>,
        session: &Session,
        metering: Option<Arc<throttling::Metering>>,
    ) -> ResponseFuture {
        self.metrics.request(req.api as i16);
        crate::fault_point!("request.dispatch");
        crate::cpu_work!("request", 1);
        crate::cpu_work!("bytes", frame.bytes());
        let (api, version, cid) = (req.api, req.version, req.correlation_id);
        let this = self.clone();
        let memory = self.memory.clone();
        let access = Access::new(self.authorizer.as_ref(), || self.security(), session);
        let mut body = req.body;
        self.name_topics(&mut body, version);
        let (body, refused) = match authorize::gate(&access, body, version) {
            Gate::Serve(body, refused) => (Ok(body), Some(Arc::new(refused))),
            Gate::Answer(answer) => (Err(answer), None),
        };
        let refused_any = refused.as_ref().is_some_and(|r| r.any());
        // Encode a response (with what authorization refused put back); the memory it holds,
        // already taken (a Fetch's) or charged now.
        let (namer, listener) = (self.clone(), req.listener.clone());
        let metered = metering.clone();
        let respond_holding = move |mut body: ResponseKind, held: Option<Reservation>| -> Reply {
            if let Some(refused) = &refused {
                refused.merge(&mut body);
            }
            namer.answer_ids(&mut body, version);
            namer.name_leaders(&mut body, version, listener.as_deref());
            let throttle = metered
                .as_ref()
                .map_or(Duration::ZERO, |m| m.throttle(api, version, &body));
            let ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
            let told = ms > 0 && throttling::set_throttle(&mut body, ms);
            let mut encoded = protocol::encode_response(api, version, cid, &body);
            if encoded.is_err() && told {
                // A version without the field: the connection's pause still holds the client.
                throttling::set_throttle(&mut body, 0);
                encoded = protocol::encode_response(api, version, cid, &body);
            }
            match encoded {
                Ok(b) => {
                    let held = match held {
                        Some(mut held) => {
                            held.resize(b.len());
                            held
                        }
                        None => memory.charge(b.len()),
                    };
                    Reply::Send(b, held, throttle)
                }
                Err(e) => {
                    tracing::error!(?api, version, error = %format!("{e:#}"), "cannot encode a response; closing the connection");
                    Reply::Close
                }
            }
        };
        let respond = {
            let respond_holding = respond_holding.clone();
            move |body: ResponseKind| respond_holding(body, None)
        };
        let listener = req.listener.clone();
        let body = match body {
            Ok(body) => body,
            // Refused whole by the authorizer: its answer, at once.
            Err(answer) => return Box::pin(async move { respond(answer) }),
        };
        match body {
            RequestKind::Fetch(mut f) => Box::pin(async move {
                if let Some(limit) = metering.as_ref().and_then(|m| m.fetch_limit()) {
                    // As Kafka: no more in one fetch than the consumer quota allows a span
                    // of its windows.
                    f.max_bytes = f.max_bytes.min(limit);
                    f.min_bytes = f.min_bytes.min(f.max_bytes);
                }
                let (r, held) = this.fetch(f, version).await;
                respond_holding(ResponseKind::Fetch(r), Some(held))
            }),
            RequestKind::Produce(p) => {
                let pending = self.produce_enqueue(p, version, &frame).await;
                Box::pin(async move {
                    let (acks, resp) = this.produce_finish(pending, version).await;
                    if acks == 0 && refused_any {
                        return Reply::Close;
                    }
                    if acks == 0 {
                        // No answer to tell an acks=0 producer of an error (a partition that
                        // moved to another leader, say): as Kafka, the connection is closed,
                        // and the client asks for metadata again.
                        let refused = resp
                            .responses
                            .iter()
                            .flat_map(|t| &t.partition_responses)
                            .find(|p| p.error_code != error::NONE);
                        match refused {
                            None => Reply::Silent(
                                metering
                                    .as_ref()
                                    .map_or(Duration::ZERO, |m| m.throttle_unanswered()),
                            ),
                            Some(p) => {
                                tracing::debug!(
                                    partition = p.index,
                                    code = p.error_code,
                                    "closing the connection of an acks=0 producer refused"
                                );
                                Reply::Close
                            }
                        }
                    } else {
                        respond(ResponseKind::Produce(resp))
                    }
                })
            }
            RequestKind::ApiVersions(v) => {
                // Kafka refuses a client software name or version that is not a few of
                // `[a-zA-Z0-9.-]`, starting and ending alphanumeric (v3+), listing no API.
                if version >= 3 && !protocol::software_ok(&v) {
                    let mut body = ApiVersionsResponse::default();
                    body.error_code = error::INVALID_REQUEST;
                    return Box::pin(async move { respond(ResponseKind::ApiVersions(body)) });
                }
                let body = protocol::api_versions(
                    error::NONE,
                    version,
                    self.telemetry.enabled(),
                    &self.finalized_features(),
                );
                Box::pin(async move { respond(ResponseKind::ApiVersions(body)) })
            }
            RequestKind::Metadata(m) => Box::pin(async move {
                let r = this.metadata(m, version, listener.as_deref()).await;
                respond(ResponseKind::Metadata(r))
            }),
            RequestKind::DescribeTopicPartitions(r) => Box::pin(async move {
                let r = this.describe_topic_partitions(r, listener.as_deref()).await;
                respond(ResponseKind::DescribeTopicPartitions(r))
            }),
            RequestKind::FindCoordinator(r) => {
                let r = self.find_coordinator(r, version, listener.as_deref());
                Box::pin(async move { respond(ResponseKind::FindCoordinator(r)) })
            }
            RequestKind::JoinGroup(r) => {
                let (client_id, peer) = (req.client_id.clone(), req.peer);
                Box::pin(async move {
                    let r = this.join_group(r, version, client_id, peer).await;
                    respond(ResponseKind::JoinGroup(r))
                })
            }
            RequestKind::SyncGroup(r) => Box::pin(async move {
                let r = this.sync_group(r, version).await;
                respond(ResponseKind::SyncGroup(r))
            }),
            RequestKind::Heartbeat(r) => Box::pin(async move {
                let r = this.heartbeat(r).await;
                respond(ResponseKind::Heartbeat(r))
            }),
            RequestKind::LeaveGroup(r) => Box::pin(async move {
                let r = this.leave_group(r, version).await;
                respond(ResponseKind::LeaveGroup(r))
            }),
            RequestKind::OffsetCommit(r) => {
                let answer = self.offset_commit(r, version).await;
                Box::pin(async move { respond(ResponseKind::OffsetCommit(answer.await)) })
            }
            RequestKind::OffsetFetch(r) => Box::pin(async move {
                let r = this.offset_fetch(r, version).await;
                respond(ResponseKind::OffsetFetch(r))
            }),
            RequestKind::ConsumerGroupHeartbeat(r) => {
                let (client_id, peer) = (req.client_id.clone(), req.peer);
                Box::pin(async move {
                    let r = this
                        .consumer_group_heartbeat(r, version, client_id, peer)
                        .await;
                    respond(ResponseKind::ConsumerGroupHeartbeat(r))
                })
            }
            RequestKind::ConsumerGroupDescribe(r) => Box::pin(async move {
                let r = this.consumer_group_describe(r).await;
                respond(ResponseKind::ConsumerGroupDescribe(r))
            }),
            RequestKind::ListGroups(r) => Box::pin(async move {
                let r = this.list_groups(r, version).await;
                respond(ResponseKind::ListGroups(r))
            }),
            RequestKind::DescribeGroups(r) => Box::pin(async move {
                let r = this.describe_groups(r, version).await;
                respond(ResponseKind::DescribeGroups(r))
            }),
            RequestKind::DeleteGroups(r) => Box::pin(async move {
                let r = this.delete_groups(r).await;
                respond(ResponseKind::DeleteGroups(r))
            }),
            RequestKind::OffsetDelete(r) => Box::pin(async move {
                let r = this.offset_delete(r).await;
                respond(ResponseKind::OffsetDelete(r))
            }),
            RequestKind::InitProducerId(r) => Box::pin(async move {
                let r = this.init_producer_id(r, version).await;
                respond(ResponseKind::InitProducerId(r))
            }),
            RequestKind::AddPartitionsToTxn(r) => Box::pin(async move {
                let r = this.add_partitions_to_txn(r, version).await;
                respond(ResponseKind::AddPartitionsToTxn(r))
            }),
            RequestKind::AddOffsetsToTxn(r) => Box::pin(async move {
                let r = this.add_offsets_to_txn(r, version).await;
                respond(ResponseKind::AddOffsetsToTxn(r))
            }),
            RequestKind::EndTxn(r) => Box::pin(async move {
                let r = this.end_txn(r, version).await;
                respond(ResponseKind::EndTxn(r))
            }),
            RequestKind::TxnOffsetCommit(r) => Box::pin(async move {
                let r = this.txn_offset_commit(r).await;
                respond(ResponseKind::TxnOffsetCommit(r))
            }),
            RequestKind::WriteTxnMarkers(r) => Box::pin(async move {
                let r = this.write_txn_markers(r).await;
                respond(ResponseKind::WriteTxnMarkers(r))
            }),
            RequestKind::DescribeTransactions(r) => Box::pin(async move {
                let r = this.describe_transactions(r).await;
                respond(ResponseKind::DescribeTransactions(r))
            }),
            RequestKind::ListTransactions(r) => Box::pin(async move {
                let r = this.list_transactions(r, version).await;
                respond(ResponseKind::ListTransactions(r))
            }),
            RequestKind::ListOffsets(l) => Box::pin(async move {
                let r = this.list_offsets(l, version).await;
                respond(ResponseKind::ListOffsets(r))
            }),
            RequestKind::OffsetForLeaderEpoch(o) => Box::pin(async move {
                let r = this.offset_for_leader_epoch(o).await;
                respond(ResponseKind::OffsetForLeaderEpoch(r))
            }),
            RequestKind::CreateTopics(c) => Box::pin(async move {
                let quota = throttling::Mutations::new(metering, version >= 6);
                let r = this.create_topics(c, version, quota).await;
                respond(ResponseKind::CreateTopics(r))
            }),
            RequestKind::DeleteTopics(d) => Box::pin(async move {
                let quota = throttling::Mutations::new(metering, version >= 5);
                let r = this.delete_topics(d, version, quota).await;
                respond(ResponseKind::DeleteTopics(r))
            }),
            RequestKind::CreatePartitions(c) => Box::pin(async move {
                let quota = throttling::Mutations::new(metering, version >= 3);
                let r = this.create_partitions(c, quota).await;
                respond(ResponseKind::CreatePartitions(r))
            }),
            RequestKind::DeleteRecords(d) => Box::pin(async move {
                let r = this.delete_records(d).await;
                respond(ResponseKind::DeleteRecords(r))
            }),
            RequestKind::DescribeConfigs(d) => Box::pin(async move {
                let r = this.describe_configs(d, version).await;
                respond(ResponseKind::DescribeConfigs(r))
            }),
            RequestKind::AlterConfigs(a) => Box::pin(async move {
                let r = this.alter_configs(a).await;
                respond(ResponseKind::AlterConfigs(r))
            }),
            RequestKind::IncrementalAlterConfigs(a) => Box::pin(async move {
                let r = this.incremental_alter_configs(a).await;
                respond(ResponseKind::IncrementalAlterConfigs(r))
            }),
            RequestKind::DescribeCluster(d) => {
                let r = self.describe_cluster(d, version, listener.as_deref());
                Box::pin(async move { respond(ResponseKind::DescribeCluster(r)) })
            }
            RequestKind::GetTelemetrySubscriptions(r) => {
                let r = self.get_telemetry_subscriptions(
                    r,
                    req.client_id.as_deref(),
                    req.peer,
                    req.software.as_deref(),
                );
                Box::pin(async move { respond(ResponseKind::GetTelemetrySubscriptions(r)) })
            }
            RequestKind::PushTelemetry(r) => {
                let r = self.push_telemetry(
                    r,
                    req.client_id.as_deref(),
                    req.peer,
                    req.software.as_deref(),
                );
                Box::pin(async move { respond(ResponseKind::PushTelemetry(r)) })
            }
            RequestKind::ListConfigResources(l) => {
                let r = self.list_config_resources(l, version);
                Box::pin(async move { respond(ResponseKind::ListConfigResources(r)) })
            }
            RequestKind::DescribeLogDirs(d) => {
                let r = self.describe_log_dirs(d, version);
                Box::pin(async move { respond(ResponseKind::DescribeLogDirs(r)) })
            }
            RequestKind::DescribeAcls(d) => {
                let r = self.describe_acls(d);
                Box::pin(async move { respond(ResponseKind::DescribeAcls(r)) })
            }
            RequestKind::CreateAcls(c) => Box::pin(async move {
                let r = this.create_acls(c).await;
                respond(ResponseKind::CreateAcls(r))
            }),
            RequestKind::DeleteAcls(d) => Box::pin(async move {
                let r = this.delete_acls(d).await;
                respond(ResponseKind::DeleteAcls(r))
            }),
            RequestKind::ElectLeaders(e) => Box::pin(async move {
                let r = this.elect_leaders(e, version).await;
                respond(ResponseKind::ElectLeaders(r))
            }),
            RequestKind::AlterPartitionReassignments(a) => Box::pin(async move {
                let r = this.alter_partition_reassignments(a, version).await;
                respond(ResponseKind::AlterPartitionReassignments(r))
            }),
            RequestKind::DescribeQuorum(d) => Box::pin(async move {
                let r = this.describe_quorum(d, version).await;
                respond(ResponseKind::DescribeQuorum(r))
            }),
            RequestKind::UnregisterBroker(u) => Box::pin(async move {
                let r = this.unregister_broker(u).await;
                respond(ResponseKind::UnregisterBroker(r))
            }),
            RequestKind::ListPartitionReassignments(l) => {
                let r = self.list_partition_reassignments(l);
                Box::pin(async move { respond(ResponseKind::ListPartitionReassignments(r)) })
            }
            RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_) => {
                // A SASL listener's connection answers these itself; on any other listener
                // there is nothing to authenticate, as Kafka answers.
                let body = match body {
                    RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
                        kafka_protocol::messages::SaslHandshakeResponse::default()
                            .with_error_code(error::ILLEGAL_SASL_STATE),
                    ),
                    _ => ResponseKind::SaslAuthenticate(
                        kafka_protocol::messages::SaslAuthenticateResponse::default()
                            .with_error_code(error::ILLEGAL_SASL_STATE)
                            .with_error_message(Some(StrBytes::from_static_str(
                                "this listener does not use SASL",
                            ))),
                    ),
                };
                Box::pin(async move { respond(body) })
            }
            RequestKind::DescribeUserScramCredentials(d) => {
                let r = self.describe_user_scram_credentials(d);
                Box::pin(async move { respond(ResponseKind::DescribeUserScramCredentials(r)) })
            }
            RequestKind::AlterUserScramCredentials(a) => Box::pin(async move {
                let r = this.alter_user_scram_credentials(a).await;
                respond(ResponseKind::AlterUserScramCredentials(r))
            }),
            RequestKind::DescribeClientQuotas(d) => {
                let r = self.describe_client_quotas(d);
                Box::pin(async move { respond(ResponseKind::DescribeClientQuotas(r)) })
            }
            RequestKind::UpdateFeatures(u) => Box::pin(async move {
                let r = this.update_features(u, version).await;
                respond(ResponseKind::UpdateFeatures(r))
            }),
            RequestKind::AlterClientQuotas(a) => Box::pin(async move {
                let r = this.alter_client_quotas(a).await;
                respond(ResponseKind::AlterClientQuotas(r))
            }),
            RequestKind::DescribeProducers(d) => {
                let r = self.describe_producers(d);
                Box::pin(async move { respond(ResponseKind::DescribeProducers(r)) })
            }
            other => {
                // decode() only lets through what SUPPORTED lists, and each is handled above.
                tracing::error!(api = ?other, "request type without a handler");
                Box::pin(async { Reply::Close })
            }
        }
    }

    /// In a cluster, whether this broker serves partition `index` of `topic` as its leader now,
    /// and the request's leader epoch (`-1`: none given) is the current one. On a single node
    /// it always does, at epoch 0.
    pub(crate) fn serving(&self, topic: &str, index: i32, epoch: i32) -> Result<(), NotServing> {
        let Some(cluster) = &self.cluster else {
            // One node, whose partitions' leader epoch is always 0: a later one is unknown.
            if epoch > 0 {
                return Err(self.refusal(topic, index, error::UNKNOWN_LEADER_EPOCH));
            }
            return Ok(());
        };
        let refuse = |code| self.refusal(topic, index, code);
        let Some(view) = cluster.replication().replica(topic, index) else {
            return Err(refuse(error::NOT_LEADER_OR_FOLLOWER));
        };
        let status = view.status();
        let term = i32::try_from(status.term).unwrap_or(i32::MAX);
        if epoch >= 0 && epoch < term {
            return Err(refuse(error::FENCED_LEADER_EPOCH));
        }
        if epoch > term {
            return Err(refuse(error::UNKNOWN_LEADER_EPOCH));
        }
        if !status.serving {
            return Err(refuse(error::NOT_LEADER_OR_FOLLOWER));
        }
        Ok(())
    }

    /// In a cluster, whether this broker takes writes to partition `index` of `topic`: its
    /// replica leads. From its first moment as leader, not only once it serves reads: what it
    /// takes commits with its term's first entry, as in Kafka a new leader takes writes at
    /// once. (Refused until then, a client told by Metadata that this broker leads was sent
    /// back to Metadata, which named it again.)
    pub(crate) fn takes_writes(&self, topic: &str, index: i32) -> Result<(), NotServing> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let leading = cluster
            .replication()
            .replica(topic, index)
            .is_some_and(|view| view.status().is_leader);
        if leading {
            return Ok(());
        }
        Err(self.refusal(topic, index, error::NOT_LEADER_OR_FOLLOWER))
    }

    /// Before an answer only a current leader may give (an offset past its log's end is out
    /// of range): confirm through a quorum that this broker still leads the partition. A
    /// leader back from a pause still believes it leads, with a log short of the group's — a
    /// consumer told OFFSET_OUT_OF_RANGE by it resets to the earliest offset and commits that
    /// (`cluster-failover-clients` seed 21). Not confirmed within a second:
    /// NOT_LEADER_OR_FOLLOWER, and the client asks Metadata again. Nothing to confirm on a
    /// single node.
    pub(crate) async fn confirm_leading(&self, topic: &str, index: i32) -> Result<(), NotServing> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let confirmed = match cluster.replication().replica(topic, index) {
            Some(view) => self
                .clock
                .timeout(
                    std::time::Duration::from_secs(1),
                    cluster.replication().confirm_leading(view.group),
                )
                .await
                .unwrap_or(false),
            None => false,
        };
        if confirmed {
            return Ok(());
        }
        Err(self.refusal(topic, index, error::NOT_LEADER_OR_FOLLOWER))
    }

    /// A refusal with `code`, naming the leader this broker knows (the current-leader fields
    /// a client moves to).
    fn refusal(&self, topic: &str, index: i32, code: i16) -> NotServing {
        let known = self.partition_leader(topic, index);
        NotServing {
            code,
            leader: known.map_or(-1, |(l, _)| l),
            epoch: known.map_or(-1, |(_, e)| e),
        }
    }

    /// The leader of partition `index` of `topic` and its epoch, as this broker knows them;
    /// `None` when it knows of no live leader (Metadata answers LEADER_NOT_AVAILABLE and the
    /// client asks again, another broker perhaps). Never a leader this broker knows is not
    /// leading: where it holds a replica, the replica's view wins when it is newer than the
    /// metadata's (a replica in a newer term that knows no leader — an election under way —
    /// names none) or names a leader in the same term; and this broker never names itself from
    /// the metadata's record unless its replica leads (a leader that stepped down keeps its
    /// term). Found black-box: a leader cut off
    /// from its peers stepped down and refused produces, while its Metadata went on naming it
    /// from the metadata's record (clients that could reach only it looped); a broker restarted
    /// with an emptied data directory named itself leader of the partitions it had led.
    pub(crate) fn partition_leader(&self, topic: &str, index: i32) -> Option<(i32, i32)> {
        let cluster = self.cluster.as_ref()?;
        let md = cluster.metadata();
        let p = md.partition(topic, index)?;
        let me = cluster.replication().node_id();
        let (leader, term) = match cluster.replication().replica(topic, index) {
            Some(view) => {
                let s = view.status();
                if s.term > p.leader_term {
                    // A newer term than the metadata knows: its leader, if the replica knows it.
                    (s.leader?, s.term)
                } else if let Some(l) = s.leader.filter(|_| s.term == p.leader_term) {
                    (l, s.term)
                } else if p.leader == Some(me) && !s.is_leader {
                    // This broker led, and no longer does (it stepped down, or restarted).
                    return None;
                } else {
                    (p.leader?, p.leader_term)
                }
            }
            None => (p.leader?, p.leader_term),
        };
        md.brokers
            .get(&leader)
            .filter(|b| !b.fenced)
            .map(|_| (leader as i32, i32::try_from(term).unwrap_or(i32::MAX)))
    }

    /// Find a topic, creating it when auto-creation applies.
    /// Whether the cluster (or the single node) has the topic, whether or not this broker keeps
    /// a replica of it.
    fn topic_known(&self, name: &str) -> bool {
        match &self.cluster {
            Some(cluster) => cluster.metadata().topics.contains_key(name),
            None => self.store.topic(name).is_some(),
        }
    }

    async fn topic_or_create(&self, name: &str, may_create: bool) -> Result<Arc<Topic>, i16> {
        if let Some(cluster) = &self.cluster {
            return self
                .cluster_topic_or_create(cluster, name, may_create)
                .await;
        }
        if let Err(why) = check_topic_name(name) {
            tracing::debug!(topic = name, %why, "refusing an invalid topic name");
            return Err(error::INVALID_TOPIC_EXCEPTION);
        }
        if let Some(t) = self.store.topic(name) {
            return Ok(t);
        }
        // The group coordinator makes its topic with the partitions it needs.
        if !(may_create && self.config.auto_create_topics)
            || crate::storage::catalog::is_internal(name)
        {
            return Err(error::UNKNOWN_TOPIC_OR_PARTITION);
        }
        match self
            .store
            .create_topic(name, self.config.default_partitions, Default::default())
            .await
        {
            Ok(t) => Ok(t),
            Err(TopicError::Exists) => self
                .store
                .topic(name)
                .ok_or(error::UNKNOWN_TOPIC_OR_PARTITION),
            Err(e) => Err(topic_error_code(&e)),
        }
    }
}

impl Broker {
    /// Replicas of a topic created without a replication factor: three, or every broker of a
    /// smaller cluster (as the metadata counts them), unless `default_replication_factor` says.
    fn default_replication_factor(&self) -> i32 {
        match &self.cluster {
            // (The voters count before every one of them has registered.)
            Some(c) => self
                .config
                .replication_factor_of(c.metadata().brokers.len().max(self.config.peers().len())),
            None => self.config.replication_factor(),
        }
    }

    /// [`Broker::topic_or_create`] in a cluster: the topic as the metadata has it (this
    /// broker's copy of it), created through the controller when auto-creation applies.
    async fn cluster_topic_or_create(
        &self,
        cluster: &crate::controller::Controller,
        name: &str,
        may_create: bool,
    ) -> Result<Arc<Topic>, i16> {
        let limit = std::time::Duration::from_secs(10);
        if cluster.metadata().topics.contains_key(name) {
            // The metadata has it; this broker's copy is there, or being made.
            return cluster
                .local_topic(name, limit)
                .await
                .ok_or(error::LEADER_NOT_AVAILABLE);
        }
        if !(may_create && self.config.auto_create_topics)
            || crate::storage::catalog::is_internal(name)
        {
            return Err(error::UNKNOWN_TOPIC_OR_PARTITION);
        }
        match cluster
            .create_topic(
                name,
                self.config.default_partitions,
                self.default_replication_factor(),
                None,
                Default::default(),
                limit,
            )
            .await
        {
            Ok(_) | Err(TopicError::Exists) => {}
            Err(e) => return Err(topic_error_code(&e)),
        }
        cluster
            .local_topic(name, limit)
            .await
            .ok_or(error::LEADER_NOT_AVAILABLE)
    }
}

pub(crate) fn count_connection(metrics: &Metrics, delta: i64) {
    metrics.connections.inc_by(delta);
}
