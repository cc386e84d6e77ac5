//! Legacy HTTP+SSE sessions on any replica.
//!
//! A legacy session's stream lives on the replica that accepted its `GET`, so its id names
//! that replica (`<node>~<uuid>`). A `POST /messages?session_id=…` that lands on another
//! replica is forwarded to the owner's address (from the node registry) with the client's
//! own headers; the owner checks the token, the limits and the session as for any POST and
//! answers 202, which is relayed. The hop carries the cluster's secret
//! ([`HOP_HEADER`]), so the owner trusts the client address it names ([`CLIENT_IP_HEADER`])
//! and never forwards it again.

use std::net::IpAddr;

use bytes::Bytes;
use poem::http::{HeaderMap, HeaderValue, StatusCode};

use super::Cluster;

/// Marks a request as forwarded by another replica; its value is the cluster's secret.
pub const HOP_HEADER: &str = "x-switchboard-hop";
/// On a hop: the address of the client that sent the request.
pub const CLIENT_IP_HEADER: &str = "x-switchboard-client-ip";

/// Why a request could not be forwarded to the replica holding its session.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The session's replica is not in the cluster any more: the session is gone.
    #[error("the replica holding this session has left the cluster")]
    OwnerGone,
    /// The session's replica did not answer.
    #[error("the replica holding this session ({node}) does not answer: {reason}")]
    OwnerUnreachable {
        /// Its node id.
        node: String,
        /// What the attempt said.
        reason: String,
    },
    /// Redis did not answer the lookup of the owner.
    #[error("looking up the replica holding this session failed: {0}")]
    Redis(#[from] super::Error),
}

/// The node a legacy session id names, if it names one.
pub fn legacy_owner(id: &str) -> Option<&str> {
    id.split_once('~').map(|(node, _)| node)
}

/// What the owner answered to a forwarded request.
pub struct Relayed {
    /// Its status.
    pub status: StatusCode,
    /// Its `Content-Type`.
    pub content_type: Option<HeaderValue>,
    /// Its body.
    pub body: Bytes,
}

impl Cluster {
    /// A new legacy session id, naming this replica.
    pub fn new_legacy_session_id(&self) -> String {
        format!("{}~{}", self.node_id(), uuid::Uuid::new_v4().simple())
    }

    /// Whether `headers` carry this cluster's hop secret.
    pub fn is_hop(&self, headers: &HeaderMap) -> bool {
        headers
            .get(HOP_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                crate::auth::digest_matches(
                    &crate::auth::digest(v),
                    &crate::auth::digest(self.hop_secret()),
                )
            })
    }

    /// Forwards a POST to replica `node` (a legacy session's message, an operator's decision
    /// on an approval waiting there): same path and query, same body, the client's
    /// `Authorization` and request id, and its address.
    ///
    /// # Errors
    /// See [`ForwardError`].
    pub async fn forward(
        &self,
        node: &str,
        path_and_query: &str,
        authorization: Option<&HeaderValue>,
        request_id: &str,
        client_ip: IpAddr,
        body: Bytes,
    ) -> Result<Relayed, ForwardError> {
        let url = self.node_url(node).await?.ok_or(ForwardError::OwnerGone)?;
        let mut request = self
            .http()
            .post(format!("{url}{path_and_query}"))
            .header(HOP_HEADER, self.hop_secret())
            .header(CLIENT_IP_HEADER, client_ip.to_string())
            .header("x-request-id", request_id)
            .header("content-type", "application/json")
            .body(body);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization.clone());
        }
        let unreachable = |e: reqwest::Error| ForwardError::OwnerUnreachable {
            node: node.to_owned(),
            reason: crate::net::innermost(&e).to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let content_type = response.headers().get("content-type").cloned();
        let body = response.bytes().await.map_err(unreachable)?;
        Ok(Relayed {
            status: StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            content_type,
            body,
        })
    }
}

impl Cluster {
    /// GETs `path_and_query` from every other live replica at once (as a hop), with the
    /// JSON each answered or why it did not.
    ///
    /// # Errors
    /// Redis did not answer the list of replicas.
    pub async fn get_from_others(
        &self,
        path_and_query: &str,
    ) -> Result<Vec<(String, Result<(u16, serde_json::Value), String>)>, super::Error> {
        let me = self.node_id();
        let others: Vec<_> = self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.id != me)
            .collect();
        let asks = others.into_iter().map(|node| async move {
            let answer = async {
                let response = self
                    .http()
                    .get(format!("{}{path_and_query}", node.url))
                    .header(HOP_HEADER, self.hop_secret())
                    .timeout(std::time::Duration::from_secs(5))
                    .send()
                    .await
                    .map_err(|e| crate::net::innermost(&e).to_string())?;
                let status = response.status().as_u16();
                let body = response
                    .json::<serde_json::Value>()
                    .await
                    .map_err(|e| crate::net::innermost(&e).to_string())?;
                Ok((status, body))
            }
            .await;
            (node.id, answer)
        });
        Ok(futures::future::join_all(asks).await)
    }
}
