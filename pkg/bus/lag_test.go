package bus_test

import (
	"context"
	"testing"
	"time"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb/sqldbtest"
)

func TestLagIsTheAgeOfTheOldestUnprocessedMessage(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		b, db := newBus(t, url, bus.Options{}, "lag")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if lag, err := b.Lag(ctx, "lag"); err != nil || lag != 0 {
			t.Fatalf("empty topic: lag %v, %v", lag, err)
		}
		// A group that subscribed and has read nothing yet.
		_, closeSlow := openSub(t, b, "slow", "lag")
		closeSlow()
		publish(t, b, db, "lag", `{}`)
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
