//! `kubernetes.authorize_with_sar`: before kterm acts for user U in namespace N, the API
//! server decides (a SubjectAccessReview for U and U's groups) whether U may create pods and
//! pods/exec in N; kterm's own service account does the work, so without this check anyone
//! kterm lets in would get kterm's rights. Answers are cached for [`CACHE_FOR`], denials too
//! (their reason is what the 403 says).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::client::{within, CALL_TIMEOUT};
use crate::error::{Error, Result};
use crate::sandbox::AccessReview;

/// How long an answer is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(10);

/// What a user must be allowed in a namespace: `(verb, resource, subresource)`.
const NEEDED: &[(&str, &str, &str)] = &[("create", "pods", ""), ("create", "pods", "exec")];

type Key = (String, Vec<String>, String);

pub struct SarAuthorizer {
    client: kube::Client,
    cache: Mutex<HashMap<Key, (Instant, Option<String>)>>,
}

impl SarAuthorizer {
    pub fn new(client: kube::Client) -> SarAuthorizer {
        SarAuthorizer { client, cache: Mutex::default() }
    }

    fn cached(&self, key: &Key) -> Option<Option<String>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key).filter(|(at, _)| at.elapsed() < CACHE_FOR).map(|(_, denial)| denial.clone())
    }

    /// `None` when allowed, else the reason of the first denial.
    async fn review(
        &self,
        user: &str,
        groups: &[String],
        namespace: &str,
    ) -> Result<Option<String>> {
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        for (verb, resource, subresource) in NEEDED {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.to_string()),
                    groups: (!groups.is_empty()).then(|| groups.to_vec()),
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(namespace.to_string()),
                        verb: Some(verb.to_string()),
                        resource: Some(resource.to_string()),
                        subresource: (!subresource.is_empty()).then(|| subresource.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let what = "asking the API server whether the user may use the namespace";
            let answer =
                within(what, CALL_TIMEOUT, reviews.create(&PostParams::default(), &review)).await?;
            let status = answer.status.unwrap_or_default();
            if !status.allowed {
                let thing = if subresource.is_empty() {
                    resource.to_string()
                } else {
                    format!("{resource}/{subresource}")
                };
                let reason = status
                    .reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "no RBAC rule allows it".into());
                return Ok(Some(format!(
                    "user {user} may not {verb} {thing} in namespace {namespace} (SubjectAccessReview: {reason})"
                )));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl AccessReview for SarAuthorizer {
    async fn authorize(&self, user: &str, groups: &[String], namespace: &str) -> Result<()> {
        let mut sorted = groups.to_vec();
        sorted.sort();
        let key = (user.to_string(), sorted, namespace.to_string());
        let denial = match self.cached(&key) {
            Some(denial) => denial,
            None => {
                let denial = self.review(user, groups, namespace).await?;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.retain(|_, (at, _)| at.elapsed() < CACHE_FOR);
                cache.insert(key, (Instant::now(), denial.clone()));
                denial
            }
        };
        match denial {
            None => Ok(()),
            Some(reason) => Err(Error::Forbidden(reason)),
        }
    }
}
