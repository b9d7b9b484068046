//! How the fleet's database is reached: its url parsed once, for the pool,
//! the LISTEN connections and PostgreSQL's own tools alike.

use std::str::FromStr;

use tokio_postgres::NoTls;

use super::redacted;
use crate::store::StoreError;

/// `url` as a connection's configuration, and as it may be shown.
pub(super) fn parse(url: &str) -> Result<(tokio_postgres::Config, String), StoreError> {
    let shown = redacted(url);
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|e| StoreError::Unavailable(format!("{shown}: not a PostgreSQL url ({e})")))?;
    Ok((config, shown))
}

/// One connection of its own (not from the pool), with the future that
/// drives it.
pub(super) async fn connect(
    config: &tokio_postgres::Config,
) -> Result<
    (
        tokio_postgres::Client,
        impl std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    ),
    tokio_postgres::Error,
> {
    config.connect(NoTls).await
}
