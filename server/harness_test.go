package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/coder/websocket"

	"handoff/pkg/bus"
	"handoff/pkg/sqldb"
	"handoff/pkg/sqldb/sqldbtest"
	"handoff/server"
)

// edge is one running edge over a test database, without an interior.
type edge struct {
	t   testing.TB
	url string
	db  *sqldb.DB
	bus *bus.Bus
	srv *httptest.Server
}

// testLogger shows warnings and errors in the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func startEdge(t testing.TB, dbURL string, cfg server.Config) *edge {
	t.Helper()
	db := sqldbtest.MustOpen(t, dbURL)
	b, err := bus.New(db, watermill.NopLogger{}, bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	if err := server.Migrate(ctx, db, b); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(db, b, testLogger(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Running():
	case err := <-done:
		t.Fatalf("edge stopped: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.CloseSockets(sctx)
		srv.Close()
		s.Close()
		<-done
	})
	return &edge{t: t, url: dbURL, db: db, bus: b, srv: srv}
}

// client is one browser: a cookie jar against the edge.
type client struct {
	t  testing.TB
	e  *edge
	hc *http.Client
}

func (e *edge) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: e.t, e: e, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r reply) errCode() string {
	if e, ok := r.body["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

func (r reply) errField(name string) any {
	if e, ok := r.body["error"].(map[string]any); ok {
		return e[name]
	}
	return nil
}

// do sends body (a string is sent as is, anything else as JSON).
func (c *client) do(method, path string, body any, headers ...string) reply {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, c.e.srv.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (c *client) must(status int, method, path string, body any) map[string]any {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.status != status {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.raw)
	}
	return r.body
}

// createTeam signs the client up and returns the invite token.
func (c *client) createTeam(name, display string) string {
	c.t.Helper()
	b := c.must(201, "POST", "/api/teams", map[string]string{"name": name, "display_name": display})
	return b["invite_token"].(string)
}

func (c *client) join(token, display string) {
	c.t.Helper()
	c.must(200, "POST", "/api/join", map[string]string{"invite_token": token, "display_name": display})
}

func (c *client) newDraft(title string) string {
	c.t.Helper()
	return c.must(201, "POST", "/api/drafts", map[string]string{"title": title})["id"].(string)
}

// socket is a WebSocket of a client, with typed reads.
type socket struct {
	t  testing.TB
	ws *websocket.Conn
}

func (c *client) dial() *socket {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.e.srv.URL, "http")+"/api/ws", &websocket.DialOptions{HTTPClient: c.hc})
	if err != nil {
		c.t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	s := &socket{t: c.t, ws: ws}
	c.t.Cleanup(func() { ws.CloseNow() })
	if m := s.read(); m["type"] != "hello" {
		c.t.Fatalf("first message %v, want hello", m)
	}
	return s
}

func (s *socket) send(v any) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var data []byte
	if str, ok := v.(string); ok {
		data = []byte(str)
	} else {
		data, _ = json.Marshal(v)
	}
	if err := s.ws.Write(ctx, websocket.MessageText, data); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

func (s *socket) read() map[string]any {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := s.ws.Read(ctx)
	if err != nil {
		s.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		s.t.Fatalf("frame %s: %v", data, err)
	}
	return m
}

// next reads until a message of the type arrives, skipping others (such as
// presence) that the test does not look at.
func (s *socket) next(typ string) map[string]any {
	s.t.Helper()
	for {
		m := s.read()
		if m["type"] == "rejected" && typ != "rejected" {
			s.t.Logf("skipped %v", m)
		}
		if m["type"] == typ {
			return m
		}
	}
}

func (s *socket) subscribe(draftID string) map[string]any {
	s.t.Helper()
	s.send(map[string]any{"type": "subscribe", "draft_id": draftID})
	return s.next("snapshot")["draft"].(map[string]any)
}

func (s *socket) op(draftID, clientOpID string, base int, op map[string]any) {
	s.t.Helper()
	s.send(map[string]any{"type": "op", "draft_id": draftID, "client_op_id": clientOpID, "base_revision": base, "op": op})
}

func addItemOp(id, sku string, qty int) map[string]any {
	return map[string]any{"kind": "add_item", "item": map[string]any{"id": id, "sku": sku, "quantity": qty, "note": ""}}
}

// eachBackend runs fn against a fresh edge on each database.
func eachBackend(t *testing.T, fn func(t *testing.T, e *edge)) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		t.Parallel()
		fn(t, startEdge(t, url, server.Config{}))
	})
}

func sqldbtestURL(t testing.TB) string { return sqldbtest.SQLiteURL(t) }

func mustParse(raw string) *neturl.URL {
	u, err := neturl.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u
}

// httpTransport is an http.Transport with a custom dialer.
type httpTransport struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (t *httpTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return (&http.Transport{DialContext: t.dial}).RoundTrip(r)
}

func serverConfig() server.Config { return server.Config{} }

// twoMembers signs Alice up and Bob into her team, makes a draft and
// subscribes a socket of each to it.
func (e *edge) twoMembers() (alice, bob *client, draft string, wa, wb *socket) {
	alice = e.client()
	token := alice.createTeam("Buyers", "Alice")
	bob = e.client()
	bob.join(token, "Bob")
	draft = alice.newDraft("Order")
	wa, wb = alice.dial(), bob.dial()
	wa.subscribe(draft)
	wb.subscribe(draft)
	return alice, bob, draft, wa, wb
}
