//! Test support shared by unit and integration tests: a fresh database per test, on
//! SQLite always and on PostgreSQL when `ZMOT_TEST_DATABASE_URL` is set.
#![doc(hidden)]

use anyhow::{Context, Result};
use sqlx::Connection;

use crate::store::Store;

/// A fresh, migrated database that is removed when dropped (SQLite) or left for the
/// server's temporary cluster to discard (PostgreSQL).
pub struct TestDb {
    pub store: Store,
    pub url: String,
    pub label: &'static str,
    _dir: Option<tempfile_dir::Dir>,
}

/// Temporary folders without pulling a crate into the main build.
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Whether PostgreSQL tests are configured.
pub fn postgres_url() -> Option<String> {
    std::env::var("ZMOT_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A new SQLite database in a temporary folder.
pub async fn sqlite() -> Result<TestDb> {
    let dir = std::env::temp_dir().join(format!("zmot-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}/test.db", dir.display());
    let store = Store::connect(&url, 4).await?;
    Ok(TestDb {
        store,
        url,
        label: "sqlite",
        _dir: Some(tempfile_dir::Dir(dir)),
    })
}

/// A new PostgreSQL database on the test server, when one is configured.
pub async fn postgres() -> Result<Option<TestDb>> {
    let Some(admin) = postgres_url() else {
        return Ok(None);
    };
    sqlx::any::install_default_drivers();
    let name = format!("zmot_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .with_context(|| format!("cannot reach the test server {admin}"))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let mut url = url::Url::parse(&admin)?;
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    let store = Store::connect(&url, 4).await?;
    Ok(Some(TestDb {
        store,
        url,
        label: "postgres",
        _dir: None,
    }))
}

/// Every configured backend: SQLite, plus PostgreSQL when `ZMOT_TEST_DATABASE_URL` is set.
pub async fn all() -> Result<Vec<TestDb>> {
    let mut dbs = vec![sqlite().await?];
    if let Some(pg) = postgres().await? {
        dbs.push(pg);
    }
    Ok(dbs)
}
