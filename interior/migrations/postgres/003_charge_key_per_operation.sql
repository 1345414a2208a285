-- Every run of an operation charges under one key, so runs share it.
ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_idempotency_key_key;
CREATE INDEX IF NOT EXISTS payments_key ON payments (idempotency_key);
