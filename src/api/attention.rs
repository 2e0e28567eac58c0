//! `GET /api/v1/management/attention`: what needs the operator's attention.
//! Gathers the facts (delivery's state and eSight's reachability from
//! memory; pause, failure groups and waiting messages from storage; invalid
//! traffic from the in-memory tally; disk and database size) and renders
//! what `domain::attention` makes of them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use hyper::StatusCode;
use serde_json::json;

use super::RequestContext;
use crate::clock::now_millis;
use crate::domain::attention::{ESIGHT_KEYS, EsightFacts, Facts, InvalidFacts, PausedFacts, assess};
use crate::http::ApiError;
use crate::http::response::{self, Response};
use crate::storage::messages::{self, MessageStatus};
use crate::storage::{delivery, identity};

/// Failure groups looked at (the largest).
const GROUPS: usize = 20;

/// The `[esight]` keys that are not set.
fn missing_esight_keys(c: &crate::config::EsightConfig) -> Vec<&'static str> {
    let set = [
        c.token_url.is_some(),
        c.sites_url.is_some(),
        c.meters_url.is_some(),
        c.consumption_url.is_some(),
        c.username.is_some(),
        c.password.is_some(),
        c.post_username.is_some(),
        c.post_password.is_some(),
    ];
    ESIGHT_KEYS.iter().zip(set).filter(|(_, set)| !set).map(|(k, _)| *k).collect()
}

/// `GET /api/v1/management/attention`.
pub async fn attention(ctx: RequestContext) -> Result<Response, ApiError> {
    let state = &ctx.state;
    let now = now_millis();
    let invalid = state.invalid_traffic.last_hour(now);
    let want_key_names = invalid.iter().any(|t| t.api_key_id.is_some());
    let counts = state.slow_reads.counts.get(|| state.storage.run(|c| messages::counts_by_status(c))).await?;
    let mut groups = super::send::failure_groups(state, MessageStatus::Failed).await?;
    groups.truncate(GROUPS);
    let (pause, oldest, key_names) = state
        .storage
        .run(move |c| {
            let names: HashMap<String, String> = if want_key_names {
                identity::all_api_keys(c)?.into_iter().map(|k| (k.id, k.name)).collect()
            } else {
                HashMap::new()
            };
            Ok((delivery::pause_info(c)?, messages::oldest_pending_created(c)?, names))
        })
        .await?;
    let status = state.delivery.status();
    let esight = match status.state {
        "not_configured" => EsightFacts::NotConfigured { missing: missing_esight_keys(&state.config.esight) },
        "esight_unreachable" => {
            let r = state.delivery.reachability();
            EsightFacts::Unreachable {
                since: r.failing_since,
                last_error: r.last_error,
                last_success: r.last_success_at,
            }
        }
        _ => EsightFacts::Reachable,
    };
    let waiting = counts
        .iter()
        .filter(|(s, _)| matches!(s, MessageStatus::Pending | MessageStatus::Delivering))
        .map(|(_, n)| n)
        .sum();
    let facts = Facts {
        now,
        esight,
        waiting,
        oldest_pending_at: oldest,
        paused: pause.map(|p| PausedFacts { by: p.by, since: p.since }),
        failures: groups.into_iter().map(super::send::failure_facts).collect(),
        invalid: invalid
            .into_iter()
            .map(|t| InvalidFacts {
                code: t.code.to_string(),
                api_key_name: t.api_key_id.as_ref().and_then(|id| key_names.get(id).cloned()),
                api_key_id: t.api_key_id,
                count: t.count,
                last_at: t.last_at,
            })
            .collect(),
        free_disk_bytes: state.storage.free_disk_bytes().ok(),
        min_free_bytes: state.config.storage.min_free_bytes,
        db_bytes: state.db_used_bytes.load(Ordering::Acquire),
        max_db_bytes: state.config.storage.max_db_bytes,
    };
    let items = assess(&facts);
    let all_clear = items.is_empty();
    Ok(response::json(StatusCode::OK, &json!({"items": items, "all_clear": all_clear})))
}
