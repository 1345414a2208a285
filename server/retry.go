package server

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"handoff/pkg/envelope"
)

// retryOperation answers POST /api/operations/{id}/retry (an extension of
// the contract): a failed operation whose failure was transient runs again
// as a new attempt with its own derived message id. The body may be empty
// or {}.
func (s *Server) retryOperation(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength != 0 {
		var empty struct{}
		if err := decode(w, r, &empty); err != nil {
			return err
		}
	}
	p := principalFrom(r.Context())
	op, created, err := s.retry(r.Context(), p, chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
	}
	writeJSON(w, status, map[string]any{"operation": op})
	return nil
}

// retry freezes the draft again and publishes the next attempt, in one
// transaction like the submit. A retry already under way is returned as is.
func (s *Server) retry(ctx context.Context, p principal, opID string) (op *Operation, created bool, err error) {
	first, err := s.loadOperation(ctx, s.db, p.Team.ID, opID, false)
	if err != nil {
		return nil, false, err
	}
	unlock := s.locks.lock(first.DraftID)
	defer unlock()
	var snapshot *Draft
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		d, err := s.loadDraft(ctx, tx, p.Team.ID, first.DraftID, true)
		if err != nil {
			return err
		}
		if op, err = s.loadOperation(ctx, tx, p.Team.ID, opID, true); err != nil {
			return err
		}
		switch {
		case op.Status == envelope.OpPending || op.Status == envelope.OpProcessing:
			return nil // a retry (or the first run) is under way: same answer
		case !op.Retryable:
			return &Error{Code: CodeNotRetryable, Message: notRetryableReason(op), Extra: map[string]any{"operation": op}}
		}
		op.Attempt++
		resetForAttempt(op)
		if err := s.saveOperation(ctx, tx, op); err != nil {
			return err
		}
		d.State = StateSubmitted
		if _, err := tx.ExecContext(ctx, s.db.Q(`UPDATE drafts SET state = $2, updated_at = $3 WHERE id = $1`), d.ID, StateSubmitted, op.raw.updatedAt); err != nil {
			return fmt.Errorf("freeze draft: %w", err)
		}
		snapshot, created = d, true
		s.announce(ctx, fanEvent{Kind: fanOperation, OpID: op.ID})
		s.announce(ctx, fanEvent{Kind: fanSnapshot, DraftID: d.ID})
		return s.publishAttempt(ctx, tx, d, op)
	})
	if err != nil {
		return nil, false, fmt.Errorf("retry operation %s: %w", opID, err)
	}
	if created {
		s.pushOperation(p.Team.ID, op)
		s.hub.sendSnapshot(snapshot)
	}
	return op, created, nil
}

func notRetryableReason(op *Operation) string {
	switch {
	case op.Status == envelope.OpCompleted:
		return "This operation completed; there is nothing to retry."
	case op.Error != nil && !op.Error.Retryable:
		return "This failure will not go away by trying again; fix the draft and submit it again."
	default:
		return "The draft has changed since this operation failed; submit it again instead."
	}
}

// resetForAttempt puts an operation back to pending for its next run.
func resetForAttempt(op *Operation) {
	now := nowMillis()
	op.Status, op.Error, op.Result, op.Retryable = envelope.OpPending, nil, nil, false
	for i := range op.Steps {
		op.Steps[i] = Step{Name: op.Steps[i].Name, Status: envelope.StepWaiting}
	}
	op.Seq++
	op.raw.updatedAt, op.UpdatedAt = now, rfc3339(now)
}

// publishAttempt writes the OrderSubmitted of a retry: the same order under
// a message id derived from the submission's and the attempt number.
func (s *Server) publishAttempt(ctx context.Context, tx *sql.Tx, d *Draft, op *Operation) error {
	order := envelope.OrderSubmitted{OperationID: op.ID, DraftID: d.ID, TeamID: d.TeamID, Revision: op.Revision, Title: op.DraftTitle}
	for _, it := range d.Items {
		order.Lines = append(order.Lines, envelope.Line{ItemID: it.ID, SKU: it.SKU, Quantity: it.Quantity, Note: it.Note})
	}
	msg, err := envelope.New(envelope.RetryID(op.MessageID, op.Attempt), envelope.TypeOrderSubmitted, op.ID, order)
	if err != nil {
		return err
	}
	msg.Metadata.Set(envelope.MetaAttempt, strconv.Itoa(op.Attempt))
	pub, err := s.publisherFor(ctx, tx)
	if err != nil {
		return fmt.Errorf("outbox publisher: %w", err)
	}
	return pub.Publish(envelope.TopicOrderSubmitted, msg)
}
