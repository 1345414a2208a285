package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"handoff/pkg/client"
	"handoff/pkg/sqldb/sqldbtest"
)

// app is handoff running in this process, as `handoff serve` would.
type app struct {
	URL  string
	stop func() error
}

var urlLine = regexp.MustCompile(`running at (http://\S+)`)

func startApp(t *testing.T, dbURL string, extra ...string) *app {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--database", dbURL, "--log-level", "error", "--db-pool", "8"}, extra...)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, func(string) string { return "" }, pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	a := &app{}
	for lines.Scan() {
		if m := urlLine.FindStringSubmatch(lines.Text()); m != nil {
			a.URL = m[1]
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if a.URL == "" {
		cancel()
		t.Fatalf("app did not start: %v", <-done)
	}
	stopped := false
	a.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { a.stop() })
	return a
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitOperation reads operation messages until the operation reaches one of
// the statuses, checking that seq only rises.
func waitOperation(t *testing.T, ctx context.Context, ws *client.Socket, id string, statuses ...string) client.Operation {
	t.Helper()
	var lastSeq int64
	for {
		m, err := ws.Next(ctx, "operation")
		if err != nil {
			t.Fatalf("waiting for operation %s: %v", id, err)
		}
		if m.Operation.ID != id {
			continue
		}
		if m.Operation.Seq < lastSeq {
			t.Fatalf("seq went down: %d after %d", m.Operation.Seq, lastSeq)
		}
		lastSeq = m.Operation.Seq
		for _, s := range statuses {
			if m.Operation.Status == s {
				return *m.Operation
			}
		}
	}
}

func TestSubmitRunsToCompletion(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dbURL string) {
		t.Parallel()
		a := startApp(t, dbURL)
		ctx := ctxT(t)
		alice, bob := client.New(a.URL), client.New(a.URL)
		s, err := alice.CreateTeam(ctx, "Buyers", "Alice")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Join(ctx, s.InviteToken, "Bob"); err != nil {
			t.Fatal(err)
		}
		d, err := alice.CreateDraft(ctx, "Monday order")
		if err != nil {
			t.Fatal(err)
		}
		wa, err := alice.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wb, err := bob.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wa.Subscribe(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
		wa.Op(ctx, d.ID, "a1", 0, client.AddItem(uuid.NewString(), "COF-ESP-1KG", 2, "dark roast"))
		wa.Op(ctx, d.ID, "a2", 1, client.AddItem(uuid.NewString(), "MLK-OAT-1L", 4, ""))
		for i := 0; i < 2; i++ {
			if _, err := wa.Next(ctx, "applied"); err != nil {
				t.Fatal(err)
			}
		}
		op, created, err := bob.Submit(ctx, d.ID, 2)
		if err != nil || !created || op.Status != "pending" {
			t.Fatalf("submit: %+v %v %v", op, created, err)
		}
		for _, ws := range []*client.Socket{wa, wb} {
			done := waitOperation(t, ctx, ws, op.ID, "completed", "failed")
			if done.Status != "completed" || done.Result["total_cents"] != float64(2*2450+4*229) || done.Result["order_number"] == "" {
				t.Fatalf("operation ended %+v", done)
			}
			for _, st := range done.Steps {
				if st.Status != "done" {
					t.Fatalf("step %s is %s", st.Name, st.Status)
				}
			}
		}
		again, created, err := alice.Submit(ctx, d.ID, 2)
		if err != nil || created || again.ID != op.ID || again.Status != "completed" {
			t.Fatalf("repeat submit: %+v %v %v", again, created, err)
		}
		var apiErr *client.APIError
		if _, _, err := alice.Submit(ctx, d.ID, 1); !errors.As(err, &apiErr) || apiErr.Code != "already_submitted" {
			t.Fatalf("submit at an old revision: %v", err)
		}
	})
}

func TestPendingOperationFinishesAfterRestart(t *testing.T) {
	dbURL := sqldbtest.SQLiteURL(t)
	edgeOnly := startApp(t, dbURL, "--role", "edge")
	ctx := ctxT(t)
	alice, _, op := submitOneItem(t, ctx, edgeOnly.URL)
	if err := edgeOnly.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// The session cookie carries over: the server keeps sessions.
	all := startApp(t, dbURL)
	alice.Base = all.URL
	ws, err := alice.Dial(ctx)
	if err != nil {
		t.Fatalf("dial after restart: %v", err)
	}
	ops, err := alice.Operations(ctx)
	if err != nil || len(ops) != 1 {
		t.Fatalf("operations after restart: %v %v", ops, err)
	}
	if ops[0].Status != "completed" {
		if got := waitOperation(t, ctx, ws, op.ID, "completed", "failed"); got.Status != "completed" {
			t.Fatalf("after restart: %+v", got)
		}
	}
}

// submitOneItem signs a member up at base, submits a draft of one item and
// returns the member, a socket subscribed to the draft, and the operation.
func submitOneItem(t *testing.T, ctx context.Context, base string) (*client.Client, *client.Socket, client.Operation) {
	t.Helper()
	alice := client.New(base)
	if _, err := alice.CreateTeam(ctx, "Buyers", "Alice"); err != nil {
		t.Fatal(err)
	}
	d, err := alice.CreateDraft(ctx, "Order")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := alice.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Subscribe(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if err := ws.Op(ctx, d.ID, "add", 0, client.AddItem(uuid.NewString(), "PEN-BLU-10", 2, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Next(ctx, "applied"); err != nil {
		t.Fatal(err)
	}
	op, _, err := alice.Submit(ctx, d.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	return alice, ws, op
}

func TestConfigRejectsBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--role", "both"},
		{"serve", "--database", "mysql://x"},
		{"serve", "--log-level", "loud"},
		{"serve", "stray"},
		{"dance"},
		{},
	} {
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	cfg, err := parseConfig("serve", nil, func(k string) string {
		return map[string]string{"HANDOFF_ADDR": "127.0.0.1:9999", "HANDOFF_ROLE": "edge"}[k]
	}, io.Discard)
	if err != nil || cfg.Addr != "127.0.0.1:9999" || cfg.Role != "edge" || !strings.HasPrefix(cfg.DatabaseURL, "sqlite:") {
		t.Fatalf("env defaults: %+v %v", cfg, err)
	}
}

func TestShutdownClosesSocketsWithGoingAway(t *testing.T) {
	a := startApp(t, sqldbtest.SQLiteURL(t))
	ctx := ctxT(t)
	c := client.New(a.URL)
	if _, err := c.CreateTeam(ctx, "Buyers", "Alice"); err != nil {
		t.Fatal(err)
	}
	ws, err := c.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- a.stop() }()
	for {
		_, err := ws.Read(ctx)
		if err == nil {
			continue
		}
		if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
			t.Fatalf("socket ended with %v (code %d), want 1001", err, code)
		}
		break
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	a := startApp(t, sqldbtest.SQLiteURL(t))
	ctx := ctxT(t)
	c := client.New(a.URL)
	if _, err := c.CreateTeam(ctx, "Buyers", "Alice"); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, err := c.Do(ctx, "GET", path, nil, nil); err != nil || status != 200 {
			t.Fatalf("%s: %d %v", path, status, err)
		}
	}
	resp, err := c.HTTP.Get(a.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`handoff_http_requests_total{code="201",route="/api/teams"} 1`,
		"handoff_open_sockets 0",
		"handoff_ops_applied_total 0",
		"handoff_submits_total 0",
		`handoff_outbox_lag_seconds{topic="order.submitted"} 0`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A second edge on a SQLite file refuses to start, saying why: the two
// would not hear each other's changes. An interior on the same file is
// welcome.
func TestSecondSQLiteEdgeRefuses(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "h.db")
	startApp(t, url)
	var stderr strings.Builder
	err := run(ctxT(t), []string{"serve", "--addr", "127.0.0.1:0", "--database", url}, func(string) string { return "" }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "another handoff edge is already serving") {
		t.Fatalf("second edge: %v", err)
	}
	if strings.Contains(stderr.String(), `"level":"ERROR"`) {
		t.Errorf("refusing to start logged errors:\n%s", stderr.String())
	}
	link := filepath.Join(t.TempDir(), "link.db")
	if err := os.Symlink(strings.TrimPrefix(url, "sqlite:"), link); err != nil {
		t.Fatal(err)
	}
	err = run(ctxT(t), []string{"serve", "--addr", "127.0.0.1:0", "--database", "sqlite:" + link}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "another handoff edge is already serving") {
		t.Fatalf("second edge through a symlink: %v", err)
	}
	startApp(t, url, "--role", "interior")
}

// An address in use is reported as that, before anything is opened, so
// nothing else is logged.
func TestAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var stderr strings.Builder
	err = run(ctxT(t), []string{"serve", "--addr", taken.Addr().String(), "--database", "sqlite:" + filepath.Join(t.TempDir(), "h.db")},
		func(string) string { return "" }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("serve on a taken address: %v", err)
	}
	if stderr.Len() > 0 {
		t.Errorf("logged besides the error:\n%s", stderr.String())
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	var out strings.Builder
	for _, arg := range []string{"--help", "-h", "help"} {
		out.Reset()
		if err := run(context.Background(), []string{arg}, func(string) string { return "" }, &out, io.Discard); err != nil {
			t.Errorf("%s: %v", arg, err)
		}
		if !strings.Contains(out.String(), "usage: handoff") {
			t.Errorf("%s printed %q", arg, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"serve", "--help"}, func(string) string { return "" }, io.Discard, &out); err != nil {
		t.Errorf("serve --help: %v", err)
	}
	if !strings.Contains(out.String(), "-database") {
		t.Errorf("serve --help printed %q", out.String())
	}
}
