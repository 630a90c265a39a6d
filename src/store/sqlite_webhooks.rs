//! SQLite's webhook deliveries (a child of `sqlite`, for its connection and node).

use rusqlite::params;

use super::Sqlite;
use crate::store::StoreError;
use crate::store::webhook_deliveries::{
    COLUMNS, DeliveryBackend, DeliveryChange, ON_CONFLICT, PendingDelivery,
};

impl DeliveryBackend for Sqlite {
    fn apply_deliveries(&self, changes: &[DeliveryChange]) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.unchecked_transaction()?;
            for change in changes {
                match change {
                    DeliveryChange::Save(d) => {
                        tx.execute(
                            &format!(
                                "INSERT INTO webhook_deliveries (node, {COLUMNS})
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) {ON_CONFLICT}"
                            ),
                            params![
                                self.node,
                                d.id,
                                d.endpoint,
                                d.body,
                                d.created_at,
                                d.first_attempt_at,
                                d.attempts,
                                d.next_at
                            ],
                        )?;
                    }
                    DeliveryChange::Forget(id) => {
                        tx.execute(
                            "DELETE FROM webhook_deliveries WHERE node = ?1 AND id = ?2",
                            params![self.node, id],
                        )?;
                    }
                }
            }
            tx.commit()
        })
    }

    fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM webhook_deliveries WHERE node = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map(params![self.node], |r| {
                Ok(PendingDelivery {
                    id: r.get(0)?,
                    endpoint: r.get(1)?,
                    body: r.get(2)?,
                    created_at: r.get(3)?,
                    first_attempt_at: r.get(4)?,
                    attempts: r.get(5)?,
                    next_at: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}
