package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"handoff/pkg/envelope"
)

// Step is one step of an operation on the wire.
type Step struct {
	Name       string  `json:"name"`
	Status     string  `json:"status"`
	StartedAt  *string `json:"started_at"`
	FinishedAt *string `json:"finished_at"`
	Attempts   int     `json:"attempts"`
	Error      *string `json:"error"`
}

// Operation is one submission travelling through the interior, as the
// edge's projection of the interior's status events.
type Operation struct {
	ID          string           `json:"id"`
	DraftID     string           `json:"draft_id"`
	DraftTitle  string           `json:"draft_title"`
	MessageID   string           `json:"message_id"`
	Revision    int64            `json:"revision"`
	Status      string           `json:"status"`
	Steps       []Step           `json:"steps"`
	Error       *envelope.Error  `json:"error"`
	Result      *envelope.Result `json:"result"`
	SubmittedBy Member           `json:"submitted_by"`
	SubmittedAt string           `json:"submitted_at"`
	UpdatedAt   string           `json:"updated_at"`
	Seq         int64            `json:"seq"`
	// Attempt counts manual retries (an extension of the contract).
	Attempt int `json:"attempt"`
	// Retryable says Retry is offered: the operation failed for a
	// transient reason and its draft is untouched since (an extension).
	Retryable bool `json:"retryable"`
	teamID    string
	raw       operationRawState // what is stored but not sent as is
}

type operationRawState struct {
	submittedAt, updatedAt int64
}

const operationColumns = `o.id, o.team_id, o.draft_id, o.draft_title, o.message_id, o.revision, o.status, o.steps,
	o.error, o.result, m.id, m.display_name, o.submitted_at, o.updated_at, o.seq, o.attempt,
	CASE WHEN o.status = 'failed' AND d.submission_id = o.id AND d.state = 'editing'
		AND NOT EXISTS (SELECT 1 FROM draft_ops x WHERE x.draft_id = o.draft_id AND x.revision > o.revision) THEN 1 ELSE 0 END`

// operationFrom joins what an operation's columns need.
const operationFrom = ` FROM operations o JOIN members m ON m.id = o.submitted_by JOIN drafts d ON d.id = o.draft_id`

func scanOperation(sc interface{ Scan(...any) error }) (*Operation, error) {
	o := &Operation{}
	var steps string
	var errJSON, resJSON sql.NullString
	var untouched int
	if err := sc.Scan(&o.ID, &o.teamID, &o.DraftID, &o.DraftTitle, &o.MessageID, &o.Revision, &o.Status, &steps,
		&errJSON, &resJSON, &o.SubmittedBy.ID, &o.SubmittedBy.DisplayName, &o.raw.submittedAt, &o.raw.updatedAt, &o.Seq,
		&o.Attempt, &untouched); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(steps), &o.Steps); err != nil {
		return nil, fmt.Errorf("operation %s: steps: %w", o.ID, err)
	}
	if errJSON.Valid {
		o.Error = &envelope.Error{}
		if err := json.Unmarshal([]byte(errJSON.String), o.Error); err != nil {
			return nil, fmt.Errorf("operation %s: error: %w", o.ID, err)
		}
	}
	if resJSON.Valid {
		o.Result = &envelope.Result{}
		if err := json.Unmarshal([]byte(resJSON.String), o.Result); err != nil {
			return nil, fmt.Errorf("operation %s: result: %w", o.ID, err)
		}
	}
	o.SubmittedAt, o.UpdatedAt = rfc3339(o.raw.submittedAt), rfc3339(o.raw.updatedAt)
	o.Retryable = untouched == 1 && o.Error != nil && o.Error.Retryable
	return o, nil
}

// loadOperation reads one operation; teamID "" means any team (the
// projection), otherwise another team's operation is not found.
func (s *Server) loadOperation(ctx context.Context, q querier, teamID, id string, forUpdate bool) (*Operation, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, errNotFound
	}
	query := `SELECT ` + operationColumns + operationFrom + ` WHERE o.id = $1 AND ($2 = '' OR o.team_id = $2)`
	if forUpdate && s.db.Dialect == "postgres" {
		query += ` FOR UPDATE OF o`
	}
	o, err := scanOperation(q.QueryRowContext(ctx, s.db.Q(query), id, teamID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load operation %s: %w", id, err)
	}
	return o, nil
}

// loadOperations reads the operations of any team with the given ids, by
// id; ids that name no operation are missing from the map. forUpdate locks
// their rows, in id order, on PostgreSQL.
func (s *Server) loadOperations(ctx context.Context, q querier, ids []string, forUpdate bool) (map[string]*Operation, error) {
	out := make(map[string]*Operation, len(ids))
	var valid []any
	for _, id := range ids {
		if _, err := uuid.Parse(id); err == nil {
			valid = append(valid, id)
		}
	}
	if len(valid) == 0 {
		return out, nil
	}
	query := `SELECT ` + operationColumns + operationFrom + ` WHERE o.id IN (` + placeholders(len(valid)) + `) ORDER BY o.id`
	if forUpdate && s.db.Dialect == "postgres" {
		query += ` FOR UPDATE OF o`
	}
	rows, err := q.QueryContext(ctx, s.db.Q(query), valid...)
	if err != nil {
		return nil, fmt.Errorf("load %d operations: %w", len(valid), err)
	}
	defer rows.Close()
	for rows.Next() {
		o, err := scanOperation(rows)
		if err != nil {
			return nil, fmt.Errorf("load operations: %w", err)
		}
		out[o.ID] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load operations: %w", err)
	}
	return out, nil
}

// saveOperation writes an operation's changing parts back.
func (s *Server) saveOperation(ctx context.Context, tx execer, o *Operation) error {
	return s.saveOperations(ctx, tx, []*Operation{o})
}

// saveOperations writes the changing parts of several operations back in
// one statement.
func (s *Server) saveOperations(ctx context.Context, tx execer, ops []*Operation) error {
	if len(ops) == 0 {
		return nil
	}
	var rows strings.Builder
	args := make([]any, 0, 8*len(ops))
	for i, o := range ops {
		steps, err := json.Marshal(o.Steps)
		if err != nil {
			return err
		}
		if i > 0 {
			rows.WriteString(", ")
		}
		n := len(args)
		fmt.Fprintf(&rows, "($%d, $%d, $%d, CAST($%d AS TEXT), CAST($%d AS TEXT), CAST($%d AS BIGINT), CAST($%d AS BIGINT), CAST($%d AS INTEGER))",
			n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8)
		args = append(args, o.ID, o.Status, string(steps), nullJSON(o.Error), nullJSON(o.Result), o.raw.updatedAt, o.Seq, o.Attempt)
	}
	_, err := tx.ExecContext(ctx, s.db.Q(`WITH v (id, status, steps, error, result, updated_at, seq, attempt) AS (VALUES `+rows.String()+`)
		UPDATE operations SET status = v.status, steps = v.steps, error = v.error, result = v.result, updated_at = v.updated_at, seq = v.seq, attempt = v.attempt
		FROM v WHERE operations.id = v.id`), args...)
	if err != nil {
		return fmt.Errorf("save %d operations: %w", len(ops), err)
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func nullJSON[T any](v *T) any {
	if v == nil {
		return nil
	}
	return string(mustJSON(v))
}

func (s *Server) listOperations(w http.ResponseWriter, r *http.Request) error {
	out, err := s.teamOperations(r.Context(), principalFrom(r.Context()).Team.ID, 200)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"operations": out})
	return nil
}

// teamOperations lists a team's newest operations.
func (s *Server) teamOperations(ctx context.Context, teamID string, limit int) ([]*Operation, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Q(`SELECT `+operationColumns+operationFrom+`
		WHERE o.team_id = $1 ORDER BY o.submitted_at DESC, o.id DESC LIMIT $2`), teamID, limit)
	if err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	defer rows.Close()
	out := []*Operation{}
	for rows.Next() {
		o, err := scanOperation(rows)
		if err != nil {
			return nil, fmt.Errorf("list operations: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	return out, nil
}

func (s *Server) getOperation(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	o, err := s.loadOperation(r.Context(), s.db, p.Team.ID, chi.URLParam(r, "id"), false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

// operationMsg is the socket message for an operation change.
func operationMsg(o *Operation) []byte {
	return mustJSON(map[string]any{"type": "operation", "operation": o})
}
