package server_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"handoff/server"
)

func TestSocketRules(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		alice := e.client()
		alice.createTeam("A", "Alice")
		draft := alice.newDraft("Order")
		other := e.client()
		other.createTeam("B", "Olga")
		theirs := other.newDraft("Theirs")
		ws := alice.dial()

		ws.send(`{"type":`)
		if m := ws.next("error"); m["error"].(map[string]any)["code"] != "bad_request" {
			t.Fatalf("malformed frame: %v", m)
		}
		ws.send(`{"type":"dance"}`)
		if m := ws.next("error"); m["error"].(map[string]any)["code"] != "bad_request" {
			t.Fatalf("unknown type: %v", m)
		}
		ws.send(map[string]any{"type": "subscribe", "draft_id": theirs})
		if m := ws.next("error"); m["error"].(map[string]any)["code"] != "not_found" {
			t.Fatalf("other team's draft: %v", m)
		}
		ws.send(map[string]any{"type": "subscribe"})
		if m := ws.next("error"); m["error"].(map[string]any)["code"] != "not_found" {
			t.Fatalf("no draft: %v", m)
		}
		ws.op(theirs, "x1", 0, map[string]any{"kind": "set_title", "title": "mine now"})
		if m := ws.next("rejected"); m["error"].(map[string]any)["code"] != "not_found" || m["client_op_id"] != "x1" {
			t.Fatalf("op on other team's draft: %v", m)
		}
		if d := other.must(200, "GET", "/api/drafts/"+theirs, nil); d["title"] != "Theirs" {
			t.Fatalf("other team's draft changed: %v", d)
		}
		// The connection is still open and works.
		snap := ws.subscribe(draft)
		if snap["id"] != draft || snap["revision"] != float64(0) {
			t.Fatalf("snapshot: %v", snap)
		}
		ws.op(draft, "bad", 0, map[string]any{"kind": "update_item", "item_id": item1, "quantity": 2})
		if m := ws.next("rejected"); m["client_op_id"] != "bad" {
			t.Fatalf("op on missing item: %v", m)
		}
		ws.op(draft, "bad2", 0, map[string]any{"kind": "set_title", "title": "x", "colour": 1})
		if m := ws.next("rejected"); m["error"].(map[string]any)["code"] != "bad_request" {
			t.Fatalf("op with unknown field: %v", m)
		}
		// Subscribing twice sends a fresh snapshot and no duplicate later.
		ws.subscribe(draft)
		ws.op(draft, "t1", 0, map[string]any{"kind": "set_title", "title": "Renamed"})
		if m := ws.next("applied"); m["revision"] != float64(1) {
			t.Fatalf("applied: %v", m)
		}
		ws.op(draft, "t2", 1, map[string]any{"kind": "set_title", "title": "Again"})
		if m := ws.next("applied"); m["revision"] != float64(2) || m["client_op_id"] != "t2" {
			t.Fatalf("second applied (a duplicate of the first would show here): %v", m)
		}
	})
}

func TestCoEditingAndPresence(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		alice, _, draft, wa, wb := e.twoMembers()

		wa.op(draft, "a1", 0, addItemOp(item1, "COF-ESP-1KG", 2))
		for _, s := range []*socket{wa, wb} {
			m := s.next("applied")
			if m["revision"] != float64(1) || m["client_op_id"] != "a1" || m["author"].(map[string]any)["display_name"] != "Alice" {
				t.Fatalf("applied: %v", m)
			}
		}
		// Same field, both at once: the later-applied wins, and both agree.
		wa.op(draft, "a2", 1, map[string]any{"kind": "update_item", "item_id": item1, "quantity": 5})
		wb.op(draft, "b1", 1, map[string]any{"kind": "update_item", "item_id": item1, "quantity": 7})
		var lastA, lastB map[string]any
		for i := 0; i < 2; i++ {
			lastA, lastB = wa.next("applied"), wb.next("applied")
			if lastA["revision"] != lastB["revision"] || lastA["client_op_id"] != lastB["client_op_id"] {
				t.Fatalf("members saw different orders: %v / %v", lastA, lastB)
			}
		}
		want := lastA["op"].(map[string]any)["quantity"]
		d := alice.must(200, "GET", "/api/drafts/"+draft, nil)
		if got := d["items"].([]any)[0].(map[string]any)["quantity"]; got != want || d["revision"] != float64(3) {
			t.Fatalf("stored quantity %v at revision %v, want the later-applied %v at 3", got, d["revision"], want)
		}

		wb.send(map[string]any{"type": "presence", "draft_id": draft, "focus": "item:" + item1 + ":quantity"})
		for {
			m := wa.next("presence")
			if hasFocus(m, "Bob", "item:"+item1+":quantity") && hasFocus(m, "Alice", "") {
				break
			}
		}
		wb.ws.Close(websocket.StatusNormalClosure, "")
		for {
			m := wa.next("presence")
			if len(m["members"].([]any)) == 1 {
				break
			}
		}
	})
}

func hasFocus(m map[string]any, name, focus string) bool {
	for _, x := range m["members"].([]any) {
		p := x.(map[string]any)
		if p["display_name"] == name {
			f, _ := p["focus"].(string)
			return f == focus
		}
	}
	return false
}

func TestResentOpIsAppliedOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		alice, _, draft, wa, wb := e.twoMembers()
		wa.op(draft, "same", 0, addItemOp(item1, "PEN-BLU-10", 1))
		first := wa.next("applied")
		wb.next("applied")
		// A reconnecting client resends its unacknowledged op.
		wa.ws.Close(websocket.StatusNormalClosure, "")
		wa = alice.dial()
		wa.subscribe(draft)
		wa.op(draft, "same", 0, addItemOp(item1, "PEN-BLU-10", 1))
		again := wa.next("applied")
		if again["revision"] != first["revision"] || again["client_op_id"] != "same" {
			t.Fatalf("resend answered %v, want %v", again, first)
		}
		wa.op(draft, "next", 1, map[string]any{"kind": "set_title", "title": "T"})
		if m := wb.next("applied"); m["client_op_id"] != "next" || m["revision"] != float64(2) {
			t.Fatalf("bob saw %v: the resend was broadcast or applied twice", m)
		}
		d := alice.must(200, "GET", "/api/drafts/"+draft, nil)
		if len(d["items"].([]any)) != 1 || d["revision"] != float64(2) {
			t.Fatalf("draft: %v", d)
		}
	})
}

// Ops from several members at once reach every subscriber in revision order
// with no gaps.
func TestConcurrentOpsAreGapFree(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		alice := e.client()
		token := alice.createTeam("Buyers", "Alice")
		draft := alice.newDraft("Order")
		const members, each = 3, 20
		socks := make([]*socket, members)
		for i := range socks {
			c := alice
			if i > 0 {
				c = e.client()
				c.join(token, fmt.Sprintf("M%d", i))
			}
			socks[i] = c.dial()
			socks[i].subscribe(draft)
		}
		var wg sync.WaitGroup
		for i, s := range socks {
			wg.Add(1)
			go func(i int, s *socket) {
				defer wg.Done()
				for j := 0; j < each; j++ {
					s.op(draft, fmt.Sprintf("m%d-%d", i, j), 0, map[string]any{"kind": "set_title", "title": fmt.Sprintf("t%d-%d", i, j)})
				}
			}(i, s)
		}
		wg.Wait()
		for i, s := range socks {
			for rev := 1; rev <= members*each; rev++ {
				if m := s.next("applied"); m["revision"] != float64(rev) {
					t.Fatalf("socket %d: got revision %v, want %d", i, m["revision"], rev)
				}
			}
		}
	})
}

func TestAcknowledgedOpsSurviveRestart(t *testing.T) {
	url := sqldbtestURL(t)
	e := startEdge(t, url, server.Config{})
	alice := e.client()
	alice.createTeam("Buyers", "Alice")
	draft := alice.newDraft("Order")
	ws := alice.dial()
	ws.subscribe(draft)
	ws.op(draft, "a", 0, addItemOp(item1, "MLK-OAT-1L", 6))
	ws.next("applied")
	cookies := alice.hc.Jar.Cookies(mustParse(e.srv.URL))

	e2 := startEdge(t, url, server.Config{})
	again := e2.client()
	again.hc.Jar.SetCookies(mustParse(e2.srv.URL), cookies)
	d := again.must(200, "GET", "/api/drafts/"+draft, nil)
	items := d["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["quantity"] != float64(6) || d["revision"] != float64(1) {
		t.Fatalf("after restart: %v", d)
	}
}

func TestOversizedFrameClosesSocket(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	alice := e.client()
	alice.createTeam("A", "Alice")
	ws := alice.dial()
	ws.send(`{"type":"presence","focus":"` + strings.Repeat("x", 70<<10) + `"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := ws.ws.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusMessageTooBig {
		t.Fatalf("after a 70 KiB frame: %v, want close 1009", err)
	}
}

func TestSocketNeedsSession(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/api/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("dial without session: %v %v", err, resp)
	}
	alice := e.client()
	alice.createTeam("A", "Alice")
	_, resp, err = websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/api/ws", &websocket.DialOptions{
		HTTPClient: alice.hc, HTTPHeader: map[string][]string{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("cross-origin dial: %v %v", err, resp)
	}
}

func TestTeamHearsOfNewAndRenamedDrafts(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	alice := e.client()
	token := alice.createTeam("A", "Alice")
	bob := e.client()
	bob.join(token, "Bob")
	wb := bob.dial()
	draft := alice.newDraft("Monday")
	if m := wb.next("draft")["draft"].(map[string]any); m["id"] != draft || m["title"] != "Monday" {
		t.Fatalf("new draft: %v", m)
	}
	wa := alice.dial()
	wa.subscribe(draft)
	wa.op(draft, "t", 0, map[string]any{"kind": "set_title", "title": "Tuesday"})
	if m := wb.next("draft")["draft"].(map[string]any); m["title"] != "Tuesday" || m["revision"] != float64(1) {
		t.Fatalf("renamed draft: %v", m)
	}
}

// An idle socket costs the edge one goroutine, its reader: the handshake's
// goroutine has ended, and no writer is left once the hello is sent.
func TestIdleSocketHoldsOneGoroutine(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), serverConfig())
	alice := e.client()
	alice.createTeam("Idle", "Alice")
	u := mustParse(e.srv.URL)
	var cookie string
	for _, ck := range alice.hc.Jar.Cookies(u) {
		cookie += ck.Name + "=" + ck.Value + "; "
	}
	addr := u.Host
	first := rawUpgrade(t, addr, cookie)
	defer first.Close()
	settleGoroutines(2 * time.Second)
	before := runtime.NumGoroutine()
	const n = 100
	for range n {
		c := rawUpgrade(t, addr, cookie)
		defer c.Close()
	}
	settleGoroutines(2 * time.Second)
	if grew := runtime.NumGoroutine() - before; grew > n+n/10 {
		t.Fatalf("%d idle sockets added %d goroutines, want about %d", n, grew, n)
	}
}

// hello is a socket's first message even while its team is busy: drafts
// created meanwhile are announced to every socket of the team.
func TestHelloComesFirstWhileTheTeamIsBusy(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	alice := e.client()
	alice.createTeam("Busy", "Alice")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				alice.newDraft("Noise")
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for range 150 {
		s := alice.dial() // fails the test unless the first message is hello
		s.ws.CloseNow()
	}
}
