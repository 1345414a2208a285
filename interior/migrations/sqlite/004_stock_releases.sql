-- Compensation gives stock back by inserting here, never by updating a
-- stock row: on PostgreSQL consume transactions run at REPEATABLE READ, and
-- a stock row changed by another transaction after their snapshot fails
-- them with a serialization error that no retry inside them can cure. Only
-- the reserve-stock handler, whose messages are consumed one transaction
-- at a time, updates stock rows. What is available is the row plus these.
CREATE TABLE IF NOT EXISTS stock_releases (
	operation_id TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	sku TEXT NOT NULL,
	quantity BIGINT NOT NULL,
	PRIMARY KEY (operation_id, attempt, sku)
);
CREATE INDEX IF NOT EXISTS stock_releases_sku ON stock_releases (sku);
