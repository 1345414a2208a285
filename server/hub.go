package server

import (
	"context"
	"sync"

	"github.com/coder/websocket"
)

// Hub knows every socket of this process: by team for operation changes,
// by draft for applied ops, snapshots and presence.
type Hub struct {
	mu      sync.Mutex
	byTeam  map[string]map[*conn]struct{}
	byDraft map[string]map[*conn]struct{}
	lastRev map[string]int64
	closing bool
	sockets sync.WaitGroup
}

func newHub() *Hub {
	return &Hub{byTeam: map[string]map[*conn]struct{}{}, byDraft: map[string]map[*conn]struct{}{}, lastRev: map[string]int64{}}
}

// conn is one socket.
type conn struct {
	ws     *websocket.Conn
	p      principal
	send   chan []byte
	done   chan struct{}
	once   sync.Once
	drafts map[string]*string // subscribed drafts and the focus on each; guarded by Hub.mu
}

func (c *conn) kill(code websocket.StatusCode, reason string) {
	c.once.Do(func() {
		close(c.done)
		go c.ws.Close(code, reason)
	})
}

// enqueue never blocks; called with Hub.mu held.
func (c *conn) enqueue(msg []byte) {
	select {
	case <-c.done:
	case c.send <- msg:
	default:
		c.kill(websocket.StatusPolicyViolation, "client too slow to read its messages")
	}
}

func (h *Hub) add(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
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
			delete(h.lastRev, draftID)
		}
	}
}

// subscribe adds c to a draft's subscribers and queues the snapshot first;
// the caller holds the draft's lock, so no applied op slips in between.
func (h *Hub) subscribe(c *conn, draftID string, rev int64, snapshot []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.byDraft[draftID]
	if set == nil {
		set = map[*conn]struct{}{}
		h.byDraft[draftID] = set
	}
	set[c] = struct{}{}
	if _, ok := c.drafts[draftID]; !ok {
		c.drafts[draftID] = nil
	}
	if rev > h.lastRev[draftID] {
		h.lastRev[draftID] = rev
	}
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
	if _, ok := c.drafts[draftID]; !ok {
		return false
	}
	c.drafts[draftID] = focus
	return true
}

// presenceEntry is one member in a draft.
type presenceEntry struct {
	ID          string  `json:"id"`
	DisplayName string  `json:"display_name"`
	Focus       *string `json:"focus"`
}

// broadcastPresence sends a draft's members (one entry per member, however
// many tabs) to its subscribers.
func (h *Hub) broadcastPresence(draftID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.byDraft[draftID]
	if len(set) == 0 {
		return
	}
	members := []presenceEntry{}
	index := map[string]int{}
	for c := range set {
		focus := c.drafts[draftID]
		if i, ok := index[c.p.Member.ID]; ok {
			if focus != nil {
				members[i].Focus = focus
			}
			continue
		}
		index[c.p.Member.ID] = len(members)
		members = append(members, presenceEntry{ID: c.p.Member.ID, DisplayName: c.p.Member.DisplayName, Focus: focus})
	}
	msg := mustJSON(map[string]any{"type": "presence", "draft_id": draftID, "members": members})
	for c := range set {
		c.enqueue(msg)
	}
}

// broadcastDraft sends an applied op to a draft's subscribers; the caller
// holds the draft's lock, so revisions go out in order.
func (h *Hub) broadcastDraft(draftID string, rev int64, msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev > h.lastRev[draftID] {
		h.lastRev[draftID] = rev
	}
	for c := range h.byDraft[draftID] {
		c.enqueue(msg)
	}
}

// sendSnapshot sends a draft's new state (after a submit or a reopen) to its
// subscribers, unless they already have a later revision.
func (h *Hub) sendSnapshot(d *Draft) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d.Revision < h.lastRev[d.ID] {
		return
	}
	h.lastRev[d.ID] = d.Revision
	msg := snapshotMsg(d)
	for c := range h.byDraft[d.ID] {
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
