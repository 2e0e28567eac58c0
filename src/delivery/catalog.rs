//! The site/meter catalog cache: fetched from eSight, reused for
//! `esight.catalog_ttl`, and refreshed early when a message names a meter or
//! site it does not know — at most once per `MIN_REFRESH`, so a stream of
//! unknown meters cannot hammer eSight. A message is failed as unknown only
//! against a catalog fetched after it was accepted; while the refresh is
//! held back, the verdict is "look again later" instead of a failure.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::client::{CallError, CatalogCodes, EsightClient};

/// Shortest interval between two refreshes caused by unknown codes.
const MIN_REFRESH: Duration = Duration::from_secs(5);

/// What the catalog says about a message's meter and site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Both known.
    Known,
    /// The meter is not a `MeterCode`.
    UnknownMeter,
    /// `upper(local_market)_site_id` is not a `SiteCode`.
    UnknownSite,
    /// Unknown to a catalog older than the message, and a refresh is not
    /// allowed yet: check again after this long.
    RecheckIn(Duration),
}

struct Cached {
    codes: CatalogCodes,
    fetched: Instant,
    /// The same moment as Unix ms, to compare with acceptance times.
    fetched_ms: i64,
}

/// The cache, shared by all workers.
pub struct CatalogCache {
    ttl: Duration,
    current: RwLock<Option<Cached>>,
    refreshing: Mutex<()>,
}

impl CatalogCache {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, current: RwLock::new(None), refreshing: Mutex::new(()) }
    }

    /// Checks a meter and a site code, fetching the catalog when needed, for
    /// a message accepted at `accepted_ms` (Unix ms).
    pub fn check(
        &self,
        client: &EsightClient,
        meter: &str,
        site_code: &str,
        accepted_ms: i64,
    ) -> Result<Verdict, CallError> {
        let verdict = self.verdict_if_fresh(meter, site_code, self.ttl);
        let verdict = match verdict {
            Some(v) => v,
            None => {
                self.refresh(client, self.ttl)?;
                self.verdict_if_fresh(meter, site_code, Duration::MAX).unwrap_or(Verdict::Known)
            }
        };
        if verdict == Verdict::Known {
            return Ok(verdict);
        }
        self.refresh(client, MIN_REFRESH)?;
        let verdict = self.verdict_if_fresh(meter, site_code, Duration::MAX).unwrap_or(verdict);
        if verdict == Verdict::Known {
            return Ok(verdict);
        }
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(c) if c.fetched_ms < accepted_ms => {
                Ok(Verdict::RecheckIn(MIN_REFRESH.saturating_sub(c.fetched.elapsed())))
            }
            _ => Ok(verdict),
        }
    }

    fn verdict_if_fresh(&self, meter: &str, site_code: &str, max_age: Duration) -> Option<Verdict> {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        let cached = guard.as_ref().filter(|c| c.fetched.elapsed() < max_age)?;
        Some(if !cached.codes.meters.contains(meter) {
            Verdict::UnknownMeter
        } else if !cached.codes.sites.contains(site_code) {
            Verdict::UnknownSite
        } else {
            Verdict::Known
        })
    }

    /// Fetches a new catalog unless one younger than `unless_younger` exists
    /// (another worker may have just refreshed it).
    fn refresh(&self, client: &EsightClient, unless_younger: Duration) -> Result<(), CallError> {
        let _one_at_a_time = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        let fresh_enough = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|c| c.fetched.elapsed() < unless_younger);
        if fresh_enough {
            return Ok(());
        }
        let codes = client.fetch_catalog()?;
        tracing::info!(sites = codes.sites.len(), meters = codes.meters.len(), "eSight catalog refreshed");
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Cached { codes, fetched: Instant::now(), fetched_ms: crate::clock::now_millis() });
        Ok(())
    }
}
