//! The ACL APIs: CreateAcls, DescribeAcls, DeleteAcls (v1–3). The ACLs are security metadata
//! — a cluster's through the controller's log, the same on every broker once applied; a single
//! node's in its data directory. Without an authorizer they answer as Kafka's brokers do:
//! SECURITY_DISABLED.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::protocol::error;
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::{Applied, SecurityChange};

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn message(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

impl Broker {
    pub(super) fn describe_acls(&self, req: DescribeAclsRequest) -> DescribeAclsResponse {
        let mut resp = DescribeAclsResponse::default();
        if self.authorizer.is_none() {
            resp.error_code = error::SECURITY_DISABLED;
            resp.error_message = message(NO_AUTHORIZER);
            return resp;
        }
        let filter = AclFilter {
            resource_type: req.resource_type_filter,
            name: req.resource_name_filter.map(|n| n.to_string()),
            pattern: req.pattern_type_filter,
            principal: req.principal_filter.map(|p| p.to_string()),
            host: req.host_filter.map(|h| h.to_string()),
            operation: req.operation,
            permission: req.permission_type,
        };
        if let Err(why) = filter.check() {
            resp.error_code = error::INVALID_REQUEST;
            resp.error_message = message(why);
            return resp;
        }
        let md = self.security();
        // ACLs are kept sorted by resource first: one entry per resource.
        for b in md.acls.iter().filter(|b| filter.matches(b)) {
            let same = resp.resources.last().is_some_and(|r| {
                r.resource_type == b.resource_type
                    && r.resource_name.as_str() == b.name
                    && r.pattern_type == b.pattern
            });
            if !same {
                resp.resources.push(
                    DescribeAclsResource::default()
                        .with_resource_type(b.resource_type)
                        .with_resource_name(text(&b.name))
                        .with_pattern_type(b.pattern),
                );
            }
            let last = resp.resources.last_mut().expect("pushed above");
            last.acls.push(
                AclDescription::default()
                    .with_principal(text(&b.principal))
                    .with_host(text(&b.host))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission),
            );
        }
        resp
    }

    pub(super) async fn create_acls(&self, req: CreateAclsRequest) -> CreateAclsResponse {
        let mut resp = CreateAclsResponse::default();
        if self.authorizer.is_none() {
            resp.results = req
                .creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(error::SECURITY_DISABLED)
                        .with_error_message(message(NO_AUTHORIZER))
                })
                .collect();
            return resp;
        }
        let changes: Vec<SecurityChange> = req
            .creations
            .iter()
            .map(|c| SecurityChange::CreateAcl {
                binding: AclBinding {
                    resource_type: c.resource_type,
                    name: c.resource_name.to_string(),
                    pattern: c.resource_pattern_type,
                    principal: c.principal.to_string(),
                    host: c.host.to_string(),
                    operation: c.operation,
                    permission: c.permission_type,
                },
            })
            .collect();
        // Bindings Kafka refuses are answered without a proposal.
        let checked: Vec<Result<(), String>> = changes
            .iter()
            .map(|c| match c {
                SecurityChange::CreateAcl { binding } => binding.check(),
                _ => Ok(()),
            })
            .collect();
        let valid: Vec<SecurityChange> = changes
            .iter()
            .zip(&checked)
            .filter(|(_, ok)| ok.is_ok())
            .map(|(c, _)| c.clone())
            .collect();
        let outcomes = if valid.is_empty() {
            Ok(Vec::new())
        } else {
            self.alter_security(valid).await
        };
        let mut applied = outcomes.as_ref().ok().map(|o| o.iter());
        for check in checked {
            let result = match (check, &outcomes, applied.as_mut().and_then(|a| a.next())) {
                (Err(why), _, _) => (error::INVALID_REQUEST, Some(why)),
                (Ok(()), Err(code), _) => (*code, Some("the ACL could not be made durable".into())),
                (Ok(()), Ok(_), Some(Ok(_))) => (error::NONE, None),
                (Ok(()), Ok(_), Some(Err(e))) => (error::INVALID_REQUEST, Some(e.to_string())),
                (Ok(()), Ok(_), None) => (error::UNKNOWN_SERVER_ERROR, None),
            };
            resp.results.push(
                AclCreationResult::default()
                    .with_error_code(result.0)
                    .with_error_message(result.1.map(|m| text(&m))),
            );
        }
        tracing::info!(acls = req.creations.len(), "ACLs created");
        resp
    }

    pub(super) async fn delete_acls(&self, req: DeleteAclsRequest) -> DeleteAclsResponse {
        let mut resp = DeleteAclsResponse::default();
        let refuse = |code: i16, why: &str| {
            DeleteAclsFilterResult::default()
                .with_error_code(code)
                .with_error_message(message(why))
        };
        if self.authorizer.is_none() {
            resp.filter_results = req
                .filters
                .iter()
                .map(|_| refuse(error::SECURITY_DISABLED, NO_AUTHORIZER))
                .collect();
            return resp;
        }
        let filters: Vec<AclFilter> = req
            .filters
            .iter()
            .map(|f| AclFilter {
                resource_type: f.resource_type_filter,
                name: f.resource_name_filter.as_ref().map(|n| n.to_string()),
                pattern: f.pattern_type_filter,
                principal: f.principal_filter.as_ref().map(|p| p.to_string()),
                host: f.host_filter.as_ref().map(|h| h.to_string()),
                operation: f.operation,
                permission: f.permission_type,
            })
            .collect();
        if let Some(why) = filters.iter().find_map(|f| f.check().err()) {
            resp.filter_results = filters
                .iter()
                .map(|_| refuse(error::INVALID_REQUEST, &why))
                .collect();
            return resp;
        }
        let count = filters.len();
        let outcome = self
            .alter_security(vec![SecurityChange::DeleteAcls { filters }])
            .await;
        match outcome.as_deref() {
            Ok([Ok(Applied::Deleted(deleted))]) => {
                resp.filter_results = deleted
                    .iter()
                    .map(|gone| {
                        DeleteAclsFilterResult::default().with_matching_acls(
                            gone.iter()
                                .map(|b| {
                                    DeleteAclsMatchingAcl::default()
                                        .with_resource_type(b.resource_type)
                                        .with_resource_name(text(&b.name))
                                        .with_pattern_type(b.pattern)
                                        .with_principal(text(&b.principal))
                                        .with_host(text(&b.host))
                                        .with_operation(b.operation)
                                        .with_permission_type(b.permission)
                                })
                                .collect(),
                        )
                    })
                    .collect();
                let n: usize = deleted.iter().map(Vec::len).sum();
                tracing::info!(acls = n, "ACLs deleted");
            }
            Err(code) => {
                resp.filter_results = (0..count)
                    .map(|_| refuse(*code, "the deletion could not be made durable"))
                    .collect();
            }
            Ok(_) => {
                resp.filter_results = (0..count)
                    .map(|_| refuse(error::UNKNOWN_SERVER_ERROR, "unexpected outcome"))
                    .collect();
            }
        }
        resp
    }
}
