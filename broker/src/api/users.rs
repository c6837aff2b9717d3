//! SCRAM users (KIP-554): DescribeUserScramCredentials and AlterUserScramCredentials. The
//! credentials are the security metadata — a cluster's, through the controller's log, or a
//! single node's, in its data directory — and come from the client already salted: no
//! password reaches the broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::topic_error_code;
use super::Broker;
use crate::protocol::error;
use crate::security::scram::{Credential, Mechanism};
use crate::security::{Outcomes, SecurityChange, SecurityError, SecurityMetadata};

/// How long a credential change may wait for the controller or the admin lane.
const LIMIT: Duration = Duration::from_secs(30);

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

impl Broker {
    /// The security metadata this broker serves: the cluster's as applied here, or a single
    /// node's.
    pub fn security(&self) -> Arc<SecurityMetadata> {
        match &self.cluster {
            Some(cluster) => cluster.metadata().security.clone(),
            None => self.store.security(),
        }
    }

    /// Apply security changes where this broker keeps them: each change's outcome, or an
    /// error code for all of them.
    pub(crate) async fn alter_security(
        &self,
        changes: Vec<SecurityChange>,
    ) -> Result<Outcomes, i16> {
        let r = match &self.cluster {
            Some(cluster) => cluster.alter_security(changes, LIMIT).await,
            None => self.store.alter_security(changes).await,
        };
        r.map_err(|e| topic_error_code(&e))
    }

    pub(super) fn describe_user_scram_credentials(
        &self,
        req: DescribeUserScramCredentialsRequest,
    ) -> DescribeUserScramCredentialsResponse {
        let md = self.security();
        let describe = |user: &str| {
            let mut r = DescribeUserScramCredentialsResult::default().with_user(text(user));
            match md.users.get(user) {
                Some(creds) => {
                    r.credential_infos = creds
                        .values()
                        .map(|c| {
                            CredentialInfo::default()
                                .with_mechanism(c.mechanism.kafka_type())
                                .with_iterations(c.iterations as i32)
                        })
                        .collect();
                }
                None => {
                    r.error_code = error::RESOURCE_NOT_FOUND;
                    r.error_message = Some(text(
                        "Attempt to describe a user credential that does not exist",
                    ));
                }
            }
            r
        };
        let mut resp = DescribeUserScramCredentialsResponse::default();
        match req.users {
            // Null or empty: every user.
            None => resp.results = md.users.keys().map(|u| describe(u)).collect(),
            Some(users) if users.is_empty() => {
                resp.results = md.users.keys().map(|u| describe(u)).collect()
            }
            Some(users) => {
                let mut seen = BTreeMap::new();
                for u in &users {
                    *seen.entry(u.name.as_str()).or_insert(0) += 1;
                }
                for (user, count) in seen {
                    if count > 1 {
                        let mut r =
                            DescribeUserScramCredentialsResult::default().with_user(text(user));
                        r.error_code = error::DUPLICATE_RESOURCE;
                        r.error_message = Some(text("Cannot describe SCRAM credentials for the same user twice in a single request"));
                        resp.results.push(r);
                    } else {
                        resp.results.push(describe(user));
                    }
                }
            }
        }
        resp
    }

    pub(super) async fn alter_user_scram_credentials(
        &self,
        req: AlterUserScramCredentialsRequest,
    ) -> AlterUserScramCredentialsResponse {
        // Each user's changes, or why they are refused before any is proposed.
        let mut by_user: BTreeMap<String, Result<Vec<SecurityChange>, (i16, String)>> =
            BTreeMap::new();
        let mut touched: BTreeSet<(String, i8)> = BTreeSet::new();
        let mut add = |user: &str, mechanism: i8, change: Result<SecurityChange, (i16, String)>| {
            let entry = by_user.entry(user.to_string()).or_insert(Ok(Vec::new()));
            if !touched.insert((user.to_string(), mechanism)) {
                *entry = Err((
                    error::DUPLICATE_RESOURCE,
                    "A user credential cannot be altered twice in the same request".into(),
                ));
            }
            if let Ok(changes) = entry {
                match change {
                    Ok(c) => changes.push(c),
                    Err(e) => *entry = Err(e),
                }
            }
        };
        let unsupported = |m: i8| {
            (
                error::UNSUPPORTED_SASL_MECHANISM,
                format!("Unknown SCRAM mechanism {m}"),
            )
        };
        for d in &req.deletions {
            let user = d.name.as_str();
            let change = match Mechanism::from_kafka_type(d.mechanism) {
                Some(mechanism) if !user.is_empty() => Ok(SecurityChange::DeleteCredential {
                    user: user.to_string(),
                    mechanism,
                }),
                Some(_) => Err((
                    error::UNACCEPTABLE_CREDENTIAL,
                    "Username must not be empty".into(),
                )),
                None => Err(unsupported(d.mechanism)),
            };
            add(user, d.mechanism, change);
        }
        for u in &req.upsertions {
            let user = u.name.as_str();
            let change = match Mechanism::from_kafka_type(u.mechanism) {
                None => Err(unsupported(u.mechanism)),
                Some(_) if user.is_empty() => Err((
                    error::UNACCEPTABLE_CREDENTIAL,
                    "Username must not be empty".into(),
                )),
                Some(mechanism) => u32::try_from(u.iterations)
                    .map_err(|_| crate::security::scram::ScramError::Iterations(0))
                    .and_then(|i| {
                        Credential::from_salted_password(
                            mechanism,
                            u.salt.to_vec(),
                            &u.salted_password,
                            i,
                        )
                    })
                    .map(|credential| SecurityChange::SetCredential {
                        user: user.to_string(),
                        credential,
                    })
                    .map_err(|e| (error::UNACCEPTABLE_CREDENTIAL, e.to_string())),
            };
            add(user, u.mechanism, change);
        }
        let mut resp = AlterUserScramCredentialsResponse::default();
        let mut proposed = Vec::new();
        let mut owners = Vec::new();
        for (user, changes) in &by_user {
            match changes {
                Ok(changes) => {
                    owners.extend(std::iter::repeat_n(user.clone(), changes.len()));
                    proposed.extend(changes.iter().cloned());
                }
                Err((code, message)) => resp.results.push(
                    AlterUserScramCredentialsResult::default()
                        .with_user(text(user.clone()))
                        .with_error_code(*code)
                        .with_error_message(Some(text(message.clone()))),
                ),
            }
        }
        if proposed.is_empty() {
            return resp;
        }
        let outcomes = self.alter_security(proposed).await;
        // A user's result: its first refused change, or success.
        let mut results: BTreeMap<String, (i16, Option<String>)> = BTreeMap::new();
        for (i, user) in owners.iter().enumerate() {
            let slot = results.entry(user.clone()).or_insert((error::NONE, None));
            if slot.0 != error::NONE {
                continue;
            }
            match &outcomes {
                Err(code) => *slot = (*code, Some("The change could not be made durable".into())),
                Ok(outcomes) => match outcomes.get(i) {
                    Some(Ok(_)) => {}
                    Some(Err(e @ SecurityError::NoSuchCredential(..))) => {
                        *slot = (error::RESOURCE_NOT_FOUND, Some(e.to_string()))
                    }
                    Some(Err(
                        e @ (SecurityError::Unacceptable(_) | SecurityError::InvalidAcl(_)),
                    )) => *slot = (error::UNACCEPTABLE_CREDENTIAL, Some(e.to_string())),
                    None => *slot = (error::UNKNOWN_SERVER_ERROR, None),
                },
            }
        }
        for (user, (code, message)) in results {
            if code == error::NONE {
                tracing::info!(user, "SCRAM credentials altered");
            }
            resp.results.push(
                AlterUserScramCredentialsResult::default()
                    .with_user(text(user))
                    .with_error_code(code)
                    .with_error_message(message.map(text)),
            );
        }
        resp
    }
}
