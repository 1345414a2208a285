CREATE TABLE IF NOT EXISTS stock (
	sku TEXT PRIMARY KEY,
	available BIGINT NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
	operation_id TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	lines TEXT NOT NULL,
	state TEXT NOT NULL,
	PRIMARY KEY (operation_id, attempt)
);
CREATE TABLE IF NOT EXISTS payments (
	id TEXT PRIMARY KEY,
	operation_id TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	message_id TEXT NOT NULL,
	idempotency_key TEXT NOT NULL UNIQUE,
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
CREATE INDEX IF NOT EXISTS payments_due ON payments (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS sim_charges (
	idempotency_key TEXT PRIMARY KEY,
	charge_id TEXT NOT NULL,
	amount_cents BIGINT NOT NULL,
	currency TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
