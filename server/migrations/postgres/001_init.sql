CREATE TABLE IF NOT EXISTS teams (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	invite_token TEXT NOT NULL UNIQUE,
	created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
	id TEXT PRIMARY KEY,
	team_id TEXT NOT NULL REFERENCES teams(id),
	display_name TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
	token_hash TEXT PRIMARY KEY,
	member_id TEXT NOT NULL REFERENCES members(id),
	created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS drafts (
	id TEXT PRIMARY KEY,
	team_id TEXT NOT NULL REFERENCES teams(id),
	title TEXT NOT NULL,
	revision BIGINT NOT NULL,
	state TEXT NOT NULL,
	next_position BIGINT NOT NULL DEFAULT 0,
	submission_id TEXT,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS drafts_team ON drafts (team_id, created_at);
CREATE TABLE IF NOT EXISTS draft_items (
	draft_id TEXT NOT NULL REFERENCES drafts(id),
	id TEXT NOT NULL,
	sku TEXT NOT NULL,
	quantity BIGINT NOT NULL,
	note TEXT NOT NULL,
	position BIGINT NOT NULL,
	PRIMARY KEY (draft_id, id)
);
CREATE TABLE IF NOT EXISTS draft_ops (
	draft_id TEXT NOT NULL REFERENCES drafts(id),
	revision BIGINT NOT NULL,
	client_op_id TEXT NOT NULL,
	author_id TEXT NOT NULL,
	op TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (draft_id, revision),
	UNIQUE (draft_id, client_op_id)
);
CREATE TABLE IF NOT EXISTS operations (
	id TEXT PRIMARY KEY,
	team_id TEXT NOT NULL REFERENCES teams(id),
	draft_id TEXT NOT NULL REFERENCES drafts(id),
	draft_title TEXT NOT NULL,
	message_id TEXT NOT NULL,
	revision BIGINT NOT NULL,
	status TEXT NOT NULL,
	steps TEXT NOT NULL,
	error TEXT,
	result TEXT,
	submitted_by TEXT NOT NULL REFERENCES members(id),
	submitted_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	seq BIGINT NOT NULL,
	UNIQUE (draft_id, revision)
);
CREATE INDEX IF NOT EXISTS operations_team ON operations (team_id, submitted_at);
CREATE TABLE IF NOT EXISTS edge_dedup (key TEXT PRIMARY KEY, processed_at BIGINT NOT NULL);
