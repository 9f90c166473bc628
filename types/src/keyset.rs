//! The one keyset cursor of every list ordered by (a time, then the id).

use crate::UnixMillis;

/// Where the previous page of a list ended: its last row's time and id. Lists page by it,
/// never by an offset, so a row inserted meanwhile neither repeats nor skips one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    pub at_ms: UnixMillis,
    pub id: String,
}
