package server

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"handoff/pkg/bus"
	"handoff/pkg/envelope"
)

const (
	projectionHandler = "edge-projection"
	projectionGroup   = "edge.projection"
)

// runProjection keeps the operations view following the interior's status
// events until ctx ends. It reads them in batches: one transaction, one
// dedup statement and one load for the whole run, one write per operation
// it changed, and one push per operation with its newest state, so a
// backlog costs a few round trips per batch rather than several per event.
func (s *Server) runProjection(ctx context.Context) error {
	return s.bus.ConsumeBatches(ctx, bus.BatchConfig{
		Topic: envelope.TopicOperationStatus, Group: projectionGroup,
		Handle: func(ctx context.Context, tx *sql.Tx, msgs []*message.Message) (func(), error) {
			start := time.Now()
			after, err := s.project(ctx, tx, msgs)
			s.metrics.handlers.Observe(projectionHandler, time.Since(start), err)
			return after, err
		},
		GiveUp: func(msg *message.Message, err error) {
			// A status event that cannot be applied is logged and dropped, so
			// it never holds back the events of other operations.
			s.log.Error("dropping status event", "message_id", msg.UUID, "operation_id", msg.Metadata.Get(envelope.MetaOperationID), "err", err)
		},
		Ready: func() {
			s.projecting.Store(true)
			close(s.running)
		},
	})
}

// project applies a run of status events to their operations through the
// run's consume transaction; what it returns pushes the new states once
// that transaction has committed.
func (s *Server) project(ctx context.Context, tx *sql.Tx, msgs []*message.Message) (func(), error) {
	keys := make([]string, len(msgs))
	for i, msg := range msgs {
		keys[i] = projectionHandler + "/" + msg.UUID
	}
	fresh, err := s.metrics.handlers.Repository(s.dedup, projectionHandler).Fresh(ctx, tx, keys)
	if err != nil {
		return nil, err
	}
	type event struct {
		id string
		ev envelope.StatusChanged
	}
	var events []event
	var ids []string
	seen := map[string]bool{}
	for i, msg := range msgs {
		if !fresh[keys[i]] {
			continue // a duplicate, or a second copy within the run
		}
		delete(fresh, keys[i])
		var ev envelope.StatusChanged
		if err := envelope.Decode(msg, envelope.TypeStatusChanged, &ev); err != nil {
			s.log.Error("dropping status event", "message_id", msg.UUID, "err", err)
			continue
		}
		events = append(events, event{msg.UUID, ev})
		if !seen[ev.OperationID] {
			seen[ev.OperationID] = true
			ids = append(ids, ev.OperationID)
		}
	}
	ops, err := s.loadOperations(ctx, tx, ids, true)
	if err != nil {
		return nil, err
	}
	var changed []*Operation
	var reopened []*Draft
	dirty := map[*Operation]bool{}
	for _, e := range events {
		o := ops[e.ev.OperationID]
		if o == nil {
			s.log.Error("dropping status event", "message_id", e.id, "operation_id", e.ev.OperationID, "err", "no such operation")
			continue
		}
		at, _ := time.Parse(time.RFC3339Nano, e.ev.At)
		if at.IsZero() {
			at = time.Now()
		}
		if !ApplyStatus(o, e.ev, at.UnixMilli()) {
			continue
		}
		if !dirty[o] {
			dirty[o] = true
			changed = append(changed, o)
		}
		if e.ev.Outcome == envelope.OpFailed {
			d, err := s.reopenDraft(ctx, tx, o)
			if err != nil {
				return nil, err
			}
			o.Retryable = d != nil && o.Error != nil && o.Error.Retryable
			if d != nil {
				reopened = append(reopened, d)
			}
		}
	}
	ctx, later := withAnnouncements(ctx)
	if err := s.saveOperations(ctx, tx, changed); err != nil {
		return nil, err
	}
	for _, o := range changed {
		s.announce(ctx, fanEvent{Kind: fanOperation, OpID: o.ID})
	}
	for _, d := range reopened {
		s.announce(ctx, fanEvent{Kind: fanSnapshot, DraftID: d.ID})
	}
	return func() {
		s.sendAnnouncements(later)
		for _, o := range changed {
			s.pushOperation(o.teamID, o)
		}
		for _, d := range reopened {
			s.hub.sendSnapshot(d)
		}
	}, nil
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
