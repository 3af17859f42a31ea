//! `QueryArtifact`: an artifact's entries from the artifact index, filtered
//! and paginated, each leaf verified before it is served.

use super::reads::verified_entry;
use std::sync::Arc;

use tlog_proto::v1 as pb;

use super::access::{Access, Ask};
use super::error::ServiceError;
use super::{LogService, Result, convert};
use crate::storage::LogStore;

/// Default page size of `QueryArtifact`.
const DEFAULT_QUERY_PAGE: u32 = 100;

impl<S: LogStore> LogService<S> {
    /// `QueryArtifact`: what the RPC answers, once [`LogService::handle`] has
    /// authenticated the caller.
    pub(super) async fn query(
        &self,
        r: pb::QueryArtifactRequest,
        access: Arc<Access>,
    ) -> Result<pb::QueryArtifactResponse> {
        check_query_name(&r.name)?;
        access.check(Ask::artifact("query", &r.name))?;
        access.describe(format!(
            "query version={:?} action={} since={:?} until={:?} page_size={} cursor={:?}",
            r.version,
            r.action,
            r.since.as_ref().map(|t| t.seconds),
            r.until.as_ref().map(|t| t.seconds),
            r.page_size,
            r.cursor
        ));
        let action = match r.action {
            0 => None,
            c => Some(
                tlog_core::event::Action::from_code(i64::from(c))
                    .ok_or_else(|| {
                        ServiceError::invalid("action", format!("unknown action code {c}"))
                    })?
                    .code(),
            ),
        };
        let since = r
            .since
            .map(|t| convert::timestamp("since", t))
            .transpose()?
            .map(|t| t.as_nanos());
        let until = r
            .until
            .map(|t| convert::timestamp("until", t))
            .transpose()?
            .map(|t| t.as_nanos());
        let after = if r.cursor.is_empty() {
            None
        } else {
            Some(
                r.cursor
                    .strip_prefix("i:")
                    .and_then(|c| c.parse::<u64>().ok())
                    .ok_or_else(|| {
                        ServiceError::invalid("cursor", "not a cursor this server returned")
                    })?,
            )
        };
        let limit = match r.page_size {
            0 => DEFAULT_QUERY_PAGE.min(self.limits.max_page_size),
            n => n.min(self.limits.max_page_size),
        } as usize;
        let size = self.latest_size();
        let (name, version) = (r.name, r.version);
        let metrics = self.metrics.clone();
        self.blocking(move |s| {
            let filter = |m: &crate::storage::ArtifactMeta| {
                (version.is_empty() || m.version == version)
                    && action.is_none_or(|a| a == m.action)
                    && since.is_none_or(|t| m.time_nanos() >= t)
                    && until.is_none_or(|t| m.time_nanos() < t)
            };
            let rows = s.artifact_entries(&name, after, limit, &filter)?;
            let full = rows.len() == limit;
            let mut entries = Vec::with_capacity(rows.len());
            for (index, _) in rows.into_iter().filter(|(i, _)| *i < size) {
                entries.push(verified_entry(s, &metrics, index)?);
            }
            let next_cursor = match entries.last() {
                Some(e) if full => format!("i:{}", e.index),
                _ => String::new(),
            };
            Ok(pb::QueryArtifactResponse {
                entries,
                next_cursor,
            })
        })
        .await
    }
}

fn check_query_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(ServiceError::invalid("name", "is required"));
    }
    if name.len() > tlog_core::event::MAX_NAME_LEN {
        return Err(ServiceError::invalid(
            "name",
            "is longer than any artifact name",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            "contains a control character",
        ));
    }
    Ok(())
}
