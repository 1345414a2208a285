package interior

import (
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/envelope"
	"handoff/pkg/wmx"
)

// publish writes msgs to topic through the message's consume transaction,
// so they commit with the ack or not at all.
func (in *Interior) publish(msg *message.Message, topic string, msgs ...*message.Message) error {
	tx, err := wmx.Tx(msg)
	if err != nil {
		return err
	}
	pub, err := in.bus.Publisher(tx)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	if err := pub.Publish(topic, msgs...); err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	return nil
}

// status builds a StatusChanged message whose id derives from the incoming
// message, the handler and what changed, so a re-run reports the same change
// under the same id.
func status(in *message.Message, handler, change string, ev envelope.StatusChanged) (*message.Message, error) {
	ev.OperationID = in.Metadata.Get(envelope.MetaOperationID)
	ev.At = time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	out, err := envelope.New(envelope.DeriveID(in.UUID, handler, "status/"+change), envelope.TypeStatusChanged, ev.OperationID, ev)
	if err != nil {
		return nil, err
	}
	copyTrace(in, out)
	return out, nil
}

// next builds a handler's outgoing workflow message with a derived id.
func next(in *message.Message, handler, output, typ string, payload any) (*message.Message, error) {
	out, err := envelope.New(envelope.DeriveID(in.UUID, handler, output), typ, in.Metadata.Get(envelope.MetaOperationID), payload)
	if err != nil {
		return nil, err
	}
	copyTrace(in, out)
	return out, nil
}

func copyTrace(in, out *message.Message) {
	if a := in.Metadata.Get(envelope.MetaAttempt); a != "" {
		out.Metadata.Set(envelope.MetaAttempt, a)
	}
}

// reportAttempt publishes the failed attempt of a step (after its work was
// rolled back) so members see the attempts and the last error.
func (in *Interior) reportAttempt(h handler) func(*message.Message, int, error) {
	return func(msg *message.Message, attempt int, err error) {
		log := in.logFor(msg, h.name)
		log.Warn("attempt failed", "attempt", attempt, "err", err)
		ev, serr := status(msg, h.name, h.step+"/attempt-"+strconv.Itoa(attempt), envelope.StatusChanged{
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
		if msg.Metadata.Get(envelope.MetaOperationID) == "" {
			// Nothing to report to: the message names no operation.
			return nil, nil
		}
		ev, serr := status(msg, h.name, h.step+"/failed", envelope.StatusChanged{
			Step: h.step, StepStatus: envelope.StepFailed, Attempts: attempts, StepError: err.Error(),
			Outcome: envelope.OpFailed,
			Error:   &envelope.Error{Code: "step_failed", Message: fmt.Sprintf("%s failed after %d attempts: %v", h.step, attempts, err)},
		})
		if serr != nil {
			return nil, serr
		}
		return nil, in.publish(msg, envelope.TopicOperationStatus, ev)
	}
}
