//! PostgreSQL's webhook deliveries (a child of `postgres`, for its store threads and node).

use super::Postgres;
use crate::store::StoreError;
use crate::store::webhook_deliveries::{
    COLUMNS, DeliveryBackend, DeliveryChange, ON_CONFLICT, PendingDelivery,
};

impl DeliveryBackend for Postgres {
    fn apply_deliveries(&self, changes: &[DeliveryChange]) -> Result<(), StoreError> {
        let changes = changes.to_vec();
        let node = self.node.clone();
        self.call(move |client| {
            let mut tx = client.transaction()?;
            for change in &changes {
                match change {
                    DeliveryChange::Save(d) => {
                        tx.execute(
                            &format!(
                                "INSERT INTO webhook_deliveries (node, {COLUMNS})
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) {ON_CONFLICT}"
                            ),
                            &[
                                &node,
                                &d.id,
                                &d.endpoint,
                                &d.body,
                                &d.created_at,
                                &d.first_attempt_at,
                                &d.attempts,
                                &d.next_at,
                            ],
                        )?;
                    }
                    DeliveryChange::Forget(id) => {
                        tx.execute(
                            "DELETE FROM webhook_deliveries WHERE node = $1 AND id = $2",
                            &[&node, id],
                        )?;
                    }
                }
            }
            tx.commit()
        })
    }

    fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError> {
        let node = self.node.clone();
        self.call(move |client| {
            let rows = client.query(
                &format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE node = $1 ORDER BY id"),
                &[&node],
            )?;
            rows.iter()
                .map(|r| -> Result<PendingDelivery, postgres::Error> {
                    Ok(PendingDelivery {
                        id: r.try_get(0)?,
                        endpoint: r.try_get(1)?,
                        body: r.try_get(2)?,
                        created_at: r.try_get(3)?,
                        first_attempt_at: r.try_get(4)?,
                        attempts: r.try_get(5)?,
                        next_at: r.try_get(6)?,
                    })
                })
                .collect()
        })
    }
}
