//! Which store a subscription feeds: the label `ecom-stream-store` on the orders and
//! payments subscriptions, set by `setup` when it creates them and checked by `run` before
//! it consumes them.
//!
//! Why: two pipelines on one subscription split its messages between them, each store gets
//! part of the rows, and each dead-letters the payments whose orders went to the other,
//! silently. Several instances of one pipeline (the same store) are meant to share a
//! subscription, so the binding names the store, not the process.
//!
//! Why a label: it lives on the subscription itself, so every pipeline anywhere sees the
//! same binding, on the real service and on the emulator alike (the emulator keeps labels
//! given at creation). The emulator does not change labels afterwards (it refuses an update
//! of `labels`), so a rebind there consumes without moving the label, and says so.
//!
//! Owns: reading, checking and (when asked) moving the binding. Must never: change an
//! unlabelled subscription on its own (someone else created it; `run` accepts it with one
//! line), or touch the DLQ subscription (no pipeline consumes it).

use super::connect::{self, ClientError, ConnectError};
use super::PubSubConfig;
use std::collections::HashMap;

/// The label key. Pub/Sub label keys and values: lowercase letters, digits, `-` and `_`,
/// at most 63 characters.
pub const LABEL: &str = "ecom-stream-store";

/// A store's identity as a label value: `kind` and `name` lowercased, every other
/// character `_`, cut to 63 characters.
pub fn label_value(kind: &str, name: &str) -> String {
    let text = format!("{kind}-{name}").to_lowercase();
    text.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .take(63)
        .collect()
}

/// The store a run writes to: its label value, and how to name it to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreBinding {
    /// The label value ([`label_value`]).
    pub label: String,
    /// The store as a person reads it (its directory, or its nodes and keyspace).
    pub describe: String,
}

/// What [`check`] found on one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Bound to this store.
    Ours,
    /// No binding: created by someone other than `setup`.
    Unbound,
    /// Bound to another store (its label value).
    Other(String),
}

/// Compares a subscription's labels with the binding.
pub fn classify(labels: &HashMap<String, String>, ours: &StoreBinding) -> Found {
    match labels.get(LABEL) {
        None => Found::Unbound,
        Some(label) if *label == ours.label => Found::Ours,
        Some(label) => Found::Other(label.clone()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("reading subscription {name}")]
    Read {
        name: String,
        #[source]
        source: ClientError,
    },
    /// One line naming both stores and the way out.
    #[error(
        "subscription {name} feeds store {bound}, not this run's store {ours} ({describe}): \
         two stores on one subscription would each get part of the messages; run with \
         --rebind-subscriptions to move it to this store"
    )]
    BoundElsewhere {
        name: String,
        bound: String,
        ours: String,
        describe: String,
    },
}

/// `run`'s check before it consumes: each source subscription must be bound to `ours`, or
/// unbound (accepted with one line for all of them). A subscription bound to another store
/// is refused, unless `rebind`: then its label is moved to `ours` (or, where the service
/// cannot change labels, it is consumed anyway, with one line saying so).
pub async fn check(
    config: &PubSubConfig,
    ours: &StoreBinding,
    rebind: bool,
) -> Result<(), BindingError> {
    let admin = connect::subscription_admin(config).await?;
    let mut unbound = Vec::new();
    for sub in [&config.orders_subscription, &config.payments_subscription] {
        let name = config.subscription_path(sub);
        let found = admin
            .get_subscription()
            .set_subscription(&name)
            .send()
            .await
            .map_err(|e| BindingError::Read {
                name: name.clone(),
                source: ClientError::rpc(e),
            })?;
        match classify(&found.labels, ours) {
            Found::Ours => {}
            Found::Unbound if !rebind => unbound.push(name),
            Found::Other(bound) if !rebind => {
                return Err(BindingError::BoundElsewhere {
                    name,
                    bound,
                    ours: ours.label.clone(),
                    describe: ours.describe.clone(),
                })
            }
            Found::Unbound => rebind_to(&admin, &name, found.labels, ours, "no store").await,
            Found::Other(bound) => rebind_to(&admin, &name, found.labels, ours, &bound).await,
        }
    }
    if !unbound.is_empty() {
        tracing::warn!(
            subscriptions = %unbound.join(","),
            store = %ours.label,
            "subscriptions bound to no store (not created by `setup`): consumed as they are; \
             --rebind-subscriptions binds them to this store"
        );
    }
    Ok(())
}

/// `--rebind-subscriptions`: moves the label to `ours`, keeping the other labels. One WARN
/// line either way: the other store gets nothing more, or (where the service cannot change
/// labels, as the emulator) the label stays as it was and the run consumes anyway.
async fn rebind_to(
    admin: &google_cloud_pubsub::client::SubscriptionAdmin,
    name: &str,
    mut labels: HashMap<String, String>,
    ours: &StoreBinding,
    from: &str,
) {
    labels.insert(LABEL.to_string(), ours.label.clone());
    let update = admin
        .update_subscription()
        .set_subscription(
            google_cloud_pubsub::model::Subscription::new()
                .set_name(name)
                .set_labels(labels),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels"]))
        .send()
        .await;
    match update {
        Ok(_) => tracing::warn!(
            subscription = %name,
            to = %ours.label,
            "--rebind-subscriptions: bound to this store instead of {from}"
        ),
        Err(e) => tracing::warn!(
            subscription = %name,
            error = %connect::describe(&e),
            "--rebind-subscriptions: the service did not change the label (the emulator \
             cannot); consuming anyway, while the label still names {from}"
        ),
    }
}

/// The labels `setup` gives a subscription it creates for `binding`.
pub fn labels(binding: &StoreBinding) -> [(&'static str, String); 1] {
    [(LABEL, binding.label.clone())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_label_safe_and_short() {
        assert_eq!(
            label_value("cassandra", "Ecom_Store"),
            "cassandra-ecom_store"
        );
        assert_eq!(label_value("embedded", "a/b.c"), "embedded-a_b_c");
        assert_eq!(label_value("embedded", &"x".repeat(100)).len(), 63);
    }

    #[test]
    fn a_subscription_is_ours_unbound_or_anothers() {
        let ours = StoreBinding {
            label: "embedded-1".into(),
            describe: "/data".into(),
        };
        let with = |v: &str| HashMap::from([(LABEL.to_string(), v.to_string())]);
        assert_eq!(classify(&with("embedded-1"), &ours), Found::Ours);
        assert_eq!(classify(&HashMap::new(), &ours), Found::Unbound);
        assert_eq!(
            classify(&with("cassandra-ks"), &ours),
            Found::Other("cassandra-ks".into())
        );
    }
}
