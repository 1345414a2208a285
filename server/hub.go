package server

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Hub knows every socket of this process: by team for operation changes,
// by draft for applied ops, snapshots and presence. It never touches the
// database; the server fills gaps and loads snapshots around it.
type Hub struct {
	mu      sync.Mutex
	byTeam  map[string]map[*conn]struct{}
	byDraft map[string]map[*conn]struct{}
	// remote is the presence other edge processes announced, by draft and
	// process.
	remote  map[string]map[string]remotePresence
	closing bool
	sockets sync.WaitGroup
}

type remotePresence struct {
	members []presenceEntry
	at      time.Time
}

// remotePresenceTTL drops the presence of an edge process that stopped
// announcing (it crashed); live processes re-announce well within it.
const remotePresenceTTL = 45 * time.Second

func newHub() *Hub {
	return &Hub{byTeam: map[string]map[*conn]struct{}{}, byDraft: map[string]map[*conn]struct{}{}, remote: map[string]map[string]remotePresence{}}
}

// conn is one socket.
type conn struct {
	ws   *websocket.Conn
	p    principal
	done chan struct{}
	once sync.Once
	ping *time.Timer
	// ctx is the socket's life: the server's base context.
	ctx      context.Context
	maxQueue int
	mu       sync.Mutex
	// queue holds the messages not yet written, at most maxQueue; writing
	// says a writer is draining it. Both guarded by mu.
	queue   [][]byte
	writing bool
	// drafts are the subscribed drafts; guarded by Hub.mu.
	drafts map[string]*subscription
}

// subscription is one socket's view of a draft.
type subscription struct {
	focus *string
	// rev is the last revision this socket has (by snapshot or applied op).
	rev int64
}

func (c *conn) kill(code websocket.StatusCode, reason string) {
	c.once.Do(func() {
		close(c.done)
		go c.ws.Close(code, reason)
	})
}

func (c *conn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// enqueue never blocks; it is called with Hub.mu held. A socket whose
// queue is full is closed rather than slowing the sender.
func (c *conn) enqueue(msg []byte) {
	if c.closed() {
		return
	}
	c.mu.Lock()
	if len(c.queue) >= c.maxQueue {
		c.mu.Unlock()
		c.kill(websocket.StatusPolicyViolation, "client too slow to read its messages")
		return
	}
	c.queue = append(c.queue, msg)
	idle := !c.writing
	c.writing = true
	c.mu.Unlock()
	if idle {
		go c.drain()
	}
}

// add registers a socket with its team, queueing hello first: under Hub.mu,
// so no team broadcast can reach the socket before it.
func (h *Hub) add(c *conn, hello []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	c.enqueue(hello)
	set := h.byTeam[c.p.Team.ID]
	if set == nil {
		set = map[*conn]struct{}{}
		h.byTeam[c.p.Team.ID] = set
	}
	set[c] = struct{}{}
	h.sockets.Add(1)
	return true
}

// remove forgets a socket and returns the drafts whose presence changed.
func (h *Hub) remove(c *conn) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.byTeam[c.p.Team.ID], c)
	if len(h.byTeam[c.p.Team.ID]) == 0 {
		delete(h.byTeam, c.p.Team.ID)
	}
	var drafts []string
	for id := range c.drafts {
		h.unsubscribeLocked(c, id)
		drafts = append(drafts, id)
	}
	h.sockets.Done()
	return drafts
}

func (h *Hub) unsubscribeLocked(c *conn, draftID string) {
	delete(c.drafts, draftID)
	if set := h.byDraft[draftID]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(h.byDraft, draftID)
		}
	}
}

// subscribe adds c to a draft's subscribers and queues its snapshot first;
// later applied ops reach c only above the snapshot's revision.
func (h *Hub) subscribe(c *conn, draftID string, rev int64, snapshot []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.byDraft[draftID]
	if set == nil {
		set = map[*conn]struct{}{}
		h.byDraft[draftID] = set
	}
	set[c] = struct{}{}
	sub := c.drafts[draftID]
	if sub == nil {
		sub = &subscription{}
		c.drafts[draftID] = sub
	}
	sub.rev = rev
	c.enqueue(snapshot)
}

// unsubscribe removes c from a draft; it reports whether it was subscribed.
func (h *Hub) unsubscribe(c *conn, draftID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := c.drafts[draftID]; !ok {
		return false
	}
	h.unsubscribeLocked(c, draftID)
	return true
}

// subscribed reports whether c is subscribed to the draft.
func (h *Hub) subscribed(c *conn, draftID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := c.drafts[draftID]
	return ok
}

// setFocus records where c is in a draft it subscribed to.
func (h *Hub) setFocus(c *conn, draftID string, focus *string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	sub, ok := c.drafts[draftID]
	if !ok {
		return false
	}
	sub.focus = focus
	return true
}

// presenceEntry is one member in a draft.
type presenceEntry struct {
	ID          string  `json:"id"`
	DisplayName string  `json:"display_name"`
	Focus       *string `json:"focus"`
}

// localPresence is this process's members in a draft, one entry per member
// however many tabs, ordered by name.
func (h *Hub) localPresence(draftID string) []presenceEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.localPresenceLocked(draftID)
}

func (h *Hub) localPresenceLocked(draftID string) []presenceEntry {
	members := []presenceEntry{}
	index := map[string]int{}
	for c := range h.byDraft[draftID] {
		focus := c.drafts[draftID].focus
		if i, ok := index[c.p.Member.ID]; ok {
			if focus != nil {
				members[i].Focus = focus
			}
			continue
		}
		index[c.p.Member.ID] = len(members)
		members = append(members, presenceEntry{ID: c.p.Member.ID, DisplayName: c.p.Member.DisplayName, Focus: focus})
	}
	sort.Slice(members, func(i, j int) bool { return members[i].DisplayName < members[j].DisplayName })
	return members
}

// setRemotePresence records what another edge process has in a draft.
func (h *Hub) setRemotePresence(draftID, process string, members []presenceEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	byProc := h.remote[draftID]
	if byProc == nil {
		byProc = map[string]remotePresence{}
		h.remote[draftID] = byProc
	}
	if len(members) == 0 {
		delete(byProc, process)
	} else {
		byProc[process] = remotePresence{members: members, at: time.Now()}
	}
	if len(byProc) == 0 {
		delete(h.remote, draftID)
	}
}

// broadcastPresence sends a draft's members, local and remote, to this
// process's subscribers of it.
func (h *Hub) broadcastPresence(draftID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.byDraft[draftID]
	if len(set) == 0 {
		return
	}
	members := h.localPresenceLocked(draftID)
	seen := map[string]bool{}
	for _, m := range members {
		seen[m.ID] = true
	}
	for proc, rp := range h.remote[draftID] {
		if time.Since(rp.at) > remotePresenceTTL {
			delete(h.remote[draftID], proc)
			continue
		}
		for _, m := range rp.members {
			if !seen[m.ID] {
				seen[m.ID] = true
				members = append(members, m)
			}
		}
	}
	msg := mustJSON(map[string]any{"type": "presence", "draft_id": draftID, "members": members})
	for c := range set {
		c.enqueue(msg)
	}
}

// oldestRev is the lowest revision any local subscriber of the draft has;
// ok is false when there are none.
func (h *Hub) oldestRev(draftID string) (rev int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.byDraft[draftID] {
		if r := c.drafts[draftID].rev; !ok || r < rev {
			rev, ok = r, true
		}
	}
	return rev, ok
}

// sendApplied queues an applied op for every subscriber whose revision it
// follows directly; subscribers that already have it are skipped. The
// caller delivers revisions in order (see Server.deliverApplied).
func (h *Hub) sendApplied(draftID string, rev int64, msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.byDraft[draftID] {
		if sub := c.drafts[draftID]; sub.rev == rev-1 {
			sub.rev = rev
			c.enqueue(msg)
		}
	}
}

// sendSnapshot sends a draft's new state (after a submit or a reopen) to its
// subscribers, except those that already have a later revision.
func (h *Hub) sendSnapshot(d *Draft) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var msg []byte
	for c := range h.byDraft[d.ID] {
		sub := c.drafts[d.ID]
		if sub.rev > d.Revision {
			continue
		}
		if msg == nil {
			msg = snapshotMsg(d)
		}
		sub.rev = d.Revision
		c.enqueue(msg)
	}
}

func snapshotMsg(d *Draft) []byte {
	return mustJSON(map[string]any{"type": "snapshot", "draft": d.wire(true)})
}

// broadcastTeam sends a message to every socket of a team.
func (h *Hub) broadcastTeam(teamID string, msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.byTeam[teamID] {
		c.enqueue(msg)
	}
}

// drafts lists the drafts with local subscribers.
func (h *Hub) draftIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.byDraft))
	for id := range h.byDraft {
		ids = append(ids, id)
	}
	return ids
}

// teamIDs lists the teams with local sockets.
func (h *Hub) teamIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.byTeam))
	for id := range h.byTeam {
		ids = append(ids, id)
	}
	return ids
}

// endSession closes the sockets of a session that signed out.
func (h *Hub) endSession(session string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.byTeam {
		for c := range set {
			if c.p.session == session {
				c.kill(websocket.StatusPolicyViolation, "signed out")
			}
		}
	}
}

// count is the number of open sockets.
func (h *Hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.byTeam {
		n += len(set)
	}
	return n
}

// closeAll closes every socket with 1001 and waits for their handlers to
// finish, or for ctx to end.
func (h *Hub) closeAll(ctx context.Context) {
	h.mu.Lock()
	h.closing = true
	for _, set := range h.byTeam {
		for c := range set {
			c.kill(websocket.StatusGoingAway, "server shutting down")
		}
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.sockets.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
