package server

import (
	"context"

	"database/sql"
	"encoding/json"
	"fmt"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"slices"
	"strings"
	"time"

	"handoff/pkg/bus"
	"handoff/pkg/pglisten"
	"handoff/pkg/sqldb"
)

// edgeChannel carries changes between edge processes on PostgreSQL. A
// change's notifications are collected while its transaction runs and sent
// right after it commits (pglisten.Notifier: a NOTIFY inside the
// transaction would queue every edit's commit on the server's notify
// lock), so only committed changes are told of; no table grows and a new
// process hears only what is new. Lost notifications (a dropped LISTEN
// connection, a process that died between its commit and the send) are
// made good from the database: on reconnect, and by a sweep every
// catchUpEvery. On SQLite there is one edge process and nothing to fan out.
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

// announce tells the other edge processes of a change: after the commit
// when ctx carries a transaction's announcements (see inTx), at once
// otherwise.
func (s *Server) announce(ctx context.Context, ev fanEvent) {
	if s.notifier == nil {
		return
	}
	ev.Process = s.process
	payload := mustJSON(ev)
	if len(payload) > maxNotify {
		ev.Msg = nil
		payload = mustJSON(ev)
	}
	if len(payload) > maxNotify && len(ev.Members) > 0 {
		payload = s.shrinkPresence(ev)
	}
	if later, ok := ctx.Value(announcementsKey{}).(*announcements); ok {
		later.payloads = append(later.payloads, string(payload))
		return
	}
	s.notifier.Notify(edgeChannel, string(payload))
}

// shrinkPresence fits a large draft's presence into one notification:
// first without the members' focus, then with as many members as fit.
func (s *Server) shrinkPresence(ev fanEvent) []byte {
	members := make([]presenceEntry, len(ev.Members))
	for i, m := range ev.Members {
		members[i] = presenceEntry{ID: m.ID, DisplayName: m.DisplayName}
	}
	for n := len(members); n > 0; n-- {
		ev.Members = members[:n]
		if payload := mustJSON(ev); len(payload) <= maxNotify {
			if n < len(members) {
				s.log.Warn("presence too large to announce whole", "draft_id", ev.DraftID, "members", len(members), "announced", n)
			}
			return payload
		}
	}
	ev.Members = nil
	return mustJSON(ev)
}

type announcementsKey struct{}

// withAnnouncements makes ctx collect the announcements made with it, to
// be sent with sendAnnouncements once the transaction has committed.
func withAnnouncements(ctx context.Context) (context.Context, *announcements) {
	later := &announcements{}
	return context.WithValue(ctx, announcementsKey{}, later), later
}

// announcements are what a transaction will announce once committed: edge
// changes, and the messages it published.
type announcements struct {
	payloads  []string
	published []*bus.Deferred
}

// publisherFor is a publisher through tx whose wake-ups wait for the commit
// when ctx carries the transaction's announcements.
func (s *Server) publisherFor(ctx context.Context, tx *sql.Tx) (message.Publisher, error) {
	later, ok := ctx.Value(announcementsKey{}).(*announcements)
	if !ok {
		return s.bus.Publisher(wmsql.TxFromStdSQL(tx))
	}
	d := s.bus.Defer(tx)
	later.published = append(later.published, d)
	return s.bus.Publisher(d.Exec())
}

// inTx runs fn in a transaction and sends what it announced once the
// transaction has committed.
func (s *Server) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	ctx, later := withAnnouncements(ctx)
	if err := s.db.InTx(ctx, func(tx *sql.Tx) error { return fn(ctx, tx) }); err != nil {
		return err
	}
	s.sendAnnouncements(later)
	return nil
}

func (s *Server) sendAnnouncements(later *announcements) {
	for _, d := range later.published {
		d.Committed()
	}
	if s.notifier == nil {
		return
	}
	for _, p := range later.payloads {
		s.notifier.Notify(edgeChannel, p)
	}
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
	s.notifier = pglisten.StartNotifier(s.db.DB, s.log)
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
			s.pushOperation(o.teamID, o)
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
	s.fillDrafts(ctx)
	for _, id := range s.hub.draftIDs() {
		s.announcePresence(id)
	}
	for _, team := range s.hub.teamIDs() {
		ops, err := s.teamOperations(ctx, team, 50)
		if err != nil {
			s.log.Error("resync operations", "team_id", team, "err", err)
			continue
		}
		for _, o := range ops {
			s.pushOperation(team, o)
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
	s.announce(ctx, ev)
}

func (s *Server) repeatPresence() {
	t := time.NewTicker(presenceEvery)
	defer t.Stop()
	sweep := time.NewTicker(s.cfg.CatchUpEvery)
	defer sweep.Stop()
	last := time.Now()
	for {
		select {
		case <-s.baseCtx.Done():
			return
		case <-t.C:
			for _, id := range s.hub.draftIDs() {
				s.announcePresence(id)
			}
		case now := <-sweep.C:
			s.catchUp(last.Add(-catchUpMargin))
			last = now
		}
	}
}

// catchUpMargin widens each sweep's window: operation times come from the
// interior's clock and precede their commit a little.
const catchUpMargin = 5 * time.Second

// catchUp makes good announcements this process never heard: the drafts
// with local subscribers get the ops they lack from the op log, and the
// operations of local teams changed since `since` are pushed where their
// newest state was not. A sweep that finds everything known sends nothing.
func (s *Server) catchUp(since time.Time) {
	ctx, cancel := context.WithTimeout(s.baseCtx, 30*time.Second)
	defer cancel()
	s.fillDrafts(ctx)
	for teams := range slices.Chunk(s.hub.teamIDs(), 200) {
		ops, err := s.operationsChangedSince(ctx, teams, since.UnixMilli())
		if err != nil {
			s.log.Warn("catch up operations", "err", err)
			break
		}
		for _, o := range ops {
			if o.Seq > s.pushedSeq(o.ID) {
				s.pushOperation(o.teamID, o)
			}
		}
	}
	s.forgetPushes(time.Now().Add(-2 * s.cfg.CatchUpEvery).Add(-catchUpMargin))
}

// fillDrafts gives the local subscribers of every draft the ops they lack,
// from the op log.
func (s *Server) fillDrafts(ctx context.Context) {
	for ids := range slices.Chunk(s.hub.draftIDs(), 200) {
		revs, err := s.draftRevisions(ctx, ids)
		if err != nil {
			s.log.Warn("fill drafts from the op log", "err", err)
			return
		}
		for id, rev := range revs {
			s.deliverApplied(ctx, id, rev, nil)
		}
	}
}

// pushOperation sends an operation's state to the team's local sockets and
// remembers its seq for catchUp.
func (s *Server) pushOperation(teamID string, o *Operation) {
	s.pushMu.Lock()
	if p, ok := s.pushed[o.ID]; !ok || o.Seq > p.seq {
		s.pushed[o.ID] = pushedOp{seq: o.Seq, at: time.Now()}
	}
	s.pushMu.Unlock()
	s.hub.broadcastTeam(teamID, operationMsg(o))
}

type pushedOp struct {
	seq int64
	at  time.Time
}

func (s *Server) pushedSeq(id string) int64 {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	return s.pushed[id].seq
}

func (s *Server) forgetPushes(before time.Time) {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	for id, p := range s.pushed {
		if p.at.Before(before) {
			delete(s.pushed, id)
		}
	}
}

// draftRevisions reads the current revision of each draft.
func (s *Server) draftRevisions(ctx context.Context, ids []string) (map[string]int64, error) {
	query, args := `SELECT id, revision FROM drafts WHERE id IN (`+placeholders(len(ids))+`)`, make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := s.db.QueryContext(ctx, s.db.Q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	revs := make(map[string]int64, len(ids))
	for rows.Next() {
		var id string
		var rev int64
		if err := rows.Scan(&id, &rev); err != nil {
			return nil, err
		}
		revs[id] = rev
	}
	return revs, rows.Err()
}

// operationsChangedSince lists the teams' operations updated at or after
// sinceMillis.
func (s *Server) operationsChangedSince(ctx context.Context, teams []string, sinceMillis int64) ([]*Operation, error) {
	args := make([]any, 0, len(teams)+1)
	args = append(args, sinceMillis)
	for _, t := range teams {
		args = append(args, t)
	}
	// Through the (team_id, submitted_at) index: an operation is looked at
	// for a day after its submit.
	args = append(args, sinceMillis-24*time.Hour.Milliseconds())
	rows, err := s.db.QueryContext(ctx, s.db.Q(`SELECT `+operationColumns+operationFrom+` WHERE o.updated_at >= $1 AND o.team_id IN (`+placeholdersFrom(2, len(teams))+`)
		AND o.submitted_at >= $`+fmt.Sprint(len(args))), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ops []*Operation
	for rows.Next() {
		o, err := scanOperation(rows)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o)
	}
	return ops, rows.Err()
}

// placeholders is "$1, $2, ... $n".
func placeholders(n int) string { return placeholdersFrom(1, n) }

// placeholdersFrom is "$first, ..." for n parameters.
func placeholdersFrom(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", first+i)
	}
	return b.String()
}
