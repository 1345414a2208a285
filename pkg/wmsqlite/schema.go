package wmsqlite

import (
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// DefaultBatchSize is how many messages a subscriber reads per transaction
// when SchemaAdapter.BatchSize is zero.
const DefaultBatchSize = 100

// MaxMessagesPerPublish is the most messages one Publish call can insert:
// each takes three bound parameters and SQLite allows 32766 in a statement.
const MaxMessagesPerPublish = 32766 / 3

// SchemaAdapter is watermill-sql's SchemaAdapter for SQLite: one message
// table per topic, read in offset order past the consumer group's acked
// offset. It must be paired with OffsetsAdapter, whose offset query its
// SELECT embeds.
type SchemaAdapter struct {
	// BatchSize is how many messages one subscriber transaction reads.
	// Larger batches read faster but hold the write lock longer and, after a
	// crash, redeliver more. Zero means DefaultBatchSize.
	BatchSize int
}

// OffsetsAdapter is watermill-sql's OffsetsAdapter for SQLite: one row per
// consumer group holding the offset of the last message it acked.
type OffsetsAdapter struct{}

var (
	_ wmsql.SchemaAdapter  = SchemaAdapter{}
	_ wmsql.OffsetsAdapter = OffsetsAdapter{}
)

// validTopic mirrors the topic rule watermill-sql enforces before it calls an
// adapter, so a caller that reaches the adapter directly gets the same answer.
var validTopic = regexp.MustCompile(`^[A-Za-z0-9\-$:._]+$`)

// ErrInvalidTopic is returned for a topic watermill-sql would refuse.
var ErrInvalidTopic = errors.New("wmsqlite: topic must be non-empty and use only A-Z a-z 0-9 - $ : . _")

// ValidateTopic returns ErrInvalidTopic for a topic that watermill-sql would
// refuse, or that is empty (which watermill-sql lets through but which names
// no sensible table).
func ValidateTopic(topic string) error {
	if !validTopic.MatchString(topic) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, topic)
	}
	return nil
}

// MessagesTable returns the quoted name of a topic's message table.
func MessagesTable(topic string) string { return tableName("watermill_messages_", topic) }

// OffsetsTable returns the quoted name of a topic's offsets table.
func OffsetsTable(topic string) string { return tableName("watermill_offsets_", topic) }

// tableName builds a quoted identifier that is distinct for every distinct
// topic. SQLite compares identifiers case-insensitively, so an upper-case
// letter is written as '^' and its lower-case form; '^' cannot occur in a
// topic, so the mapping stays one-to-one. The two prefixes differ before
// either could end, so no topic's message table is another's offsets table.
func tableName(prefix, topic string) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(topic) + 2)
	b.WriteByte('"')
	b.WriteString(prefix)
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte('^')
			b.WriteByte(c + 'a' - 'A')
		case c == '"':
			b.WriteString(`""`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// SchemaInitializingQueries implements wmsql.SchemaAdapter.
func (s SchemaAdapter) SchemaInitializingQueries(params wmsql.SchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	if err := ValidateTopic(params.Topic); err != nil {
		return nil, err
	}
	// AUTOINCREMENT, not a plain rowid: a plain rowid may reuse the number of
	// a deleted last row, which a consumer group has already acked past.
	return []wmsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + MessagesTable(params.Topic) + ` (
		"offset" INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL,
		created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
		payload BLOB,
		metadata TEXT
	)`}}, nil
}

// InsertQuery implements wmsql.SchemaAdapter.
func (s SchemaAdapter) InsertQuery(params wmsql.InsertQueryParams) (wmsql.Query, error) {
	if err := ValidateTopic(params.Topic); err != nil {
		return wmsql.Query{}, err
	}
	if len(params.Msgs) == 0 {
		// The publisher executes whatever it gets; an empty VALUES list would
		// be a syntax error for what is a harmless no-op.
		return wmsql.Query{Query: `SELECT 0 WHERE 0`}, nil
	}
	if len(params.Msgs) > MaxMessagesPerPublish {
		return wmsql.Query{}, fmt.Errorf("wmsqlite: %d messages in one publish, at most %d fit in one statement", len(params.Msgs), MaxMessagesPerPublish)
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO ` + MessagesTable(params.Topic) + ` (uuid, payload, metadata) VALUES `)
	args := make([]any, 0, 3*len(params.Msgs))
	for i, msg := range params.Msgs {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(`(?,?,?)`)
		metadata, err := json.Marshal(msg.Metadata)
		if err != nil {
			return wmsql.Query{}, fmt.Errorf("wmsqlite: marshal metadata of message %s: %w", msg.UUID, err)
		}
		args = append(args, msg.UUID, []byte(msg.Payload), string(metadata))
	}
	return wmsql.Query{Query: q.String(), Args: args}, nil
}

// SelectQuery implements wmsql.SchemaAdapter.
func (s SchemaAdapter) SelectQuery(params wmsql.SelectQueryParams) (wmsql.Query, error) {
	if err := ValidateTopic(params.Topic); err != nil {
		return wmsql.Query{}, err
	}
	next, err := params.OffsetsAdapter.NextOffsetQuery(wmsql.NextOffsetQueryParams{
		Topic:         params.Topic,
		ConsumerGroup: params.ConsumerGroup,
	})
	if err != nil {
		return wmsql.Query{}, err
	}
	// A group without a row yet has acked nothing. The subscriber's
	// transaction holds the write lock, so no commit can slip in between
	// this read and the ack.
	query := `SELECT "offset", uuid, payload, metadata FROM ` + MessagesTable(params.Topic) +
		` WHERE "offset" > COALESCE((` + next.Query + `), 0) ORDER BY "offset" LIMIT ` + fmt.Sprint(s.batchSize())
	return wmsql.Query{Query: query, Args: next.Args}, nil
}

func (s SchemaAdapter) batchSize() int {
	if s.BatchSize <= 0 {
		return DefaultBatchSize
	}
	return s.BatchSize
}

// UnmarshalMessage implements wmsql.SchemaAdapter.
func (s SchemaAdapter) UnmarshalMessage(params wmsql.UnmarshalMessageParams) (wmsql.Row, error) {
	var (
		r        wmsql.Row
		metadata stdsql.NullString
	)
	if err := params.Row.Scan(&r.Offset, &r.UUID, &r.Payload, &metadata); err != nil {
		return wmsql.Row{}, fmt.Errorf("wmsqlite: scan message row: %w", err)
	}
	msg := message.NewMessage(string(r.UUID), r.Payload)
	if metadata.Valid {
		r.Metadata = []byte(metadata.String)
		if err := json.Unmarshal(r.Metadata, &msg.Metadata); err != nil {
			return wmsql.Row{}, fmt.Errorf("wmsqlite: unmarshal metadata of message %s: %w", msg.UUID, err)
		}
	}
	r.Msg = msg
	return r, nil
}

// SubscribeIsolationLevel implements wmsql.SchemaAdapter. SQLite
// transactions are serializable anyway; what matters is that they begin
// IMMEDIATE, which the DSN decides, not the isolation level.
func (s SchemaAdapter) SubscribeIsolationLevel() stdsql.IsolationLevel {
	return stdsql.LevelDefault
}

// SchemaInitializingQueries implements wmsql.OffsetsAdapter.
func (a OffsetsAdapter) SchemaInitializingQueries(params wmsql.OffsetsSchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	if err := ValidateTopic(params.Topic); err != nil {
		return nil, err
	}
	return []wmsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + OffsetsTable(params.Topic) + ` (
		consumer_group TEXT NOT NULL PRIMARY KEY,
		offset_acked INTEGER NOT NULL DEFAULT 0
	)`}}, nil
}

// NextOffsetQuery implements wmsql.OffsetsAdapter.
func (a OffsetsAdapter) NextOffsetQuery(params wmsql.NextOffsetQueryParams) (wmsql.Query, error) {
	if err := ValidateTopic(params.Topic); err != nil {
		return wmsql.Query{}, err
	}
	return wmsql.Query{
		Query: `SELECT offset_acked FROM ` + OffsetsTable(params.Topic) + ` WHERE consumer_group = ?`,
		Args:  []any{params.ConsumerGroup},
	}, nil
}

// AckMessageQuery implements wmsql.OffsetsAdapter. It records the last row
// the handler acked, never the last row fetched: the rest of a batch cut
// short by a nack, an ack deadline or Close must be read again. The max()
// keeps the cursor from ever moving back.
func (a OffsetsAdapter) AckMessageQuery(params wmsql.AckMessageQueryParams) (wmsql.Query, error) {
	if err := ValidateTopic(params.Topic); err != nil {
		return wmsql.Query{}, err
	}
	return wmsql.Query{
		Query: `INSERT INTO ` + OffsetsTable(params.Topic) + ` (consumer_group, offset_acked) VALUES (?, ?)
			ON CONFLICT (consumer_group) DO UPDATE SET offset_acked = max(offset_acked, excluded.offset_acked)`,
		Args: []any{params.ConsumerGroup, params.LastRow.Offset},
	}, nil
}

// ConsumedMessageQuery implements wmsql.OffsetsAdapter; there is none,
// because the write lock already keeps other subscribers out.
func (a OffsetsAdapter) ConsumedMessageQuery(wmsql.ConsumedMessageQueryParams) (wmsql.Query, error) {
	return wmsql.Query{}, nil
}

// BeforeSubscribingQueries implements wmsql.OffsetsAdapter; there are none.
// A missing group row reads as offset 0, so nothing needs inserting, and an
// insert here would take the write lock once per Subscribe.
func (a OffsetsAdapter) BeforeSubscribingQueries(wmsql.BeforeSubscribingQueriesParams) ([]wmsql.Query, error) {
	return nil, nil
}
