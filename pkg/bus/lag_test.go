package bus_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb/sqldbtest"
)

func TestLagIsTheAgeOfTheOldestUnprocessedMessage(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		db := sqldbtest.MustOpen(t, url)
		b, err := bus.New(db, watermill.NopLogger{}, bus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := b.InitTopics(ctx, "lag"); err != nil {
			t.Fatal(err)
		}
		if lag, err := b.Lag(ctx, "lag"); err != nil || lag != 0 {
			t.Fatalf("empty topic: lag %v, %v", lag, err)
		}
		// A group that subscribed and has read nothing yet.
		sub, _ := b.Subscriber("slow")
		if _, err := sub.Subscribe(ctx, "lag"); err != nil {
			t.Fatal(err)
		}
		sub.Close()
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			pub, err := b.Publisher(wmsql.TxFromStdSQL(tx))
			if err != nil {
				return err
			}
			return pub.Publish("lag", message.NewMessage("m1", []byte(`{}`)))
		})
		if err != nil {
			t.Fatal(err)
		}
		backdate := `UPDATE "watermill_lag" SET created_at = created_at - INTERVAL '1 hour'`
		if db.Dialect == "sqlite" {
			backdate = `UPDATE "watermill_messages_lag" SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')`
		}
		if _, err := db.ExecContext(ctx, backdate); err != nil {
			t.Fatal(err)
		}
		lag, err := b.Lag(ctx, "lag")
		if err != nil || lag < 59*time.Minute || lag > 61*time.Minute {
			t.Fatalf("lag %v (%v), want about an hour", lag, err)
		}
	})
}
