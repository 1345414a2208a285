package server_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"handoff/server"
)

func TestOpsPastTheRateAreRejected(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{FrameRate: 5})
	alice := e.client()
	alice.createTeam("A", "Alice")
	draft := alice.newDraft("Order")
	ws := alice.dial()
	ws.subscribe(draft)
	// The burst is twice the rate; the frames past it are refused at once.
	for i := 0; i < 15; i++ {
		ws.op(draft, fmt.Sprintf("op-%d", i), 0, map[string]any{"kind": "set_title", "title": fmt.Sprintf("t%d", i)})
	}
	applied, limited := 0, 0
	for applied+limited < 15 {
		m := ws.read()
		switch m["type"] {
		case "applied":
			applied++
		case "rejected":
			if m["error"].(map[string]any)["code"] != "rate_limited" {
				t.Fatalf("rejected: %v", m)
			}
			limited++
		}
	}
	if limited == 0 || applied == 0 {
		t.Fatalf("%d applied, %d rate limited; want both", applied, limited)
	}
}

// Frames that cannot be read count against the rate as well: past the
// burst they get one rate_limited error a second, not an answer each.
func TestUnreadableFramesPastTheRateShareOneError(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{FrameRate: 5})
	alice := e.client()
	alice.createTeam("A", "Alice")
	ws := alice.dial()
	const sent = 40
	for i := 0; i < sent; i++ {
		ws.send(`{"type":`)
	}
	// An op is always answered, past the rate too: the end of the junk.
	ws.op(alice.newDraft("Order"), "marker", 0, map[string]any{"kind": "set_title", "title": "x"})
	bad, limited := 0, 0
	for {
		m := ws.read()
		if m["type"] == "rejected" || m["type"] == "applied" {
			break
		}
		if m["type"] != "error" {
			continue
		}
		switch code := m["error"].(map[string]any)["code"]; code {
		case "bad_request":
			bad++
		case "rate_limited":
			limited++
		default:
			t.Fatalf("error %v", m)
		}
	}
	if bad > 11 || limited < 1 || limited > 2 {
		t.Fatalf("%d junk frames got %d bad_request and %d rate_limited errors; want the burst's 10 or 11 and one or two", sent, bad, limited)
	}
}

// Every op is answered, past the rate too, even one that cannot be decoded
// but names its client_op_id.
func TestMalformedOpsPastTheRateAreEachRejected(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{FrameRate: 5})
	alice := e.client()
	alice.createTeam("A", "Alice")
	draft := alice.newDraft("Order")
	ws := alice.dial()
	const sent = 30
	for i := 0; i < sent; i++ {
		ws.send(fmt.Sprintf(`{"type":"op","draft_id":%q,"client_op_id":"m%d","base_revision":"x","op":{"kind":"set_title","title":"t"}}`, draft, i))
	}
	seen := map[string]bool{}
	for len(seen) < sent {
		m := ws.read()
		if m["type"] != "rejected" {
			t.Fatalf("answer %v", m)
		}
		seen[m["client_op_id"].(string)] = true
	}
}

// A socket that stops reading is disconnected; the others keep getting
// every message.
func TestSlowClientIsDisconnected(t *testing.T) {
	// Loopback buffers hold megabytes, so it takes thousands of ops to back
	// up a socket; run beside the other tests.
	t.Parallel()
	e := startEdge(t, sqldbtestURL(t), server.Config{SocketQueue: 128, FrameRate: 100000})
	alice := e.client()
	token := alice.createTeam("A", "Alice")
	draft := alice.newDraft("Order")
	fast := alice.dial()
	fast.subscribe(draft)

	slowClient := e.client()
	slowClient.join(token, "Sloth")
	// A tiny receive buffer so the server's writes back up quickly.
	dialer := &net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	slowClient.hc.Transport = &httpTransport{dial: dialer.DialContext}
	slow := slowClient.dial()
	slow.subscribe(draft)

	fast.op(draft, "add", 0, addItemOp(item1, "PEN-BLU-10", 1))
	fast.next("applied")
	note := strings.Repeat("n", 990)
	const ops, window = 5000, 32
	// The fast member keeps a window of ops in flight, so its own queue
	// never fills; the slow one's does.
	sent := 0
	for rev := 2; rev <= ops+1; rev++ {
		for sent < ops && sent < rev-2+window {
			fast.op(draft, fmt.Sprintf("op-%d", sent), 0, map[string]any{"kind": "update_item", "item_id": item1, "note": fmt.Sprintf("%d %s", sent, note)})
			sent++
		}
		if m := fast.next("applied"); m["revision"] != float64(rev) {
			t.Fatalf("fast socket: revision %v, want %d", m["revision"], rev)
		}
	}
	// The slow socket drains what reached it, then finds itself closed.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, _, err := slow.ws.Read(ctx)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			t.Fatal("the slow socket was never disconnected")
		}
		if code := websocket.CloseStatus(err); code != -1 && code != websocket.StatusPolicyViolation {
			t.Fatalf("closed with %d, want 1008", code)
		}
		return
	}
}
