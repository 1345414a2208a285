package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"

	"handoff/pkg/envelope"
)

type submitRequest struct {
	Revision *int64 `json:"revision"`
}

func (s *Server) submitDraft(w http.ResponseWriter, r *http.Request) error {
	var req submitRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Revision == nil {
		return invalid("revision", "The submit must name the revision you saw.")
	}
	p := principalFrom(r.Context())
	op, created, err := s.submit(r.Context(), p, chi.URLParam(r, "id"), *req.Revision)
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

// submit is the boundary: in one transaction it freezes the draft at the
// revision the member saw, writes the operation (unique per draft and
// revision) and writes the message to the outbox with an id derived from
// (draft id, revision). A repeat of the same submit returns the stored
// operation and changes nothing.
func (s *Server) submit(ctx context.Context, p principal, draftID string, revision int64) (op *Operation, created bool, err error) {
	unlock := s.locks.lock(draftID)
	defer unlock()
	var snapshot *Draft
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		d, err := s.loadDraft(ctx, tx, p.Team.ID, draftID, true)
		if err != nil {
			return err
		}
		if prev, err := s.operationAt(ctx, tx, p.Team.ID, draftID, revision); err != nil || prev != nil {
			op = prev
			return err
		}
		if err := checkSubmittable(d, revision, func(id string) (*Operation, error) { return s.loadOperation(ctx, tx, p.Team.ID, id, false) }); err != nil {
			return err
		}
		op = newOperation(d, p)
		if err := s.insertOperation(ctx, tx, op); err != nil {
			return err
		}
		d.State = StateSubmitted
		d.Submission = &SubmissionRef{OperationID: op.ID, MessageID: op.MessageID, Revision: revision}
		if _, err := tx.ExecContext(ctx, s.db.Q(`UPDATE drafts SET state = $2, submission_id = $3, updated_at = $4 WHERE id = $1`),
			d.ID, StateSubmitted, op.ID, op.raw.updatedAt); err != nil {
			return fmt.Errorf("freeze draft: %w", err)
		}
		snapshot, created = d, true
		s.announce(ctx, fanEvent{Kind: fanOperation, OpID: op.ID})
		s.announce(ctx, fanEvent{Kind: fanSnapshot, DraftID: d.ID})
		return s.publishSubmitted(ctx, tx, d, op)
	})
	if err != nil {
		return nil, false, fmt.Errorf("submit draft %s at %d: %w", draftID, revision, err)
	}
	if created {
		s.metrics.submits.Inc()
		s.pushOperation(p.Team.ID, op)
		s.hub.sendSnapshot(snapshot)
	}
	return op, created, nil
}

// checkSubmittable applies the boundary's rules in the contract's order.
func checkSubmittable(d *Draft, revision int64, current func(id string) (*Operation, error)) error {
	if d.State == StateSubmitted && d.Submission != nil {
		cur, err := current(d.Submission.OperationID)
		if err != nil {
			return err
		}
		return &Error{Code: CodeAlreadySubmitted, Message: "This draft was already submitted.", Extra: map[string]any{"operation": cur}}
	}
	if revision != d.Revision {
		return &Error{Code: CodeStaleRevision, Message: fmt.Sprintf("The draft has changed since you saw it (now at revision %d). Review it and submit again.", d.Revision),
			Extra: map[string]any{"current_revision": d.Revision}}
	}
	if len(d.Items) == 0 {
		return invalid("items", "An empty draft cannot be submitted; add an item first.")
	}
	return nil
}

// operationAt returns the operation already submitted for the draft at the
// revision, or nil.
func (s *Server) operationAt(ctx context.Context, tx *sql.Tx, teamID, draftID string, revision int64) (*Operation, error) {
	var id string
	err := tx.QueryRowContext(ctx, s.db.Q(`SELECT id FROM operations WHERE draft_id = $1 AND revision = $2`), draftID, revision).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up submission: %w", err)
	}
	return s.loadOperation(ctx, tx, teamID, id, false)
}

func newOperation(d *Draft, p principal) *Operation {
	msgID := envelope.SubmitID(d.ID, d.Revision)
	now := nowMillis()
	op := &Operation{
		ID: envelope.DeriveID(msgID, "boundary", "operation"), DraftID: d.ID, DraftTitle: d.Title, MessageID: msgID,
		Revision: d.Revision, Status: envelope.OpPending, SubmittedBy: p.Member, Seq: 1,
		teamID: d.TeamID, raw: operationRawState{submittedAt: now, updatedAt: now},
	}
	for _, name := range envelope.Steps {
		op.Steps = append(op.Steps, Step{Name: name, Status: envelope.StepWaiting})
	}
	op.SubmittedAt, op.UpdatedAt = rfc3339(now), rfc3339(now)
	return op
}

func (s *Server) insertOperation(ctx context.Context, tx *sql.Tx, op *Operation) error {
	_, err := tx.ExecContext(ctx, s.db.Q(`INSERT INTO operations (id, team_id, draft_id, draft_title, message_id, revision, status, steps, submitted_by, submitted_at, updated_at, seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`),
		op.ID, op.teamID, op.DraftID, op.DraftTitle, op.MessageID, op.Revision, op.Status, string(mustJSON(op.Steps)),
		op.SubmittedBy.ID, op.raw.submittedAt, op.raw.updatedAt, op.Seq)
	if err != nil {
		return fmt.Errorf("insert operation: %w", err)
	}
	return nil
}

// publishSubmitted writes the OrderSubmitted message through the submit's
// own transaction: the message tables are the outbox.
func (s *Server) publishSubmitted(ctx context.Context, tx *sql.Tx, d *Draft, op *Operation) error {
	order := envelope.OrderSubmitted{OperationID: op.ID, DraftID: d.ID, TeamID: d.TeamID, Revision: d.Revision, Title: d.Title}
	for _, it := range d.Items {
		order.Lines = append(order.Lines, envelope.Line{ItemID: it.ID, SKU: it.SKU, Quantity: it.Quantity, Note: it.Note})
	}
	msg, err := envelope.New(op.MessageID, envelope.TypeOrderSubmitted, op.ID, order)
	if err != nil {
		return err
	}
	pub, err := s.publisherFor(ctx, tx)
	if err != nil {
		return fmt.Errorf("outbox publisher: %w", err)
	}
	if err := pub.Publish(envelope.TopicOrderSubmitted, msg); err != nil {
		return fmt.Errorf("write outbox: %w", err)
	}
	return nil
}
