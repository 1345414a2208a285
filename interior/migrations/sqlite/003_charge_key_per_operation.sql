-- Every run of an operation charges under one key, so runs share it.
-- SQLite cannot drop a constraint: the table is rebuilt without it.
CREATE TABLE payments_new (
	id TEXT PRIMARY KEY,
	operation_id TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	message_id TEXT NOT NULL,
	idempotency_key TEXT NOT NULL,
	amount_cents BIGINT NOT NULL,
	currency TEXT NOT NULL,
	order_json TEXT NOT NULL,
	state TEXT NOT NULL,
	tries INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	charge_id TEXT NOT NULL DEFAULT '',
	next_attempt_at BIGINT NOT NULL,
	claimed_until BIGINT NOT NULL DEFAULT 0
);
INSERT INTO payments_new SELECT id, operation_id, attempt, message_id, idempotency_key, amount_cents, currency, order_json, state, tries, last_error, charge_id, next_attempt_at, claimed_until FROM payments;
DROP TABLE payments;
ALTER TABLE payments_new RENAME TO payments;
CREATE INDEX IF NOT EXISTS payments_due ON payments (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS payments_key ON payments (idempotency_key);
