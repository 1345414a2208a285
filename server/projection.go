package server

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"handoff/pkg/envelope"
	"handoff/pkg/wmx"
)

const projectionHandler = "edge-projection"

// addProjection subscribes the operations view to the interior's status
// events.
func (s *Server) addProjection() error {
	sub, err := s.bus.Subscriber("edge.projection")
	if err != nil {
		return fmt.Errorf("projection subscriber: %w", err)
	}
	h := s.router.AddConsumerHandler(projectionHandler, envelope.TopicOperationStatus, sub, s.project)
	policy := wmx.RetryPolicy{
		MaxAttempts: 5, InitialBackoff: 10 * time.Millisecond,
		OnGiveUp: func(msg *message.Message, attempts int, err error) ([]*message.Message, error) {
			// A status event that cannot be applied is logged and dropped, so
			// it never holds back the events of other operations.
			s.log.Error("dropping status event", "message_id", msg.UUID, "operation_id", msg.Metadata.Get(envelope.MetaOperationID), "attempts", attempts, "err", err)
			return nil, nil
		},
	}
	h.AddMiddleware(policy.Retry, s.metrics.handlers.Middleware(projectionHandler), wmx.Savepoint, middleware.Recoverer,
		wmx.Deduplicator(s.metrics.handlers.Repository(s.dedup, projectionHandler), projectionHandler))
	return nil
}

// project applies one status event to its operation, through the event's
// consume transaction, and pushes the new state to the team.
func (s *Server) project(msg *message.Message) error {
	var ev envelope.StatusChanged
	if err := envelope.Decode(msg, envelope.TypeStatusChanged, &ev); err != nil {
		return wmx.Permanent(err)
	}
	q, err := wmx.StdTx(msg)
	if err != nil {
		return err
	}
	ctx := msg.Context()
	o, err := s.loadOperation(ctx, q, "", ev.OperationID, true)
	if err != nil {
		return wmx.Permanent(fmt.Errorf("operation %s: %w", ev.OperationID, err))
	}
	at, _ := time.Parse(time.RFC3339Nano, ev.At)
	if at.IsZero() {
		at = time.Now()
	}
	if !ApplyStatus(o, ev, at.UnixMilli()) {
		return nil
	}
	if err := s.saveOperation(ctx, q, o); err != nil {
		return err
	}
	var reopened *Draft
	if ev.Outcome == envelope.OpFailed {
		if reopened, err = s.reopenDraft(ctx, q, o); err != nil {
			return err
		}
		o.Retryable = reopened != nil && o.Error != nil && o.Error.Retryable
	}
	if err := s.announce(ctx, q, fanEvent{Kind: fanOperation, OpID: o.ID}); err != nil {
		return err
	}
	if reopened != nil {
		if err := s.announce(ctx, q, fanEvent{Kind: fanSnapshot, DraftID: reopened.ID}); err != nil {
			return err
		}
	}
	// Pushes are at-least-once: a copy sent before the commit may be sent
	// again on redelivery, and clients keep the highest seq.
	s.hub.broadcastTeam(o.teamID, operationMsg(o))
	if reopened != nil {
		s.hub.sendSnapshot(reopened)
	}
	return nil
}

// ApplyStatus folds one status event into an operation and raises its seq;
// it reports false for an event of an earlier run (before a retry), which
// changes nothing. Events after the operation ended change nothing but the
// step they name.
func ApplyStatus(o *Operation, ev envelope.StatusChanged, atMillis int64) bool {
	if ev.Attempt < o.Attempt {
		return false
	}
	at := rfc3339(atMillis)
	failedAt := -1
	for i := range o.Steps {
		st := &o.Steps[i]
		if st.Name != ev.Step {
			continue
		}
		if st.StartedAt == nil {
			st.StartedAt = &at
		}
		st.Status = ev.StepStatus
		if ev.Attempts > st.Attempts {
			st.Attempts = ev.Attempts
		}
		switch ev.StepStatus {
		case envelope.StepDone:
			st.FinishedAt, st.Error = &at, nil
		case envelope.StepFailed:
			st.FinishedAt = &at
			failedAt = i
		}
		if ev.StepError != "" {
			e := ev.StepError
			st.Error = &e
		}
	}
	terminal := o.Status == envelope.OpCompleted || o.Status == envelope.OpFailed
	switch {
	case terminal:
	case ev.Outcome == envelope.OpCompleted:
		o.Status, o.Result = envelope.OpCompleted, ev.Result
	case ev.Outcome == envelope.OpFailed:
		o.Status, o.Error = envelope.OpFailed, ev.Error
		for i := failedAt + 1; failedAt >= 0 && i < len(o.Steps); i++ {
			if o.Steps[i].Status == envelope.StepWaiting {
				o.Steps[i].Status = envelope.StepSkipped
			}
		}
	default:
		o.Status = envelope.OpProcessing
	}
	o.Seq++
	o.raw.updatedAt = atMillis
	o.UpdatedAt = at
	return true
}

// reopenDraft puts a draft whose order failed back into editing with a new
// revision, so the team can fix it and submit again under a new message id.
func (s *Server) reopenDraft(ctx context.Context, q *sql.Tx, o *Operation) (*Draft, error) {
	res, err := q.ExecContext(ctx, s.db.Q(`UPDATE drafts SET state = $2, revision = revision + 1, updated_at = $3
		WHERE id = $1 AND state = $4 AND submission_id = $5`), o.DraftID, StateEditing, nowMillis(), StateSubmitted, o.ID)
	if err != nil {
		return nil, fmt.Errorf("reopen draft %s: %w", o.DraftID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, nil
	}
	return s.loadDraft(ctx, q, o.teamID, o.DraftID, false)
}
