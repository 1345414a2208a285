package interior

import (
	"fmt"
	"strconv"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/envelope"
	"handoff/pkg/wmx"
)

// ref identifies the message a piece of work derives from: its id, the
// operation and the run of that operation.
type ref struct {
	ID          string
	OperationID string
	Attempt     int
}

func refOf(msg *message.Message) ref {
	return ref{ID: msg.UUID, OperationID: msg.Metadata.Get(envelope.MetaOperationID), Attempt: envelope.AttemptOf(msg)}
}

// publishOn writes msgs to topic through exec (a transaction), so they
// commit with it or not at all.
func (in *Interior) publishOn(exec wmsql.ContextExecutor, topic string, msgs ...*message.Message) error {
	pub, err := in.bus.Publisher(exec)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	if err := pub.Publish(topic, msgs...); err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	return nil
}

// publish writes msgs through the message's consume transaction.
func (in *Interior) publish(msg *message.Message, topic string, msgs ...*message.Message) error {
	tx, err := wmx.Tx(msg)
	if err != nil {
		return err
	}
	return in.publishOn(tx, topic, msgs...)
}

// status builds a StatusChanged message whose id derives from the source,
// the handler and what changed, so a re-run reports the same change under
// the same id.
func status(src ref, handler, change string, ev envelope.StatusChanged) (*message.Message, error) {
	ev.OperationID, ev.Attempt = src.OperationID, src.Attempt
	ev.At = time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	return next(src, handler, "status/"+change, envelope.TypeStatusChanged, ev)
}

// next builds a handler's outgoing message with a derived id, carrying the
// operation and its run.
func next(src ref, handler, output, typ string, payload any) (*message.Message, error) {
	out, err := envelope.New(envelope.DeriveID(src.ID, handler, output), typ, src.OperationID, payload)
	if err != nil {
		return nil, err
	}
	if src.Attempt > 0 {
		out.Metadata.Set(envelope.MetaAttempt, strconv.Itoa(src.Attempt))
	}
	return out, nil
}

// fail publishes a step's failure as the operation's outcome.
func (in *Interior) fail(exec wmsql.ContextExecutor, src ref, handler, step string, attempts int, reason *envelope.Error) error {
	ev, err := status(src, handler, step+"/failed", envelope.StatusChanged{
		Step: step, StepStatus: envelope.StepFailed, Attempts: attempts, StepError: reason.Message,
		Outcome: envelope.OpFailed, Error: reason,
	})
	if err != nil {
		return err
	}
	return in.publishOn(exec, envelope.TopicOperationStatus, ev)
}

// stepDone publishes a step's success together with the next message.
func (in *Interior) stepDone(exec wmsql.ContextExecutor, src ref, handler, step string, attempts int, topic string, out *message.Message) error {
	ev, err := status(src, handler, step+"/done", envelope.StatusChanged{Step: step, StepStatus: envelope.StepDone, Attempts: attempts})
	if err != nil {
		return err
	}
	if err := in.publishOn(exec, envelope.TopicOperationStatus, ev); err != nil {
		return err
	}
	return in.publishOn(exec, topic, out)
}

// reportAttempt publishes the failed attempt of a step (after its work was
// rolled back) so members see the attempts and the last error.
func (in *Interior) reportAttempt(h handler) func(*message.Message, int, error) {
	return func(msg *message.Message, attempt int, err error) {
		log := in.logFor(msg, h.name)
		log.Warn("attempt failed", "attempt", attempt, "err", err)
		ev, serr := status(refOf(msg), h.name, h.step+"/attempt-"+strconv.Itoa(attempt), envelope.StatusChanged{
			Step: h.step, StepStatus: envelope.StepRunning, Attempts: attempt + 1, StepError: err.Error(),
		})
		if serr == nil {
			serr = in.publish(msg, envelope.TopicOperationStatus, ev)
		}
		if serr != nil {
			log.Error("report failed attempt", "err", serr)
		}
	}
}

// giveUp turns a message that keeps failing (or cannot be decoded) into a
// failed operation and acks it, so it never blocks the messages behind it.
func (in *Interior) giveUp(h handler) func(*message.Message, int, error) ([]*message.Message, error) {
	return func(msg *message.Message, attempts int, err error) ([]*message.Message, error) {
		log := in.logFor(msg, h.name)
		// The dedup key of the failed attempts was rolled back; record it now
		// so a duplicate of this message is not run again.
		dup, derr := in.dedup.IsDuplicate(msg.Context(), h.name+"/"+msg.UUID)
		if derr != nil {
			return nil, derr
		}
		if dup {
			return nil, nil
		}
		log.Error("giving up on message", "attempts", attempts, "err", err)
		src := refOf(msg)
		if src.OperationID == "" {
			// Nothing to report to: the message names no operation.
			return nil, nil
		}
		tx, terr := wmx.Tx(msg)
		if terr != nil {
			return nil, terr
		}
		if h.compensate != nil {
			if cerr := h.compensate(msg.Context(), tx, src); cerr != nil {
				return nil, cerr
			}
		}
		reason := &envelope.Error{Code: "step_failed", Message: fmt.Sprintf("%s failed after %d attempts: %v", h.step, attempts, err)}
		return nil, in.fail(tx, src, h.name, h.step, attempts, reason)
	}
}
