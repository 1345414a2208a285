package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"handoff/server"
)

// Findings of the outside acceptance run, each pinned by a test.

func TestLogoutEndsTheSessionsSockets(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	alice := e.client()
	alice.createTeam("A", "Alice")
	ws := alice.dial()
	alice.must(204, "POST", "/api/logout", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, _, err := ws.ws.Read(ctx)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			t.Fatal("the socket outlived its session")
		}
		return
	}
}

func TestAnotherMembersClientOpIDIsNotTakenForAResend(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	_, _, draft, wa, wb := e.twoMembers()
	wa.op(draft, "A5", 0, map[string]any{"kind": "set_title", "title": "Alice's"})
	wa.next("applied")
	wb.next("applied")
	wb.op(draft, "A5", 1, map[string]any{"kind": "set_title", "title": "Bob's"})
	if m := wb.next("rejected"); m["error"].(map[string]any)["code"] != "invalid" {
		t.Fatalf("bob reusing alice's id: %v", m)
	}
}

func TestFieldNamesAreExactAndNotNull(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	c := e.client()
	for _, body := range []string{`{"TITLE":"x"}`, `{"Title":"x"}`, `{"title":null}`, `null`, `[]`} {
		if r := c.do("POST", "/api/teams", body); r.status != 400 || r.errCode() != "bad_request" {
			t.Errorf("teams %s: %d %s", body, r.status, r.raw)
		}
	}
	c.createTeam("A", "Alice")
	if r := c.do("POST", "/api/drafts", `{"TITLE":"upper"}`); r.status != 400 {
		t.Errorf("draft with TITLE: %d %s", r.status, r.raw)
	}
	draft := c.newDraft("Order")
	ws := c.dial()
	ws.send(map[string]any{"TYPE": "subscribe", "DRAFT_ID": draft})
	if m := ws.next("error"); m["error"].(map[string]any)["code"] != "bad_request" {
		t.Fatalf("upper-case frame: %v", m)
	}
	ws.subscribe(draft)
	ws.send(`{"type":"op","draft_id":"` + draft + `","client_op_id":"k1","base_revision":0,"op":{"KIND":"set_title","Title":"x"}}`)
	if m := ws.next("rejected"); m["client_op_id"] != "k1" || m["error"].(map[string]any)["code"] != "bad_request" {
		t.Fatalf("upper-case op: %v", m)
	}
	ws.send(`{"type":"op","draft_id":"` + draft + `","client_op_id":"k2","base_revision":"x","op":{"kind":"set_title","title":"x"}}`)
	if m := ws.next("rejected"); m["client_op_id"] != "k2" {
		t.Fatalf("a wrongly typed op frame is not rejected under its id: %v", m)
	}
	// Presence may clear its focus with null.
	ws.send(map[string]any{"type": "presence", "draft_id": draft, "focus": nil})
	if m := ws.next("presence"); m["draft_id"] != draft {
		t.Fatalf("presence with null focus: %v", m)
	}
}

func TestSocketRefusalsHaveTheErrorBody(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	c := e.client()
	c.createTeam("A", "Alice")
	if r := c.do("GET", "/api/ws", nil); r.status != 400 || r.errCode() != "bad_request" {
		t.Fatalf("plain GET of the socket: %d %s", r.status, r.raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/api/ws"
	for _, origin := range []string{"http://evil.example", "https://" + strings.TrimPrefix(e.srv.URL, "http://")} {
		_, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: c.hc, HTTPHeader: map[string][]string{"Origin": {origin}}})
		if err == nil || resp == nil || resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("origin %s: %v %v", origin, err, resp)
		}
	}
	if r := c.do("POST", "/api/drafts", map[string]string{"title": "x"}, "Origin", "https://"+strings.TrimPrefix(e.srv.URL, "http://")); r.status != 403 {
		t.Fatalf("https origin on an http server: %d", r.status)
	}
}

func TestDraftStaysWithinOneFrame(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{FrameRate: 1000})
	c := e.client()
	c.createTeam("A", "Alice")
	draft := c.newDraft("Big")
	ws := c.dial()
	ws.subscribe(draft)
	note := strings.Repeat("\x01", 1000) // escaped as \u0001: six bytes each
	var refused map[string]any
	for i := 0; i < 20 && refused == nil; i++ {
		ws.op(draft, "big-"+string(rune('a'+i)), 0, map[string]any{"kind": "add_item", "item": map[string]any{
			"id": "00000000-0000-4000-8000-0000000000" + string(rune('a'+i/16)) + string("0123456789abcdef"[i%16]), "sku": "PEN-BLU-10", "quantity": 1, "note": note}})
		for {
			m := ws.read()
			if m["type"] == "applied" {
				break
			}
			if m["type"] == "rejected" {
				refused = m
				break
			}
		}
	}
	if refused == nil || refused["error"].(map[string]any)["code"] != "too_large" {
		t.Fatalf("no refusal before the snapshot outgrew a frame: %v", refused)
	}
	ws.subscribe(draft) // a client enforcing 64 KiB frames can still read it
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	probe := e.client()
	probe.hc.Jar = c.hc.Jar
	strict, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/api/ws", &websocket.DialOptions{HTTPClient: probe.hc})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.CloseNow()
	strict.SetReadLimit(64 << 10)
	s := &socket{t: t, ws: strict}
	s.read() // hello
	s.send(map[string]any{"type": "subscribe", "draft_id": draft})
	if _, _, err := strict.Read(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("snapshot over 64 KiB: %v", err)
	}
}

func TestNULIsABadRequestNotAnOutage(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		c := e.client()
		if r := c.do("POST", "/api/teams", `{"name":"a\u0000b","display_name":"x"}`); r.status != 400 || r.errCode() != "bad_request" {
			t.Fatalf("NUL in a team name: %d %s", r.status, r.raw)
		}
		if r := c.do("POST", "/api/invites/lookup", `{"invite_token":"\u0000"}`); r.status != 400 {
			t.Fatalf("NUL in a token: %d %s", r.status, r.raw)
		}
	})
}
