package server_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"handoff/pkg/sqldb/sqldbtest"
	"handoff/server"
)

// Members on two edge processes of one PostgreSQL database co-edit a draft:
// both see every op in the same gap-free order, each other's presence, and
// the submission.
func TestTwoEdgesShareADraft(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	e1 := startEdge(t, url, server.Config{})
	e2 := startEdge(t, url, server.Config{})
	alice := e1.client()
	token := alice.createTeam("Buyers", "Alice")
	bob := e2.client()
	bob.join(token, "Bob")
	draft := alice.newDraft("Order")
	wa, wb := alice.dial(), bob.dial()
	wa.subscribe(draft)
	wb.subscribe(draft)

	for {
		if m := wa.next("presence"); hasFocus(m, "Bob", "") {
			break
		}
	}
	wa.op(draft, "first", 0, addItemOp(item1, "COF-ESP-1KG", 1))
	for _, s := range []*socket{wa, wb} {
		if m := s.next("applied"); m["revision"] != float64(1) {
			t.Fatalf("first op: %v", m)
		}
	}
	const each = 25
	var wg sync.WaitGroup
	for name, s := range map[string]*socket{"a": wa, "b": wb} {
		wg.Add(1)
		go func(name string, s *socket) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				s.op(draft, fmt.Sprintf("%s-%d", name, i), 0, map[string]any{"kind": "update_item", "item_id": item1, "quantity": i + 1})
			}
		}(name, s)
	}
	wg.Wait()
	var seen [2][]string
	for i, s := range []*socket{wa, wb} {
		for rev := 2; rev <= 2*each+1; rev++ {
			m := s.next("applied")
			if m["revision"] != float64(rev) {
				t.Fatalf("socket %d: revision %v, want %d", i, m["revision"], rev)
			}
			seen[i] = append(seen[i], m["client_op_id"].(string))
		}
	}
	if fmt.Sprint(seen[0]) != fmt.Sprint(seen[1]) {
		t.Fatalf("the edges disagree on the order:\n%v\n%v", seen[0], seen[1])
	}

	op := alice.must(202, "POST", "/api/drafts/"+draft+"/submit", map[string]int{"revision": 2*each + 1})["operation"].(map[string]any)
	if m := wb.next("operation"); m["operation"].(map[string]any)["id"] != op["id"] {
		t.Fatalf("bob's edge pushed %v", m)
	}
	if snap := wb.next("snapshot"); snap["draft"].(map[string]any)["state"] != "submitted" {
		t.Fatalf("bob's edge did not push the frozen draft: %v", snap)
	}
}

// An edge that never heard of a change (its announcement was lost, say
// because the process that made it died right after the commit) catches up
// by its periodic sweep: its member gets the op from the op log.
func TestEdgeCatchesUpOnAMissedAnnouncement(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	e1 := startEdge(t, url, server.Config{})
	e2 := startEdge(t, url, server.Config{CatchUpEvery: 50 * time.Millisecond})
	alice := e1.client()
	token := alice.createTeam("Buyers", "Alice")
	bob := e2.client()
	bob.join(token, "Bob")
	draft := alice.newDraft("Order")
	wb := bob.dial()
	wb.subscribe(draft)
	me := alice.must(200, "GET", "/api/me", nil)["member"].(map[string]any)
	// The change as an edge writes it, with nobody told.
	if _, err := e1.db.Exec(e1.db.Q(`INSERT INTO draft_ops (draft_id, revision, client_op_id, author_id, op, created_at) VALUES ($1, 1, 'unheard', $2, $3, 0)`),
		draft, me["id"], `{"kind":"set_title","title":"Renamed"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := e1.db.Exec(e1.db.Q(`UPDATE drafts SET revision = 1, title = 'Renamed' WHERE id = $1`), draft); err != nil {
		t.Fatal(err)
	}
	if m := wb.next("applied"); m["revision"] != float64(1) || m["client_op_id"] != "unheard" {
		t.Fatalf("bob's edge pushed %v", m)
	}
}

// A draft whose presence is too large for one notification (many members
// with long names and focus) still reaches the other edge: without the
// focus, or with as many members as fit, never not at all.
func TestLargePresenceReachesTheOtherEdge(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	e1 := startEdge(t, url, server.Config{AuthRate: 1000})
	e2 := startEdge(t, url, server.Config{AuthRate: 1000})
	alice := e1.client()
	token := alice.createTeam("Crowd", "Alice")
	draft := alice.newDraft("Order")
	const crowd = 20
	for i := range crowd {
		c := e1.client()
		c.join(token, fmt.Sprintf("%02d %s", i, strings.Repeat("\U0001F600", 77)))
		s := c.dial()
		s.subscribe(draft)
		s.send(map[string]any{"type": "presence", "draft_id": draft, "focus": strings.Repeat("f", 200)})
	}
	bob := e2.client()
	bob.join(token, "Bob")
	wb := bob.dial()
	wb.subscribe(draft)
	for {
		m := wb.next("presence")
		// 20 members with 77 four-byte characters in their names do not fit
		// one notification even without focus: most of them, and Bob.
		if n := len(m["members"].([]any)); n > crowd/2 {
			return
		}
	}
}
