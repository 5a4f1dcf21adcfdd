//! Master processes for the election tests.

#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcron_testkit as kit;
use serde_json::Value;

pub async fn get_json(url: &str) -> Option<Value> {
    kit::http_client()
        .get(url)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// A master binary, killed on drop.
pub struct MasterProcess {
    pub id: String,
    pub base: String,
    pub child: Child,
}

impl MasterProcess {
    pub fn spawn(id: &str, prefix: &str, hook: &str) -> Self {
        let port = kit::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rcron-master"))
            .env("RCRON_MASTER_ID", id)
            .env("RCRON_LISTEN", format!("127.0.0.1:{port}"))
            .env("RCRON_ETCD_ENDPOINTS", kit::etcd_endpoint())
            .env("RCRON_ETCD_PREFIX", prefix)
            .env("RCRON_MONGO_URI", kit::mongo_uri())
            .env("RCRON_ELECTION_TTL_SECS", "2")
            .env("RCRON_ALERT_WINDOW_SECS", "0")
            .env("RCRON_ALERT_WEBHOOK_URLS", hook)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rcron-master");
        Self {
            id: id.to_string(),
            base: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    pub async fn leader(&self) -> Option<String> {
        let status = get_json(&format!("{}/api/v1/cluster", self.base)).await?;
        status["leader"].as_str().map(str::to_string)
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The leader all `masters` agree on, once they do and it is one of them
/// (a killed leader is still named until its lease expires).
pub async fn agreed_leader(masters: &[MasterProcess]) -> String {
    kit::eventually(
        Duration::from_secs(20),
        "all masters to agree on one live leader",
        || async {
            let mut seen = Vec::new();
            for m in masters {
                seen.push(m.leader().await?);
            }
            seen.dedup();
            (seen.len() == 1 && masters.iter().any(|m| m.id == seen[0])).then(|| seen.remove(0))
        },
    )
    .await
}
