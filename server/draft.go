package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
)

// draftJSON is a draft on the wire.
type draftJSON struct {
	ID         string         `json:"id"`
	Title      string         `json:"title"`
	Revision   int64          `json:"revision"`
	State      string         `json:"state"`
	Items      *[]Item        `json:"items,omitempty"`
	CreatedAt  string         `json:"created_at"`
	UpdatedAt  string         `json:"updated_at"`
	Submission *SubmissionRef `json:"submission"`
}

func rfc3339(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func (d *Draft) wire(withItems bool) draftJSON {
	out := draftJSON{ID: d.ID, Title: d.Title, Revision: d.Revision, State: d.State,
		CreatedAt: rfc3339(d.CreatedAt), UpdatedAt: rfc3339(d.UpdatedAt), Submission: d.Submission}
	if withItems {
		items := d.Items
		if items == nil {
			items = []Item{}
		}
		out.Items = &items
	}
	return out
}

// draftLocks serialises work on one draft inside this process, so ops are
// applied and broadcast in one order. Striped: a fixed array, no growth.
type draftLocks [256]sync.Mutex

func (l *draftLocks) lock(draftID string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(draftID))
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// loadDraft reads a draft of the team with its items; inside a transaction
// on PostgreSQL it locks the row (SQLite's write transactions are already
// exclusive). A draft of another team is not found; teamID "" reads any.
func (s *Server) loadDraft(ctx context.Context, q querier, teamID, draftID string, forUpdate bool) (*Draft, error) {
	if _, err := uuid.Parse(draftID); err != nil {
		return nil, errNotFound
	}
	query := `SELECT d.id, d.team_id, d.title, d.revision, d.state, d.created_at, d.updated_at,
		o.id, o.message_id, o.revision
		FROM drafts d LEFT JOIN operations o ON o.id = d.submission_id
		WHERE d.id = $1 AND ($2 = '' OR d.team_id = $2)`
	if forUpdate && s.db.Dialect == "postgres" {
		query += ` FOR UPDATE OF d`
	}
	d := &Draft{}
	var opID, msgID sql.NullString
	var opRev sql.NullInt64
	err := q.QueryRowContext(ctx, s.db.Q(query), draftID, teamID).
		Scan(&d.ID, &d.TeamID, &d.Title, &d.Revision, &d.State, &d.CreatedAt, &d.UpdatedAt, &opID, &msgID, &opRev)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load draft %s: %w", draftID, err)
	}
	if opID.Valid {
		d.Submission = &SubmissionRef{OperationID: opID.String, MessageID: msgID.String, Revision: opRev.Int64}
	}
	rows, err := q.QueryContext(ctx, s.db.Q(`SELECT id, sku, quantity, note FROM draft_items WHERE draft_id = $1 ORDER BY position`), draftID)
	if err != nil {
		return nil, fmt.Errorf("load items of %s: %w", draftID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var it Item
		if err := rows.Scan(&it.ID, &it.SKU, &it.Quantity, &it.Note); err != nil {
			return nil, err
		}
		if p, ok := s.catalog.Lookup(it.SKU); ok {
			it.Name = p.Name
		} else {
			it.Name = it.SKU
		}
		d.Items = append(d.Items, it)
	}
	return d, rows.Err()
}

func (s *Server) listDrafts(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	rows, err := s.db.QueryContext(r.Context(), s.db.Q(`SELECT d.id, d.title, d.revision, d.state, d.created_at, d.updated_at,
		o.id, o.message_id, o.revision
		FROM drafts d LEFT JOIN operations o ON o.id = d.submission_id
		WHERE d.team_id = $1 ORDER BY d.created_at DESC, d.id DESC LIMIT 500`), p.Team.ID)
	if err != nil {
		return fmt.Errorf("list drafts: %w", err)
	}
	defer rows.Close()
	out := []draftJSON{}
	for rows.Next() {
		d := Draft{}
		var opID, msgID sql.NullString
		var opRev sql.NullInt64
		if err := rows.Scan(&d.ID, &d.Title, &d.Revision, &d.State, &d.CreatedAt, &d.UpdatedAt, &opID, &msgID, &opRev); err != nil {
			return fmt.Errorf("list drafts: %w", err)
		}
		if opID.Valid {
			d.Submission = &SubmissionRef{OperationID: opID.String, MessageID: msgID.String, Revision: opRev.Int64}
		}
		out = append(out, d.wire(false))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list drafts: %w", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"drafts": out})
	return nil
}

type createDraftRequest struct {
	Title string `json:"title"`
}

func (s *Server) createDraft(w http.ResponseWriter, r *http.Request) error {
	var req createDraftRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	title, err := CheckTitle(req.Title)
	if err != nil {
		return err
	}
	p := principalFrom(r.Context())
	now := nowMillis()
	d := &Draft{ID: uuid.NewString(), TeamID: p.Team.ID, Title: title, State: StateEditing, CreatedAt: now, UpdatedAt: now}
	if _, err := s.db.ExecContext(r.Context(), s.db.Q(`INSERT INTO drafts (id, team_id, title, revision, state, created_at, updated_at)
		VALUES ($1, $2, $3, 0, $4, $5, $6)`), d.ID, d.TeamID, d.Title, d.State, now, now); err != nil {
		return fmt.Errorf("create draft: %w", err)
	}
	s.draftListed(r.Context(), d)
	writeJSON(w, http.StatusCreated, d.wire(true))
	return nil
}

func (s *Server) getDraft(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	d, err := s.loadDraft(r.Context(), s.db, p.Team.ID, chi.URLParam(r, "id"), false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d.wire(true))
	return nil
}

// appliedMsg is the wire form of an applied op.
type appliedMsg struct {
	Type       string          `json:"type"`
	DraftID    string          `json:"draft_id"`
	Revision   int64           `json:"revision"`
	ClientOpID string          `json:"client_op_id"`
	Author     Member          `json:"author"`
	Op         json.RawMessage `json:"op"`
}

// applyOp applies one op to a draft: durably stored with its client_op_id
// before anyone hears of it, then broadcast to the draft's subscribers in
// revision order. A client_op_id seen before returns the stored answer and
// changes nothing (dup is true).
func (s *Server) applyOp(ctx context.Context, p principal, draftID, clientOpID string, op *Op) (msg appliedMsg, dup bool, err error) {
	unlock := s.locks.lock(draftID)
	defer unlock()
	var expired *Operation
	var renamed *Draft
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		d, err := s.loadDraft(ctx, tx, p.Team.ID, draftID, true)
		if err != nil {
			return err
		}
		if prev, ok, err := s.storedOp(ctx, tx, draftID, clientOpID); err != nil || ok {
			if ok && prev.Author.ID != p.Member.ID {
				// Only its author can resend an op; anyone else reusing the
				// id would otherwise be acknowledged for an op never applied.
				return invalid("client_op_id", "This client_op_id was already used by another member; choose a new one.")
			}
			msg, dup = prev, ok
			return err
		}
		if err := ApplyOp(d, op, s.catalog); err != nil {
			return err
		}
		opJSON, err := json.Marshal(op)
		if err != nil {
			return err
		}
		if err := s.writeOp(ctx, tx, d, op); err != nil {
			return err
		}
		if expired, err = s.expireRetry(ctx, tx, d); err != nil {
			return err
		}
		now := nowMillis()
		if _, err := tx.ExecContext(ctx, s.db.Q(`UPDATE drafts SET revision = revision + 1, updated_at = $2 WHERE id = $1`), draftID, now); err != nil {
			return err
		}
		rev := d.Revision + 1
		if _, err := tx.ExecContext(ctx, s.db.Q(`INSERT INTO draft_ops (draft_id, revision, client_op_id, author_id, op, created_at) VALUES ($1, $2, $3, $4, $5, $6)`),
			draftID, rev, clientOpID, p.Member.ID, string(opJSON), now); err != nil {
			return err
		}
		msg = appliedMsg{Type: "applied", DraftID: draftID, Revision: rev, ClientOpID: clientOpID, Author: p.Member, Op: opJSON}
		if op.Kind == OpSetTitle {
			d.Revision, d.UpdatedAt = rev, now
			renamed = d
		}
		s.announce(ctx, fanEvent{Kind: fanApplied, DraftID: draftID, Rev: rev, Msg: mustJSON(msg)})
		return nil
	})
	if err != nil {
		return appliedMsg{}, false, err
	}
	if !dup {
		s.metrics.opsApplied.Inc()
		s.deliverApplied(ctx, draftID, msg.Revision, mustJSON(msg))
	}
	if expired != nil {
		s.pushOperation(p.Team.ID, expired)
	}
	if renamed != nil {
		s.draftListed(ctx, renamed)
	}
	return msg, dup, nil
}

// draftListed tells the team's members, here and on the other edges, that
// a draft of their list was created or renamed (an extension of the
// contract: {"type": "draft", "draft": draft without items}).
func (s *Server) draftListed(ctx context.Context, d *Draft) {
	s.hub.broadcastTeam(d.TeamID, draftMsg(d))
	s.announce(ctx, fanEvent{Kind: fanDraft, DraftID: d.ID})
}

func draftMsg(d *Draft) []byte {
	return mustJSON(map[string]any{"type": "draft", "draft": d.wire(false)})
}

// expireRetry: the first edit of a draft whose order failed for a
// transient reason takes Retry away (the draft is no longer what failed),
// so the operation changes and every member hears of it.
func (s *Server) expireRetry(ctx context.Context, tx *sql.Tx, d *Draft) (*Operation, error) {
	if d.Submission == nil || d.State != StateEditing {
		return nil, nil
	}
	o, err := s.loadOperation(ctx, tx, d.TeamID, d.Submission.OperationID, true)
	if err != nil || !o.Retryable {
		return nil, err
	}
	now := nowMillis()
	o.Retryable, o.Seq, o.raw.updatedAt, o.UpdatedAt = false, o.Seq+1, now, rfc3339(now)
	if err := s.saveOperation(ctx, tx, o); err != nil {
		return nil, err
	}
	s.announce(ctx, fanEvent{Kind: fanOperation, OpID: o.ID})
	return o, nil
}

func (s *Server) storedOp(ctx context.Context, tx *sql.Tx, draftID, clientOpID string) (appliedMsg, bool, error) {
	var m appliedMsg
	var op string
	err := tx.QueryRowContext(ctx, s.db.Q(`SELECT o.revision, o.op, m.id, m.display_name FROM draft_ops o JOIN members m ON m.id = o.author_id
		WHERE o.draft_id = $1 AND o.client_op_id = $2`), draftID, clientOpID).Scan(&m.Revision, &op, &m.Author.ID, &m.Author.DisplayName)
	if errors.Is(err, sql.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("look up op %s: %w", clientOpID, err)
	}
	m.Type, m.DraftID, m.ClientOpID, m.Op = "applied", draftID, clientOpID, json.RawMessage(op)
	return m, true, nil
}

// writeOp stores what an applied op changed.
func (s *Server) writeOp(ctx context.Context, tx *sql.Tx, d *Draft, op *Op) error {
	var err error
	switch op.Kind {
	case OpSetTitle:
		_, err = tx.ExecContext(ctx, s.db.Q(`UPDATE drafts SET title = $2 WHERE id = $1`), d.ID, d.Title)
	case OpAddItem:
		it := d.Items[len(d.Items)-1]
		_, err = tx.ExecContext(ctx, s.db.Q(`INSERT INTO draft_items (draft_id, id, sku, quantity, note, position)
			SELECT $1, $2, $3, $4, $5, next_position FROM drafts WHERE id = $1`), d.ID, it.ID, it.SKU, it.Quantity, it.Note)
		if err == nil {
			_, err = tx.ExecContext(ctx, s.db.Q(`UPDATE drafts SET next_position = next_position + 1 WHERE id = $1`), d.ID)
		}
	case OpUpdateItem:
		it := d.Items[d.itemIndex(op.ItemID)]
		_, err = tx.ExecContext(ctx, s.db.Q(`UPDATE draft_items SET quantity = $3, note = $4 WHERE draft_id = $1 AND id = $2`), d.ID, it.ID, it.Quantity, it.Note)
	case OpRemoveItem:
		_, err = tx.ExecContext(ctx, s.db.Q(`DELETE FROM draft_items WHERE draft_id = $1 AND id = $2`), d.ID, op.ItemID)
	}
	if err != nil {
		return fmt.Errorf("store %s on draft %s: %w", op.Kind, d.ID, err)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err))
	}
	return b
}
