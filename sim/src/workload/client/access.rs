//! The simulated clients' security requests: an admin's CreateAcls, DeleteAcls and
//! AlterUserScramCredentials (the password salted on the client, as Kafka's AdminClient does).

use broker::security::acl::{AclBinding, AclFilter};
use broker::security::scram::Mechanism;
use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, CreateAclsRequest, DeleteAclsRequest, RequestKind,
    ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError};

const ACLS_VERSION: i16 = 1;
const SCRAM_VERSION: i16 = 0;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn unexpected(api: &str, other: ResponseKind) -> ClientError {
    ClientError::Protocol(format!("{api}: unexpected response {other:?}"))
}

impl Client {
    /// Create one ACL (CreateAcls); one that exists already is created again without error.
    pub async fn create_acl(&mut self, b: &AclBinding) -> Result<(), ClientError> {
        let creation = AclCreation::default()
            .with_resource_type(b.resource_type)
            .with_resource_name(text(&b.name))
            .with_resource_pattern_type(b.pattern)
            .with_principal(text(&b.principal))
            .with_host(text(&b.host))
            .with_operation(b.operation)
            .with_permission_type(b.permission);
        let req = CreateAclsRequest::default().with_creations(vec![creation]);
        match self
            .call(
                ApiKey::CreateAcls,
                ACLS_VERSION,
                RequestKind::CreateAcls(req),
            )
            .await?
        {
            ResponseKind::CreateAcls(r) => match r.results.first() {
                Some(x) if x.error_code == 0 => Ok(()),
                Some(x) => Err(ClientError::Kafka(x.error_code)),
                None => Err(ClientError::Protocol("empty CreateAcls response".into())),
            },
            other => Err(unexpected("CreateAcls", other)),
        }
    }

    /// Delete the ACLs `f` matches (DeleteAcls): how many were deleted.
    pub async fn delete_acls(&mut self, f: &AclFilter) -> Result<usize, ClientError> {
        let filter = DeleteAclsFilter::default()
            .with_resource_type_filter(f.resource_type)
            .with_resource_name_filter(f.name.as_deref().map(text))
            .with_pattern_type_filter(f.pattern)
            .with_principal_filter(f.principal.as_deref().map(text))
            .with_host_filter(f.host.as_deref().map(text))
            .with_operation(f.operation)
            .with_permission_type(f.permission);
        let req = DeleteAclsRequest::default().with_filters(vec![filter]);
        match self
            .call(
                ApiKey::DeleteAcls,
                ACLS_VERSION,
                RequestKind::DeleteAcls(req),
            )
            .await?
        {
            ResponseKind::DeleteAcls(r) => match r.filter_results.first() {
                Some(x) if x.error_code == 0 => Ok(x.matching_acls.len()),
                Some(x) => Err(ClientError::Kafka(x.error_code)),
                None => Err(ClientError::Protocol("empty DeleteAcls response".into())),
            },
            other => Err(unexpected("DeleteAcls", other)),
        }
    }

    /// Set `user`'s credential of `mechanism` to `password` (salted here with `salt`).
    pub async fn set_scram(
        &mut self,
        user: &str,
        mechanism: Mechanism,
        password: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<(), ClientError> {
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let upsertion = ScramCredentialUpsertion::default()
            .with_name(text(user))
            .with_mechanism(mechanism.kafka_type())
            .with_iterations(iterations as i32)
            .with_salt(Bytes::from(salt))
            .with_salted_password(Bytes::from(salted));
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]);
        self.alter_scram(req).await
    }

    /// Remove `user`'s credential of `mechanism` (RESOURCE_NOT_FOUND if it has none).
    pub async fn delete_scram(
        &mut self,
        user: &str,
        mechanism: Mechanism,
    ) -> Result<(), ClientError> {
        let deletion = ScramCredentialDeletion::default()
            .with_name(text(user))
            .with_mechanism(mechanism.kafka_type());
        let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]);
        self.alter_scram(req).await
    }

    async fn alter_scram(
        &mut self,
        req: AlterUserScramCredentialsRequest,
    ) -> Result<(), ClientError> {
        match self
            .call(
                ApiKey::AlterUserScramCredentials,
                SCRAM_VERSION,
                RequestKind::AlterUserScramCredentials(req),
            )
            .await?
        {
            ResponseKind::AlterUserScramCredentials(r) => match r.results.first() {
                Some(x) if x.error_code == 0 => Ok(()),
                Some(x) => Err(ClientError::Kafka(x.error_code)),
                None => Err(ClientError::Protocol(
                    "empty AlterUserScramCredentials response".into(),
                )),
            },
            other => Err(unexpected("AlterUserScramCredentials", other)),
        }
    }
}
