package bus

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"

	"handoff/pkg/pglisten"
)

// startListening opens the LISTEN connection before New returns, so no
// commit after New is missed, and turns notifications into wakes of the
// notified topic; after a lost connection comes back every subscriber is
// woken, since what was committed meanwhile announced itself to nobody.
func (b *Bus) startListening() error {
	l, err := pglisten.Start(context.Background(), pglisten.Config{
		URL: b.db.URL, Channels: []string{NotifyChannel}, Name: "handoff-bus-listener",
		OnNotify:    func(_, topic string) { b.wakeTopic(topic) },
		OnReconnect: b.Wake,
		OnListen: func(pid uint32) {
			b.listenPID.Store(pid)
			b.listening.Wake()
		},
		Log: busLog{b.logger},
	})
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	b.listener = l
	return nil
}

// busLog lets the listener log through the bus's watermill logger.
type busLog struct{ l watermill.LoggerAdapter }

func (b busLog) Error(msg string, args ...any) { b.l.Error("bus: "+msg, nil, fields(args)) }
func (b busLog) Info(msg string, args ...any)  { b.l.Info("bus: "+msg, fields(args)) }

func fields(args []any) watermill.LogFields {
	f := watermill.LogFields{}
	for i := 0; i+1 < len(args); i += 2 {
		f[fmt.Sprint(args[i])] = args[i+1]
	}
	return f
}
