package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"handoff/pkg/pglisten"
	"handoff/pkg/sqldb"
)

// edgeChannel carries changes between edge processes on PostgreSQL. A
// notification is sent from the transaction that made the change, so it is
// delivered only if, and as soon as, the change commits, in commit order;
// no table grows and a new process hears only what is new. Lost
// notifications (a dropped LISTEN connection) are made good from the
// database on reconnect. On SQLite there is one edge process and nothing to
// fan out.
const edgeChannel = "handoff_edge"

// maxNotify keeps payloads under PostgreSQL's 8000-byte limit; a larger
// applied op travels as a reference and is read from the op log.
const maxNotify = 7000

// presenceEvery is how often a process repeats its presence, so that others
// can expire the presence of a process that died.
const presenceEvery = 15 * time.Second

// Fan-out event kinds.
const (
	fanApplied   = "applied"
	fanSnapshot  = "snapshot"
	fanOperation = "operation"
	fanPresence  = "presence"
	fanLogout    = "logout"
	fanDraft     = "draft"
)

// fanEvent is one change announced to the other edge processes.
type fanEvent struct {
	Kind    string          `json:"k"`
	Process string          `json:"p"`
	DraftID string          `json:"d,omitempty"`
	TeamID  string          `json:"t,omitempty"`
	OpID    string          `json:"o,omitempty"`
	Rev     int64           `json:"r,omitempty"`
	Msg     json.RawMessage `json:"m,omitempty"`
	Members []presenceEntry `json:"pm,omitempty"`
	Session string          `json:"s,omitempty"`
}

// announce tells the other edge processes of a change, through ex (the
// change's transaction, or the pool for presence).
func (s *Server) announce(ctx context.Context, ex execer, ev fanEvent) error {
	if s.db.Dialect != sqldb.Postgres {
		return nil
	}
	ev.Process = s.process
	payload := mustJSON(ev)
	if len(payload) > maxNotify {
		ev.Msg = nil
		payload = mustJSON(ev)
	}
	if _, err := ex.ExecContext(ctx, `SELECT pg_notify($1, $2)`, edgeChannel, string(payload)); err != nil {
		return fmt.Errorf("announce %s: %w", ev.Kind, err)
	}
	return nil
}

// listen starts receiving the other processes' announcements.
func (s *Server) listen() error {
	if s.db.Dialect != sqldb.Postgres {
		return nil
	}
	l, err := pglisten.Start(s.baseCtx, pglisten.Config{
		URL: s.db.URL, Channels: []string{edgeChannel}, Name: "handoff-edge",
		OnNotify: s.onAnnounce, OnReconnect: s.resync, Log: s.log,
	})
	if err != nil {
		return err
	}
	s.listener = l
	go s.repeatPresence()
	return nil
}

func (s *Server) onAnnounce(_, payload string) {
	var ev fanEvent
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		s.log.Error("bad edge announcement", "err", err)
		return
	}
	if ev.Process == s.process {
		return
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, 10*time.Second)
	defer cancel()
	switch ev.Kind {
	case fanApplied:
		s.deliverApplied(ctx, ev.DraftID, ev.Rev, ev.Msg)
	case fanSnapshot:
		if d, err := s.loadDraft(ctx, s.db, "", ev.DraftID, false); err == nil {
			s.hub.sendSnapshot(d)
		} else {
			s.log.Error("load announced draft", "draft_id", ev.DraftID, "err", err)
		}
	case fanOperation:
		if o, err := s.loadOperation(ctx, s.db, "", ev.OpID, false); err == nil {
			s.hub.broadcastTeam(o.teamID, operationMsg(o))
		} else {
			s.log.Error("load announced operation", "operation_id", ev.OpID, "err", err)
		}
	case fanDraft:
		if d, err := s.loadDraft(ctx, s.db, "", ev.DraftID, false); err == nil {
			s.hub.broadcastTeam(d.TeamID, draftMsg(d))
		}
	case fanLogout:
		s.hub.endSession(ev.Session)
	case fanPresence:
		s.hub.setRemotePresence(ev.DraftID, ev.Process, ev.Members)
		s.hub.broadcastPresence(ev.DraftID)
	}
}

// deliverApplied sends an applied op to this process's subscribers of the
// draft in revision order with no gaps: a revision that skips ahead of a
// subscriber (its predecessor was applied by another process and has not
// been announced here yet) first sends the missing ones from the op log. A
// nil msg is read from the log too.
func (s *Server) deliverApplied(ctx context.Context, draftID string, rev int64, msg []byte) {
	unlock := s.delivery.lock(draftID)
	defer unlock()
	oldest, ok := s.hub.oldestRev(draftID)
	if !ok || rev <= oldest {
		return
	}
	if rev > oldest+1 || msg == nil {
		upTo := rev - 1
		if msg == nil {
			upTo = rev
		}
		ops, err := s.opsBetween(ctx, draftID, oldest+1, upTo)
		if err != nil {
			s.log.Error("fill applied ops", "draft_id", draftID, "from", oldest+1, "to", upTo, "err", err)
			return
		}
		for _, op := range ops {
			s.hub.sendApplied(draftID, op.Revision, mustJSON(op))
		}
		if msg == nil {
			return
		}
	}
	s.hub.sendApplied(draftID, rev, msg)
}

// opsBetween reads applied ops from..to (inclusive) of a draft from the log.
func (s *Server) opsBetween(ctx context.Context, draftID string, from, to int64) ([]appliedMsg, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Q(`SELECT o.revision, o.client_op_id, o.op, m.id, m.display_name
		FROM draft_ops o JOIN members m ON m.id = o.author_id
		WHERE o.draft_id = $1 AND o.revision BETWEEN $2 AND $3 ORDER BY o.revision`), draftID, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []appliedMsg
	for rows.Next() {
		m := appliedMsg{Type: "applied", DraftID: draftID}
		var op string
		if err := rows.Scan(&m.Revision, &m.ClientOpID, &op, &m.Author.ID, &m.Author.DisplayName); err != nil {
			return nil, err
		}
		m.Op = json.RawMessage(op)
		out = append(out, m)
	}
	return out, rows.Err()
}

// resync makes good what was announced while the LISTEN connection was
// down: the drafts' missing ops, the teams' recent operations, presence.
func (s *Server) resync() {
	ctx, cancel := context.WithTimeout(s.baseCtx, 30*time.Second)
	defer cancel()
	for _, id := range s.hub.draftIDs() {
		var rev int64
		if err := s.db.QueryRowContext(ctx, s.db.Q(`SELECT revision FROM drafts WHERE id = $1`), id).Scan(&rev); err != nil {
			s.log.Error("resync draft", "draft_id", id, "err", err)
			continue
		}
		s.deliverApplied(ctx, id, rev, nil)
		s.announcePresence(id)
	}
	for _, team := range s.hub.teamIDs() {
		ops, err := s.teamOperations(ctx, team, 50)
		if err != nil {
			s.log.Error("resync operations", "team_id", team, "err", err)
			continue
		}
		for _, o := range ops {
			s.hub.broadcastTeam(team, operationMsg(o))
		}
	}
}

// presenceChanged pushes a draft's presence to local subscribers and
// announces this process's part of it to the others.
func (s *Server) presenceChanged(draftID string) {
	s.hub.broadcastPresence(draftID)
	s.announcePresence(draftID)
}

func (s *Server) announcePresence(draftID string) {
	if s.db.Dialect != sqldb.Postgres {
		return
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, 5*time.Second)
	defer cancel()
	ev := fanEvent{Kind: fanPresence, DraftID: draftID, Members: s.hub.localPresence(draftID)}
	if err := s.announce(ctx, s.db, ev); err != nil && s.baseCtx.Err() == nil {
		s.log.Warn("announce presence", "draft_id", draftID, "err", err)
	}
}

func (s *Server) repeatPresence() {
	t := time.NewTicker(presenceEvery)
	defer t.Stop()
	for {
		select {
		case <-s.baseCtx.Done():
			return
		case <-t.C:
			for _, id := range s.hub.draftIDs() {
				s.announcePresence(id)
			}
		}
	}
}
